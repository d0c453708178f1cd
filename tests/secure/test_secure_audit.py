"""Query auditing (audit.py): no sequence of allowed releases singles out fewer than k people.

The property test checks the key holder's audit against an oracle that knows nothing of its
regions: over a small random cohort with two grouping columns (two levels each, plus missing:
nine kinds of people), every union of those kinds whose count the released numbers determine
(rank test on the released cells) must hold 0 or at least k people.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.secure import Federation
from workbench.secure.audit import ReleaseAudit, cells_of, isolated
from workbench.secure.release import ReleaseRefused

K = 5
QUERIES = {
    "total": lambda f: f.count(),
    "by a": lambda f: f.count(by="a"),
    "by b": lambda f: f.count(by="b"),
    "a x b": lambda f: f.crosstab("a", "b"),
    "b x a": lambda f: f.crosstab("b", "a"),
}
KINDS = list(itertools.product(["x", "y", None], ["p", "q", None]))  # (a, b) of one person


@st.composite
def cohorts(draw):
    n = draw(st.integers(20, 80))
    weights = draw(st.lists(st.integers(0, 6), min_size=9, max_size=9).filter(any))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = rng.choice(9, size=n, p=np.asarray(weights) / sum(weights))
    frame = pd.DataFrame({"a": [KINDS[i][0] for i in kinds], "b": [KINDS[i][1] for i in kinds]})
    owner = np.arange(n) % 2  # two holders, both in every large enough cell
    return frame, {"h0": frame[owner == 0], "h1": frame[owner == 1]}


def _rows(released: list[tuple[str, object]]) -> list[tuple[np.ndarray, str]]:
    """Each released count as its indicator over the nine kinds of people."""
    out = []
    for name, value in released:
        if name == "total":
            out.append(np.ones(9))
            continue
        series = value.stack() if isinstance(value, pd.DataFrame) else value
        for key in series.index:
            key = key if isinstance(key, tuple) else (key,)
            names = {"by a": ["a"], "by b": ["b"], "a x b": ["a", "b"], "b x a": ["b", "a"]}
            want = dict(zip(names[name], key, strict=True))
            out.append(np.array([all(str(kind[["a", "b"].index(c)]) == v
                                     for c, v in want.items()) for kind in KINDS], dtype=float))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          print_blob=True)
@given(cohorts(), st.lists(st.sampled_from(sorted(QUERIES)), min_size=2, max_size=5))
def test_no_sequence_of_allowed_releases_isolates_fewer_than_k(data, order):
    frame, parts = data
    fed = Federation(parts, min_cell_count=K, context={"study": "audit-property"})
    released = []
    for name in order:
        try:
            released.append((name, QUERIES[name](fed)))
        except ReleaseRefused:
            pass
    if not released:
        return
    matrix = np.array(_rows(released))
    rank = np.linalg.matrix_rank(matrix)
    a_, b_ = frame["a"].fillna("None"), frame["b"].fillna("None")
    truth = np.array([((a_ == str(a)) & (b_ == str(b))).sum() for a, b in KINDS])
    for size in range(1, 10):
        for union in itertools.combinations(range(9), size):
            x = np.zeros(9)
            x[list(union)] = 1
            if np.linalg.matrix_rank(np.vstack([matrix, x])) == rank:  # determined
                assert not 0 < truth[list(union)].sum() < K, (order, union)


def test_a_nested_grouping_that_isolates_the_missing_is_refused():
    """By a: x 20, y 20. Then a x b: every cell >= k and the rows without b (3 with a = x, 8
    with a = y) pass the one-release rule together (11 >= 10), but x's 3 are the difference of
    two released numbers."""
    rows = ([("x", "p")] * 9 + [("x", "q")] * 8 + [("x", None)] * 3
            + [("y", "p")] * 6 + [("y", "q")] * 6 + [("y", None)] * 8)
    frame = pd.DataFrame(rows, columns=["a", "b"])
    fed = Federation({"h0": frame.iloc[::2], "h1": frame.iloc[1::2]}, min_cell_count=5,
                     context={"study": "nested"})
    assert fed.count(by="a").tolist() == [20, 20]
    with pytest.raises(ReleaseRefused) as err:
        fed.crosstab("a", "b")
    assert err.value.rule == "query-audit" and "3" not in str(err.value)
    # the same crosstab in another study, with nothing released before, passes
    other = Federation({"h0": frame.iloc[::2], "h1": frame.iloc[1::2]}, min_cell_count=5,
                       context={"study": "fresh"})
    assert other.crosstab("a", "b").to_numpy().sum() == 29


def test_overlapping_histograms_and_km_rows_are_linear_queries():
    h = {"op": "histogram", "spec": {"by": [{"column": "x", "edges": [0, 10, 20, 30]}]}}
    coarse = cells_of("histogram", h["spec"], {"edges": [0, 20, 30], "counts": [15, 20]})
    fine = cells_of("histogram", h["spec"], {"edges": [0, 10, 30], "counts": [12, 23]})
    assert isolated(coarse + fine, 10)  # [10, 20) holds 3
    spec = {"duration_col": "t", "event_col": "e", "by": [], "resolution": 1.0}
    km = cells_of("kaplan_meier", spec, {"groups": [{
        "label": "all rows", "n": 40, "intervals": [[0, 5], [5, 9]], "observed": [10, 10],
        "censored": [10, 10]}]})
    assert len(km) == 5 and not isolated(km, 10)
    total = [({}, 43)]  # 3 more people than the curve's own: a small group outside it
    assert isolated(km + total, 10)


def test_the_ledger_survives_a_restart_and_repeats_cost_nothing(tmp_path):
    spec = {"by": [{"column": "a", "levels": ["x", "y"]}]}
    audit = ReleaseAudit(tmp_path / "released.sqlite")
    audit.check("s", "count", spec, {"counts": [20, 20]}, 10)
    audit.check("s", "count", spec, {"counts": [20, 20]}, 10)  # the same numbers again
    assert audit.released("s") == 1
    again = ReleaseAudit(tmp_path / "released.sqlite")
    with pytest.raises(ReleaseRefused):
        again.check("s", "count", {"by": []}, {"counts": [43]}, 10)
    again.check("other-study", "count", {"by": []}, {"counts": [43]}, 10)


def test_a_study_past_its_rounds_for_the_day_is_refused(tmp_path):
    frame = pd.DataFrame({"a": ["x", "y"] * 20})
    parts = {"h0": frame.iloc[::2], "h1": frame.iloc[1::2]}
    fed = Federation(parts, min_cell_count=5, context={"study": "busy"})
    fed.thresholds["max_rounds_per_day"] = 2
    fed.coordinator.thresholds["max_rounds_per_day"] = 2
    assert fed.count() == 40 and fed.count() == 40
    with pytest.raises(ReleaseRefused) as err:
        fed.count()
    assert err.value.rule == "round-budget"
