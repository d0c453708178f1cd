"""The attack the witnesses exist for, end to end with a real collector, a real store and a witness
answering on its own socket in its own process: an operator with root on the central machine
rewrites a record, recomputes the chain and re-signs every head with the collector's own key.
Chain, tree and head signatures all check out; the witnesses do not."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from datetime import UTC, datetime

import pytest

from workbench.node.witness import Witness, enroll, load_key
from workbench.provenance import cosign, heads, merkle, records
from workbench.provenance.cosigner import Cosigner, SocketWitnessClient
from workbench.provenance.reader import ProvenanceReader
from workbench.provenance.service import start_collector
from workbench.provenance.store import PG_SCHEMA, SQLITE_FILE
from workbench.runtime import socket_answers, start_service, workbench_command

HOUR = 3600.0


def append(handle, count, start=0):
    client = handle.client()
    for i in range(start, start + count):
        client.append("view-read", {"study": "s1", "user": "alice", "view": "cohort", "rows": i})
    client.close()


def verify(space, now=None, cosignatures=(), witnesses=None):
    with ProvenanceReader(space) as reader:
        return reader.verify(cosignatures=cosignatures, witnesses=witnesses,
                             now=time.time() if now is None else now)


def cosign_round(space, clients):
    with ProvenanceReader(space) as reader:
        return Cosigner(reader, cosign.load_witnesses(space.witnesses)).round(clients)


class Raw:
    """The attacker's raw access to a stopped store, triggers off: {S} prefixes the tables."""

    def __init__(self, space, pg):
        if pg:
            import psycopg

            self.db = psycopg.connect(pg["admin"], autocommit=True)
            self.db.execute("SET session_replication_role = replica")
            self.prefix, self.mark = f"{PG_SCHEMA}.", "%s"
        else:
            self.db = sqlite3.connect(space.provenance / SQLITE_FILE, isolation_level=None)
            for trigger in ("records_no_update", "records_no_delete", "heads_no_delete"):
                self.db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            self.prefix, self.mark = "", "?"

    def run(self, statement, params=()):
        cursor = self.db.execute(statement.replace("{S}", self.prefix).replace("?", self.mark),
                                 params)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in cursor.fetchall()] if cursor.description else []


def rewrite_and_resign(space, target_seq, pg=None):
    """What root can do to a stopped log: change a record, recompute every later hash and link,
    and sign every head again with the collector's key (root can read it)."""
    raw = Raw(space, pg)
    log_id = raw.run("SELECT value FROM {S}meta WHERE key='log_id'")[0][0]
    prev, leaves = merkle.GENESIS, []
    for seq, _prev, _hash, body in raw.run("SELECT seq, prev, hash, body FROM {S}records "
                                           "ORDER BY seq"):
        if seq == target_seq:
            data = json.loads(body)
            data["fields"]["user"] = "mallory"
            body = records.canonical(data)
        digest = merkle.record_hash(prev, body)
        raw.run("UPDATE {S}records SET prev=?, hash=?, body=? WHERE seq=?",
                (prev, digest, body, seq))
        prev = digest
        leaves.append(digest)
    sizes = [size for (size,) in raw.run("SELECT tree_size FROM {S}tree_heads")]
    key = heads.load_or_create_key(space)
    resigned = [heads.sign_head(key, log_id, size, merkle.root(leaves[:size])) for size in sizes]
    raw.run("DELETE FROM {S}tree_heads")
    for head in resigned:
        raw.run("INSERT INTO {S}tree_heads VALUES (?, ?)",
                (head["tree_size"], json.dumps(head, sort_keys=True)))
    raw.db.close()
    heads.heads_log_path(space).write_text(
        "".join(json.dumps(h, sort_keys=True) + "\n" for h in resigned))


