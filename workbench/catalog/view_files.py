"""View definitions written by people (YAML): loaded with the file, line and field of any mistake
(``workbench.yamlfile``), and checked against the datasets' logical tables before the space is
built."""

from __future__ import annotations

from pathlib import Path

import duckdb
from pydantic import ValidationError

from workbench.catalog.models import Dataset, View
from workbench.errors import WorkbenchUserError
from workbench.yamlfile import YamlFile, YamlSyntaxError

FIX = "Fix the view file and run 'workbench init' again."


def _bad(path: Path, line: int | None, message: str) -> WorkbenchUserError:
    where = f"{path}, line {line}" if line else str(path)
    return WorkbenchUserError(f"{where}: {message}. {FIX}", reason="bad-view-file")


def load_view_file(path: Path) -> list[tuple[View, int]]:
    """Every view in ``path`` (a YAML list of View mappings) with the line it starts on."""
    path = Path(path)
    try:
        doc = YamlFile.parse(path.read_text())
    except FileNotFoundError:
        raise _bad(path, None, "no such file") from None
    except YamlSyntaxError as exc:
        raise _bad(path, exc.problem.line, exc.problem.message) from None
    if not isinstance(doc.data, list):
        raise _bad(path, 1, "expected a list of views (each a mapping with id, title, sql, ...)")
    twice = doc.duplicate_keys()
    if twice:
        raise _bad(path, twice[0].line, f"field '{twice[0].field}': {twice[0].message}")
    views, seen = [], {}
    for index, (item, node) in enumerate(zip(doc.data, doc.root.value, strict=True)):
        line = node.start_mark.line + 1
        if not isinstance(item, dict):
            raise _bad(path, line, f"view #{index + 1} is not a mapping")
        try:
            view = View.model_validate(item)
        except ValidationError as exc:
            first = doc.problems(exc, node)[0]
            name = item.get("id", f"#{index + 1}")
            raise _bad(path, first.line,
                       f"view '{name}', field '{first.field}': {first.message}") from None
        if view.id in seen:
            raise _bad(path, line, f"view '{view.id}' is defined twice (first on line "
                                   f"{seen[view.id]})")
        seen[view.id] = line
        views.append((view, line))
    return views


_DUCK_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "date": "DATE",
               "timestamp": "TIMESTAMP", "bool": "BOOLEAN"}


def check_views(path: Path, views: list[tuple[View, int]], datasets: list[Dataset]) -> None:
    """Run each view's SQL on empty logical tables (the union of every holder's columns plus
    ``holder``, as the view engine binds them) and check its declared output schema."""
    tables: dict[str, dict[str, str]] = {}
    for ds in datasets:
        cols = tables.setdefault(ds.table, {"holder": "VARCHAR"})
        for col in ds.columns:
            cols.setdefault(col.name, _DUCK_TYPES[col.type])
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        for name, cols in tables.items():
            body = ", ".join(f'"{c}" {t}' for c, t in cols.items())
            con.execute(f'CREATE TABLE "{name}" ({body})')
        for view, line in views:
            _check_view(con, path, view, line, tables)
    finally:
        con.close()


def _check_view(con, path: Path, view: View, line: int, tables: dict) -> None:
    unknown = [t for t in view.tables if t not in tables]
    if unknown:
        raise _bad(path, line, f"view '{view.id}', field 'tables': no dataset provides table "
                               f"'{unknown[0]}' (known: {', '.join(sorted(tables))})")
    try:
        cursor = con.execute(f"SELECT * FROM ({view.sql}) AS v LIMIT 0")
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise _bad(path, line, f"view '{view.id}', field 'sql': {first}") from None
    output = [d[0] for d in cursor.description]
    declared = [c.name for c in view.columns]
    if "holder" not in output:
        raise _bad(path, line, f"view '{view.id}', field 'sql': the SELECT must output 'holder'")
    for name in declared:
        if name not in output:
            raise _bad(path, line, f"view '{view.id}', field 'columns': '{name}' is not an "
                                   "output column of the SQL")
    for name in output:
        if name != "holder" and name not in declared:
            raise _bad(path, line, f"view '{view.id}', field 'columns': SQL output column "
                                   f"'{name}' is not declared")
    for field, names in (("person_column", [view.person_column] if view.person_column else []),
                         ("date_columns", list(view.date_columns))):
        for name in names:
            if name not in output:
                raise _bad(path, line, f"view '{view.id}', field '{field}': '{name}' is not an "
                                       "output column of the SQL")
