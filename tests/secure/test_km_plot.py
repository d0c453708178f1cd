"""The Kaplan-Meier figure a researcher gets from ``plot()``: the at-risk table under the axis
holds the numbers at risk on the released curve (checked against the pooled rows), the time axis
is labelled from the catalog (no "timeline"), and the figure keeps room for the table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from workbench.secure import Federation  # noqa: E402
from workbench.secure.results import time_axis_label  # noqa: E402

from .conftest import split_round_robin  # noqa: E402


@pytest.fixture(scope="module")
def fed(gbsg2):
    # min_cell_count 1: every time with an event or a censoring is released, so the released
    # curve's durations are the rows' own and the at-risk counts can be checked exactly
    return Federation(split_round_robin(gbsg2), min_cell_count=1)


def _at_risk(durations, released_times, ticks) -> list[int]:
    """From the rows: each duration rounded up to the next released time (rows of one holder
    alone are merged into the next), then how many are still there at each tick."""
    rounded = released_times[np.searchsorted(released_times, durations.to_numpy(), "left")]
    return [int((rounded >= t).sum()) for t in ticks]


def test_at_risk_counts_are_those_of_the_pooled_rows(fed, gbsg2):
    km = fed.kaplan_meier("time", "cens")
    ticks = [0, 1, 365, 500.5, 1000, 2000, 2600, float(gbsg2["time"].max())]
    assert km.at_risk(ticks) == _at_risk(gbsg2["time"], km.timeline, ticks)
    assert km.at_risk(ticks)[:2] == [len(gbsg2)] * 2
    assert km.at_risk([gbsg2["time"].max() + 1]) == [None]  # past the curve: nothing shown


def test_grouped_plot_has_one_at_risk_row_per_group_under_the_axis(fed, gbsg2):
    km = fed.kaplan_meier("time", "cens", by="horTh")
    fig, ax = plt.subplots()
    km.plot(ax=ax)
    fig.canvas.draw()
    texts = {t.get_text(): t for t in ax.texts}
    assert "Number at risk" in texts and {"horTh=no", "horTh=yes"} <= set(texts)
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    for level in ("no", "yes"):
        rows = gbsg2[gbsg2["horTh"] == level]["time"]
        times = km[level].timeline
        expected = [str(n) for t, n in zip(ticks, _at_risk(rows, times, ticks), strict=True)
                    if t <= times.max()]
        label_y = texts[f"horTh={level}"].get_window_extent().y1
        row = sorted((t for t in ax.texts if abs(t.get_window_extent().y1 - label_y) < 1
                      and t.get_text() != f"horTh={level}"),
                     key=lambda t: t.get_window_extent().x0)
        assert [t.get_text() for t in row] == expected
    axis_bottom = ax.get_window_extent().y0
    assert all(t.get_window_extent().y1 < axis_bottom for t in ax.texts)  # under the axis
    assert all(t.get_window_extent().y0 >= 0 for t in ax.texts)  # inside the figure
    assert ax.get_xlabel() == "time" and ax.get_ylabel() == "survival probability"
    plt.close(fig)


def test_at_risk_table_can_be_left_out(fed):
    fig, ax = plt.subplots()
    fed.kaplan_meier("time", "cens").plot(ax=ax, at_risk_counts=False)
    assert not ax.texts and len(ax.lines) == 1
    plt.close(fig)


@pytest.mark.parametrize(("view", "column", "label"), [
    (None, None, "time"),
    (None, "days", "days"),
    (None, "weeks_to_event", "weeks_to_event (weeks)"),
    (None, "t", "t"),
])
def test_time_axis_label_without_a_gateway(view, column, label):
    assert time_axis_label(view, column) == label
