"""Apply a loaded mapping to raw tables: vectorised with pyarrow compute, one block at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from workbench.harmonise.mapping import Block, ColumnRule, LoadedMapping
from workbench.harmonise.schema import OMOP_SCHEMA, arrow_schema

PERSON_COLUMN = "person_id"


def _arrow(series: pd.Series) -> pa.Array:
    array = pa.array(series.array if isinstance(series, pd.Series) else series, from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _yyyymmdd(array: pa.Array) -> pa.Array:
    """Claims-style integer dates (20240131; 0 or invalid = none) as date32."""
    values = np.asarray(array.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False))
    year, month, day = values // 10000, values // 100 % 100, values % 100
    valid = (year >= 1800) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    months = np.where(valid, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(valid, day - 1, 0)
    valid &= days.astype("datetime64[M]") == months  # 31 February is no day, not 2 March
    return pa.array(days, mask=~valid).cast(pa.date32())


def _dmy(array: pa.Array) -> pa.Array:
    """Day-first text dates (31.01.2024; anything else, e.g. 31.02.2024 or ISO text = none).
    A column holds few distinct days: parse each once, then index (several times faster)."""
    encoded = pc.dictionary_encode(array.cast(pa.string()))
    return _dmy_distinct(encoded.dictionary).take(encoded.indices)


def _dmy_distinct(text: pa.Array) -> pa.Array:
    ok = pc.match_substring_regex(text, r"^[0-9]{2}\.[0-9]{2}\.[0-9]{4}$").fill_null(False)
    text = pc.if_else(ok, text, "00.00.0000")

    def part(start: int, stop: int) -> np.ndarray:
        piece = pc.utf8_slice_codeunits(text, start, stop).cast(pa.int64())
        return np.asarray(piece.to_numpy(zero_copy_only=False))

    return _yyyymmdd(pa.array(part(6, 10) * 10000 + part(3, 5) * 100 + part(0, 2)))


def _cast(array: pa.Array, cast: str) -> pa.Array:
    if cast == "date":
        if pa.types.is_string(array.type):
            return pc.strptime(array, format="%Y-%m-%d", unit="s", error_is_null=True).cast(
                pa.date32())
        return array.cast(pa.date32())
    if cast == "yyyymmdd":
        return _yyyymmdd(array)
    if cast == "dmy":
        return _dmy(array)
    if cast == "year":
        return pc.year(array).cast(pa.int64())
    if cast == "int":
        return array.cast(pa.int64())
    if cast == "float":
        return array.cast(pa.float64())
    if cast == "cents":
        return pc.divide(array.cast(pa.float64()), 100.0)
    if cast == "number_text":  # results as text: non-numeric entries ('<5', 'see note') -> null
        numbers = pd.to_numeric(pd.Series(array.to_pandas()), errors="coerce")
        return pa.array(numbers.to_numpy(dtype=np.float64), from_pandas=True)
    return array.cast(pa.string())


def _codes(array: pa.Array, rule: ColumnRule) -> pa.Array:
    keys = list(rule.codes)
    values = pa.array([None if v is None else str(v) for v in rule.codes.values()], pa.string())
    as_text = array.cast(pa.string())
    index = pc.index_in(as_text, value_set=pa.array(keys, pa.string()))
    mapped = values.take(index)
    if rule.unmapped == "keep":
        return pc.if_else(pc.is_null(index), as_text, mapped)
    return mapped


def _units(array: pa.Array, code: pa.Array, rule: ColumnRule) -> pa.Array:
    factors = rule.units.factors
    index = pc.index_in(code.cast(pa.string()), value_set=pa.array(list(factors), pa.string()))
    scale = pa.array([f[0] for f in factors.values()]).take(index).fill_null(1.0)
    offset = pa.array([f[1] for f in factors.values()]).take(index).fill_null(0.0)
    return pc.add(pc.multiply(array.cast(pa.float64()), scale), offset)


def _column(frame: pd.DataFrame, rule: ColumnRule, target: pa.DataType) -> pa.Array:
    if rule.value is not None:
        return pa.array([rule.value] * len(frame)).cast(target)
    array = _arrow(frame[rule.column])
    for cast in rule.casts:
        array = _cast(array, cast)
    if rule.units:
        array = _units(array, _arrow(frame[rule.units.by]), rule)
    if rule.codes is not None:
        array = _codes(array, rule)
    if rule.transform == "lower":
        array = pc.utf8_lower(array.cast(pa.string()))
    elif rule.transform == "upper":
        array = pc.utf8_upper(array.cast(pa.string()))
    elif rule.transform == "icd10_dot":  # 'C921' -> 'C92.1'; local codes are left alone
        array = pc.replace_substring_regex(array.cast(pa.string()),
                                           r"^([A-Z][0-9]{2})([0-9A-Z]+)$", r"\1.\2")
    if rule.plus_days:
        days = _arrow(frame[rule.plus_days]).cast(pa.int64())
        stamp = array.cast(pa.date32()).cast(pa.timestamp("s"))
        seconds = pc.multiply(days, 86400).cast(pa.duration("s"))
        array = pc.add(stamp, seconds).cast(pa.date32())
    if pa.types.is_timestamp(array.type) and pa.types.is_date(target):
        array = array.cast(pa.date32())
    return array.cast(target)


def _rows(frame: pd.DataFrame, block: Block) -> pd.DataFrame:
    where = block.where
    if where is None:
        return frame
    column = frame[where.column]
    keep = np.ones(len(frame), dtype=bool)
    if where.not_null:
        keep &= column.notna().to_numpy()
    if where.in_ is not None:
        keep &= column.isin(where.in_).to_numpy()
    if where.not_in is not None:
        keep &= ~column.isin(where.not_in).to_numpy()
    return frame[keep]


def apply_block(loaded: LoadedMapping, table: str, index: int, block: Block,
                raw: dict[str, pd.DataFrame]) -> pa.Table:
    """One block of one target table as an Arrow table in the common model's schema."""
    loc = ("tables", table, index)
    if block.from_ not in raw:
        raise loaded.error((*loc, "from"), f"the source has no raw table '{block.from_}' "
                           f"(it has {', '.join(sorted(raw))})")
    frame = raw[block.from_]
    if PERSON_COLUMN not in frame.columns:
        raise loaded.error((*loc, "from"), f"raw table '{block.from_}' has no '{PERSON_COLUMN}' "
                           "column: replace national_id with the pseudonym before harmonising")
    rules = block.rules()
    needed = {(name, col) for name, rule in rules.items() for col in rule.source_columns()}
    if block.where:
        needed.add(("where", block.where.column))
    for name, col in sorted(needed):
        if col not in frame.columns:
            field = (*loc, "where") if name == "where" else (*loc, "columns", name)
            raise loaded.error(field, f"raw table '{block.from_}' has no column '{col}'")
    frame = _rows(frame, block)
    schema = arrow_schema(table)
    arrays = []
    for field in schema:
        if field.name == PERSON_COLUMN:
            arrays.append(_arrow(frame[PERSON_COLUMN]).cast(pa.string()))
        elif field.name in rules:
            try:
                arrays.append(_column(frame, rules[field.name], field.type))
            except (pa.ArrowException, TypeError, ValueError) as exc:
                # Arrow's message can quote a value: report only the kind of failure.
                kind = type(exc).__name__
                raise loaded.error((*loc, "columns", field.name),
                                   f"cannot convert raw column(s) to {field.type} ({kind}); "
                                   "check the cast and codes") from None
        else:
            arrays.append(pa.nulls(len(frame), field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow-backed DataFrame: compact in memory, round-trips to Parquet with the same types."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def harmonise_with(loaded: LoadedMapping, raw: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {}
    for table, blocks in loaded.mapping.tables.items():
        parts = [apply_block(loaded, table, i, block, raw) for i, block in enumerate(blocks)]
        out[table] = to_frame(pa.concat_tables(parts) if parts else
                              arrow_schema(table).empty_table())
    return out


def empty_frame(table: str) -> pd.DataFrame:
    return to_frame(arrow_schema(table).empty_table())


__all__ = ["OMOP_SCHEMA", "harmonise_with", "empty_frame", "to_frame"]
