"""The synthetic views: valid catalog records that run on the harmonised common model."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from workbench.catalog.models import View
from workbench.synth.views import VIEWS_FILE, synthetic_views

VIEWS = {v.id: v for v in synthetic_views()}


def test_the_agreed_views_exist_and_validate():
    assert {"cml_cohort", "cml_costs", "t1d_cohort", "ip_cohort"} <= set(VIEWS)
    for view in VIEWS.values():
        assert isinstance(view, View)
        assert view.person_column == "person_id"


def test_the_space_builder_accepts_the_view_file():
    from workbench.catalog.view_files import load_view_file

    assert [v.id for v, _line in load_view_file(VIEWS_FILE)] == list(VIEWS)


@pytest.mark.parametrize("view_id", sorted(VIEWS))
def test_view_runs_and_outputs_exactly_its_declared_columns(logical, view_id):
    view = VIEWS[view_id]
    result = logical.execute(view.sql).df()
    assert list(result.columns) == [c.name for c in view.columns]
    assert "holder" in result.columns
    assert len(result) >= view.min_rows
    assert result["person_id"].notna().all()
    # One row per patient and holder.
    assert not result.duplicated(["holder", "person_id"]).any()
    checks = {"int64": pd.api.types.is_integer_dtype, "float64": pd.api.types.is_float_dtype,
              "string": lambda d: pd.api.types.is_string_dtype(d) or d == "object"}
    for column in view.columns:
        values = result[column.name]
        ok = checks[column.type](values.dtype)
        # DuckDB hands nullable BIGINT columns to pandas as float: whole numbers only then.
        if column.type == "int64" and not ok and values.isna().any():
            ok = (values.dropna() % 1 == 0).all()
        assert ok, (column.name, values.dtype)


@pytest.mark.parametrize("view_id", sorted(VIEWS))
def test_view_reads_only_the_tables_it_declares(logical, view_id):
    """The engine binds only the declared logical tables: the SQL must not need any other."""
    view = VIEWS[view_id]
    con = duckdb.connect()
    for table in view.tables:
        con.register(table, logical.execute(f"SELECT * FROM {table} LIMIT 0").df())
    con.execute(f"SELECT * FROM ({view.sql}) AS v LIMIT 0")


def test_outcomes_and_money_are_sensitive():
    sensitive = {v: set(view.sensitive_columns) for v, view in VIEWS.items()}
    assert {"days", "progressed"} <= sensitive["cml_cohort"]
    assert "cost" in sensitive["cml_costs"]
    assert "hba1c_mean" in sensitive["t1d_cohort"]
    for view in VIEWS.values():
        quasi = {c.name for c in view.columns if c.sensitivity == "quasi_identifier"}
        assert "person_id" in quasi
