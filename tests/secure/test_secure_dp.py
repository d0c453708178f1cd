"""Differential privacy (dp.py): ε accounting, the noise's scale, and valid released shapes.

Inputs are what the key holder holds: the exact pooled per-bin survival counts (built here with
NumPy from synthetic cohorts) or a released result of the shape release.py had at 229dfbc.
OpenDP samples from the OS CSPRNG and cannot be seeded: the statistical checks use bounds of
>= 5 standard deviations (false failure < 1e-6); the cohorts' data use the seeds in each test.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from workbench.secure import dp, release
from workbench.secure.results import KaplanMeierResult


def cohort(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    event_t = rng.exponential(3 * 365, n)
    censor_t = rng.uniform(0, 5 * 365, n)
    return pd.DataFrame({"days": np.ceil(np.minimum(event_t, censor_t)).astype(np.int64),
                         "died": (event_t <= censor_t).astype(np.int64),
                         "arm": rng.choice(["a", "b"], n)})


RES, LEVELS = 30.0, ["a", "b"]


def km_arrays(frames: list[pd.DataFrame], n_bins: int, by: bool = True):
    """Exact pooled at-risk, events and holders-at-risk per (group, bin), as the key holder
    decrypts them (ops._survival + the holder bits), on a public grid of ``n_bins`` bins of
    RES days; later times are censored in the last bin."""
    groups = len(LEVELS) if by else 1
    at_risk, events, holders = (np.zeros((groups, n_bins), np.int64) for _ in range(3))
    for f in frames:
        bins = np.ceil(f["days"].to_numpy() / RES - 1e-9).astype(np.int64)
        event = np.where(bins >= n_bins, 0, f["died"].to_numpy())
        bins = np.minimum(bins, n_bins - 1)
        g = f["arm"].map({v: i for i, v in enumerate(LEVELS)}).to_numpy() if by else \
            np.zeros(len(f), np.int64)
        exits, ev = np.zeros((groups, n_bins), np.int64), np.zeros((groups, n_bins), np.int64)
        np.add.at(exits, (g, bins), 1)
        np.add.at(ev, (g, bins), event)
        mine = np.cumsum(exits[:, ::-1], axis=1)[:, ::-1]
        at_risk, events, holders = at_risk + mine, events + ev, holders + (mine > 0)
    labels = [f"arm={v}" for v in LEVELS] if by else ["all rows"]
    return at_risk, events, holders, labels


def head_release(at_risk, events, holders, labels, k: int, min_holders: int = 2) -> dict:
    """The Kaplan-Meier release shape of release.py at 229dfbc (rows with exits, the tail cut
    where fewer than k are at risk, the cut row's exits withheld as None)."""
    groups = []
    for n, d, h, label in zip(at_risk, events, holders, labels, strict=True):
        if n[0] == 0:
            groups.append({"label": label, "n": 0, "times": []})
            continue
        exits = n - np.append(n[1:], 0)
        keep = (n >= k) & (h >= min_holders)
        rows = np.nonzero(keep & ((exits > 0) | (np.arange(len(n)) == 0)))[0]
        last = int(np.nonzero(keep)[0].max())
        censored, removed = (exits - d)[rows].tolist(), exits[rows].tolist()
        hide = rows[-1] == last and last + 1 < len(n) and n[last + 1] > 0
        if hide:
            censored[-1] = removed[-1] = None
        groups.append({"label": label, "n": int(n[0]), "times": (rows * RES).tolist(),
                       "at_risk": n[rows].tolist(), "observed": d[rows].tolist(),
                       "censored": censored, "removed": removed,
                       "truncated_after": float(last * RES) if hide else None})
    return {"groups": groups}


def km_spec(n_bins: int) -> dict:
    return {"duration_col": "days", "event_col": "died", "resolution": RES, "n_bins": n_bins}


def split3(frame: pd.DataFrame) -> list[pd.DataFrame]:
    return [frame.iloc[i::3] for i in range(3)]


def check_km_group(g: dict, k: int) -> None:
    assert set(g) >= {"label", "n", "times"}
    if not g["times"]:
        return
    at, d = np.array(g["at_risk"]), np.array(g["observed"])
    cens = [0 if v is None else v for v in g["censored"]]
    assert len(g["times"]) == len(at) == len(d) == len(cens) == len(g["removed"])
    assert np.all(np.diff(g["times"]) > 0) and g["times"][0] == 0
    assert np.all(at >= k) and np.all(np.diff(at) <= 0) and at[0] <= g["n"]
    assert np.all(d >= 0) and np.all(np.array(cens) >= 0) and np.all(d <= at)
    for i, removed in enumerate(g["removed"]):
        if removed is not None:
            assert removed == d[i] + cens[i] and removed <= at[i]
            if i + 1 < len(at):  # bins between released rows have no exits
                assert at[i + 1] == at[i] - removed


# -- settings and supports -------------------------------------------------------------------------
def test_supports_only_counts_and_km():
    for op in ("count", "crosstab", "histogram", "kaplan_meier"):
        assert dp.supports(op)
    for op in ("sum", "mean", "var", "logrank_test", "cox_ph", "logistic_regression", "x"):
        assert not dp.supports(op)
    with pytest.raises(ValueError):
        dp.privatize("mean", {"mean": [1.0]}, 0.5, 10)


def test_settings_validate():
    s = dp.PrivacySettings(epsilon_budget=3)
    assert (s.epsilon_per_release, s.mechanism) == (0.5, "laplace")
    for bad in ({"epsilon_budget": 0}, {"epsilon_budget": 1, "epsilon_per_release": -1},
                {"epsilon_budget": 1, "epsilon_per_release": 2},
                {"epsilon_budget": 1, "mechanism": "gaussian"}, {"epsilon_budget": 1, "x": 1},
                {"epsilon_budget": float("inf")}, {"epsilon_budget": float("nan")}):
        with pytest.raises(ValidationError):
            dp.PrivacySettings(**bad)


# -- counts ----------------------------------------------------------------------------------------
COUNTS = {"counts": [120, 0, 37, 9], "labels": ["arm=a, sex=f", "arm=a, sex=m",
                                                  "arm=b, sex=f", "arm=b, sex=m"]}


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 2.0])
def test_counts_state_exactly_their_epsilon(eps):
    out = dp.privatize("crosstab", COUNTS, eps, 10)
    assert out["labels"] == COUNTS["labels"] and len(out["counts"]) == 4
    assert all(isinstance(c, int) and c >= 0 for c in out["counts"])
    p = out["privacy"]
    assert p["epsilon"] == eps and p["sensitivity"] == 1 and p["scale"] == pytest.approx(1 / eps)
    m, _ = dp._measurement(eps, 1)  # the stated ε is OpenDP's own map of the measurement
    assert m.map(1) == p["epsilon"]
    assert "privacy" not in COUNTS and COUNTS["counts"][1] == 0  # the input is not modified


