"""workbench.hub.database: which database the hub uses, created when missing, mistakes as one
line that never shows a password."""

from __future__ import annotations

import secrets

import psycopg
import pytest

from workbench.errors import WorkbenchUserError
from workbench.hub.database import drop_database, hub_db_url, sqlalchemy_url
from workbench.hub.layout import HubLayout
from workbench.paths import Space


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://hub@db:5432/workbench_hub", "postgresql+psycopg://hub@db:5432/workbench_hub"),
    ("postgres://hub@db/workbench_hub", "postgresql+psycopg://hub@db/workbench_hub"),
    ("postgresql+psycopg://hub@db/h", "postgresql+psycopg://hub@db/h"),
    ("sqlite:///srv/hub.sqlite", "sqlite:///srv/hub.sqlite"),
])
def test_urls_use_psycopg3(given, expected):
    assert sqlalchemy_url(given) == expected


def test_sqlite_in_the_space_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HUB_DB_URL", raising=False)
    layout = HubLayout(Space(tmp_path))
    assert hub_db_url(layout) == f"sqlite:///{tmp_path}/hub/state/jupyterhub.sqlite"


@pytest.mark.postgres
def test_postgresql_database_created_when_missing(tmp_path, monkeypatch):
    url = f"postgresql://postgres@127.0.0.1:5432/workbench_hub_{secrets.token_hex(4)}"
    monkeypatch.setenv("WORKBENCH_HUB_DB_URL", url)
    try:
        assert hub_db_url(HubLayout(Space(tmp_path))) == sqlalchemy_url(url)
        with psycopg.connect(url) as db:  # it exists now
            assert db.execute("SELECT 1").fetchone() == (1,)
        assert hub_db_url(HubLayout(Space(tmp_path))) == sqlalchemy_url(url)  # kept as it is
    finally:
        drop_database(url)


@pytest.mark.parametrize("url", [
    "postgresql://hub:s3cret-pw@127.0.0.1:1/workbench_hub",  # nothing listens on port 1
    "postgresql://hub:s3cret-pw@127.0.0.1:5432/Robert'); DROP TABLE users",
])
def test_mistakes_are_one_line_without_the_password(tmp_path, url):
    with pytest.raises(WorkbenchUserError) as error:
        hub_db_url(HubLayout(Space(tmp_path)), url)
    message = str(error.value)
    assert "WORKBENCH_HUB_DB_URL" in message and "\n" not in message
    assert "s3cret-pw" not in message
