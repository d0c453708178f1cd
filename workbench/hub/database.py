"""Which database the hub keeps its users, servers and tokens in: one place for that decision.

SQLite in the space (``DATA_DIR/hub/state/jupyterhub.sqlite``) is the embedded default; setting
``WORKBENCH_HUB_DB_URL`` (or passing a URL) moves the hub to PostgreSQL, e.g.
``postgresql://postgres@127.0.0.1:5432/workbench_hub_demo``. The database is created when
missing, so ``make demo`` needs nothing more than the variable.
"""

from __future__ import annotations

import os
import re

from workbench.errors import WorkbenchUserError
from workbench.hub.layout import HubLayout

ENV_VAR = "WORKBENCH_HUB_DB_URL"
# SQLAlchemy reads a bare postgresql:// as psycopg2, which is not installed: psycopg 3 is.
_POSTGRES = re.compile(r"^postgres(?:ql)?(?:\+psycopg)?://", re.IGNORECASE)
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def is_postgres(url: str) -> bool:
    return bool(_POSTGRES.match(url))


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` as SQLAlchemy's psycopg-3 dialect; others as given."""
    return _POSTGRES.sub("postgresql+psycopg://", url, count=1) if is_postgres(url) else url


def _libpq(url: str) -> str:
    return _POSTGRES.sub("postgresql://", url, count=1)


def _split(url: str) -> tuple[str, str]:
    """(server URL on its 'postgres' database, database name) of a PostgreSQL URL."""
    base, _, rest = _libpq(url).rpartition("/")
    name, _, query = rest.partition("?")
    if not _NAME.match(name):
        raise WorkbenchUserError(
            f"{ENV_VAR}: the database name {name!r} must be lower-case letters, digits and '_' "
            "(e.g. postgresql://hub@db:5432/workbench_hub).", reason="bad-hub-db-url")
    return f"{base}/postgres{'?' + query if query else ''}", name


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` when it does not exist yet (the role needs
    CREATEDB for that; an existing database is used as it is)."""
    import psycopg

    server, name = _split(url)
    try:
        with psycopg.connect(_libpq(url), connect_timeout=10):
            return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise WorkbenchUserError(
                f"{ENV_VAR}: cannot reach the hub database ({_no_password(exc)}). Start "
                "PostgreSQL or fix the URL.", reason="hub-db-unreachable") from None
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # name checked by _NAME above


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (tests and benchmarks clean up their own)."""
    import psycopg

    server, name = _split(url)
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _no_password(exc: Exception) -> str:
    """The driver's message without any password a URL may have carried."""
    return re.sub(r"password=\S+", "password=***", str(exc).splitlines()[0])


def hub_db_url(layout: HubLayout, url: str | None = None, *, create: bool = True) -> str:
    """The hub's SQLAlchemy URL: ``url``, else ``$WORKBENCH_HUB_DB_URL``, else the space's
    SQLite. A PostgreSQL database is created when missing (``create``)."""
    chosen = url or os.environ.get(ENV_VAR) or layout.default_db_url
    if is_postgres(chosen) and create:
        ensure_database(chosen)
    return sqlalchemy_url(chosen)
