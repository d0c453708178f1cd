"""A holder's raw source files, read and screened for ``workbench node ingest``.

Each raw table the mapping reads (``from: members``) is one file in the sources folder,
``members.csv`` or ``members.parquet``. A file that cannot be used at all (unreadable, not CSV or
Parquet, no ``national_id``, a column the mapping needs is missing) stops the ingest with one
line naming the file and field. A *row* that cannot be used is quarantined: left out of the new
version and listed (file, row, field, reason; never its value) in ``quarantine.jsonl`` and the
quality report. Rows fail for: a CSV line with the wrong number of fields, no national id or an
id with a NUL character, a value the mapping reads as a number that is not one.

A source the mapping links by name and birth date (``linkage: {by: name_and_birth_date}``) has
no ``national_id``: every file must have the mapping's name and birth-date columns instead, and a
row with none of the three (or a NUL in one) is quarantined.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from workbench.errors import WorkbenchUserError
from workbench.harmonise.mapping import LoadedMapping
from workbench.harmonise.schema import OMOP_SCHEMA

ID = "national_id"
SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class Problem:
    """One quarantined row: where, and why (never the value: it may be patient data)."""

    file: str
    row: int  # 1-based data row
    line: int | None  # the CSV file's physical line (the header is line 1)
    field: str
    reason: str

    def where(self) -> str:
        line = f" (line {self.line})" if self.line else ""
        return f"{self.file}, row {self.row}{line}, field '{self.field}'"

    def as_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "line": self.line, "field": self.field,
                "reason": self.reason}


@dataclass
class Source:
    name: str  # the raw table, e.g. 'members'
    path: Path
    table: pa.Table
    lines: np.ndarray | None  # CSV: each kept row's physical line
    problems: list[Problem] = field(default_factory=list)
    read_rows: int = 0  # rows in the file, quarantined ones included

    @property
    def quarantined_rows(self) -> int:
        return len({p.row for p in self.problems})


def _bad(where: str, message: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"{where}: {message}", reason="bad-source-file")


def find(folder: Path, loaded: LoadedMapping) -> dict[str, Path]:
    """The file of every raw table the mapping reads."""
    if not folder.is_dir():
        raise _bad(str(folder), "no such folder of source files")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise _bad(str(folder), "not readable by the node's account: the ingest reads the "
                                "holder's files as the node, give them to it")
    found: dict[str, Path] = {}
    for table, blocks in loaded.mapping.tables.items():
        for index, block in enumerate(blocks):
            name = block.from_
            if name in found:
                continue
            files = [folder / f"{name}{suffix}" for suffix in SUFFIXES
                     if (folder / f"{name}{suffix}").is_file()]
            if not files:
                line = loaded.doc.line(("tables", table, index, "from"))
                raise _bad(str(folder), f"no source file {name}.csv or {name}.parquet, which "
                                        f"the mapping reads ({loaded.path}, line {line}, "
                                        f"field 'from'): add it")
            if len(files) > 1:
                raise _bad(str(folder), f"both {name}.csv and {name}.parquet are there: keep "
                                        "one file per raw table")
            found[name] = files[0]
    return found


def identity_columns(loaded: LoadedMapping) -> dict[str, list[str]]:
    """raw table -> the linkage's name and birth-date columns it must have: every table of a
    source linked by name, the ``from`` table of one that gives names to the reference index."""
    linkage = loaded.mapping.linkage
    columns = list(linkage.columns.values())
    if not columns:
        return {}
    tables = {b.from_ for blocks in loaded.mapping.tables.values() for b in blocks}
    return {t: columns for t in tables if linkage.by_names or t == linkage.from_}


def text_columns(loaded: LoadedMapping) -> dict[str, set[str]]:
    """raw table -> columns the mapping reads as text (codes, text casts, transforms): a CSV
    reader must not guess numbers there (product code '03867271' is not 3867271)."""
    text: dict[str, set[str]] = defaultdict(set)
    for table, columns in identity_columns(loaded).items():
        text[table].update(columns)
    for blocks in loaded.mapping.tables.values():
        for block in blocks:
            for rule in block.rules().values():
                first = rule.casts[0] if rule.casts else None
                if rule.column and (rule.codes is not None or rule.transform or
                                    first in ("string", "dmy", "number_text")):
                    text[block.from_].add(rule.column)
                if rule.units:
                    text[block.from_].add(rule.units.by)
    return text


def _read_csv(path: Path, text: set[str]) -> tuple[pa.Table, np.ndarray, list[Problem]]:
    skipped: list[Problem] = []

    def invalid(row) -> str:
        skipped.append(Problem(path.name, 0, row.number, "*",
                               f"the line has {row.actual_columns} fields, the header "
                               f"{row.expected_columns}"))
        return "skip"

    try:
        # one thread: only then does Arrow know the line number of a bad line
        table = pcsv.read_csv(
            path, read_options=pcsv.ReadOptions(use_threads=False),
            parse_options=pcsv.ParseOptions(invalid_row_handler=invalid,
                                            ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(strings_can_be_null=True,
                                                column_types={c: pa.string() for c in
                                                              {ID, *text}}))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as exc:
        # Arrow's message can quote the file's text: name only the kind of failure
        raise _bad(path.name, f"not a readable CSV file with a header line "
                              f"({type(exc).__name__}); export it again") from None
    except PermissionError:
        raise _bad(str(path), "not readable by the node's account: the ingest reads the "
                              "holder's files as the node, give them to it") from None
    # Each data row is one line (quoted line breaks make the line invalid): the kept rows are
    # the lines after the header that were not skipped.
    every = np.arange(2, 2 + table.num_rows + len(skipped))
    lines = every[~np.isin(every, [p.line for p in skipped])] if skipped else every
    return table, lines, [Problem(p.file, p.line - 1, p.line, "*", p.reason) for p in skipped]


def read(name: str, path: Path, text: set[str] = frozenset()) -> Source:
    if path.suffix == ".csv":
        table, lines, problems = _read_csv(path, text)
    else:
        try:
            table = pq.read_table(path)
        except PermissionError:
            raise _bad(str(path), "not readable by the node's account: the ingest reads "
                                  "the holder's files as the node, give them to it") from None
        except (pa.ArrowException, OSError):
            raise _bad(path.name, "not a readable Parquet file; export it again") from None
        lines, problems = None, []
    if table.num_rows == 0 and not problems:
        raise _bad(path.name, "the file has no rows")
    for column in table.schema:
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            raise _bad(path.name, f"field '{column.name}' holds bytes that are not UTF-8 text; "
                                  "export the file as UTF-8")
    return Source(name, path, table, lines, problems, table.num_rows + len(problems))


def numeric_columns(loaded: LoadedMapping) -> dict[str, dict[str, str]]:
    """raw table -> column -> 'integer' or 'number': what the mapping reads as numbers."""
    kinds: dict[str, dict[str, str]] = defaultdict(dict)
    for table, blocks in loaded.mapping.tables.items():
        types = {c.name: c.type for c in OMOP_SCHEMA[table]}
        for block in blocks:
            for name, rule in block.rules().items():
                kind = None
                first = rule.casts[0] if rule.casts else None
                if first in ("yyyymmdd", "int"):
                    kind = "integer"
                elif first in ("float", "cents") or rule.units:
                    kind = "number"
                elif first is None and rule.codes is None and rule.transform is None and \
                        rule.plus_days is None:
                    kind = {"int64": "integer", "float64": "number"}.get(types[name])
                if rule.column and kind and kinds[block.from_].get(rule.column) != "integer":
                    kinds[block.from_][rule.column] = kind
                if rule.plus_days:
                    kinds[block.from_][rule.plus_days] = "integer"
    return kinds


def needed_columns(loaded: LoadedMapping) -> dict[str, set[str]]:
    needed: dict[str, set[str]] = defaultdict(set)
    for blocks in loaded.mapping.tables.values():
        for block in blocks:
            for rule in block.rules().values():
                needed[block.from_].update(rule.source_columns())
            if block.where:
                needed[block.from_].add(block.where.column)
    return needed


def _as_numbers(values: pa.ChunkedArray, kind: str) -> tuple[pa.Array, np.ndarray]:
    """The column as numbers, and which rows hold something that is not one."""
    array = values.combine_chunks()
    present = np.asarray(array.is_valid())
    if pa.types.is_integer(array.type):
        return array, np.zeros(len(array), dtype=bool)
    if pa.types.is_floating(array.type):
        numbers = np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)
    elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        parsed = pd.to_numeric(pd.Series(array.to_numpy(zero_copy_only=False)), errors="coerce")
        numbers = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        return array, present  # dates, booleans ...: no row of it is a number
    with np.errstate(invalid="ignore"):
        bad = present & ~np.isfinite(numbers)
        if kind == "integer":
            bad |= present & np.isfinite(numbers) & ((numbers != np.floor(numbers)) |
                                                     (np.abs(numbers) > 2**53))
    keep = present & ~bad
    if kind == "integer":
        return pa.array(np.where(keep, numbers, 0).astype(np.int64), mask=~keep), bad
    return pa.array(numbers, mask=~keep), bad


def _as_text(source: Source, column: str) -> pa.Array:
    names = source.table.column_names
    try:  # ids, names and dates are read as text (an integer column is taken as its digits)
        values = source.table.column(column).combine_chunks().cast(pa.string())
    except pa.ArrowException:
        raise _bad(source.path.name, f"field '{column}' is not text or whole numbers") from None
    source.table = source.table.set_column(names.index(column), column, values)
    return values


def _empty(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True))


def _nul(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring(values, "\x00"), False))


def screen(source: Source, needed: set[str], numeric: dict[str, str],
           identity: list[str] | None = None, by_names: bool = False) -> Source:
    """Check the file's columns, quarantine the rows that cannot be used, convert the columns
    the mapping reads as numbers. ``identity``: the name and birth-date columns the file must
    have; ``by_names``: they replace the national id (the file needs none)."""
    names = source.table.column_names
    identity = list(identity or ())
    for column in [*([] if by_names else [ID]), *identity, *sorted(needed)]:
        if column not in names:
            raise _bad(source.path.name, f"field '{column}' is missing (the mapping reads it; "
                                         f"the file has {', '.join(names)})")
    bad_rows: dict[str, np.ndarray] = {}
    if by_names:
        texts = [_as_text(source, c) for c in identity]
        no_id = np.logical_and.reduce([_empty(t) for t in texts])
        nul = np.logical_or.reduce([_nul(t) for t in texts])
        id_field = identity[0]
        reasons = [(id_field, no_id, "no name and no birth date: the row cannot be linked"),
                   (id_field, nul, "a name or birth date contains a NUL character")]
    else:
        ids = _as_text(source, ID)
        for column in identity:
            _as_text(source, column)
        reasons = [(ID, _empty(ids), "no national id: the row cannot be linked"),
                   (ID, _nul(ids), "the national id contains a NUL character")]
    table = source.table
    for column, kind in sorted(numeric.items()):
        if column not in names:
            continue
        converted, bad = _as_numbers(table.column(column), kind)
        if bad.any():
            bad_rows[column] = bad
        if converted.type != table.schema.field(column).type:
            table = table.set_column(names.index(column), column, converted)
    reasons += [(c, b, f"not {'a whole number' if numeric[c] == 'integer' else 'a number'}")
                for c, b in bad_rows.items()]
    drop = np.zeros(table.num_rows, dtype=bool)
    for column, mask, reason in reasons:
        for index in np.flatnonzero(mask):
            line = int(source.lines[index]) if source.lines is not None else None
            row = line - 1 if line else int(index) + 1
            source.problems.append(Problem(source.path.name, row, line, column, reason))
        drop |= mask
    source.table = table.filter(pa.array(~drop)) if drop.any() else table
    source.problems.sort(key=lambda p: (p.row, p.field))
    return source
