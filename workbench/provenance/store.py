"""Where records live: SQLite (embedded default) or PostgreSQL (production).

Both stores hold the same three tables: ``meta`` (the log id), ``records`` (seq, prev, hash, body:
the canonical JSON bytes that were hashed) and ``tree_heads`` (signed heads as JSON). Both refuse
UPDATE and DELETE with triggers; PostgreSQL also refuses TRUNCATE and is written through a role that
holds only INSERT and SELECT. The stores know nothing about hashing: merkle.py and verify.py do.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space

Row = tuple[int, bytes, bytes, bytes]  # seq, prev hash, record hash, canonical JSON body
SQLITE_FILE = "provenance.sqlite"
PG_SCHEMA = "provenance"


class Store:
    """Common interface; ``append`` returns only once the rows are durable."""

    log_id: str

    def tail(self) -> tuple[int, bytes | None]:
        raise NotImplementedError

    def append(self, rows: list[Row]) -> None:
        raise NotImplementedError

    def rows(self, start: int = 1) -> Iterator[Row]:
        raise NotImplementedError

    def hashes(self) -> Iterator[bytes]:
        raise NotImplementedError

    def add_head(self, head: dict) -> None:
        raise NotImplementedError

    def heads(self) -> list[dict]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


# -- SQLite -------------------------------------------------------------------------------------

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  seq INTEGER PRIMARY KEY, prev BLOB NOT NULL, hash BLOB NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tree_heads (tree_size INTEGER PRIMARY KEY, head TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
  BEGIN SELECT RAISE(ABORT, 'provenance records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
  BEGIN SELECT RAISE(ABORT, 'provenance records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS heads_no_update BEFORE UPDATE ON tree_heads
  BEGIN SELECT RAISE(ABORT, 'tree heads are append-only'); END;
CREATE TRIGGER IF NOT EXISTS heads_no_delete BEFORE DELETE ON tree_heads
  BEGIN SELECT RAISE(ABORT, 'tree heads are append-only'); END;
"""


class SQLiteStore(Store):
    def __init__(self, path: Path, create: bool = False, readonly: bool = False):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise WorkbenchUserError(
                f"No provenance store at {self.path}: start the collector once "
                "('workbench collector --data-dir DIR') to create it.",
                reason="no-provenance-store")
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False)
        else:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SQLITE_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)",
                             (secrets.token_hex(16),))
        row = self._db.execute("SELECT value FROM meta WHERE key='log_id'").fetchone()
        _keep_sidecars_with_owner(self.path)
        if row is None:
            raise WorkbenchError(f"provenance store {self.path} has no log id")
        self.log_id = row[0]

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def tail(self) -> tuple[int, bytes | None]:
        row = self._db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], bytes(row[1])) if row else (0, None)

    def append(self, rows: list[Row]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO records (seq, prev, hash, body) VALUES (?, ?, ?, ?)", rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")  # WAL + synchronous=FULL: fsynced before COMMIT returns

    def rows(self, start: int = 1) -> Iterator[Row]:
        cursor = self._db.execute(
            "SELECT seq, prev, hash, body FROM records WHERE seq >= ? ORDER BY seq", (start,))
        cursor.arraysize = 4096
        while batch := cursor.fetchmany():
            yield from batch

    def hashes(self) -> Iterator[bytes]:
        cursor = self._db.execute("SELECT hash FROM records ORDER BY seq")
        while batch := cursor.fetchmany(8192):
            for (digest,) in batch:
                yield digest

    def add_head(self, head: dict) -> None:
        self._db.execute("INSERT OR IGNORE INTO tree_heads VALUES (?, ?)",
                         (head["tree_size"], json.dumps(head, sort_keys=True)))

    def heads(self) -> list[dict]:
        return [json.loads(text) for (text,) in
                self._db.execute("SELECT head FROM tree_heads ORDER BY tree_size")]

    def close(self) -> None:
        self._db.close()


def _keep_sidecars_with_owner(path: Path) -> None:
    """A root reader may create the -wal/-shm files; give them back to the store's owner so the
    collector (another uid) can still open the database."""
    if os.geteuid() != 0:
        return
    owner = path.stat()
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        try:
            if sidecar.stat().st_uid != owner.st_uid:
                os.chown(sidecar, owner.st_uid, owner.st_gid)
        except FileNotFoundError:
            pass


# -- PostgreSQL ---------------------------------------------------------------------------------

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_PG_SCHEMA = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE {schema}.records (
  seq bigint PRIMARY KEY, prev bytea NOT NULL, hash bytea NOT NULL, body bytea NOT NULL);
CREATE TABLE {schema}.tree_heads (tree_size bigint PRIMARY KEY, head text NOT NULL);
CREATE FUNCTION {schema}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'provenance % is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON {schema}.records
  FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_change();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON {schema}.records
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_change();
CREATE TRIGGER heads_append_only BEFORE UPDATE OR DELETE ON {schema}.tree_heads
  FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_change();
CREATE TRIGGER heads_no_truncate BEFORE TRUNCATE ON {schema}.tree_heads
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_change();
CREATE TRIGGER meta_append_only BEFORE UPDATE OR DELETE ON {schema}.meta
  FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_change();
REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC;
GRANT USAGE ON SCHEMA {schema} TO {writer};
GRANT SELECT, INSERT ON {schema}.records, {schema}.tree_heads TO {writer};
GRANT SELECT ON {schema}.meta TO {writer};
"""


def create_postgres_schema(owner_dsn: str, writer_role: str, schema: str = PG_SCHEMA) -> str:
    """As the owner role: create the schema, its append-only triggers, and grant the writer role
    INSERT and SELECT only. Returns the log id. The writer role must already exist."""
    import psycopg

    for name in (writer_role, schema):
        if not _ROLE.match(name):
            raise WorkbenchUserError(f"invalid PostgreSQL identifier {name!r}: use [a-z0-9_]",
                                     reason="bad-identifier")
    log_id = secrets.token_hex(16)
    with psycopg.connect(owner_dsn, autocommit=False) as db:
        db.execute(_PG_SCHEMA.format(schema=schema, writer=writer_role))
        db.execute(f"INSERT INTO {schema}.meta VALUES ('log_id', %s)", (log_id,))
    return log_id


class PostgresStore(Store):
    def __init__(self, dsn: str, schema: str = PG_SCHEMA):

        if not _ROLE.match(schema):
            raise WorkbenchUserError(f"invalid PostgreSQL schema name {schema!r}",
                                     reason="bad-identifier")
        self.schema = schema
        self._dsn, self._dsn_shown = dsn, re.sub(r"://[^@/]*@", "://***@", dsn)
        self._connect()
        row = self._db.execute(f"SELECT value FROM {schema}.meta WHERE key='log_id'").fetchone()
        if row is None:
            raise WorkbenchError(f"PostgreSQL provenance schema {schema} has no log id")
        self.log_id = row[0]

    def _connect(self) -> None:
        import psycopg

        try:
            self._db = psycopg.connect(self._dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise WorkbenchError(f"cannot connect to PostgreSQL {self._dsn_shown}: {exc}") from None

    def reconnect_if_broken(self) -> None:
        """After a server restart or a killed session, the next append gets a new connection."""
        if self._db.broken or self._db.closed:
            self._connect()

    def describe(self) -> str:
        return f"{self._dsn_shown} schema {self.schema}"

    def tail(self) -> tuple[int, bytes | None]:
        self.reconnect_if_broken()
        row = self._db.execute(
            f"SELECT seq, hash FROM {self.schema}.records ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], bytes(row[1])) if row else (0, None)

    def append(self, rows: list[Row]) -> None:
        self.reconnect_if_broken()
        insert = (f"INSERT INTO {self.schema}.records (seq, prev, hash, body) "
                  "VALUES (%s, %s, %s, %s)")
        if len(rows) == 1:  # one statement in autocommit: atomic, and one round trip fewer
            self._db.execute(insert, rows[0])
            return
        with self._db.transaction(), self._db.cursor() as cursor:
            cursor.executemany(insert, rows)

    def rows(self, start: int = 1) -> Iterator[Row]:
        self.reconnect_if_broken()
        with self._db.transaction(), self._db.cursor(name="provenance_rows") as cursor:
            cursor.itersize = 8192
            cursor.execute(f"SELECT seq, prev, hash, body FROM {self.schema}.records "
                           "WHERE seq >= %s ORDER BY seq", (start,))
            for seq, prev, digest, body in cursor:
                yield seq, bytes(prev), bytes(digest), bytes(body)

    def hashes(self) -> Iterator[bytes]:
        self.reconnect_if_broken()
        with self._db.transaction(), self._db.cursor(name="provenance_hashes") as cursor:
            cursor.itersize = 16384
            cursor.execute(f"SELECT hash FROM {self.schema}.records ORDER BY seq")
            for (digest,) in cursor:
                yield bytes(digest)

    def add_head(self, head: dict) -> None:
        self.reconnect_if_broken()
        self._db.execute(f"INSERT INTO {self.schema}.tree_heads VALUES (%s, %s) "
                         "ON CONFLICT DO NOTHING",
                         (head["tree_size"], json.dumps(head, sort_keys=True)))

    def heads(self) -> list[dict]:
        self.reconnect_if_broken()
        return [json.loads(text) for (text,) in self._db.execute(
            f"SELECT head FROM {self.schema}.tree_heads ORDER BY tree_size")]

    def close(self) -> None:
        self._db.close()


def open_store(space: Space, backend: str | None = None, create: bool = False,
               readonly: bool = False) -> Store:
    """``backend``: None or ``sqlite`` (DATA_DIR/provenance/provenance.sqlite) or a
    ``postgresql://`` URL, optionally with ``#schema`` naming the schema (default provenance)."""
    if backend in (None, "", "sqlite"):
        return SQLiteStore(space.provenance / SQLITE_FILE, create=create, readonly=readonly)
    if backend.startswith(("postgresql://", "postgres://")):
        dsn, _, schema = backend.partition("#")
        return PostgresStore(dsn, schema or PG_SCHEMA)
    raise WorkbenchUserError(
        f"unknown provenance backend {backend[:40]!r}: use 'sqlite' or a postgresql:// URL",
        reason="bad-backend")
