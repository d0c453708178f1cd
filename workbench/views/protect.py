"""What happens to a view's rows before they leave the gateway: per-study pseudonyms and date
shifting or coarsening. Vectorised over Arrow; each distinct person is keyed once per study and
remembered, so repeated reads cost a dictionary lookup per distinct person."""

from __future__ import annotations

import hashlib
import hmac
import threading

import pyarrow as pa
import pyarrow.compute as pc

from workbench.space.linkage import study_pseudonyms

MAX_SHIFT_DAYS = 182  # offsets are in [-182, 182]: within a year, enough to hide exact dates
_SPAN = 2 * MAX_SHIFT_DAYS + 1


def _shift_key(key: bytes, study: str) -> bytes:
    return hmac.digest(key, b"workbench-date-shift:" + study.encode(), "sha256")


def _offset(shift_key: bytes, person: str) -> int:
    digest = hmac.digest(shift_key, person.encode(), hashlib.sha256)
    return int.from_bytes(digest[:4], "big") % _SPAN - MAX_SHIFT_DAYS


class StudyKeys:
    """Per-study pseudonyms (``workbench.space.linkage.study_pseudonyms``: stable in a study,
    unlinkable across studies) and per-(study, person) date offsets, memoised per study as Arrow
    arrays so a repeated read is one hash probe per row (``pc.index_in``) and two takes."""

    def __init__(self, key: bytes):
        self._key = key
        self._known: dict[str, tuple[pa.Array, pa.Array, pa.Array]] = {}
        self._lock = threading.Lock()

    def _learn(self, study: str, persons: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
        with self._lock:
            known = self._known.get(study)
            if known is not None:
                persons = pc.filter(persons, pc.invert(pc.is_in(persons, value_set=known[0])))
            new = pc.unique(persons.drop_null()).to_pylist()
            if new:
                shift_key = _shift_key(self._key, study)
                parts = (pa.array(new, pa.string()),
                         pa.array(study_pseudonyms(self._key, study, new), pa.string()),
                         pa.array([_offset(shift_key, u) for u in new], pa.int32()))
                known = parts if known is None else tuple(
                    pa.concat_arrays([old, part]) for old, part in zip(known, parts, strict=True))
                self._known[study] = known
            return known

    def lookup(self, study: str, persons: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
        """(pseudonyms, day offsets) row by row; null for a row without a person."""
        if isinstance(persons, pa.ChunkedArray):
            persons = persons.combine_chunks()
        persons = persons.cast(pa.string())
        known = self._known.get(study)
        index = pc.index_in(persons, value_set=known[0]) if known is not None else None
        if index is None or index.null_count > persons.null_count:
            known = self._learn(study, persons)
            if known is None:  # no person at all
                empty = pa.nulls(len(persons))
                return empty.cast(pa.string()), empty.cast(pa.int32())
            index = pc.index_in(persons, value_set=known[0])
        return pc.take(known[1], index), pc.take(known[2], index)


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
