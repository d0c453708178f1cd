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
    arrays. A read is looked up by DuckDB's 64-bit hash of the person id (cheap to probe) and
    then verified against the person ids themselves, so a hash collision can never hand one
    person's pseudonym to another: it falls back to probing by the ids."""

    def __init__(self, key: bytes):
        self._key = key
        # study -> (person ids, hashes, pseudonyms, offsets), row-aligned
        self._known: dict[str, tuple[pa.Array, pa.Array, pa.Array, pa.Array]] = {}
        self._lock = threading.Lock()

    def _learn(self, study: str, persons: pa.Array, hashes: pa.Array):
        with self._lock:
            known = self._known.get(study)
            fresh = pc.is_valid(persons)
            if known is not None:
                fresh = pc.and_(fresh, pc.invert(pc.is_in(persons, value_set=known[0])))
            new_persons = pc.unique(pc.filter(persons, fresh))
            if len(new_persons):
                rows = pc.index_in(new_persons, value_set=persons)
                new = new_persons.to_pylist()
                shift_key = _shift_key(self._key, study)
                parts = (new_persons.cast(pa.string()), pc.take(hashes, rows),
                         pa.array(study_pseudonyms(self._key, study, new), pa.string()),
                         pa.array([_offset(shift_key, u) for u in new], pa.int32()))
                known = parts if known is None else tuple(
                    pa.concat_arrays([old, part]) for old, part in zip(known, parts, strict=True))
                self._known[study] = known
            return known

    def lookup(self, study: str, persons, hashes) -> tuple[pa.Array, pa.Array]:
        """(pseudonyms, day offsets) row by row for ``persons`` (ids) and ``hashes`` (DuckDB
        ``hash(id)``, null where the id is null); null for a row without a person."""
        persons = _array(persons).cast(pa.string())
        hashes = _array(hashes).cast(pa.uint64())
        known = self._known.get(study)
        if known is not None:
            index = pc.index_in(hashes, value_set=known[1])
            if index.null_count == persons.null_count and pc.all(pc.equal(
                    pc.take(known[0], index), persons)).as_py() in (True, None):
                return pc.take(known[2], index), pc.take(known[3], index)
        # new people (or a hash collision): learn them, then probe by the ids themselves
        known = self._learn(study, persons, hashes)
        if known is None:  # not a single person in the rows
            empty = pa.nulls(len(persons))
            return empty.cast(pa.string()), empty.cast(pa.int32())
        index = pc.index_in(persons, value_set=known[0])
        return pc.take(known[2], index), pc.take(known[3], index)


def _array(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


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
