"""wb.release.coarsen_survival on real wb.secure Kaplan-Meier results (built through Federation):
the key holder already releases steps of at least k, so the curves pass the airlock's survival
rules as released and coarsening keeps their rows; a withheld count (NaN, from a fit that has
one) is never filled in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_lung

from workbench.release import rules
from workbench.release.helpers import coarsen_survival
from workbench.release.serialize import from_payload, to_payload
from workbench.secure import Federation

K = 10


@pytest.fixture(scope="module")
def federation():
    lung = load_lung().dropna(subset=["inst"]).reset_index(drop=True)
    parts = {name: lung.iloc[i::3] for i, name in enumerate(("hospital", "insurer", "pharma"))}
    fed = Federation(parts, min_cell_count=K)
    yield fed
    fed.close()


def _steps_are_merged_published_rows(published: pd.DataFrame, coarse: pd.DataFrame) -> None:
    """Every coarsened row is a run of consecutive published rows: its at-risk count is the
    published one where the run starts, its events and censorings the published sums; a step
    that holds a withheld count has its censorings withheld and ends the curve."""
    published = published.sort_index()
    times = list(published.index)
    start = 0
    for n, (time, row) in enumerate(coarse.iterrows()):
        end = times.index(time)
        run = published.iloc[start:end + 1]
        if n == 0 and row["observed"] == 0 and (row["censored"] == 0):
            assert row["at_risk"] == published["at_risk"].iloc[0]
            start = 0  # the opening row (survival 1), nothing merged yet
            continue
        assert row["at_risk"] == run["at_risk"].iloc[0]
        assert row["observed"] == run["observed"].sum()
        if run["censored"].isna().any():
            assert np.isnan(row["censored"]) and n == len(coarse) - 1
        else:
            assert row["censored"] == run["censored"].sum()
        start = end + 1


def _passes_the_airlock(table) -> list[str]:
    output = from_payload(to_payload(table, view="lung_survival"))
    verdict, results = rules.run_rules(output, rules.Thresholds(min_cell_count=K), [])
    assert verdict != "fail", [r.as_dict() for r in results if r.verdict == "fail"]
    return [c.group for c in output.curves]


def _rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[["at_risk", "observed", "censored"]].astype(float).set_axis(
        table.index.astype(float))


def test_a_secure_curve_is_released_in_steps_of_k_and_coarsening_keeps_it(federation):
    """The key holder merges time bins until every row holds 0 or >= k events and censorings:
    the curve passes the airlock's survival rules as released, and coarsen_survival has nothing
    left to merge (it returns the published rows)."""
    km = federation.kaplan_meier("time", "status")
    published = km.event_table
    assert published["censored"].notna().all()  # nothing withheld: rows are merged instead
    steps = published.iloc[1:]
    assert ((steps["observed"] == 0) | (steps["observed"] >= K)).all()
    assert ((steps["censored"] == 0) | (steps["censored"] >= K)).all()
    assert _passes_the_airlock(km) == [km.group_label]

    coarse = coarsen_survival(km, k=K)
    (group, table), = coarse.event_tables.items()
    assert group == km.group_label and table.index.is_unique
    _steps_are_merged_published_rows(published, table)
    pd.testing.assert_frame_equal(_rows(table), _rows(published.rename_axis("time")),
                                  check_names=False)
    assert table["survival"].is_monotonic_decreasing
    assert _passes_the_airlock(coarse) == [group]


def test_a_by_result_is_coarsened_per_group(federation):
    km = federation.kaplan_meier("time", "status", by="sex")
    assert sorted(km) == ["1", "2"]
    coarse = coarsen_survival(km, k=K)
    assert sorted(coarse.event_tables) == ["1", "2"]
    for level, table in coarse.event_tables.items():
        assert (table["at_risk"] >= K).all() and table.index.is_unique
        _steps_are_merged_published_rows(km[level].event_table, table)
    assert sorted(_passes_the_airlock(coarse)) == ["1", "2"]
    assert sorted(_passes_the_airlock(km)) == ["1", "2"]  # as released, too


def test_a_curve_that_is_all_withheld_after_its_start_releases_only_the_start():
    """A step with fewer than k events that holds the withheld row cannot be released, and
    nothing after it is known: the curve ends at the last releasable step."""
    published = pd.DataFrame({"at_risk": [30, 30, 12], "observed": [0, 3, 2],
                              "censored": [0.0, 15.0, np.nan]},
                             index=pd.Index([0.0, 5.0, 9.0], name="event_at"))
    coarse = coarsen_survival(type("Fit", (), {"event_table": published,
                                               "group_label": "all rows"})(), k=K)
    table = coarse.event_tables["all rows"]
    assert list(table.index) == [0.0]
    assert table["censored"].notna().all()
