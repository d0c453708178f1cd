"""What a secure operation may use, and its public spec (a security boundary).

A secure operation names columns in roles: a duration, an event, groups, covariates, a column to
sum or bin. ``Schema`` checks each against the role the view declares in the catalog
(``catalog.models.Column.role``) and builds the spec from the view's public declarations, never
from the data or the caller: a category's levels, the time grid (granularity and horizon) and the
histogram edges. So a covariate cannot serve as a time axis, an outcome cannot serve as a
grouping, the number of time bins says nothing about the longest follow-up, and no caller-chosen
edge can bisect a value. Sizes are checked from the spec alone, before any holder computes or
encrypts (``check_size``).

``Schema.local(partitions)`` is for ``Federation`` on data the caller already holds (tests, a
holder validating its own rows): roles are not enforced there and levels and the time grid come
from the data, as a local analysis would.
"""

from __future__ import annotations

import builtins
import math

import pandas as pd

from workbench.catalog.models import MAX_LEVELS, Column, View
from workbench.errors import WorkbenchUserError, did_you_mean
from workbench.secure import ops

# BFV slots of one round, all segments together (a real value takes ops.REAL_DIGITS): 512
# ciphertexts of 4096 slots
MAX_VALUES = 1 << 21


def _refuse(message: str, reason: str = "bad-role") -> WorkbenchUserError:
    return WorkbenchUserError(message, reason=reason)


