"""The synthetic twin of a view: what ``wb.view`` returns to a study that sees the view as
``aggregates`` ("usable but not visible").

The twin is made from the catalog's public description of the view only (column types, roles,
levels, time grid, histogram edges, date policy): this module is never given a row, so no value in
it can come from a patient. It has the plaintext columns of a real read, with the same Arrow
types, so code written and tested on it runs unchanged on ``wb.secure``; the real numbers come
from ``wb.secure`` and leave through the airlock. It is deterministic per (study, view, seed), so a
notebook re-run gives the same twin, and labelled in its Arrow schema metadata (the gateway adds a
response header, ``wb.view`` a DataFrame attribute and a banner).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from workbench.catalog.models import Column, View

DEFAULT_ROWS = 1000  # a plausible cohort size to test code on; ``limit`` asks for another
MAX_ROWS = 200_000  # the twin is for writing code, not for volume
LABEL = b"workbench_synthetic"
PSEUDONYM = "synthetic-{:06d}"  # obviously not a study pseudonym (those are hex digests)
_ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
          "date": pa.date32(), "timestamp": pa.timestamp("us"), "bool": pa.bool_()}
_FIRST_DAY = np.datetime64("2015-01-01")
_DAYS = 3653  # ten years of dates: a plausible span, not the data's


def twin_rows(limit: int | None) -> int:
    return DEFAULT_ROWS if limit is None else min(int(limit), MAX_ROWS)


def synthetic_twin(view: View, study: str, columns: tuple[str, ...], rows: int,
                   seed: int = 0, holders: tuple[str, ...] = ()) -> pa.Table:
    """``rows`` synthetic rows of ``columns`` (plaintext columns of ``view``, or ``holder``)."""
    arrays = {}
    for name in columns:
        # one generator per column: asking for fewer columns does not change a column's values
        digest = hashlib.sha256(f"{study}\0{view.id}\0{seed}\0{name}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        if name == "holder":  # who contributes is public (the view's description lists them)
            arrays[name] = pa.array(rng.choice(list(holders or ("synthetic-holder",)), rows),
                                    pa.string())
            continue
        column = view.column(name)
        arrays[name] = _values(view, column, rng, rows)
    schema = pa.schema([pa.field(n, a.type) for n, a in arrays.items()],
                       metadata={LABEL: b"true", b"workbench_view": view.id.encode()})
    return pa.table(arrays, schema=schema)


def _values(view: View, column: Column, rng: np.random.Generator, rows: int) -> pa.Array:
    kind = _ARROW[column.type]
    if column.name == view.person_column:
        return pa.array([PSEUDONYM.format(i + 1) for i in range(rows)], kind)
    if column.levels:
        picked = rng.choice(np.array(column.levels, dtype=object), rows)
        return pa.array(picked if column.type == "string" else picked.astype(float)).cast(kind)
    if column.type in ("date", "timestamp"):
        days = _FIRST_DAY + rng.integers(0, _DAYS, rows).astype("timedelta64[D]")
        if column.name in view.date_columns and view.date_policy in ("month", "year"):
            days = days.astype(f"datetime64[{'M' if view.date_policy == 'month' else 'Y'}]")
        return pa.array(days.astype("datetime64[D]")).cast(kind)
    if column.type == "bool" or column.role == "event":
        flags = rng.random(rows) < 0.5
        return pa.array(flags if column.type == "bool" else flags.astype(np.int64)).cast(kind)
    if column.type == "string":
        return pa.array([f"synthetic-{column.name}-{k}" for k in rng.integers(1, 6, rows)], kind)
    return pa.array(_number(column, rng, rows)).cast(kind)


def _number(column: Column, rng: np.random.Generator, rows: int) -> np.ndarray:
    """Uniform over the column's public range: its time grid or its histogram edges. Without one
    the catalog says nothing more (and the data is not asked): a whole-number covariate is taken
    as a 0/1 indicator (as the demo's treatment dummies are), anything else as 0 to 100."""
    if column.role == "time":
        steps = max(1, int(column.horizon // column.granularity))
        values = rng.integers(1, steps + 1, rows) * column.granularity
    elif column.grid:
        values = rng.uniform(column.grid[0], column.grid[-1], rows)
    elif column.role == "covariate" and column.type == "int64":
        values = rng.integers(0, 2, rows)
    else:
        values = rng.uniform(0, 100, rows)
    return np.round(values) if column.type == "int64" else values


def is_synthetic(table: pa.Table) -> bool:
    return (table.schema.metadata or {}).get(LABEL) == b"true"
