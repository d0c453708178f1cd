"""Golden tests: secure results equal lifelines / statsmodels on the same pooled public data
split across holders (lung split by institution, gbsg2 and rossi split across three holders)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test

from workbench.secure import Federation

from .conftest import split_by, split_round_robin

TIGHT = {"precision": 1e-12}  # lifelines stops at ~1e-7 by default; compare with its exact MLE


def _coarsened(result, durations):
    """Each duration rounded up to the released time whose interval holds it: the released curve
    is the KM of these (release.survival_rows merges adjacent time steps)."""
    times = result.timeline[result.event_table["removed"].to_numpy() > 0]  # not the t=0 row
    return times[np.searchsorted(times, np.asarray(durations, dtype=float), side="left")]


def _km_error(result, durations, events) -> float:
    kmf = KaplanMeierFitter().fit(_coarsened(result, durations), events)
    mine = result.survival_function_.iloc[:, 0]
    theirs = kmf.survival_function_["KM_estimate"].reindex(mine.index)
    assert not theirs.isna().any(), "released times must be lifelines' event times"
    return float(np.abs(theirs - mine).max())


def test_km_lung_split_by_institution_matches_lifelines(lung):
    parts = split_by(lung, "inst")
    fed = Federation(parts, min_cell_count=1)
    result = fed.kaplan_meier(duration_col="time", event_col="status")
    exact = KaplanMeierFitter().fit(lung["time"], lung["status"])
    # with k = 1 every step is its own row, until patients of two institutions are no longer
    # at risk: that tail is one row, at the grid's end (no cut-off point is released)
    second_longest = sorted(p["time"].max() for p in parts.values())[-2]
    assert [t for t in result.timeline if t < second_longest] == \
        [t for t in exact.timeline if t < second_longest]
    assert result.timeline[-1] == lung["time"].max()  # the local grid's end
    kmf = KaplanMeierFitter().fit(_coarsened(result, lung["time"]), lung["status"])
    assert _km_error(result, lung["time"], lung["status"]) <= 1e-12
    ci = kmf.confidence_interval_.reindex(result.timeline)
    assert np.abs(ci.to_numpy() - result.confidence_interval_.to_numpy()).max() <= 1e-12
    assert result.median_survival_time_ == kmf.median_survival_time_
    table = kmf.event_table.reindex(result.timeline)
    for col in ("at_risk", "observed", "entrance", "censored", "removed"):
        assert (table[col].to_numpy() == result.event_table[col].to_numpy()).all(), col


def test_km_rows_are_merged_until_each_holds_k(lung):
    fed = Federation(split_by(lung, "inst"), min_cell_count=10)
    result = fed.kaplan_meier(duration_col="time", event_col="status")
    rows = result.event_table
    assert (rows["at_risk"] >= 10).all()
    for col in ("observed", "censored"):
        assert ((rows[col] == 0) | (rows[col] >= 10)).all(), col
    drops = -np.diff(result.event_table["at_risk"].to_numpy())
    assert ((drops == 0) | (drops >= 10)).all()
    assert rows["removed"].sum() == len(lung)  # everyone is accounted for: no withheld tail
    assert _km_error(result, lung["time"], lung["status"]) <= 1e-12


def test_km_by_group_gbsg2(gbsg2):
    fed = Federation(split_round_robin(gbsg2), min_cell_count=1)
    curves = fed.kaplan_meier(duration_col="time", event_col="cens", by="horTh")
    assert set(curves) == {"no", "yes"}
    for level, result in curves.items():
        part = gbsg2[gbsg2["horTh"] == level]
        assert _km_error(result, part["time"], part["cens"]) <= 1e-12


def test_logrank_matches_lifelines(lung, gbsg2):
    fed = Federation(split_by(lung, "inst"), min_cell_count=1)
    result = fed.logrank_test(duration_col="time", event_col="status", group_col="sex")
    a, b = lung[lung["sex"] == 1], lung[lung["sex"] == 2]
    ref = logrank_test(a["time"], b["time"], a["status"], b["status"])
    assert abs(result.test_statistic - ref.test_statistic) <= 1e-9
    assert abs(result.p_value - ref.p_value) <= 1e-9
    three = Federation(split_round_robin(gbsg2), min_cell_count=1).logrank_test(
        duration_col="time", event_col="cens", group_col="tgrade")
    ref3 = multivariate_logrank_test(gbsg2["time"], gbsg2["tgrade"], gbsg2["cens"])
    assert three.degrees_of_freedom == 2
    assert abs(three.test_statistic - ref3.test_statistic) <= 1e-9


def test_cox_efron_gbsg2_five_covariates(gbsg2):
    covariates = ["age", "tsize", "pnodes", "progrec", "estrec"]
    fed = Federation(split_round_robin(gbsg2), min_cell_count=10)
    result = fed.cox_ph(duration_col="time", event_col="cens", covariates=covariates)
    cph = CoxPHFitter().fit(gbsg2[covariates + ["time", "cens"]], "time", "cens",
                           fit_options=TIGHT)
    assert np.abs(result.params_ - cph.params_).max() <= 1e-6
    assert np.abs(result.standard_errors_ - cph.standard_errors_).max() <= 1e-6
    assert abs(result.log_likelihood_ - cph.log_likelihood_) <= 1e-6
    assert list(result.summary.columns[:3]) == ["coef", "exp(coef)", "se(coef)"]
    assert result.confidence_intervals_.shape == (5, 2)


def test_cox_lung_split_by_institution_and_strata(lung, rossi):
    fed = Federation(split_by(lung, "inst"), min_cell_count=5)
    result = fed.cox_ph(duration_col="time", event_col="status",
                        covariates=["age", "sex", "ph.ecog"])
    cph = CoxPHFitter().fit(lung[["time", "status", "age", "sex", "ph.ecog"]], "time", "status",
                           fit_options=TIGHT)
    assert np.abs(result.params_ - cph.params_).max() <= 1e-6
    strat = Federation(split_round_robin(rossi), min_cell_count=10).cox_ph(
        duration_col="week", event_col="arrest", covariates=["fin", "age", "prio"], strata="race")
    ref = CoxPHFitter().fit(rossi[["week", "arrest", "fin", "age", "prio", "race"]], "week",
                            "arrest", strata=["race"], fit_options=TIGHT)
    assert np.abs(strat.params_ - ref.params_).max() <= 1e-6


def test_logistic_regression_matches_statsmodels(gbsg2):
    covariates = ["age", "tsize", "pnodes", "hormone"]
    fed = Federation(split_round_robin(gbsg2), min_cell_count=10)
    result = fed.logistic_regression(outcome_col="cens", covariates=covariates)
    ref = sm.Logit(gbsg2["cens"], sm.add_constant(gbsg2[covariates].astype(float))).fit(
        disp=0, tol=1e-12)
    assert np.abs(result.params_.to_numpy() - ref.params.to_numpy()).max() <= 1e-6
    assert np.abs(result.standard_errors_.to_numpy() - ref.bse.to_numpy()).max() <= 1e-6
    assert abs(result.log_likelihood_ - ref.llf) <= 1e-6


def test_aggregates_match_pandas(gbsg2):
    fed = Federation(split_round_robin(gbsg2), min_cell_count=10, dominance=(2, 0.85))
    assert fed.count() == len(gbsg2)
    by = fed.count(by="tgrade")
    assert by.to_dict() == gbsg2["tgrade"].astype(str).value_counts().to_dict()
    assert abs(fed.sum("tsize") - gbsg2["tsize"].sum()) <= 1e-6
    assert abs(fed.mean("age") - gbsg2["age"].mean()) / gbsg2["age"].mean() <= 1e-7
    assert abs(fed.var("age") - gbsg2["age"].var()) / gbsg2["age"].var() <= 1e-7
    means = fed.mean("age", by="horTh")
    assert np.allclose(means.to_numpy(), gbsg2.groupby("horTh")["age"].mean().to_numpy(),
                       rtol=1e-9)
    table = fed.crosstab("horTh", "menostat")
    ref = (gbsg2.assign(horTh=gbsg2["horTh"].astype(str), menostat=gbsg2["menostat"].astype(str))
           .pipe(lambda d: d.groupby(["horTh", "menostat"]).size().unstack()))
    assert (table.to_numpy() == ref.to_numpy()).all()
    hist = fed.histogram("age", bins=[20, 40, 50, 60, 80])
    assert hist.counts.tolist() == np.histogram(gbsg2["age"], [20, 40, 50, 60, 80])[0].tolist()


@pytest.mark.parametrize("n_holders", [2, 3])
def test_holders_hold_no_secret_key_and_pack_bins(rossi, n_holders):
    fed = Federation(split_round_robin(rossi, n_holders), min_cell_count=10)
    assert all(not h.has_secret_key for h in fed.holders)
    fed.kaplan_meier(duration_col="week", event_col="arrest")
    (round_,) = fed.coordinator.log
    assert round_["ciphertexts"] == 1  # 2 x 53 weekly bins + 1 packed into one BFV ciphertext
    # 65.7 KB under a single key; the holders' joint key (simulated key parties, the default)
    # has three 31-bit primes: 106.6 KB (docs/secure.md, "Threshold decryption")
    limit = 110_000 if fed.coordinator.keys.threshold else 90_000
    assert all(b <= limit for b in round_["bytes_per_holder"].values())


def test_holder_processes_give_the_same_answers(gbsg2):
    parts = split_round_robin(gbsg2)
    fed = Federation(parts, min_cell_count=10, holder_processes=True)
    try:
        assert fed.coordinator.metadata()["holders_ran"].startswith("in parallel")
        km = fed.kaplan_meier(duration_col="time", event_col="cens")
        cox = fed.cox_ph(duration_col="time", event_col="cens", covariates=["age", "tsize"])
    finally:
        fed.close()
    local = Federation(parts, min_cell_count=10)
    assert np.abs(km.survival_function_.to_numpy()
                  - local.kaplan_meier("time", "cens").survival_function_.to_numpy()).max() == 0
    assert np.abs(cox.params_ - local.cox_ph("time", "cens", ["age", "tsize"]).params_).max() \
        <= 1e-9
    assert all(p.poll() is not None for p in fed.coordinator.processes.procs) or \
        not fed.coordinator.processes.procs


def test_plots_draw_released_curves(gbsg2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fed = Federation(split_round_robin(gbsg2), min_cell_count=10)
    fig, ax = plt.subplots()
    fed.kaplan_meier("time", "cens").plot(ax=ax)
    fed.kaplan_meier("time", "cens", by="horTh").plot(ax=ax)
    assert len(ax.lines) == 3
    assert ax.lines[0].get_xdata().max() <= gbsg2["time"].max()  # the local grid's end
    plt.close(fig)