class Schema:
    def __init__(self, view: View | None, partitions: dict[str, pd.DataFrame] | None = None):
        self.view, self.partitions = view, partitions or {}

    @classmethod
    def local(cls, partitions: dict[str, pd.DataFrame]) -> Schema:
        return cls(None, partitions)

    # -- roles -----------------------------------------------------------------------------------
    def _column(self, name, use: str) -> Column | None:
        if not isinstance(name, str):
            raise _refuse(f"{use} must be a column name.", "bad-request")
        if self.view is None:
            if not any(name in f.columns for f in self.partitions.values()):
                known = sorted({c for f in self.partitions.values() for c in f.columns})
                raise _refuse(f"column {name!r} is not in the data{did_you_mean(name, known)}.",
                              "no-such-column")
            return None
        column = self.view.column(name)
        if column is None:
            raise _refuse(f"view '{self.view.id}' has no column {name!r}"
                          f"{did_you_mean(name, [c.name for c in self.view.columns])}. See "
                          f"wb.describe('{self.view.id}').", "no-such-column")
        return column

    def _need(self, name: str, use: str, roles: tuple[str, ...]) -> Column | None:
        column = self._column(name, use)
        if column is not None and column.role not in roles:
            declared = f"role '{column.role}'" if column.role else "no role"
            raise _refuse(
                f"column {name!r} of view '{self.view.id}' cannot be the {use}: it has "
                f"{declared} in the catalog, and the {use} must be a "
                f"{' or '.join(roles)} column. See wb.describe('{self.view.id}').")
        return column

    def event(self, name: str) -> str:
        self._need(name, "event", ("event",))
        return name

    def outcome(self, name: str) -> str:
        self._need(name, "outcome", ("event",))
        return name

    def numeric(self, name: str, use: str = "summed column") -> str:
        column = self._need(name, use, ("covariate", "time", "categorical"))
        if column is not None and column.role == "categorical" and column.type == "string":
            raise _refuse(f"column {name!r} is a category with text levels; it cannot be the "
                          f"{use}. Group by it instead (by={name!r}).")
        return name

    def covariates(self, names) -> list[str]:
        names = [names] if isinstance(names, str) else list(names or [])
        return [self.numeric(n, "covariate") for n in names]

    def levels(self, name: str) -> dict:
        column = self._need(name, "grouping", ("categorical",))
        if column is not None:
            return {"column": name, "levels": list(column.levels)}
        values: set[str] = set()
        for frame in self.partitions.values():
            if name in frame.columns:
                # unique first, then drop missing: no copy of the column without them
                values.update(str(v) for v in pd.unique(frame[name]).tolist() if not pd.isna(v))
        if len(values) > MAX_LEVELS:
            raise _refuse(f"column {name!r} has more than {MAX_LEVELS} distinct values: group "
                          "by a coarser column.", "too-many-levels")
        return {"column": name, "levels": sorted(values)}

    def groups(self, by) -> list[dict]:
        if by is None:
            return []
        names = [by] if isinstance(by, str) else list(by)
        if len(set(names)) != len(names):
            raise _refuse("a column is named twice in the grouping.", "bad-request")
        return [self.levels(n) for n in names]

    # -- public grids ----------------------------------------------------------------------------
    def time_grid(self, name: str, resolution) -> dict:
        column = self._need(name, "duration", ("time",))
        try:
            resolution = float(resolution if resolution is not None else 0)
        except (TypeError, ValueError):
            resolution = 0.0
        if column is not None:
            step = column.granularity
            if resolution in (0.0, 1.0) and step != 1.0:
                resolution = step  # the default: the view's own granularity
            multiple = resolution / step
            if resolution <= 0 or abs(multiple - round(multiple)) > 1e-9:
                raise _refuse(f"resolution must be a whole multiple of the view's time "
                              f"granularity for {name!r} ({step:g}).", "bad-request")
            horizon = column.horizon
        else:
            if not resolution or resolution <= 0:
                raise _refuse("resolution must be a positive number of time units.",
                              "bad-request")
            horizon = self._local_max(name)
        return {"duration_col": name, "resolution": resolution,
                "n_bins": int(math.ceil(horizon / resolution - 1e-9)) + 1}

    def _local_max(self, name: str) -> float:
        top = 0.0
        for frame in self.partitions.values():
            if len(frame) and name in frame.columns:
                values = pd.to_numeric(frame[name], errors="coerce")  # holders name bad cells
                highest = float(values.max())
                top = max(top, highest) if math.isfinite(highest) else top
        return top

    def edges(self, name: str, bins=None, range=None) -> list[float]:  # noqa: A002
        column = self._need(name, "binned column", ("covariate", "time"))
        if column is not None:
            if column.grid is None:
                raise _refuse(f"column {name!r} of view '{self.view.id}' declares no histogram "
                              "grid, so it cannot be binned.", "bad-request")
            if bins is not None and [float(b) for b in _as_list(bins)] != list(column.grid):
                raise _refuse(f"histogram edges come from the view's public grid for {name!r}; "
                              f"call histogram('{self.view.id}', {name!r}) without bins.",
                              "bad-request")
            return [float(e) for e in column.grid]
        if isinstance(bins, int):
            if range is None:
                raise _refuse("histogram(bins=int) also needs range=(low, high), since the "
                              "pooled minimum and maximum are not released; or pass the bin "
                              "edges as a list.", "bad-request")
            if not 1 <= bins <= ops.MAX_CELLS:
                raise _refuse(f"bins must be 1 to {ops.MAX_CELLS}.", "too-many-cells")
            step = (float(range[1]) - float(range[0])) / bins
            edges = [float(range[0]) + i * step for i in builtins.range(bins + 1)]
        else:
            edges = [float(e) for e in _as_list(bins)]
        if len(edges) < 2 or len(edges) > ops.MAX_CELLS + 1 or any(
                b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise _refuse("histogram bin edges must increase (at most "
                          f"{ops.MAX_CELLS} bins).", "bad-request")
        return edges



def _as_list(bins) -> list:
    if isinstance(bins, (list, tuple)) and len(bins) <= ops.MAX_CELLS + 1:
        return list(bins)
    raise _refuse("bins is a list of edges.", "bad-request")


def check_size(kind: str, spec: dict) -> None:
    """Refuse an operation whose encrypted vector would be too large, from its public spec alone
    (before any holder reads a row or encrypts)."""
    total = sum(ops.sizes(kind, spec).values())  # layout() itself caps cells and time bins
    if total > MAX_VALUES:
        raise _refuse(f"this operation would encrypt {total} slots per holder (a real value "
                      f"takes {ops.REAL_DIGITS}), more than the {MAX_VALUES} allowed: group by "
                      "fewer columns or use a coarser resolution.", "too-large")
