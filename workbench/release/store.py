"""The airlock's own state: requests, their transitions and what has been released (SQLite).

Only the airlock process opens this database (its directory is 0700 to the airlock's uid).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from workbench.release.differencing import EQUAL, Near, multiset_sha256, nearest

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    view TEXT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    verdict TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    evidence TEXT NOT NULL,
    -- the requester's justification, disclosure controls and claimed name (JSON)
    context TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS requests_study ON requests(study, state);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES requests(id),
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    provenance_id TEXT NOT NULL
);
-- the comment thread of a request: reviewers and the requester
CREATE TABLE IF NOT EXISTS comments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES requests(id),
    actor TEXT NOT NULL,
    claimed_user TEXT,
    role TEXT NOT NULL,
    body TEXT NOT NULL,
    at TEXT NOT NULL,
    provenance_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_request ON comments(request_id, seq);
CREATE TABLE IF NOT EXISTS released (
    request_id TEXT PRIMARY KEY REFERENCES requests(id),
    study TEXT NOT NULL,
    view TEXT,
    cells TEXT NOT NULL,
    files TEXT NOT NULL,
    released_at TEXT NOT NULL
);
-- every released count by value, for the differencing rule's nearest-value look-ups
CREATE TABLE IF NOT EXISTS released_values (
    study TEXT NOT NULL,
    view TEXT,
    value REAL NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests(id),
    label TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS released_values_near ON released_values(study, value);
CREATE TABLE IF NOT EXISTS released_multisets (
    study TEXT NOT NULL,
    view TEXT,
    sha256 TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests(id)
);
CREATE INDEX IF NOT EXISTS released_multisets_sha ON released_multisets(study, sha256);
"""


class AirlockStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._add_missing_columns()
        self._db.executescript(SCHEMA)
        self._index_earlier_releases()

    def _add_missing_columns(self) -> None:
        """A store written before requests had a context column: add it (empty contexts)."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(requests)")}
        if columns and "context" not in columns:
            self._db.execute("ALTER TABLE requests ADD COLUMN context TEXT NOT NULL DEFAULT '{}'")

    def _index_earlier_releases(self) -> None:
        """A store written before the value index existed: index its releases once."""
        if self._db.execute("SELECT 1 FROM released_values LIMIT 1").fetchone() is not None:
            return
        rows = self._db.execute("SELECT * FROM released").fetchall()
        for r in rows:
            self._index_release(r["request_id"], r["study"], r["view"], json.loads(r["cells"]))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self):
        """One writer at a time: the two-approval rule must not race."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def insert_request(self, row: dict) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._db.execute(f"INSERT INTO requests ({cols}) VALUES ({marks})", tuple(row.values()))

    def set_state(self, request_id: str, state: str, at: str) -> None:
        self._db.execute("UPDATE requests SET state = ?, updated_at = ? WHERE id = ?",
                         (state, at, request_id))

    def add_transition(self, request_id, from_state, to_state, actor, action, comment, at,
                       provenance_id) -> None:
        self._db.execute(
            "INSERT INTO transitions (request_id, from_state, to_state, actor, action, comment, at,"
            " provenance_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, from_state, to_state, actor, action, comment, at, provenance_id))

    def add_released(self, request_id, study, view, cells: dict, files: list, at: str) -> None:
        self._db.execute(
            "INSERT INTO released (request_id, study, view, cells, files, released_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, study, view, json.dumps(cells), json.dumps(files), at))
        self._index_release(request_id, study, view, cells)

    def _index_release(self, request_id, study, view, cells: dict) -> None:
        self._db.executemany(
            "INSERT INTO released_values (study, view, value, request_id, label)"
            " VALUES (?, ?, ?, ?, ?)",
            [(study, view, float(v), request_id, label) for label, v in cells.items()])
        self._db.execute(
            "INSERT INTO released_multisets (study, view, sha256, request_id) VALUES (?, ?, ?, ?)",
            (study, view, multiset_sha256(cells), request_id))

    def released_index(self, study: str, view: str | None) -> ReleasedIndex:
        """The differencing rule's view of what was released for ``study`` and ``view``."""
        return ReleasedIndex(self._db, study, view)

    def get(self, request_id: str) -> dict | None:
        row = self._db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        return None if row is None else dict(row)

    def list(self, study: str | None = None, states: tuple[str, ...] | None = None) -> list[dict]:
        sql, args = "SELECT * FROM requests WHERE 1=1", []
        if study is not None:
            sql += " AND study = ?"
            args.append(study)
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args.extend(states)
        return [dict(r) for r in self._db.execute(sql + " ORDER BY created_at, id", args)]

    def transitions(self, request_id: str) -> list[dict]:
        return [dict(r) for r in self._db.execute(
            "SELECT * FROM transitions WHERE request_id = ? ORDER BY seq", (request_id,))]

    def add_comment(self, request_id, actor, claimed_user, role, body, at, provenance_id) -> None:
        self._db.execute(
            "INSERT INTO comments (request_id, actor, claimed_user, role, body, at, provenance_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request_id, actor, claimed_user, role, body, at, provenance_id))

    def comments(self, request_id: str) -> list[dict]:
        return [dict(r) for r in self._db.execute(
            "SELECT actor, claimed_user, role, body, at, provenance_id FROM comments"
            " WHERE request_id = ? ORDER BY seq", (request_id,))]

    def released_row(self, request_id: str) -> dict | None:
        row = self._db.execute("SELECT * FROM released WHERE request_id = ?",
                               (request_id,)).fetchone()
        if row is None:
            return None
        return {"id": row["request_id"], "cells": json.loads(row["cells"]),
                "files": json.loads(row["files"]), "released_at": row["released_at"]}


class ReleasedIndex:
    """Released counts of one study and view, looked up through the ``(study, value)`` index:
    the same interface as ``differencing.SortedReleases``. Scope: the view's releases and those
    without a view, or all the study's when the view is unknown."""

    def __init__(self, db: sqlite3.Connection, study: str, view: str | None):
        self._db, self._study, self._view = db, study, view
        self._scope = "" if view is None else " AND (view = ? OR view IS NULL)"
        self._scope_args = () if view is None else (view,)

    @property
    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM released_multisets WHERE study = ?"
                                + self._scope, (self._study, *self._scope_args)).fetchone()[0]

    def same_counts_released(self, fingerprint: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM released_multisets WHERE study = ? AND sha256 = ?" + self._scope
            + " LIMIT 1", (self._study, fingerprint, *self._scope_args)).fetchone() is not None

    def released_as(self, label: str, value: float) -> bool:
        return self._db.execute(
            "SELECT 1 FROM released_values WHERE study = ? AND value = ? AND label = ?"
            + self._scope + " LIMIT 1",
            (self._study, float(value), label, *self._scope_args)).fetchone() is not None

    def nearest_within(self, value: float, k: int) -> Near | None:
        """Two seeks in the (study, value) index: the released neighbours below and above."""
        query = ("SELECT value, request_id, label FROM released_values WHERE study = ?"
                 " AND value {} ?" + self._scope + " ORDER BY value {} LIMIT 1")
        rows = [self._db.execute(query.format(op, order),
                                 (self._study, bound, *self._scope_args)).fetchone()
                for op, order, bound in (("<", "DESC", value - EQUAL), (">", "ASC", value + EQUAL))]
        return nearest(value, [tuple(r) for r in rows if r is not None], k)
