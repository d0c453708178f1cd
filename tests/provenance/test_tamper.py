"""The tamper suite, on SQLite and on the real PostgreSQL server: every kind of change to a stopped
log is detected by verify, which names the first bad record."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pgutil import cloned_database, postgres_log_database

from workbench import accounts
from workbench.paths import Space
from workbench.provenance import merkle, records
from workbench.provenance.reader import ProvenanceReader
from workbench.provenance.service import start_collector
from workbench.provenance.store import PG_SCHEMA, SQLITE_FILE, create_postgres_schema

H = "ab" * 32


def sample_fields(i):
    kinds = [
        ("cell-execution", {"study": "s1", "user": "alice", "kernel_id": "k1", "msg_id": f"m{i}",
                            "code_sha256": H, "status": "ok", "started": "2026-11-25T13:00:00Z"}),
        ("view-read", {"study": "s1", "user": "alice", "view": "cohort", "rows": i}),
        ("login", {"user": "bob", "event": "login"}),
    ]
    return kinds[i % 3]


class Log:
    """A written, stopped log plus raw access for the attacker (triggers bypassed)."""

    def __init__(self, space, backend):
        self.space, self.backend = space, backend

    @property
    def url(self):
        return self.backend["backend"] if self.backend else None

    def write(self, count, **options):
        with start_collector(self.space, backend=self.url, sign_interval=60, **options) as handle:
            client = handle.client()
            for i in range(count):
                client.append(*sample_fields(i))

    def verify(self, anchors=()):
        with ProvenanceReader(self.space, backend=self.url) as reader:
            return reader.verify(anchors)

    def execute(self, statement, params=()):
        """Run SQL as an attacker with full database access; {T} is the records table."""
        if self.backend:
            import psycopg

            with psycopg.connect(self.backend["admin"], autocommit=True) as db:
                db.execute("SET session_replication_role = replica")  # triggers off
                statement = statement.replace("{T}", f"{PG_SCHEMA}.records").replace(
                    "{HEADS}", f"{PG_SCHEMA}.tree_heads").replace("?", "%s")
                cursor = db.execute(statement, params)
                return cursor.fetchall() if cursor.description else None
        db = sqlite3.connect(self.space.provenance / SQLITE_FILE, isolation_level=None)
        for trigger in ("records_no_update", "records_no_delete", "heads_no_update",
                        "heads_no_delete"):
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        try:
            statement = statement.replace("{T}", "records").replace("{HEADS}", "tree_heads")
            cursor = db.execute(statement, params)
            return cursor.fetchall()
        finally:
            db.close()

    def rows(self):
        return [(s, bytes(p), bytes(h), bytes(b)) for s, p, h, b in
                self.execute("SELECT seq, prev, hash, body FROM {T} ORDER BY seq")]


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def template(request):
    """One written log per backend; each test tampers with its own copy."""
    root = Path(tempfile.mkdtemp(prefix="wb-tamper-", dir="/tmp"))
    os.chmod(root, 0o755)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        backend = stack.enter_context(postgres_log_database()) \
            if request.param == "postgresql" else None
        space = Space(root / "space")
        space.root.mkdir()
        Log(space, backend).write(40, sign_every=8)
        yield space, backend


@pytest.fixture
def log(template, open_tmp):
    space, backend = template
    copy = Space(open_tmp / "space")
    shutil.copytree(space.root, copy.root, symlinks=True)
    uid, gid = accounts.ensure_user(accounts.COLLECTOR)
    for path in [copy.provenance, *copy.provenance.iterdir()]:
        os.chown(path, uid, gid)
    if backend is None:
        yield Log(copy, None)
        return
    with cloned_database(backend) as clone:
        yield Log(copy, clone)


def assert_detected(report, first_bad, words):
    assert not report.ok, report.summary()
    assert report.first_bad_record == first_bad, report.summary()
    assert words in report.summary()


def test_untouched_log_verifies(log):
    report = log.verify()
    assert report.ok, report.summary()
    assert report.records == 40 and report.last_signed_size == 40 and report.signed_heads == 5


def test_edited_field_is_detected(log):
    body = log.rows()[10][3].replace(b'"alice"', b'"mallory"')
    assert body != log.rows()[10][3]
    log.execute("UPDATE {T} SET body = ? WHERE seq = 11", (body,))
    assert_detected(log.verify(), 11, "does not match its hash: it was edited")


def test_deleted_row_is_detected(log):
    log.execute("DELETE FROM {T} WHERE seq = 17")
    assert_detected(log.verify(), 17, "record 17 is missing")


def test_deleted_and_renumbered_rows_are_detected(log):
    log.execute("DELETE FROM {T} WHERE seq = 17")
    for seq in range(18, 41):
        log.execute("UPDATE {T} SET seq = ? WHERE seq = ?", (seq - 1, seq))
    assert_detected(log.verify(), 17, "deleted")


def test_swapped_rows_are_detected(log):
    rows = log.rows()
    five, six = rows[4], rows[5]
    log.execute("UPDATE {T} SET seq = -1 WHERE seq = 5")
    log.execute("UPDATE {T} SET seq = 5 WHERE seq = 6")
    log.execute("UPDATE {T} SET seq = 6 WHERE seq = -1")
    assert (log.rows()[4][2], log.rows()[5][2]) == (six[2], five[2])
    assert_detected(log.verify(), 5, "reordered")


def test_inserted_forged_row_is_detected(log):
    """A forged record chained correctly to record 20 and slipped in as record 21."""
    rows = log.rows()
    for seq in range(40, 20, -1):
        log.execute("UPDATE {T} SET seq = ? WHERE seq = ?", (seq + 1, seq))
    body = records.canonical({"v": 1, "seq": 21, "kind": "login", "ts": "2026-11-25T13:00:00Z",
                              "writer": {"uid": 0, "user": "root"},
                              "fields": {"user": "mallory", "event": "login"}})
    prev = rows[19][2]
    log.execute("INSERT INTO {T} (seq, prev, hash, body) VALUES (?, ?, ?, ?)",
                (21, prev, merkle.record_hash(prev, body), body))
    assert_detected(log.verify(), 21, "records 21..21 were inserted")


def test_edit_with_recomputed_chain_is_caught_by_the_signed_head(log):
    """The attacker knows the hash rules and re-hashes everything after the edit: the chain is
    consistent again, but the roots no longer match the heads the collector signed."""
    rows = log.rows()
    prev = rows[9][2]
    for seq, _prev, _digest, body in rows[10:]:
        if seq == 11:
            body = body.replace(b'"alice"', b'"mallory"')
        digest = merkle.record_hash(prev, body)
        log.execute("UPDATE {T} SET prev = ?, hash = ?, body = ? WHERE seq = ?",
                    (prev, digest, body, seq))
        prev = digest
    assert_detected(log.verify(), 9, "do not match the tree head signed at size 16")


def test_truncated_tail_is_detected_against_the_last_signed_head(log):
    log.execute("DELETE FROM {T} WHERE seq > 30")
    log.execute("DELETE FROM {HEADS} WHERE tree_size > 30")  # the attacker cleans the heads too
    assert_detected(log.verify(), 31, "truncated")


def test_collector_refuses_to_continue_a_truncated_log(log):
    log.execute("DELETE FROM {T} WHERE seq > 30")
    with pytest.raises(Exception, match="does not match its last signed tree head"):
        start_collector(log.space, backend=log.url, ready_timeout=20)


def test_forged_head_is_detected(log):
    heads_file = log.space.provenance / "heads.jsonl"
    head = json.loads(heads_file.read_text().splitlines()[-1])
    head.update(tree_size=41, root_hash="00" * 32)
    with heads_file.open("a") as handle:
        handle.write(json.dumps(head) + "\n")
    report = log.verify()
    assert not report.ok and "bad signature" in report.summary()


def test_replaced_store_is_detected(log, open_tmp):
    """The whole store swapped for a different, internally consistent log."""
    other = Space(open_tmp / "other")
    other.root.mkdir()
    if log.backend:
        import psycopg

        with psycopg.connect(log.backend["admin"], autocommit=True) as db:
            db.execute(f"ALTER SCHEMA {PG_SCHEMA} RENAME TO {PG_SCHEMA}_old")
        create_postgres_schema(log.backend["admin"], log.backend["writer"])
        Log(other, log.backend).write(10, sign_every=8)
    else:
        Log(other, None).write(10, sign_every=8)
        shutil.copy(other.provenance / SQLITE_FILE, log.space.provenance / SQLITE_FILE)
    report = log.verify()
    assert not report.ok and "the database was replaced" in report.summary()


def test_restored_old_copy_is_detected_as_truncation(space):
    log = Log(space, None)
    log.write(10, sign_every=4)
    old = (space.provenance / SQLITE_FILE).read_bytes()
    log.write(10, sign_every=4)
    (space.provenance / SQLITE_FILE).write_bytes(old)
    assert_detected(log.verify(), 11, "truncated")


def test_exported_heads_anchor_catches_a_rewritten_space(space, open_tmp):
    """Root rewrites the store, the heads file and the key: only an outside anchor can tell."""
    log = Log(space, None)
    log.write(12, sign_every=4)
    anchor = open_tmp / "anchor.json"
    with ProvenanceReader(space) as reader:
        anchor.write_text(json.dumps(reader.export_heads()))
    shutil.rmtree(space.provenance)
    log.write(12, sign_every=4)  # a fresh, self-consistent log with a new key
    assert log.verify().ok
    report = log.verify(anchors=[anchor])
    assert not report.ok and "bad signature" in report.summary()


def test_verify_command_exits_non_zero_naming_the_record(log):
    log.execute("DELETE FROM {T} WHERE seq = 3")
    command = [sys.executable, "-c", "from workbench.cli import main; main()",
               "provenance", "verify", "--data-dir", str(log.space.root)]
    if log.url:
        command += ["--backend", log.url]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "first bad record: 3" in result.stdout
