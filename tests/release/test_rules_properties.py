"""Property tests of the disclosure rules (security boundary: workbench/release/rules.py): no output
the rules pass releases a number below the study's thresholds, and differencing is caught."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter

from workbench.release import rules
from workbench.release.helpers import coarsen_survival, magnitude_table
from workbench.release.serialize import from_payload, to_payload

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(obj, t, released=(), **kw):
    output = from_payload(to_payload(obj, **kw))
    verdict, results = rules.run_rules(output, t, list(released))
    return output, verdict, results


thresholds = st.builds(rules.Thresholds, min_cell_count=st.integers(1, 20),
                       zeros_are_disclosive=st.booleans())
count_tables = st.lists(st.integers(0, 60), min_size=1, max_size=12).map(
    lambda counts: pd.DataFrame({"group": [f"g{i}" for i in range(len(counts))],
                                 "n": np.array(counts, dtype="int64")}))


@FAST
@given(table=count_tables, t=thresholds)
def test_a_passing_table_holds_no_count_below_threshold(table, t):
    _, verdict, _ = _check(table, t)
    small = ((table["n"] > 0) & (table["n"] < t.min_cell_count)).any()
    zeros = (table["n"] == 0).any() and t.zeros_are_disclosive
    assert (verdict == "fail") == bool(small or zeros)


@FAST
@given(data=st.data(), t=thresholds)
def test_crosstabs_are_checked_cell_by_cell(data, t):
    rows = data.draw(st.integers(1, 4))
    cols = data.draw(st.integers(1, 4))
    values = data.draw(st.lists(st.integers(0, 40), min_size=rows * cols, max_size=rows * cols))
    grid = pd.DataFrame(np.array(values, dtype="int64").reshape(rows, cols),
                        index=pd.Index([f"r{i}" for i in range(rows)], name="row"),
                        columns=[f"c{j}" for j in range(cols)])
    _, verdict, _ = _check(grid, t)
    arr = np.array(values)
    bad = ((arr > 0) & (arr < t.min_cell_count)).any() or (t.zeros_are_disclosive
                                                           and (arr == 0).any())
    assert (verdict == "fail") == bool(bad)


@FAST
@given(contributions=st.lists(st.lists(st.floats(0, 1e5, allow_nan=False), min_size=10,
                                       max_size=30), min_size=1, max_size=4))
def test_dominance_matches_its_definition(contributions):
    t = rules.Thresholds()
    micro = pd.DataFrame([(f"g{i}", v) for i, vals in enumerate(contributions) for v in vals],
                         columns=["group", "cost"])
    table = magnitude_table(micro, "group", "cost")
    output, verdict, results = _check(table, t)
    nk = next(r for r in results if r.rule == "dominance-nk")
    expected_nk = False
    for vals in contributions:
        total = sum(vals)
        top = sum(sorted(vals, reverse=True)[: t.dominance_n])
        if total > 0 and top / total >= t.dominance_k:
            expected_nk = True
    assert (nk.verdict == "fail") == expected_nk
    released = set(output.table.columns) - {c for c in output.table.columns if "__" in c}
    assert released == {"group", "n", "cost"}


durations = st.lists(st.tuples(st.integers(1, 200), st.booleans()), min_size=5, max_size=300)


def _km(data):
    df = pd.DataFrame(data, columns=["t", "e"])
    return KaplanMeierFitter().fit(df["t"], df["e"].astype(int))


@FAST
@given(data=durations, k=st.integers(2, 15))
def test_a_passing_survival_curve_holds_no_small_number(data, k):
    t = rules.Thresholds(min_cell_count=k)
    output, verdict, _ = _check(_km(data), t)
    if verdict != "fail":
        for curve in output.curves:
            tab = curve.table
            assert (tab["at_risk"] >= k).all()
            for col in ("observed", "censored"):
                assert ((tab[col] == 0) | (tab[col] >= k)).all()
            drops = tab["at_risk"].diff().abs().iloc[1:]
            assert ((drops == 0) | (drops >= k)).all()


@FAST
@given(data=durations, k=st.integers(2, 15))
def test_coarsened_curves_always_pass(data, k):
    t = rules.Thresholds(min_cell_count=k)
    _, verdict, results = _check(coarsen_survival(_km(data), k), t)
    failing = [r.rule for r in results if r.verdict == "fail"]
    assert failing == [] or failing == ["survival-at-risk"] and len(data) < k


@FAST
@given(table=count_tables, t=thresholds, data=st.data())
def test_differencing_is_caught(table, t, data):
    """A released table, then the same table with one group shrunk by 1..k-1 people: subtracting
    them isolates fewer than k people, so the second must fail."""
    first = from_payload(to_payload(table))
    released = [{"id": "rq-1", "cells": rules.count_cells(first)}]
    row = data.draw(st.integers(0, len(table) - 1))
    shrink = data.draw(st.integers(1, max(1, t.min_cell_count - 1)))
    second = table.copy()
    second.loc[row, "n"] = max(0, second.loc[row, "n"] - shrink)
    changed = second.loc[row, "n"] != table.loc[row, "n"]
    diff = abs(int(table.loc[row, "n"]) - int(second.loc[row, "n"]))
    result = rules.differencing_rule(rules.count_cells(from_payload(to_payload(second))),
                                     released, t)
    if changed and diff < t.min_cell_count:
        assert result.verdict == "fail"
    if not changed:
        assert result.verdict == "pass"


def test_differencing_across_kinds_table_total_against_km_cohort():
    t = rules.Thresholds()
    table = pd.DataFrame({"arm": ["a", "b"], "n": np.array([150, 150], dtype="int64")})
    released = [{"id": "rq-1", "cells": rules.count_cells(from_payload(to_payload(table)))}]
    km = _km([(d, True) for d in range(1, 298)])  # 297 people: 3 fewer than released
    cells = rules.count_cells(from_payload(to_payload(km)))
    assert rules.differencing_rule(cells, released, t).verdict == "fail"


@given(n_obs=st.integers(1, 200), n_params=st.integers(1, 30), events=st.integers(0, 200))
@FAST
def test_models_need_residual_dof_and_events(n_obs, n_params, events):
    t = rules.Thresholds()
    from workbench.release.outputs import ModelFit, Output
    fit = ModelFit("cox", pd.DataFrame({"coef": [0.1] * n_params}), n_obs, n_params,
                   min(events, n_obs))
    verdict, results = rules.run_rules(Output("model", model=fit), t, [])
    ok = n_obs - n_params >= t.min_dof and min(events, n_obs) >= t.min_cell_count
    assert (verdict != "fail") == ok
