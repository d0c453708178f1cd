"""Writing a holder's table: each chunk is checked against the catalog schema and appended to one
parquet file, so memory stays bounded by the chunk size whatever the number of patients."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.catalog.models import Column
from workbench.errors import WorkbenchUserError

ARROW_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "bool": pa.bool_(),
}


CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
                     ValueError, OverflowError)


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in columns])


def _bad(where: str, message: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"{where}: {message}", reason="bad-data-file")


def _first_bad_row(values: pd.Series, type_: pa.DataType) -> int:
    """Row (0-based) of the first value that does not convert; the value itself is never shown."""
    for row in range(len(values)):
        try:
            _to_arrow(values.iloc[row:row + 1], type_)
        except CONVERSION_ERRORS:
            return row
    return 0


def _to_arrow(values: pd.Series, type_: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """Arrow-backed columns convert without copying; numpy datetimes are cast to dates."""
    if isinstance(values.dtype, pd.ArrowDtype) or pd.api.types.is_datetime64_any_dtype(values):
        converted = pa.array(values, from_pandas=True)
        return converted if converted.type == type_ else converted.cast(type_)
    return pa.array(values, type=type_, from_pandas=True)


def conform(frame: pd.DataFrame, columns: tuple[Column, ...], where: str,
            first_row: int = 0) -> pa.Table:
    """The frame as an Arrow table of exactly the catalog schema, or an error naming the file,
    row and field (never the value: it may be patient data)."""
    names = [c.name for c in columns]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise _bad(where, f"field '{missing[0]}' is missing (expected fields: {', '.join(names)})")
    extra = [n for n in frame.columns if n not in names]
    if extra:
        raise _bad(where, f"field '{extra[0]}' is not in the catalog schema of this table")
    arrays = []
    for col in columns:
        values = frame[col.name]
        try:
            arrays.append(_to_arrow(values, ARROW_TYPES[col.type]))
        except CONVERSION_ERRORS:
            row = first_row + _first_bad_row(values, ARROW_TYPES[col.type])
            raise _bad(where, f"row {row + 1}, field '{col.name}': value is not a valid "
                              f"{col.type}") from None
    return pa.Table.from_arrays(arrays, schema=arrow_schema(columns))


class TableWriter:
    """Appends conformed chunks to ``path``; the file exists only once a chunk was written."""

    def __init__(self, path: Path, columns: tuple[Column, ...], label: str):
        self.path = path
        self.columns = columns
        self.label = label  # how errors name the table, e.g. 'holders/insurer/cost.parquet'
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        table = conform(frame, self.columns, self.label, first_row=self.rows)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
