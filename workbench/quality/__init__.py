"""Data-quality report of one dataset release (one Parquet file of one holder's table).

``report(dataset_id, parquet_path, table)`` runs every check as SQL in DuckDB straight over the
file, so a table of tens of millions of rows is never loaded into Python. Five dimensions:

- completeness: share of missing values per column (columns optional by design are skipped);
- validity: plausible lab ranges per measurement, code formats (ICD-10, ATC, sexes, visit kinds),
  money amounts, years of birth;
- consistency: date order (end before start), death before the person's first diagnosis (needs
  the holder's ``condition_occurrence.parquet`` beside the file, or ``related=``);
- uniqueness: repeated records (every column but the record id: resubmitted claims), repeated ids;
- timeliness: records dated after the report date ``as_of`` (default: today).

Each check reports ``checked`` rows, ``failed`` rows and their ``rate``; a dimension's score is
1 minus the mean rate of its checks, and ``score`` is the mean over the dimensions that apply.
Only counts leave this module: no value of any record is ever put in a report.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from workbench.errors import WorkbenchUserError
from workbench.quality.rules import (
    CODE_RULES,
    DATE_ORDER,
    OPTIONAL_COLUMNS,
    PLAUSIBLE_RANGES,
    RECORD_IDS,
    TIMELINESS_DATE,
)

__all__ = ["report", "PLAUSIBLE_RANGES"]

DIMENSIONS = ("completeness", "validity", "consistency", "uniqueness", "timeliness")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(path: Path) -> str:
    """A file path as an SQL string literal (views cannot take prepared parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


class _Checker:
    def __init__(self, con: duckdb.DuckDBPyConnection, columns: dict[str, str], rows: int):
        self.con, self.columns, self.rows = con, columns, rows
        self.checks: list[dict] = []

    def add(self, dimension: str, check: str, description: str, failed_sql: str,
            checked_sql: str | None = None, columns: tuple[str, ...] = ()) -> None:
        """``failed_sql``/``checked_sql``: SQL expressions over table ``t`` giving counts."""
        checked = self.rows if checked_sql is None else self.scalar(checked_sql)
        failed = self.scalar(failed_sql) if checked else 0
        self.checks.append({
            "dimension": dimension, "check": check, "columns": list(columns),
            "description": description, "checked": int(checked), "failed": int(failed),
            "rate": round(failed / checked, 6) if checked else 0.0,
        })

    def scalar(self, sql: str) -> int:
        value = self.con.execute(sql).fetchone()[0]
        return int(value or 0)


def _completeness(c: _Checker, table: str) -> None:
    optional = OPTIONAL_COLUMNS.get(table, set())
    for name in c.columns:
        if name in optional:
            continue
        c.add("completeness", "missing-values", f"rows with no '{name}'",
              f"SELECT count(*) - count({_q(name)}) FROM t", columns=(name,))


def _validity(c: _Checker, table: str, as_of: date) -> None:
    if table == "measurement" and {"measurement_concept", "value_as_number"} <= set(c.columns):
        cases = " ".join(
            f"WHEN '{concept}' THEN value_as_number < {low} OR value_as_number > {high}"
            for concept, (low, high) in PLAUSIBLE_RANGES.items())
        c.add("validity", "out-of-range-value",
              "rows whose value is outside the concept's plausible range (unknown concepts fail)",
              f"SELECT count(*) FROM t WHERE value_as_number IS NOT NULL AND "
              f"(CASE measurement_concept {cases} ELSE TRUE END)",
              columns=("measurement_concept", "value_as_number"))
    for column, (pattern, description) in CODE_RULES.get(table, {}).items():
        if column in c.columns:
            c.add("validity", "invalid-code", f"'{column}' values that are not {description}",
                  f"SELECT count(*) FROM t WHERE {_q(column)} IS NOT NULL AND NOT "
                  f"regexp_full_match(CAST({_q(column)} AS VARCHAR), '{pattern}')",
                  f"SELECT count({_q(column)}) FROM t", columns=(column,))
    if table == "person" and "year_of_birth" in c.columns:
        c.add("validity", "implausible-year-of-birth", "years of birth before 1900 or after today",
              f"SELECT count(*) FROM t WHERE year_of_birth < 1900 OR year_of_birth > {as_of.year}",
              "SELECT count(year_of_birth) FROM t", columns=("year_of_birth",))
    if table == "cost" and {"total_charge", "total_paid"} <= set(c.columns):
        c.add("validity", "implausible-amount", "negative amounts or paid above charged",
              "SELECT count(*) FROM t WHERE total_paid < 0 OR total_charge < 0 "
              "OR total_paid > total_charge + 0.005", columns=("total_charge", "total_paid"))


def _consistency(c: _Checker, table: str, related: dict[str, Path]) -> None:
    start_end = DATE_ORDER.get(table)
    if start_end and set(start_end) <= set(c.columns):
        start, end = start_end
        c.add("consistency", "end-before-start", f"rows where '{end}' is before '{start}'",
              f"SELECT count(*) FROM t WHERE {_q(end)} < {_q(start)}",
              f"SELECT count(*) FROM t WHERE {_q(end)} IS NOT NULL AND {_q(start)} IS NOT NULL",
              columns=start_end)
    conditions = related.get("condition_occurrence")
    if table == "death" and conditions is not None and Path(conditions).exists():
        c.con.execute("CREATE VIEW cond AS SELECT person_id, min(condition_start_date) AS first "
                      f"FROM read_parquet({_literal(conditions)}) GROUP BY person_id")
        c.add("consistency", "death-before-diagnosis",
              "deaths (of persons with a diagnosis) dated before their first diagnosis",
              "SELECT count(*) FROM t JOIN cond USING (person_id) WHERE t.death_date < cond.first",
              "SELECT count(*) FROM t JOIN cond USING (person_id)",
              columns=("death_date", "condition_occurrence.condition_start_date"))


def _uniqueness(c: _Checker, table: str) -> None:
    record_id = RECORD_IDS.get(table)
    content = [n for n in c.columns if n != record_id]
    label = "every column but the record id" if record_id else "every column"
    listed = ", ".join(_q(n) for n in content)
    c.add("uniqueness", "repeated-record", f"rows repeating an earlier row on {label}",
          f"SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT {listed} FROM t)) FROM t",
          columns=tuple(content))
    if record_id and record_id in c.columns:
        c.add("uniqueness", "repeated-id", f"rows whose '{record_id}' repeats an earlier row",
              f"SELECT count({_q(record_id)}) - count(DISTINCT {_q(record_id)}) FROM t",
              columns=(record_id,))
    if table == "person" and "person_id" in c.columns:
        c.add("uniqueness", "repeated-person", "person rows whose person_id repeats",
              "SELECT count(person_id) - count(DISTINCT person_id) FROM t",
              columns=("person_id",))


def _timeliness(c: _Checker, table: str, as_of: date) -> dict:
    column = TIMELINESS_DATE.get(table)
    if column is None or column not in c.columns:
        return {}
    c.add("timeliness", "future-dated", f"rows whose '{column}' is after the report date",
          f"SELECT count(*) FROM t WHERE {_q(column)} > DATE '{as_of.isoformat()}'",
          f"SELECT count({_q(column)}) FROM t", columns=(column,))
    latest = c.con.execute(f"SELECT max({_q(column)}) FROM t WHERE {_q(column)} <= "
                           f"DATE '{as_of.isoformat()}'").fetchone()[0]
    # Dataset-level fact (not a patient value): how old the newest record is.
    return {"days_since_latest_record": (as_of - latest).days if latest else None}


def report(dataset_id: str, parquet_path: str | Path, table: str, *,
           as_of: date | None = None, related: dict[str, str | Path] | None = None) -> dict:
    """The quality report of one dataset file: checks, dimension scores and ``score`` in [0, 1].

    ``related`` names other tables of the same holder (``{"condition_occurrence": path}``); by
    default the ``<table>.parquet`` files beside ``parquet_path`` are used.
    """
    path = Path(parquet_path)
    if not path.is_file():
        raise WorkbenchUserError(f"{path}: no such dataset file; build the space first.",
                                 reason="no-such-file")
    as_of = as_of or date.today()
    if related is None:
        sibling = path.parent / "condition_occurrence.parquet"
        related = {"condition_occurrence": sibling} if sibling.exists() else {}
    related = {name: Path(p) for name, p in related.items()}
    con = duckdb.connect()
    try:
        try:
            con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({_literal(path)})")
            described = con.execute("DESCRIBE t").fetchall()
        except duckdb.Error:
            raise WorkbenchUserError(f"{path}: not a readable Parquet file; rebuild the dataset.",
                                     reason="bad-data-file") from None
        columns = {row[0]: row[1] for row in described}
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        checker = _Checker(con, columns, rows)
        _completeness(checker, table)
        _validity(checker, table, as_of)
        _consistency(checker, table, related)
        _uniqueness(checker, table)
        facts = _timeliness(checker, table, as_of)
    finally:
        con.close()
    dimensions = {}
    for dimension in DIMENSIONS:
        rates = [c["rate"] for c in checker.checks if c["dimension"] == dimension]
        dimensions[dimension] = round(1 - sum(rates) / len(rates), 6) if rates else None
    scored = [s for s in dimensions.values() if s is not None]
    return {
        "dataset_id": dataset_id,
        "table": table,
        "rows": int(rows),
        "as_of": as_of.isoformat(),
        "score": round(max(0.0, min(1.0, sum(scored) / len(scored))), 6) if scored else 1.0,
        "dimensions": dimensions,
        "checks": checker.checks,
        "facts": facts,
    }


def rate(report_: dict, check: str, dimension: str | None = None,
         column: str | None = None) -> float:
    """The rate of one check in a report (for tests and dashboards)."""
    for c in report_["checks"]:
        if c["check"] == check and (dimension is None or c["dimension"] == dimension) \
                and (column is None or column in c["columns"]):
            return c["rate"]
    raise KeyError(check)