@pytest.fixture
def backend(request):
    """None (SQLite) unless a test asks for PostgreSQL with indirect parametrisation."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_backend")
    return None


@pytest.fixture
def witnessed(space, open_tmp, backend):
    """A collector's log with three listed witnesses (quorum 2): two in this process, one
    answering on a Unix socket from `workbench provenance witness serve`."""
    url = backend["backend"] if backend else None
    handle = start_collector(space, backend=url, sign_every=4, sign_interval=3600)
    pem = heads.public_key_path(space).read_bytes()
    local = {}
    for name in ("hospital-a", "insurer-b", "pharma-c"):
        enroll(open_tmp / name, name, pem)
        local[name] = Witness(open_tmp / name, load_key(open_tmp / name))
    socket_path = open_tmp / "pharma-c.sock"
    served = start_service("witness", workbench_command(
        "provenance", "witness", "serve", "--state", str(open_tmp / "pharma-c"),
        "--socket", str(socket_path)), lambda _h: socket_answers(socket_path), (socket_path,))
    listing = cosign.WitnessList({n: w.key.public_key() for n, w in local.items()}, quorum=2,
                                 grace_seconds=600, endpoints={"pharma-c": f"unix:{socket_path}"})
    cosign.save_witnesses(space, listing)
    clients = {"hospital-a": local["hospital-a"], "insurer-b": local["insurer-b"],
               "pharma-c": SocketWitnessClient(socket_path)}
    yield handle, local, clients
    served.stop()
    handle.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_rewrite_re_signed_with_the_collectors_key_is_caught_by_the_witnesses(space, witnessed,
                                                                             open_tmp, backend):
    handle, local, clients = witnessed
    append(handle, 10)                       # heads at 4 and 8
    first = cosign_round(space, clients)
    assert sorted(first.cosigned) == ["hospital-a", "insurer-b", "pharma-c"], first.lines()
    append(handle, 6, start=10)              # heads at 12 and 16
    second = cosign_round(space, clients)    # each from its size 8, with a consistency proof
    assert {c["tree_size"] for c in second.cosigned.values()} == {16}, second.lines()
    handle.stop()

    honest = verify(space, now=time.time() + HOUR)
    assert honest.ok and honest.witnessed_size == 16, honest.summary()

    rewrite_and_resign(space, target_seq=3, pg=backend)
    # chain, tree and signatures alone cannot tell: the attack works against them
    empty = open_tmp / "no-witnesses.json"
    empty.write_text(json.dumps({"witnesses": [{"id": "x", "public_key": json.loads(
        space.witnesses.read_text())["witnesses"][0]["public_key"]}], "quorum": 1,
        "grace_seconds": 10 ** 9}))
    fooled = verify(space, witnesses=empty)
    assert fooled.ok, fooled.summary()
    # the witnesses' cosignatures on the old roots contradict the rewritten records
    caught = verify(space)
    assert not caught.ok
    assert "cosigned the log at size 8 with another root" in caught.summary()  # its first

    # the collector restarts on the rewritten store and goes on; no witness cosigns it again
    handle = start_collector(space, backend=backend["backend"] if backend else None,
                             sign_every=4, sign_interval=3600)
    try:
        append(handle, 4, start=16)          # head at 20
        third = cosign_round(space, clients)
    finally:
        handle.stop()
    assert third.cosigned == {}
    assert {name: exc.reason for name, exc in third.refused.items()} == \
        dict.fromkeys(clients, "inconsistent")
    assert any("ALARM" in line for line in third.lines())
    for witness in local.values():           # the alarm is on each witness's own record
        assert [r["reason"] for r in witness.refusals()] == ["inconsistent"]
        assert witness.last()["head"]["tree_size"] == 16

    # root also deletes the cosignatures: once the grace period is over, no quorum
    cosign.cosignatures_path(space).unlink()
    late = verify(space, now=time.time() + HOUR)
    assert not late.ok
    assert "lack cosignatures from a quorum of 2 of the 3 listed witnesses" in late.summary()
    assert late.summary().count("\n") == 0
    # within the grace period the central copy alone cannot tell; a witness's own last
    # cosignature can, at once
    exported = open_tmp / "hospital-a.cosignature"
    shown = subprocess.run(workbench_command("provenance", "witness", "show", "--state",
                                             str(open_tmp / "hospital-a")),
                           capture_output=True, text=True, check=False)
    assert shown.returncode == 1 and "ALARM" in shown.stderr and "inconsistent" in shown.stderr
    exported.write_text(shown.stdout)
    assert verify(space).ok
    handed_over = verify(space, cosignatures=[exported])
    assert not handed_over.ok and "another root" in handed_over.summary()


def test_quorum_grace_and_who_counts(space, witnessed, open_tmp):
    handle, local, clients = witnessed
    append(handle, 8)                        # heads at 4 and 8
    one = cosign_round(space, {"hospital-a": clients["hospital-a"]})
    assert list(one.cosigned) == ["hospital-a"]
    # one cosignature of a quorum of 2: fine while the heads are fresh, not after the grace
    assert verify(space).ok
    report = verify(space, now=time.time() + 601)
    assert not report.ok and "2 signed head(s) older than the 600 s grace" in report.summary()
    # a cosignature by an unlisted key under a listed name does not count
    impostor_dir = open_tmp / "impostor"
    enroll(impostor_dir, "insurer-b", heads.public_key_path(space).read_bytes())
    impostor = Witness(impostor_dir, load_key(impostor_dir))
    with ProvenanceReader(space) as reader:
        newest = Cosigner(reader, cosign.load_witnesses(space.witnesses)).newest_head()
    cosign.append_jsonl(cosign.cosignatures_path(space), impostor.cosign(newest, []))
    assert not verify(space, now=time.time() + 601).ok
    # the second listed witness makes the quorum: every head is covered by the one at 8
    two = cosign_round(space, clients)
    assert sorted(two.cosigned) == ["insurer-b", "pharma-c"]
    report = verify(space, now=time.time() + 601)
    assert report.ok and report.witnessed_size == 8, report.summary()
    assert "a quorum of 2 of 3 witnesses cosigned the first 8 records" in report.summary()
    # nothing new: nobody is asked again
    assert cosign_round(space, clients).cosigned == {}
    append(handle, 4, start=8)               # head at 12, not yet cosigned
    report = verify(space)
    assert report.ok and report.awaiting_cosignatures == 1, report.summary()
    assert not verify(space, now=time.time() + 601).ok
    # a head dated in the future to wait out the grace period is refused outright
    with ProvenanceReader(space) as reader:
        log_id = reader.store.log_id
    future = heads.sign_head(heads.load_or_create_key(space), log_id, 12,
                             bytes.fromhex(verify(space).root_hash),
                             timestamp=datetime(2999, 1, 1, tzinfo=UTC))
    heads.append_head_log(space, future)
    assert "claims to be signed in the future" in verify(space).summary()


def test_a_stale_view_of_a_witness_is_corrected_not_alarmed(space, witnessed):
    handle, local, clients = witnessed
    append(handle, 4)
    cosign_round(space, clients)
    cosign.cosignatures_path(space).unlink()  # the cosigner lost what it was told
    append(handle, 4, start=4)
    result = cosign_round(space, clients)     # it asks from 0; each witness says 4; retried
    assert sorted(result.cosigned) == sorted(clients) and not result.refused, result.lines()
    # a listed endpoint the cosigner cannot reach is said, not skipped in silence
    listing = cosign.load_witnesses(space.witnesses)
    odd = cosign.WitnessList(listing.witnesses, 2, 600, {"hospital-a": "https://node-a:8443",
                                                         "pharma-c": "unix:/nonexistent.sock"})
    with ProvenanceReader(space) as reader:
        append(handle, 4, start=8)
        result = Cosigner(reader, odd).round()
    assert "no client for endpoint 'https://node-a:8443'" in result.unreachable["hospital-a"]
    assert "no answer at /nonexistent.sock" in result.unreachable["pharma-c"]
    assert any("not reached" in line for line in result.lines())
