"""The view engine: DuckDB over the holders' stores, locked down so a view reads only catalog data.

Security boundary (guarded by tests/views/test_lockdown.py): every holder's parquet dataset is read
with pyarrow *before* DuckDB is locked, into one in-memory table per logical table (the union of
all holders' datasets of that name, plus a ``holder`` column). Then external access, extension
installing/loading and configuration changes are switched off for good. View SQL must be one
SELECT; ``read_parquet``, ``read_csv``, ``ATTACH``, ``COPY``, ``INSTALL``, ``LOAD`` all fail, and
such a view is reported as invalid at load and refused on read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench.catalog.models import View
from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError, did_you_mean
from workbench.paths import Space
from workbench.space.linkage import study_rekey_key
from workbench.views import protect

_HOLDER = "__wb_holder"  # internal names: never a catalog column (those are [a-z][a-z0-9_]*)
_PERSON = "__wb_person"
_PERSON_HASH = "__wb_person_hash"
_LOCKED_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
}
_COARSEN_UNIT = {"month": "month", "year": "year"}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class ViewResult:
    """One plain read: the rows that may leave, and what the ledger and provenance need."""

    table: pa.Table
    view: str
    version: str
    columns: tuple[str, ...]
    rows_by_holder: dict[str, int]

    @property
    def rows(self) -> int:
        return self.table.num_rows


class ViewEngine:
    """Reads catalog views for a study. Access control is the caller's job (``decide``); this
    class enforces what a granted read returns: allow-listed columns, per-study pseudonyms, shifted
    or coarsened dates and the minimum-rows rule."""

    def __init__(self, space: Space, catalog: Catalog | None = None,
                 rekey_key: bytes | None = None, *, data: bool = True):
        """``data=False``: the catalog only, for a coordinator whose holders are nodes (it
        describes views and knows their versions; the nodes check and read them)."""
        self.space = space
        self.catalog = catalog or Catalog.load(space)
        self.problems: dict[str, str] = {}
        self.views: dict[str, View] = {}
        if not data:
            self._con = None
            self.tables = {t: [d.holder for d in self.catalog.holders_of(t)]
                           for t in sorted({d.table for d in self.catalog.datasets.values()})}
            self.views = dict(self.catalog.views)
            self.versions = {v.id: self._version(v) for v in self.catalog.views.values()}
            return
        self._study_keys = protect.StudyKeys(
            rekey_key if rekey_key is not None else study_rekey_key(space))
        self._con = duckdb.connect(":memory:", config=dict(_LOCKED_CONFIG))
        self.tables = self._load_tables()
        self._lock()
        for view in self.catalog.views.values():
            problem = self._check_view(view)
            if problem:
                self.problems[view.id] = problem
            else:
                self.views[view.id] = view
        self.versions = {v.id: self._version(v) for v in self.catalog.views.values()}

    # -- loading and lock-down ------------------------------------------------------------------
    def _load_tables(self) -> dict[str, list[str]]:
        """One DuckDB table per logical table: every holder's rows plus a ``holder`` column."""
        tables: dict[str, list[str]] = {}
        for table in sorted({d.table for d in self.catalog.datasets.values()}):
            parts = []
            for dataset in self.catalog.holders_of(table):
                data = pq.read_table(self.catalog.dataset_path(self.space, dataset))
                if "holder" in data.column_names:
                    data = data.drop_columns(["holder"])
                parts.append(data.append_column("holder", pa.array(
                    [dataset.holder] * data.num_rows, pa.string())))
            combined = pa.concat_tables(parts, promote_options="permissive")
            self._con.register("__wb_load", combined)
            self._con.execute(f"CREATE TABLE {_quote(table)} AS SELECT * FROM __wb_load")
            self._con.unregister("__wb_load")
            tables[table] = [d.holder for d in self.catalog.holders_of(table)]
        return tables

    def _lock(self) -> None:
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")

    def _check_view(self, view: View) -> str | None:
        """Why a catalog view cannot be served, or None."""
        try:
            statements = duckdb.extract_statements(view.sql)
        except duckdb.Error as exc:
            return f"its SQL does not parse: {exc}"
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            return "its SQL must be exactly one SELECT statement"
        missing = [t for t in view.tables if t not in self.tables]
        if missing:
            return f"it reads tables the space does not hold: {', '.join(missing)}"
        where = f" WHERE ({view.row_filter})" if view.row_filter else ""
        sql = f"SELECT * FROM ({view.sql}) AS v{where}"
        try:
            if len(duckdb.extract_statements(sql)) != 1:
                return "its row filter must be one SQL predicate"
            described = self._con.cursor().execute(f"DESCRIBE {sql}").fetchall()
        except duckdb.Error as exc:
            # names the view and the error class only: the message may quote a path
            return f"its SQL is refused by the locked-down engine ({type(exc).__name__})"
        outputs = {row[0] for row in described}
        needed = {c.name for c in view.columns} | {"holder"} | set(view.date_columns)
        if view.person_column:
            needed.add(view.person_column)
        absent = sorted(needed - outputs)
        if absent:
            return f"its SQL does not output the columns {', '.join(absent)}"
        if view.date_policy == "shift" and not view.person_column:
            return "date shifting needs a person_column (offsets are per person)"
        return None

    def _version(self, view: View) -> str:
        """Changes whenever the view's definition or any dataset it reads changes."""
        parts = [view.model_dump_json()]
        for table in sorted(view.tables):
            parts += [f"{d.id}={d.version}" for d in self.catalog.holders_of(table)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    # -- the API --------------------------------------------------------------------------------
    def view(self, view_id: str) -> View:
        if view_id in self.views:
            return self.views[view_id]
        if view_id in self.problems:
            raise WorkbenchUserError(
                f"view '{view_id}' cannot be served: {self.problems[view_id]}. Ask the space's "
                "admin to fix the catalog entry.", reason="invalid-view")
        raise WorkbenchUserError(
            f"there is no view '{view_id}' in the catalog. List the views your study may read "
            "with wb.views().", reason="unknown-view")

    def describe(self, view_id: str) -> dict:
        """The view's public description: schema with sensitivity, quality, version, holders."""
        view = self.view(view_id)
        plain = set(view.plaintext_columns)
        holders = sorted({h for t in view.tables for h in self.tables.get(t, [])})
        quality = {d.id: d.quality_score for t in view.tables for d in self.catalog.holders_of(t)}
        return {
            "id": view.id,
            "title": view.title,
            "description": view.description,
            "version": self.versions[view.id],
            # with each column's role and public grid: what wb.secure may use it for
            "columns": [{"name": c.name, "type": c.type, "description": c.description,
                         "sensitivity": c.sensitivity, "plaintext": c.name in plain,
                         "role": c.role, "levels": list(c.levels) if c.levels else None,
                         "granularity": c.granularity, "horizon": c.horizon,
                         "grid": list(c.grid) if c.grid else None,
                         "derived_from": c.derived_from}
                        for c in view.columns],
            "person_column": view.person_column,
            "date_columns": list(view.date_columns),
            "date_policy": view.date_policy,
            "min_rows": view.min_rows,
            "holders": holders,
            "quality": quality,
        }

    def _columns(self, view: View, columns, allowed: tuple[str, ...]) -> tuple[str, ...]:
        if columns is None:
            return allowed
        known = {c.name: c for c in view.columns} | {"holder": None}
        chosen: list[str] = []
        for name in columns:
            if name not in known:
                raise WorkbenchUserError(
                    f"view '{view.id}' has no column '{name}'{did_you_mean(name, known)}. See "
                    f"wb.describe('{view.id}').",
                    reason="unknown-column")
            if name != "holder" and name not in allowed:
                raise WorkbenchUserError(
                    f"column '{name}' of view '{view.id}' is tagged "
                    f"{known[name].sensitivity} and is never returned in plaintext; use the "
                    "secure-computation functions (wb.secure) for it.", reason="sensitive-column")
            if name not in chosen:
                chosen.append(name)
        return tuple(chosen)

    def _query(self, view: View, columns: tuple[str, ...], limit: int | None,
               min_rows: bool = True) -> pa.Table:
        select = [_quote(c) for c in columns] + [f'"holder" AS {_HOLDER}']
        if view.person_column:
            person = _quote(view.person_column)
            select += [f"{person} AS {_PERSON}",
                       f"CASE WHEN {person} IS NULL THEN NULL ELSE hash({person}) END "
                       f"AS {_PERSON_HASH}"]
        where = f" WHERE ({view.row_filter})" if view.row_filter else ""
        sql = f"SELECT {', '.join(select)} FROM ({view.sql}) AS v{where}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cursor = self._con.cursor()  # one per call: reads may run in parallel threads
        try:
            table = cursor.sql(sql).to_arrow_table()
            total = table.num_rows
            if limit is not None and total == limit and limit < view.min_rows:
                # a limit below min_rows must not hide that the whole view is too small
                count = f"SELECT count(*) FROM ({view.sql}) AS v{where}"
                total = cursor.sql(count).fetchall()[0][0]
        finally:
            cursor.close()
        if min_rows:
            self._min_rows(view, total)
        return table

    @staticmethod
    def _min_rows(view: View, rows: int) -> None:
        if rows < view.min_rows:
            raise WorkbenchUserError(
                f"view '{view.id}' currently selects fewer than its minimum of "
                f"{view.min_rows} rows and is not returned (small groups could identify people).",
                reason="too-few-rows")

    @staticmethod
    def _per_holder(table: pa.Table) -> dict[str, int]:
        counts = pc.value_counts(table[_HOLDER])
        return {str(item["values"]): int(item["counts"]) for item in counts.to_pylist()}

    def read(self, study: str, view_id: str, columns=None, limit: int | None = None) -> ViewResult:
        """A plain read for ``study``: only plaintext columns, pseudonyms re-keyed for the study,
        dates shifted or coarsened as the view says. Raises WorkbenchUserError when refused."""
        view = self.view(view_id)
        chosen = self._columns(view, columns, view.plaintext_columns)
        if limit is not None and limit < 0:
            raise WorkbenchUserError("limit must be 0 or more", reason="bad-request")
        table = self._query(view, chosen, limit)
        rows_by_holder = self._per_holder(table)
        out = {}
        pseudonyms = offsets = None
        if view.person_column:
            pseudonyms, offsets = self._study_keys.lookup(
                study, table[_PERSON], table[_PERSON_HASH])
        for name in chosen:
            column = table[name]
            if name == view.person_column:
                column = pseudonyms
            elif name in view.date_columns and view.date_policy == "shift":
                column = protect.shift_dates(column, offsets)
            elif name in view.date_columns and view.date_policy in _COARSEN_UNIT:
                column = protect.coarsen_dates(column, _COARSEN_UNIT[view.date_policy])
            out[name] = column
        return ViewResult(pa.table(out) if out else pa.table({}), view.id,
                          self.versions[view.id], chosen, rows_by_holder)

    def partitions(self, study: str, view_id: str, columns,
                   min_rows: bool = True) -> dict[str, pd.DataFrame]:
        """Rows of a view split by holder, INCLUDING sensitive columns: for the secure path only
        (holder nodes compute local statistics; only policy-checked aggregates leave). Person ids
        are re-keyed for the study; dates are not shifted, so intervals stay exact."""
        view = self.view(view_id)
        usable = tuple(c.name for c in view.columns if c.sensitivity != "direct_identifier")
        chosen = self._columns(view, columns, usable)
        table = self._query(view, chosen, None, min_rows)
        internal = [c for c in (_PERSON, _PERSON_HASH) if c in table.column_names]
        frame = table.drop_columns(internal).to_pandas()
        if view.person_column in chosen:
            pseudonyms, _ = self._study_keys.lookup(study, table[_PERSON], table[_PERSON_HASH])
            frame[view.person_column] = pseudonyms.to_numpy(zero_copy_only=False)
        return {holder: part.drop(columns=[_HOLDER]).reset_index(drop=True)
                for holder, part in frame.groupby(_HOLDER, sort=True)}

    def unprotected_frame(self, view_id: str, columns: tuple[str, ...]) -> pd.DataFrame:
        """The view's columns straight from DuckDB into pandas, with no protection applied: only
        the in-process baseline of benchmarks/bench_gateway.py uses it."""
        view = self.view(view_id)
        where = f" WHERE ({view.row_filter})" if view.row_filter else ""
        select = ", ".join(_quote(c) for c in columns)
        cursor = self._con.cursor()
        try:
            return cursor.sql(f"SELECT {select} FROM ({view.sql}) AS v{where}").df()
        finally:
            cursor.close()

    def describe_all(self) -> list[dict]:
        return [self.describe(v) for v in sorted(self.views)]