def test_other_fields_pass_through():
    hist = {"counts": [12, 30], "labels": ["[0, 5)", "[5, 10]"], "edges": [0.0, 5.0, 10.0]}
    out = dp.privatize("histogram", hist, 1.0, 10)
    assert out["edges"] == hist["edges"] and out["labels"] == hist["labels"]


def test_rows_per_patient_scales_the_sensitivity():
    out = dp.privatize("count", {"counts": [500], "labels": ["all rows"]}, 0.5, 10,
                       rows_per_patient=4)
    p = out["privacy"]
    assert (p["epsilon"], p["sensitivity"]) == (0.5, 4) and p["scale"] == pytest.approx(8.0)
    with pytest.raises(ValueError):
        dp.privatize("count", COUNTS, 0.5, 10, rows_per_patient=0)


@pytest.mark.parametrize("eps", [0.7, 1 / 3, 0.05])
def test_awkward_epsilon_never_exceeded(eps):
    out = dp.privatize("count", {"counts": [100], "labels": ["all rows"]}, eps, 10)
    assert eps * (1 - 1e-9) <= out["privacy"]["epsilon"] <= eps


@pytest.mark.parametrize("eps", [0.2, 1.0])
def test_noise_variance_matches_the_scale(eps):
    """4000 privatized copies of a count of 1000 (far from 0: no clamping). The discrete Laplace
    of scale b has variance 2 e^{-1/b} / (1 - e^{-1/b})^2 (-> 2 b^2 for large b); the sample
    variance's relative sd is sqrt((kurtosis - 1) / N) ~ sqrt(5 / 4000) = 3.5%: bound 20%."""
    n = 4000
    out = dp.privatize("histogram", {"counts": [1000] * n, "labels": ["x"] * n}, eps, 10)
    b = out["privacy"]["scale"]
    want = 2 * math.exp(-1 / b) / (1 - math.exp(-1 / b)) ** 2
    got = np.var(out["counts"], ddof=1)
    assert abs(got / want - 1) < 0.20, (got, want, "unseeded: OpenDP's CSPRNG")
    assert abs(np.mean(out["counts"]) - 1000) < 6 * math.sqrt(want / n)
    if b >= 5:
        assert want == pytest.approx(2 * b * b, rel=0.01)


