"""What happens to a view's rows before they leave the gateway: per-study pseudonyms and date
shifting or coarsening. Vectorised over Arrow; each distinct person is keyed once."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workbench.space.linkage import study_pseudonyms

MAX_SHIFT_DAYS = 182  # offsets are in [-182, 182]: within a year, enough to hide exact dates


def rekey(key: bytes, study: str, persons: pa.ChunkedArray) -> pa.Array:
    """Per-study pseudonyms (``workbench.space.linkage``): stable in a study, unlinkable across."""
    values = persons.to_numpy(zero_copy_only=False)
    return pa.array(study_pseudonyms(key, study, values), type=pa.string())


def _shift_key(key: bytes, study: str) -> bytes:
    return hmac.digest(key, b"workbench-date-shift:" + study.encode(), "sha256")


def shift_offsets(key: bytes, study: str, persons: pa.ChunkedArray) -> pa.Array:
    """Days to add to every date of a person in a study: deterministic per (study, person), so
    intervals between a person's dates survive; null for a row without a person."""
    shift_key = _shift_key(key, study)
    values = persons.to_numpy(zero_copy_only=False)
    present = ~pc.is_null(persons).to_numpy(zero_copy_only=False)
    out = np.zeros(len(values), dtype=np.int32)
    if present.any():
        uniques, inverse = np.unique(values[present].astype(str), return_inverse=True)
        span = 2 * MAX_SHIFT_DAYS + 1
        offsets = np.array([
            int.from_bytes(hmac.digest(shift_key, u.encode(), hashlib.sha256)[:4], "big") % span
            - MAX_SHIFT_DAYS for u in uniques], dtype=np.int32)
        out[present] = offsets[inverse]
    return pa.array(out, mask=~present)


def shift_dates(column: pa.ChunkedArray, offsets: pa.Array) -> pa.Array:
    """Add per-row day offsets to a date or timestamp column (null offset -> null date)."""
    if pa.types.is_date(column.type):
        days = pc.cast(column, pa.date32()).cast(pa.int32())
        return pc.add(days, offsets).cast(pa.date32())
    if pa.types.is_timestamp(column.type):
        micros = pc.cast(column, pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
        shifted = pc.add(micros, pc.multiply(offsets.cast(pa.int64()), 86_400_000_000))
        return shifted.cast(pa.timestamp("us", tz=column.type.tz))
    raise TypeError(f"cannot shift a column of type {column.type}")


def coarsen_dates(column: pa.ChunkedArray, unit: str) -> pa.ChunkedArray:
    """Truncate dates to the first day of their month or year."""
    return pc.floor_temporal(column, unit=unit)
