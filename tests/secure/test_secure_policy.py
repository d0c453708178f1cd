"""The key holder's release policy, attacked: small cells, single holders, dominance, thin tails,
per-patient encryption. Each refusal must name the rule, say what to change, and carry no
patient-level value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.errors import WorkbenchUserError
from workbench.secure import Federation
from workbench.secure.release import ReleaseRefused

from .conftest import split_round_robin


def _frame(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(20, 90, n), "cost": rng.gamma(2.0, 100.0, n),
                         "site": rng.choice(["a", "b"], n), "rare": ["common"] * n,
                         "days": rng.integers(0, 400, n), "event": rng.integers(0, 2, n)})


def test_small_count_cell_is_refused_with_the_rule_and_a_fix():
    df = _frame(300)
    df.loc[:3, "rare"] = "rare"  # 4 rows in one cell
    fed = Federation(split_round_robin(df), min_cell_count=10)
    with pytest.raises(ReleaseRefused) as err:
        fed.count(by="rare")
    assert err.value.rule == "min-cell-count"
    # a refusal says how many cells failed and what to do: never which, nor their count
    assert "1 cell(s)" in str(err.value) and "Merge categories" in str(err.value)
    assert "rare" not in str(err.value) and "4" not in str(err.value)
    assert err.value.reason == "release-refused"
    with pytest.raises(ReleaseRefused):
        fed.crosstab("rare", "site")
    assert fed.count(by="site").sum() == 300  # big cells still pass


def test_histogram_bins_are_merged_until_each_holds_k():
    df = _frame(300)
    fed = Federation(split_round_robin(df), min_cell_count=10)
    hist = fed.histogram("age", bins=[20, 21, 22, 90, 91])  # local mode: caller's edges
    assert (hist.counts >= 10).all() and hist.counts.sum() == 300
    assert hist.edges[0] == 20 and hist.edges[-1] == 91 and set(hist.edges) <= {20, 21, 22, 90,
                                                                                 91}


def test_single_holder_contribution_is_never_decrypted():
    df = _frame(300)
    only_one = {"hospital": df, "insurer": df.iloc[:0], "pharma": df.iloc[:0]}
    fed = Federation(only_one, min_cell_count=10)
    with pytest.raises(ReleaseRefused) as err:
        fed.count()
    assert err.value.rule == "min-holders"
    with pytest.raises(ReleaseRefused):
        Federation({"hospital": df}, min_cell_count=10).mean("age")
    with pytest.raises(ReleaseRefused):  # min_holders cannot be lowered below two
        Federation({"hospital": df}, min_cell_count=10, min_holders=1).kaplan_meier("days",
                                                                                   "event")


def test_selection_from_one_holder_inside_a_federation_is_refused():
    df = _frame(300)
    parts = split_round_robin(df)
    parts["hospital"] = parts["hospital"].assign(site="only-here")
    fed = Federation(parts, min_cell_count=10)
    with pytest.raises(ReleaseRefused) as err:
        fed.count(by="site")  # the cell site=only-here is one holder's count
    assert err.value.rule == "min-cell-count"  # refused alike: no oracle for holders


def test_dominance_refuses_a_sum_driven_by_a_few_values_without_leaking_them():
    df = _frame(300)
    df.loc[7, "cost"] = 9_876_543.21
    fed = Federation(split_round_robin(df), min_cell_count=10, dominance=(2, 0.85))
    with pytest.raises(ReleaseRefused) as err:
        fed.sum("cost")
    assert err.value.rule == "dominance"
    assert "9876543" not in str(err.value) and "9,876,543" not in str(err.value)
    with pytest.raises(ReleaseRefused):
        fed.mean("cost")
    assert fed.mean("age") == pytest.approx(df["age"].mean(), rel=1e-9)


def test_dominance_uses_an_upper_bound_across_holders():
    df = _frame(300)
    df["cost"] = 1.0
    df.loc[[0, 1], "cost"] = 500.0  # rows 0 and 1 sit at different holders (round robin)
    fed = Federation(split_round_robin(df), min_cell_count=10, dominance=(2, 0.7))
    with pytest.raises(ReleaseRefused):
        fed.sum("cost")  # (500 + 500) / 1298 > 0.7 even though no single holder sees both
    assert Federation(split_round_robin(df), dominance=(2, 0.85)).sum("cost") == pytest.approx(
        1298.0, abs=1e-6)


def test_survival_curve_released_only_where_at_risk_reaches_the_threshold():
    df = _frame(400)
    fed = Federation(split_round_robin(df), min_cell_count=25)
    km = fed.kaplan_meier("days", "event")
    assert (km.event_table["at_risk"] >= 25).all()
    rows = km.event_table
    assert ((rows["observed"] >= 25) | (rows["observed"] == 0)).all()
    assert rows["removed"].sum() == 400
    fed_small = Federation(split_round_robin(df.iloc[:30]), min_cell_count=25)
    with pytest.raises(ReleaseRefused):
        fed_small.kaplan_meier("days", "event", by="site")  # groups of ~15
    with pytest.raises(ReleaseRefused):
        fed_small.logrank_test("days", "event", "site")


def test_models_need_enough_rows_events_and_outcomes():
    df = _frame(300)
    df["event"] = 0
    df.loc[:4, "event"] = 1
    fed = Federation(split_round_robin(df), min_cell_count=10)
    with pytest.raises(ReleaseRefused) as err:
        fed.logistic_regression("event", ["age"])
    assert "outcome class" in str(err.value)
    with pytest.raises(ReleaseRefused) as err:
        fed.cox_ph("days", "event", ["age"])
    assert err.value.rule == "min-events"


def test_one_ciphertext_per_patient_is_refused():
    df = _frame(50)
    per_patient = {f"patient-{i}": df.iloc[[i]] for i in range(len(df))}
    with pytest.raises(WorkbenchUserError) as err:
        Federation(per_patient)
    assert err.value.reason == "per-patient-encryption"
    assert "331 KB" in str(err.value)
    with pytest.raises(WorkbenchUserError):
        Federation({f"p{i}": df.iloc[[i]] for i in range(5)})


def test_thresholds_cannot_be_disabled():
    df = _frame(300)
    df.loc[:1, "rare"] = "rare"
    with pytest.raises(WorkbenchUserError) as err:  # a zero rule is no rule: refused at once
        Federation(split_round_robin(df), min_cell_count=0)
    assert err.value.reason == "bad-thresholds"
    # the smallest rule there is: counts of 2 pass with min_cell_count 1
    assert Federation(split_round_robin(df), min_cell_count=1).count(by="rare")["rare"] == 2
    with pytest.raises(WorkbenchUserError):
        Federation(split_round_robin(df), dominance=(0, 0.5)).sum("age")


def test_bad_columns_get_clear_messages_without_values():
    df = _frame(100)
    df["flag"] = np.where(np.arange(100) % 2 == 0, "yes", "no")
    df["gap"] = pd.array([1, None] * 50, dtype="Int64")
    fed = Federation(split_round_robin(df), min_cell_count=10)
    with pytest.raises(WorkbenchUserError) as err:
        fed.kaplan_meier("days", "flag")
    assert "0/1" in str(err.value) and "yes" not in str(err.value)
    with pytest.raises(WorkbenchUserError) as err:
        fed.mean("gap")
    assert err.value.reason == "missing-values"
    with pytest.raises(WorkbenchUserError) as err:
        fed.mean("nope")
    assert err.value.reason == "no-such-column"
    with pytest.raises(WorkbenchUserError) as err:
        fed.kaplan_meier("dayz", "event")
    assert "column 'dayz' is not in the data (did you mean 'days'?)" in str(err.value)
    with pytest.raises(WorkbenchUserError) as err:
        fed.cox_ph("days", "event", [])
    assert "at least one covariate" in str(err.value)
    with pytest.raises(WorkbenchUserError) as err:
        fed.histogram("age", bins=5)
    assert "range" in str(err.value)


def test_curve_tail_held_by_one_holder_is_not_released():
    rng = np.random.default_rng(3)
    parts = {}
    for name, horizon in (("hospital", 900), ("insurer", 300), ("pharma", 300)):
        n = 200
        parts[name] = pd.DataFrame({"days": rng.integers(0, horizon, n),
                                    "event": rng.integers(0, 2, n)})
    km = Federation(parts, min_cell_count=5).kaplan_meier("days", "event")
    cut = max(parts["insurer"]["days"].max(), parts["pharma"]["days"].max())
    # beyond it only the hospital's patients are at risk: that tail is merged into one last row
    # that starts before the cut and ends at the grid's end, so no step of the tail is shown
    assert (km.timeline[:-1] <= cut).all() and km.intervals[-1][0] < cut
    assert (km.event_table["at_risk"] >= 5).all()
    assert km.event_table["removed"].sum() == 600


def test_the_p_percent_rule_refuses_a_sum_whose_largest_value_the_second_could_estimate():
    df = _frame(300)
    df["cost"] = 0.01
    df.loc[[0, 1], "cost"] = [50_000.0, 40_000.0]  # the rest adds up to ~3: far below 10 %
    fed = Federation(split_round_robin(df), min_cell_count=10, dominance=(2, 1.0))
    with pytest.raises(ReleaseRefused) as err:
        fed.sum("cost")
    assert err.value.rule == "p-percent" and "50000" not in str(err.value)
    df.loc[2:60, "cost"] = 1_000.0  # 59,000 beyond the two largest: more than 10 % of 50,000
    assert Federation(split_round_robin(df), min_cell_count=10,
                      dominance=(2, 1.0)).sum("cost") > 0
