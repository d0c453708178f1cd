"""PostgreSQL helpers for the provenance tests: a throw-away database per test run on
127.0.0.1:5432 (trust auth), with an owner role and an INSERT-only writer role."""

from __future__ import annotations

import contextlib
import secrets

PG = "postgresql://{role}@127.0.0.1:5432/{database}"


def _admin():
    import psycopg

    return psycopg.connect(PG.format(role="postgres", database="postgres"), autocommit=True)


@contextlib.contextmanager
def postgres_log_database():
    """A fresh database with an owner role, an INSERT-only writer role and the provenance schema
    on 127.0.0.1:5432; everything is dropped afterwards. Yields the URLs tests need."""
    from workbench.provenance.store import create_postgres_schema

    tag = secrets.token_hex(4)
    database, owner, writer = f"wbprov_{tag}", f"wbprov_owner_{tag}", f"wbprov_writer_{tag}"
    with _admin() as admin:
        admin.execute(f"CREATE ROLE {owner} LOGIN")
        admin.execute(f"CREATE ROLE {writer} LOGIN")
        admin.execute(f"CREATE DATABASE {database} OWNER {owner}")
    info = {"database": database, "writer": writer, "owner_role": owner}
    try:
        create_postgres_schema(PG.format(role=owner, database=database), writer)
        yield _urls(info, database)
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {writer}")
            admin.execute(f"DROP ROLE IF EXISTS {owner}")


def _urls(info, database):
    return {**info, "database": database,
            "backend": PG.format(role=info["writer"], database=database),
            "owner": PG.format(role=info["owner_role"], database=database),
            "admin": PG.format(role="postgres", database=database)}


@contextlib.contextmanager
def cloned_database(info):
    """A copy of a provenance database (CREATE DATABASE ... TEMPLATE), dropped afterwards."""
    clone = f"{info['database']}_c{secrets.token_hex(3)}"
    with _admin() as admin:
        admin.execute(f"CREATE DATABASE {clone} TEMPLATE {info['database']} "
                      f"OWNER {info['owner_role']}")
    try:
        yield _urls(info, clone)
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {clone} WITH (FORCE)")
