"""Provenance collector: append cost and verify cost against baselines measured in the same run.

Rows (ratio: lower is better, `ok` when <= goal):
- append-sqlite[-Nw]: our seconds per acknowledged record (client -> Unix socket -> schema check ->
  chain -> SQLite WAL synchronous=FULL commit -> ack) / seconds per raw SQLite INSERT+COMMIT of a
  body of the same size at the same durability. Goal 2.0, i.e. >= 0.5x the raw throughput.
- append-postgresql: the same against raw psycopg INSERT+COMMIT (reported, no goal).
- verify-N: `ProvenanceReader.verify()` (chain + Merkle tree + signed heads) / reading the same
  records from the store and SHA-256 hashing each body. Goal 2.0.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from hashlib import sha256
from pathlib import Path

from workbench.paths import Space
from workbench.provenance import heads, merkle, records
from workbench.provenance.reader import ProvenanceReader
from workbench.provenance.service import SIGN_EVERY, prepare_dirs, start_collector
from workbench.provenance.store import SQLITE_FILE, SQLiteStore, create_postgres_schema

FIELDS = {"study": "cml-tki", "user": "alice", "kernel_id": "8d1e0f2c-kernel", "msg_id": "m-1",
          "view": "cml_cohort", "view_version": "3", "columns": ["age_band", "tki", "days"],
          "rows": 812, "result_sha256": "ab" * 32, "result_size": 40960}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _body(i: int) -> bytes:
    return records.canonical({"v": 1, "seq": i, "kind": "view-read",
                              "ts": "2026-11-25T13:00:00.000000Z",
                              "writer": {"uid": 999, "user": "wb-gateway"}, "fields": FIELDS})


def _space() -> Space:
    root = Path(tempfile.mkdtemp(prefix="wb-bench-prov-", dir="/tmp"))
    os.chmod(root, 0o755)
    return Space(root)


ROUNDS = 5  # ours and the baseline alternate, so a change in disk load hits both


def _threads(work, writers: int) -> float:
    threads = [threading.Thread(target=work) for _ in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _ours(client_factory, count: int, writers: int) -> float:
    per_writer = count // writers

    def work():
        client = client_factory()
        for _ in range(per_writer):
            client.append("view-read", FIELDS)

    return _threads(work, writers) / (per_writer * writers)


def _raw_sqlite(path: Path, count: int, writers: int) -> float:
    body, per_writer = _body(1), count // writers

    def work():
        db = sqlite3.connect(path, isolation_level=None, timeout=60)
        db.execute("PRAGMA synchronous=FULL")
        for _ in range(per_writer):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (prev, hash, body) VALUES (?, ?, ?)",
                       (bytes(32), bytes(32), body))
            db.execute("COMMIT")
        db.close()

    return _threads(work, writers) / (per_writer * writers)


def _raw_postgres(dsn: str, count: int) -> float:
    import psycopg

    body = _body(1)
    with psycopg.connect(dsn, autocommit=True) as db:
        started = time.perf_counter()
        for _ in range(count):
            db.execute("INSERT INTO raw (prev, hash, body) VALUES (%s, %s, %s)",
                       (bytes(32), bytes(32), body))
        return (time.perf_counter() - started) / count


def _alternate(name: str, ours, raw, count: int, goal) -> dict:
    ratios, ours_total, raw_total = [], 0.0, 0.0
    for _ in range(ROUNDS):
        a, b = ours(count // ROUNDS), raw(count // ROUNDS)
        ratios.append(a / b)
        ours_total, raw_total = ours_total + a, raw_total + b
    ratios.sort()
    return {"name": name, "ratio": ratios[len(ratios) // 2], "goal": goal,
            "ours_us": round(ours_total / ROUNDS * 1e6), "raw_us": round(raw_total / ROUNDS * 1e6),
            "ours_per_s": round(ROUNDS / ours_total), "records": count,
            "round_ratios": [round(r, 2) for r in ratios]}


def _append_rows(count: int) -> list[dict]:
    rows = []
    for writers in (1, 4):
        space = _space()
        try:
            raw_path = space.root / "raw.sqlite"
            setup = sqlite3.connect(raw_path)
            setup.execute("PRAGMA journal_mode=WAL")
            setup.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, prev BLOB, hash BLOB, "
                          "body BLOB)")
            setup.close()
            with start_collector(space) as handle:
                handle.client().append("view-read", FIELDS)  # warm up
                rows.append(_alternate(
                    f"append-sqlite-{writers}w",
                    lambda n, w=writers, h=handle: _ours(h.client, n, w),
                    lambda n, w=writers: _raw_sqlite(raw_path, n, w), count, 2.0))
        finally:
            shutil.rmtree(space.root, ignore_errors=True)
    rows.append(_append_postgres(count))
    return rows


def _append_postgres(count: int) -> dict:
    import psycopg

    tag = secrets.token_hex(4)
    database, role = f"wbbench_{tag}", f"wbbench_w_{tag}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"CREATE DATABASE {database}")
    space = _space()
    try:
        create_postgres_schema(dsn, role)
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("CREATE TABLE raw (seq bigserial PRIMARY KEY, prev bytea, hash bytea, "
                       "body bytea)")
        backend = f"postgresql://{role}@127.0.0.1:5432/{database}"
        with start_collector(space, backend=backend) as handle:
            handle.client().append("view-read", FIELDS)
            return _alternate("append-postgresql", lambda n: _ours(handle.client, n, 1),
                              lambda n: _raw_postgres(dsn, n), count, None)
    finally:
        shutil.rmtree(space.root, ignore_errors=True)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def _build_log(space: Space, count: int, sign_every: int = SIGN_EVERY) -> None:
    """Write a valid signed log directly (the collector's own write path, without the socket)."""
    prepare_dirs(space)
    store = SQLiteStore(space.provenance / SQLITE_FILE, create=True)
    key = heads.load_or_create_key(space)
    frontier, prev, batch = merkle.Frontier(), merkle.GENESIS, []
    for seq in range(1, count + 1):
        body = _body(seq)
        digest = merkle.record_hash(prev, body)
        batch.append((seq, prev, digest, body))
        frontier.append(digest)
        prev = digest
        if seq % sign_every == 0 or seq == count:
            store.append(batch)
            batch = []
            head = heads.sign_head(key, store.log_id, seq, frontier.root())
            store.add_head(head)
            heads.append_head_log(space, head)
    store.close()


def _verify_row(count: int, rounds: int = 3) -> dict:
    space = _space()
    try:
        _build_log(space, count)
        with ProvenanceReader(space) as reader:
            ratios, ours, baseline = [], [], []
            for _ in range(rounds):  # alternate, so a change in machine load hits both
                started = time.perf_counter()
                report = reader.verify()
                ours.append(time.perf_counter() - started)
                assert report.ok and report.records == count, report.summary()
                started = time.perf_counter()
                total = 0
                for _seq, _prev, _digest, body in reader.store.rows():
                    sha256(body).digest()
                    total += len(body)
                baseline.append(time.perf_counter() - started)
                ratios.append(ours[-1] / baseline[-1])
            blob = b"".join(row[3] for row in reader.store.rows())
            started = time.perf_counter()
            sha256(blob).digest()
            one_pass = time.perf_counter() - started
    finally:
        shutil.rmtree(space.root, ignore_errors=True)
    ratios.sort()
    return {"name": f"verify-{count:.0e}".replace("+0", ""), "ratio": ratios[len(ratios) // 2],
            "goal": 2.0, "verify_s": round(min(ours), 3),
            "read_and_sha256_s": round(min(baseline), 3),
            "sha256_in_memory_s": round(one_pass, 3), "mb": round(total / 1e6, 1),
            "signed_heads": report.signed_heads, "round_ratios": [round(r, 2) for r in ratios]}


def run(full: bool) -> list[dict]:
    rows = _append_rows(5000 if full else 1000)
    for count in ((10**5, 10**6) if full else (10**4,)):
        rows.append(_verify_row(count))
    return rows


if __name__ == "__main__":
    import sys

    for row in run(full="--full" in sys.argv):
        print(row)