# -- Kaplan-Meier ----------------------------------------------------------------------------------
def test_km_from_arrays_valid_shapes():
    at_risk, events, _, labels = km_arrays(split3(cohort(800, seed=2)), 61)
    for eps in (0.1, 0.5, 2.0):
        for _ in range(5):
            out = dp.privatize_survival(at_risk, events, labels, RES, eps, 10)
            p = out["privacy"]
            assert p["epsilon"] == eps and p["sensitivity"] == 1  # complete curves
            assert p["scale"] == pytest.approx(1 / eps)
            assert [g["label"] for g in out["groups"]] == labels
            for g in out["groups"]:
                check_km_group(g, 10)
                assert all(t % RES == 0 for t in g["times"])
                KaplanMeierResult(g, 0.05)  # the client rebuilds it


def test_km_group_sizes_are_unbiased():
    """n is the sum of the raw noisy exits of its 2 x 61 cells: mean over 200 releases within 6
    of its standard errors (sd of one n ~ sqrt(122 x 1.84) at ε = 1)."""
    at_risk, events, _, labels = km_arrays(split3(cohort(500, seed=8)), 61)
    sizes = np.array([[g["n"] for g in dp.privatize_survival(at_risk, events, labels, RES, 1.0,
                                                             10)["groups"]] for _ in range(200)])
    se = math.sqrt(122 * 1.84 / 200)
    assert np.all(np.abs(sizes.mean(axis=0) - at_risk[:, 0]) < 6 * se), sizes.mean(axis=0)


def test_km_from_arrays_without_noise_is_lifelines_km():
    """At ε = 200 the discrete Laplace of scale 0.01 is 0 except with probability ~1e-43: the
    isotonic fits and the at-risk rebuild must then give the exact curve."""
    from lifelines import KaplanMeierFitter

    frame = cohort(600, seed=3)
    at_risk, events, _, labels = km_arrays(split3(frame), 62)  # 62 bins: past every time
    out = dp.privatize_survival(at_risk, events, labels, RES, 200.0, 1)
    for g, level in zip(out["groups"], LEVELS, strict=True):
        part = frame[frame["arm"] == level]
        assert g["n"] == len(part) and g["truncated_after"] is None
        kmf = KaplanMeierFitter().fit(np.ceil(part["days"] / RES) * RES, part["died"])
        ours = KaplanMeierResult(g, 0.05).survival_function_.iloc[:, 0]
        theirs = kmf.survival_function_.iloc[:, 0]
        assert np.allclose(ours.to_numpy(), theirs.reindex(ours.index).to_numpy())


def test_km_from_release_without_noise_is_the_exact_release():
    at_risk, events, holders, labels = km_arrays(split3(cohort(600, seed=3)), 61)
    exact = head_release(at_risk, events, holders, labels, k=1)
    out = dp.privatize("kaplan_meier", exact, 200.0, 1, spec=km_spec(61))
    assert out["groups"] == exact["groups"]  # the public grid rebuilt from the released rows


def test_km_from_release_valid_and_withheld_cells_stay_withheld():
    at_risk, events, holders, labels = km_arrays(split3(cohort(300, seed=4)), 61, by=False)
    exact = head_release(at_risk, events, holders, labels, k=40)
    g0 = exact["groups"][0]
    assert g0["truncated_after"] is not None and g0["censored"][-1] is None
    out = dp.privatize("kaplan_meier", exact, 200.0, 40, spec=km_spec(61))
    assert out["groups"][0] == g0
    assert out["privacy"]["sensitivity"] == 2  # a withheld tail: n is noised as well
    for eps in (0.2, 1.0):  # noisy: the tail goes where the noisy at-risk < k
        for _ in range(5):
            g = dp.privatize("kaplan_meier", exact, eps, 40, spec=km_spec(61))["groups"][0]
            check_km_group(g, 40)
            assert g["truncated_after"] is not None


