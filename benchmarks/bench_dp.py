"""Utility cost of differential privacy (issue 22 item 5) on cohorts of the demo studies' sizes.

A CML-like cohort (Weibull progression-free survival, shape 1.2, 0.06/year, hazard ratios 0.6 and
0.75 for the two second-generation TKIs, administrative censoring after 0-13 years of follow-up;
TKI shares 50/25/25, as in ``workbench.synth``) of 400 (the default 10,000-patient demo), 1,000
and 4,000 patients; Kaplan-Meier by TKI on the notebook's 30-day grid over 5 years, released by
``dp.privatize_survival`` with the default ``min_cell_count`` 10; counts as the TKI x sex crosstab
(6 cells) by ``dp.privatize``. Errors are against the exact release of the same binned data, so
they are the noise's cost alone. Each row's ratio is that error over a baseline from the same
data: for KM the Greenwood standard error of the exact estimate (the sampling uncertainty the
study has anyway), for counts the mean cell. ``withheld`` is the share of (group, time) estimates
that the noisy curve no longer reaches (its noisy at-risk fell below 10 before that time).
"""

from __future__ import annotations

import numpy as np

from workbench.secure import dp, stats

RES, BINS, K = 30.0, 62, 10
EPSILONS = (0.1, 0.5, 1.0, 2.0)
TIMES = {"1y": 365.25, "2y": 730.5}
ARMS = ("imatinib", "dasatinib", "nilotinib")


def cohort(n: int, seed: int):
    """(group, bin, event, sex) per patient on the public grid (censored at its horizon)."""
    rng = np.random.default_rng(seed)
    arm = rng.choice(3, n, p=[0.5, 0.25, 0.25])
    hr = np.array([1.0, 0.6, 0.75])[arm]
    years = (-np.log(rng.random(n)) / (0.06 * hr)) ** (1 / 1.2)  # H(t) = 0.06 hr t^1.2
    follow = rng.uniform(0, 13, n)
    days = np.minimum(years, follow) * 365.25
    event = years <= follow
    bins = np.ceil(days / RES - 1e-9).astype(np.int64)
    event = np.where(bins >= BINS, False, event)
    return arm, np.minimum(bins, BINS - 1), event.astype(np.int64), rng.random(n) < 0.45


def arrays(arm, bins, event):
    exits, events = np.zeros((3, BINS), np.int64), np.zeros((3, BINS), np.int64)
    np.add.at(exits, (arm, bins), 1)
    np.add.at(events, (arm, bins), event)
    return np.cumsum(exits[:, ::-1], axis=1)[:, ::-1], events


def survival_at(group: dict, t: float) -> float | None:
    """S(t) of a released group, None where the curve stops before t."""
    times = group["times"]
    if not times or (group.get("truncated_after") is not None and group["truncated_after"] < t):
        return None
    s, _, _ = stats.kaplan_meier(np.array(group["at_risk"]), np.array(group["observed"]))
    row = int(np.searchsorted(np.array(times), t, side="right")) - 1
    return float(s[row])


def exact_curve(at_risk, events):
    s, _, _ = stats.kaplan_meier(at_risk, events)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.cumsum(np.where(at_risk > events, events / (at_risk * (at_risk - events)), 0.0))
    return s, s * np.sqrt(g)  # Greenwood standard error


def run(full: bool) -> list[dict]:
    reps = 200 if full else 40
    rows = []
    for n in (400, 1000, 4000):
        arm, bins, event, female = cohort(n, seed=n)
        at_risk, events = arrays(arm, bins, event)
        labels = [f"tki={a}" for a in ARMS]
        cells = np.bincount(arm * 2 + female, minlength=6).tolist()
        counts = {"counts": cells, "labels": [f"tki={a}, female={f}" for a in ARMS
                                              for f in (False, True)]}
        truth = {}
        for name, t in TIMES.items():
            b = int(np.floor(t / RES))
            truth[name] = [exact_curve(at_risk[g], events[g]) for g in range(3)]
            truth[name] = [(float(s[b]), float(se[b])) for s, se in truth[name]]
        for eps in EPSILONS:
            err = {name: [] for name in TIMES}
            withheld = {name: 0 for name in TIMES}
            count_err = []
            for _ in range(reps):
                out = dp.privatize_survival(at_risk, events, labels, RES, eps, K)
                for name, t in TIMES.items():
                    for g, group in enumerate(out["groups"]):
                        s = survival_at(group, t)
                        if s is None:
                            withheld[name] += 1
                        else:
                            err[name].append(abs(s - truth[name][g][0]))
                noisy = dp.privatize("crosstab", counts, eps, K)["counts"]
                count_err += [abs(a - b) for a, b in zip(noisy, cells, strict=True)]
            for name in TIMES:
                se = float(np.mean([x[1] for x in truth[name]]))
                mae = float(np.mean(err[name])) if err[name] else float("nan")
                rows.append({"name": f"KM S({name}) by TKI, n={n}, eps={eps:g}",
                             "ratio": mae / se, "goal": None, "mae": round(mae, 4),
                             "greenwood_se": round(se, 4),
                             "withheld": round(withheld[name] / (3 * reps), 3),
                             "exact_s": [round(x[0], 3) for x in truth[name]], "reps": reps})
            mae = float(np.mean(count_err))
            rows.append({"name": f"crosstab cells (6), n={n}, eps={eps:g}",
                         "ratio": mae / float(np.mean(cells)), "goal": None,
                         "mae": round(mae, 2), "mean_cell": round(float(np.mean(cells)), 1),
                         "reps": reps})
    return rows


def table(rows: list[dict]) -> str:
    """The rows as the markdown table of docs/secure.md."""
    out = ["| n | ε | MAE S(1y) (Greenwood SE) | MAE S(2y) (Greenwood SE) | withheld 2y | "
           "count cell MAE (mean cell) |", "|---|---|---|---|---|---|"]
    by = {r["name"]: r for r in rows}
    for n in (400, 1000, 4000):
        for eps in EPSILONS:
            one = by[f"KM S(1y) by TKI, n={n}, eps={eps:g}"]
            two = by[f"KM S(2y) by TKI, n={n}, eps={eps:g}"]
            c = by[f"crosstab cells (6), n={n}, eps={eps:g}"]
            out.append(f"| {n} | {eps:g} | {one['mae']:.3f} ({one['greenwood_se']:.3f}) | "
                       f"{two['mae']:.3f} ({two['greenwood_se']:.3f}) | "
                       f"{two['withheld']:.0%} | {c['mae']:.1f} ({c['mean_cell']:.0f}) |")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    results = run(full="--quick" not in sys.argv)
    for row in results:
        print(row)
    print()
    print(table(results))
