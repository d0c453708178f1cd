"""Fixtures: a space with a running collector, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import secrets

import pytest

from workbench.paths import Space
from workbench.provenance.service import start_collector

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def space(open_tmp):
    return Space(open_tmp)


@pytest.fixture
def collector(space):
    handle = start_collector(space, sign_interval=0.5)
    yield handle
    handle.stop()


@pytest.fixture
def pg_backend():
    """A fresh database, owner and INSERT-only writer role on 127.0.0.1:5432; dropped after.
    Yields the collector's backend URL (the writer role's)."""
    import psycopg

    from workbench.provenance.store import create_postgres_schema

    tag = secrets.token_hex(4)
    database, owner, writer = f"wbprov_{tag}", f"wbprov_owner_{tag}", f"wbprov_writer_{tag}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {owner} LOGIN")
        admin.execute(f"CREATE ROLE {writer} LOGIN")
        admin.execute(f"CREATE DATABASE {database} OWNER {owner}")
    try:
        create_postgres_schema(f"postgresql://{owner}@127.0.0.1:5432/{database}", writer)
        yield {"backend": f"postgresql://{writer}@127.0.0.1:5432/{database}",
               "owner": f"postgresql://{owner}@127.0.0.1:5432/{database}",
               "admin": f"postgresql://postgres@127.0.0.1:5432/{database}"}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {writer}")
            admin.execute(f"DROP ROLE IF EXISTS {owner}")
