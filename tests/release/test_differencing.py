"""Differencing on content, not names (security boundary: workbench/release/differencing.py and
the store's value index): renaming a column or relabelling groups does not evade the rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.release import rules
from workbench.release.differencing import SortedReleases
from workbench.release.serialize import from_payload, to_payload
from workbench.release.store import AirlockStore

T = rules.Thresholds(min_cell_count=10)


def _cells(df, counts=None):
    return rules.count_cells(from_payload(to_payload(df, counts=counts)))


def _released(*frames):
    return [{"id": f"rq-{i}", "cells": _cells(df)} for i, df in enumerate(frames)]


def _table(labels, counts, column="n", label_column="tki"):
    return pd.DataFrame({label_column: labels, column: np.array(counts, dtype="int64")})


def test_renaming_the_count_column_and_relabelling_groups_does_not_evade():
    released = _released(_table(["imatinib", "nilotinib"], [40, 35]))
    renamed = _table(["drug A", "drug B"], [40, 32], column="patients", label_column="arm")
    result = rules.differencing_rule(_cells(renamed), released, T)
    assert result.verdict == "fail"
    flagged = {c["label"]: c for c in result.cells}
    assert flagged["arm=drug B::patients"]["released_count"] == 35
    assert flagged["TOTAL::patients"]["released_count"] == 75  # totals match whatever the name


def test_a_total_is_differenced_against_cells_and_a_single_count_against_totals():
    released = _released(_table(["F", "M"], [120, 95]))
    assert rules.differencing_rule(_cells(pd.DataFrame({"x": ["all"], "count": [212]})),
                                   released, T).verdict == "fail"  # 215 - 3
    assert rules.differencing_rule(_cells(pd.DataFrame({"x": ["f"], "count": [118]})),
                                   released, T).verdict == "fail"  # 120 - 2


def test_a_relabelled_rerelease_of_the_same_counts_passes_but_one_changed_count_fails():
    released = _released(_table(["a", "b", "c"], [40, 35, 47]))
    same = _table(["x", "y", "z"], [47, 40, 35], column="count")
    assert rules.differencing_rule(_cells(same), released, T).verdict == "pass"
    changed = _table(["a", "b", "c"], [40, 35, 45])
    assert rules.differencing_rule(_cells(changed), released, T).verdict == "fail"


def test_far_apart_counts_pass():
    released = _released(_table(["a", "b"], [100, 300]))
    assert rules.differencing_rule(_cells(_table(["c", "d"], [150, 500])), released,
                                   T).verdict == "pass"


def _store(tmp_path, released: list[dict]) -> AirlockStore:
    store = AirlockStore(tmp_path / "airlock.sqlite")
    with store.transaction():
        for item in released:
            store.insert_request({
                "id": item["id"], "study": "s", "view": "v", "name": "n", "description": "d",
                "author": "a", "kind": "table", "state": "released", "verdict": "pass",
                "created_at": "t", "updated_at": "t", "payload": "{}", "evidence": "{}"})
            store.add_released(item["id"], "s", "v", item["cells"], [], "t")
    return store


value_sets = st.lists(st.dictionaries(st.sampled_from([f"g{i}::n" for i in range(6)]),
                                      st.integers(0, 200).map(float), min_size=1, max_size=6),
                      min_size=0, max_size=8)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(earlier=value_sets, new=st.dictionaries(st.sampled_from(["a::n", "g1::n", "TOTAL::n"]),
                                               st.integers(0, 200).map(float), min_size=1),
       k=st.integers(2, 20))
def test_the_store_index_and_the_in_memory_index_agree_with_a_full_scan(tmp_path_factory,
                                                                        earlier, new, k):
    released = [{"id": f"rq-{i}", "cells": cells} for i, cells in enumerate(earlier)]
    t = rules.Thresholds(min_cell_count=k)
    store = _store(tmp_path_factory.mktemp("db"), released)
    try:
        by_store = rules.differencing_rule(new, store.released_index("s", "v"), t)
    finally:
        store.close()
    in_memory = rules.differencing_rule(new, SortedReleases(released), t)
    assert by_store.verdict == in_memory.verdict
    assert {c["label"] for c in by_store.cells} == {c["label"] for c in in_memory.cells}
    # the definition, by a full scan
    exempt = any(sorted(c.values()) == sorted(new.values()) for c in earlier)
    expected = set()
    for label, value in new.items():
        if any(c.get(label) == value for c in earlier):
            continue
        if any(0 < abs(value - v) < k for c in earlier for v in c.values()):
            expected.add(label)
    assert {c["label"] for c in by_store.cells} == (set() if exempt else expected)


def test_a_store_without_the_value_index_is_indexed_when_opened(tmp_path):
    released = _released(_table(["a", "b"], [40, 35]))
    store = _store(tmp_path, released)
    store._db.execute("DELETE FROM released_values")
    store._db.execute("DELETE FROM released_multisets")
    store.close()
    reopened = AirlockStore(tmp_path / "airlock.sqlite")
    try:
        index = reopened.released_index("s", "v")
        assert index.count == 1 and index.nearest_within(32.0, 10).value == 35
    finally:
        reopened.close()
