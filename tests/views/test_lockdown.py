"""Security boundary: view SQL can read only the catalog's datasets (DuckDB locked down)."""

from __future__ import annotations

import pytest

from workbench.catalog.models import Column, View
from workbench.errors import WorkbenchUserError
from workbench.views import ViewEngine
from workbench.views.sample import build_sample_space

SECRET = "/tmp/wb-lockdown-secret.csv"

ATTACKS = {
    "reads_parquet":
        "SELECT *, 'x' AS holder FROM read_parquet('{holders}/hospital-a/visit.parquet')",
    "reads_csv": f"SELECT *, 'x' AS holder FROM read_csv('{SECRET}')",
    "reads_text": "SELECT content AS a, 'x' AS holder FROM read_text('/etc/passwd')",
    "globs": "SELECT file AS a, 'x' AS holder FROM glob('/etc/*')",
    "attaches": "ATTACH '/tmp/wb-lockdown.db' AS other",
    "copies": "COPY (SELECT 1) TO '/tmp/wb-lockdown-out.csv'",
    "installs": "INSTALL httpfs",
    "loads": "LOAD httpfs",
    "two_statements": "SELECT 1 AS a, 'x' AS holder; SELECT 2",
    "sets_config": "SET enable_external_access = true",
    "creates": "CREATE TABLE stolen AS SELECT * FROM visit",
}


def attack_view(name: str, sql: str) -> View:
    return View(id=f"attack_{name}", title=name, description="hostile view", tables=("visit",),
                sql=sql, columns=(Column(name="a", type="string", description="x"),))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("space")
    with open(SECRET, "w") as handle:
        handle.write("a\nsecret\n")
    views = [attack_view(n, s.format(holders=root / "holders")) for n, s in ATTACKS.items()]
    yield ViewEngine(build_sample_space(root, rows=60, extra_views=views))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_hostile_view_sql_is_invalid_at_load_and_refused_on_read(engine, name):
    view_id = f"attack_{name}"
    assert view_id in engine.problems and view_id not in engine.views
    with pytest.raises(WorkbenchUserError) as info:
        engine.read("s1", view_id)
    assert info.value.reason == "invalid-view"
    assert "secret" not in str(info.value)


def test_good_views_still_load(engine):
    assert {"visits", "visits_monthly", "elderly"} <= set(engine.views)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/tmp/wb-lockdown-secret.csv')",
    "ATTACH '/tmp/wb-lockdown.db'",
    "COPY visit TO '/tmp/wb-lockdown-out.csv'",
    "INSTALL httpfs", "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
])
def test_the_connection_itself_is_locked(engine, sql):
    import duckdb
    with pytest.raises(duckdb.Error):
        engine._con.cursor().execute(sql)


def test_no_raw_holder_tables_in_the_engine(engine):
    names = {row[0] for row in engine._con.cursor().execute(
        "SELECT table_name FROM duckdb_tables()").fetchall()}
    assert names == {"visit"}  # one logical table; per-holder stores are not addressable
