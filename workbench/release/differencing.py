"""The differencing rule (a security boundary): a released count minus another released count must
not describe fewer than k people.

Counts are matched on their values, never on their labels: a label is text the kernel chose, so
renaming a column or relabelling a group would otherwise line two outputs up with nothing. A new
count (cell or total) that differs from ANY count already released for the same study and view by
1..k-1 fails. This cannot tell a nested population from a coincidence, so it errs towards
refusing. Two exemptions, both for numbers already public: an output whose counts are, as a
multiset, exactly those of an earlier release (a re-release adds no number), and a count released
before with the same value under the same label (labels can only exempt a number that was already
released under them, never hide a new one).

Earlier releases are looked up in an index sorted by value (``SortedReleases`` in memory, the
airlock store's ``released_values`` table on disk), so a check costs O(m log N) for m new counts
against N released ones instead of a scan of every earlier release.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from dataclasses import dataclass

import pandas as pd

from workbench.release.outputs import Output, guess_count_columns, row_labels


@dataclass(frozen=True)
class Near:
    """The released count closest to a new one, and the release it came from."""

    value: float
    request_id: str
    label: str


def count_cells(output: Output) -> dict[str, float]:
    """The counts an output releases, labelled for the reviewers' evidence (the rule itself only
    reads the values): every count cell, each count column's total, each curve's starting
    at-risk and their sum, a model's observations and events."""
    cells: dict[str, float] = {}
    if output.table is not None:
        cols = list(output.count_columns or guess_count_columns(output.table))
        rows = row_labels(output.table)
        for col in cols:
            values = pd.to_numeric(output.table[col], errors="coerce").fillna(0)
            for label, value in zip(rows, values, strict=True):
                cells[f"{label}::{col}"] = float(value)
            cells[f"TOTAL::{col}"] = float(values.sum())
    if output.curves:
        total = 0.0
        for curve in output.curves:
            start = float(curve.table["at_risk"].iloc[0]) if len(curve.table) else 0.0
            cells[f"{curve.group}::n"] = start
            total += start
        cells["TOTAL::n"] = total
    if output.model is not None:
        cells["TOTAL::n"] = float(output.model.n_obs)
        if output.model.n_events is not None:
            cells["TOTAL::events"] = float(output.model.n_events)
            if output.model.family == "logistic":
                cells["TOTAL::non-events"] = float(output.model.n_obs - output.model.n_events)
    return {label: value for label, value in cells.items() if math.isfinite(value)}


def multiset_sha256(cells: dict[str, float]) -> str:
    """The fingerprint of an output's counts regardless of labels and order."""
    values = sorted(round(v, 6) for v in cells.values())
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()


class SortedReleases:
    """Released counts of one study and view, sorted by value (in memory): built from the
    ``[{id, cells}]`` list the tests and benchmarks use; the airlock uses its store's index."""

    def __init__(self, released: list[dict] = ()):
        self._values: list[float] = []
        self._owners: list[tuple[str, str]] = []
        self._fingerprints: set[str] = set()
        self._labelled: set[tuple[str, float]] = set()
        self.count = 0
        for item in released:
            self.add(item["id"], item["cells"])

    def add(self, request_id: str, cells: dict[str, float]) -> None:
        for label, value in cells.items():
            at = bisect.bisect_left(self._values, value)
            self._values.insert(at, value)
            self._owners.insert(at, (request_id, label))
            self._labelled.add((label, float(value)))
        self._fingerprints.add(multiset_sha256(cells))
        self.count += 1

    def same_counts_released(self, fingerprint: str) -> bool:
        return fingerprint in self._fingerprints

    def released_as(self, label: str, value: float) -> bool:
        return (label, float(value)) in self._labelled

    def nearest_within(self, value: float, k: int) -> Near | None:
        """The released count nearest to ``value`` among those 1..k-1 away, if any: only the
        two neighbours in value order need looking at."""
        below = bisect.bisect_left(self._values, value - EQUAL) - 1
        above = bisect.bisect_right(self._values, value + EQUAL)
        candidates = [(self._values[i], *self._owners[i]) for i in (below, above)
                      if 0 <= i < len(self._values)]
        return nearest(value, candidates, k)


EQUAL = 1e-9  # counts this close are the same number (they travel as floats)


def nearest(value: float, candidates, k: int) -> Near | None:
    best = None
    for other, request_id, label in candidates:
        gap = abs(value - other)
        if gap <= EQUAL or gap >= k:
            continue
        if best is None or gap < abs(value - best.value):
            best = Near(other, request_id, label)
    return best
