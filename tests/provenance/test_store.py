"""Spec tests run on both stores (SQLite and the real PostgreSQL server) through a real collector,
and the database-level append-only controls of each store."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from workbench import accounts
from workbench.provenance import records
from workbench.provenance.reader import ProvenanceReader
from workbench.provenance.service import start_collector
from workbench.provenance.store import PG_SCHEMA, SQLITE_FILE, open_store

H = "cd" * 32

# what writers send, in order
APPENDS = [
    ("login", {"user": "alice", "event": "login"}),
    ("server-spawn", {"study": "cml-tki", "user": "alice", "event": "spawn"}),
    ("kernel-lifecycle", {"study": "cml-tki", "kernel_id": "k1", "event": "start"}),
    ("cell-execution", {"study": "cml-tki", "user": "alice", "kernel_id": "k1", "msg_id": "m1",
                        "code_sha256": H, "status": "submitted",
                        "started": "2026-11-25T13:00:00Z"}),
    ("view-read", {"study": "cml-tki", "user": "alice", "view": "cml_cohort", "rows": 812}),
    ("view-read", {"study": "diab-ob", "user": "dan", "view": "diabetes", "rows": 77}),
    ("he-operation", {"study": "cml-tki", "op": "kaplan_meier", "holders": ["hospital_a"]}),
    ("he-decryption", {"study": "cml-tki", "request_id": "r1", "decision": "decrypted"}),
    ("release-request", {"study": "cml-tki", "user": "alice", "request_id": "rel1",
                         "files": [{"name": "km.png", "sha256": H, "size": 100}]}),
    ("release-decision", {"study": "cml-tki", "request_id": "rel1", "reviewer": "carol",
                          "decision": "approved"}),
    ("policy-change", {"actor": "admin", "policy_sha256": H}),
]

# (query, expected sequence numbers)
QUERIES = [
    ({}, list(range(1, 12))),
    ({"study": "cml-tki"}, [2, 3, 4, 5, 7, 8, 9, 10]),
    ({"study": "diab-ob"}, [6]),
    ({"kinds": ["view-read"]}, [5, 6]),
    ({"study": "cml-tki", "kinds": ["release-request", "release-decision"]}, [9, 10]),
    ({"study": "nobody"}, []),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request):
    return request.getfixturevalue("pg_backend")["backend"] if request.param == "postgresql" \
        else None


@pytest.fixture
def filled(space, backend):
    with start_collector(space, backend=backend) as handle:
        client = handle.client()
        ids = [client.append(kind, fields) for kind, fields in APPENDS]
    return ids


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[str(q) for q, _ in QUERIES])
def test_reader_queries(space, backend, filled, query, expected):
    with ProvenanceReader(space, backend=backend) as reader:
        assert [r.seq for r in reader.records(**query)] == expected


def test_records_round_trip_with_the_authenticated_writer(space, backend, filled):
    with ProvenanceReader(space) as reader:  # the backend is found from the space
        stored = list(reader.records())
        assert reader.verify().ok
    assert [r.id for r in stored] == filled
    assert [(r.kind, r.fields) for r in stored] == APPENDS
    assert {r.writer["user"] for r in stored} == {"root"}  # SO_PEERCRED of this test process
    assert all(r.version == records.schemas()[r.kind][0] and r.ts.endswith("Z")
               for r in stored)  # each kind's newest schema


def test_proofs_from_the_store(space, backend, filled):
    from workbench.provenance import merkle

    with ProvenanceReader(space, backend=backend) as reader:
        proof = reader.inclusion_proof(filled[4])
        assert merkle.verify_inclusion(proof["leaf_index"], proof["tree_size"],
                                       bytes.fromhex(filled[4]),
                                       [bytes.fromhex(p) for p in proof["path"]],
                                       bytes.fromhex(proof["root_hash"]))
        assert proof["root_hash"] == reader.heads()[-1]["root_hash"]
        consistency = reader.consistency_proof(3)
        assert merkle.verify_consistency(3, 11, bytes.fromhex(consistency["old_root"]),
                                         bytes.fromhex(consistency["new_root"]),
                                         [bytes.fromhex(p) for p in consistency["path"]])


@pytest.mark.parametrize("backend", [None], ids=["sqlite"])
def test_sqlite_store_refuses_update_and_delete(space, filled):
    db = sqlite3.connect(space.provenance / SQLITE_FILE)
    for statement in ("UPDATE records SET body = x'00' WHERE seq = 1",
                      "DELETE FROM records WHERE seq = 1",
                      "UPDATE tree_heads SET head = '{}'", "DELETE FROM tree_heads"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    db.close()


@pytest.mark.parametrize("backend", [None], ids=["sqlite"])
def test_sqlite_store_is_readable_by_the_collector_only(space, filled):
    uid = accounts.ensure_user(accounts.COLLECTOR)[0]
    for path in space.provenance.iterdir():
        assert path.stat().st_uid == uid
        if path.name != "tree-head.pub":
            assert path.stat().st_mode & 0o077 == 0, path


@pytest.mark.postgres
def test_postgres_writer_role_can_only_insert_and_select(pg_backend, space):
    with start_collector(space, backend=pg_backend["backend"]) as handle:
        handle.client().append("login", {"user": "alice", "event": "login"})
    with psycopg.connect(pg_backend["backend"], autocommit=True) as writer:
        assert writer.execute(f"SELECT count(*) FROM {PG_SCHEMA}.records").fetchone() == (1,)
        for statement in (f"UPDATE {PG_SCHEMA}.records SET body = 'x'",
                          f"DELETE FROM {PG_SCHEMA}.records",
                          f"TRUNCATE {PG_SCHEMA}.records",
                          f"DELETE FROM {PG_SCHEMA}.tree_heads",
                          f"UPDATE {PG_SCHEMA}.meta SET value = 'x'",
                          f"DROP TABLE {PG_SCHEMA}.records"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute(statement)


@pytest.mark.postgres
def test_postgres_triggers_refuse_changes_even_by_the_owner(pg_backend, space):
    with start_collector(space, backend=pg_backend["backend"]) as handle:
        handle.client().append("login", {"user": "alice", "event": "login"})
    with psycopg.connect(pg_backend["owner"], autocommit=True) as owner:
        for statement in (f"UPDATE {PG_SCHEMA}.records SET body = 'x'",
                          f"DELETE FROM {PG_SCHEMA}.records",
                          f"TRUNCATE {PG_SCHEMA}.records",
                          f"TRUNCATE {PG_SCHEMA}.tree_heads",
                          f"UPDATE {PG_SCHEMA}.meta SET value = 'x'"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                owner.execute(statement)
        assert owner.execute(f"SELECT count(*) FROM {PG_SCHEMA}.records").fetchone() == (1,)


def test_unknown_backend_is_a_user_error(space):
    from workbench.errors import WorkbenchUserError

    with pytest.raises(WorkbenchUserError, match="unknown provenance backend"):
        open_store(space, "mysql://x")


@pytest.mark.postgres
def test_lost_database_session_fails_closed_then_recovers(pg_backend, space):
    """The collector's PostgreSQL session is killed: that append is refused (no ack, the writer
    refuses its action), the next one reconnects, and the log still verifies."""
    from workbench.provenance.client import ProvenanceUnavailable

    with start_collector(space, backend=pg_backend["backend"]) as handle:
        client = handle.client()
        client.append("login", {"user": "alice", "event": "login"})
        with psycopg.connect(pg_backend["admin"], autocommit=True) as admin:
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE usename = %s", (pg_backend["writer"],)).fetchall()
        assert killed == [(True,)]
        with pytest.raises(ProvenanceUnavailable):
            client.append("login", {"user": "alice", "event": "logout"})
        client.append("login", {"user": "bob", "event": "login"})
    with ProvenanceReader(space, backend=pg_backend["backend"]) as reader:
        assert reader.verify().ok
        assert [r.fields["user"] for r in reader.records()] == ["alice", "bob"]