def test_km_from_release_without_spec_noises_released_rows():
    at_risk, events, holders, labels = km_arrays(split3(cohort(400, seed=5)), 61)
    exact = head_release(at_risk, events, holders, labels, k=10)
    out = dp.privatize("kaplan_meier", exact, 1.0, 10)
    for a, b in zip(exact["groups"], out["groups"], strict=True):
        check_km_group(b, 10)
        assert set(b["times"]) <= set(a["times"])


def test_km_merged_rows_keep_their_intervals():
    group = {"label": "all rows", "n": 60, "times": [0.0, 90.0, 240.0],
             "at_risk": [60, 60, 35], "observed": [0, 12, 11], "censored": [0, 13, 12],
             "removed": [0, 25, 23], "intervals": [[0.0, 0.0], [0.0, 90.0], [90.0, 240.0]]}
    out = dp.privatize("kaplan_meier", {"groups": [group]}, 200.0, 10, spec=km_spec(61))
    g = out["groups"][0]
    assert g["times"] == group["times"] and g["intervals"] == group["intervals"]
    assert g["at_risk"] == group["at_risk"] and g["observed"] == group["observed"]


def test_km_empty_group_gets_a_noisy_size():
    frame = cohort(400, seed=6)
    frame["arm"] = "a"
    at_risk, events, holders, labels = km_arrays(split3(frame), 61)
    exact = head_release(at_risk, events, holders, labels, k=10)
    assert exact["groups"][1] == {"label": "arm=b", "n": 0, "times": []}
    for out in (dp.privatize("kaplan_meier", exact, 0.5, 10, spec=km_spec(61)),
                dp.privatize_survival(at_risk, events, labels, RES, 0.5, 10)):
        check_km_group(out["groups"][1], 10)
        assert out["groups"][1]["n"] >= 0


# -- the budget ------------------------------------------------------------------------------------
def test_each_release_spends_its_epsilon_and_the_budget_holds_across_restarts(tmp_path):
    path = tmp_path / "privacy.sqlite"
    budget = dp.PrivacyBudget(path)
    at_risk, events, _, labels = km_arrays(split3(cohort(500, seed=7)), 61)
    spent = []
    for i in range(4):  # 4 x 0.5 = the whole budget of 2
        out = dp.privatize_survival(at_risk, events, labels, RES, 0.5, 10)
        left = budget.spend("study-a", out["privacy"]["epsilon"], 2.0, f"rq-{i}")
        spent.append(out["privacy"]["epsilon"])
        assert budget.spent("study-a") == pytest.approx(sum(spent))
        assert left == pytest.approx(2.0 - sum(spent))
    assert left == 0.0
    restarted = dp.PrivacyBudget(path)  # a new key holder process on the same ledger
    assert restarted.spent("study-a") == pytest.approx(2.0)
    with pytest.raises(release.ReleaseRefused) as info:
        restarted.spend("study-a", 0.5, 2.0, "rq-5")
    assert info.value.rule == "privacy-budget"
    assert "only 0 is left" in str(info.value) and "epsilon_budget" in str(info.value)
    assert restarted.spent("study-a") == pytest.approx(2.0)  # a refusal spends nothing
    assert restarted.spent("study-b") == 0.0  # per study
    assert restarted.spend("study-b", 0.5, 1.0, "rq-1") == pytest.approx(0.5)


def test_budget_spent_in_tenths_is_spent_exactly(tmp_path):
    budget = dp.PrivacyBudget(tmp_path / "p.sqlite")
    for i in range(10):
        budget.spend("s", 0.1, 1.0, f"rq-{i}")
    with pytest.raises(release.ReleaseRefused):
        budget.spend("s", 0.1, 1.0, "rq-10")
    # a smaller request that still fits would have passed; none fits now
    with pytest.raises(release.ReleaseRefused):
        budget.spend("s", 1e-6, 1.0, "rq-11")
    with pytest.raises(ValueError):
        budget.spend("s", 0.0, 1.0, "rq-12")


def test_budget_concurrent_spends_never_overdraw(tmp_path):
    path = tmp_path / "p.sqlite"
    ledgers = [dp.PrivacyBudget(path), dp.PrivacyBudget(path)]  # two handles, one file
    ok, refused = [], []

    def spend(i):
        try:
            ledgers[i % 2].spend("s", 0.25, 2.0, f"rq-{i}")
            ok.append(i)
        except release.ReleaseRefused:
            refused.append(i)

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 8 and len(refused) == 8
    assert dp.PrivacyBudget(path).spent("s") == pytest.approx(2.0)
