"""The witness (workbench/node/witness.py): it cosigns only heads the pinned collector key signed
that extend what it cosigned before, and keeps every refusal on record."""

from __future__ import annotations

import json
import os
import stat
import threading
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workbench.errors import WorkbenchUserError
from workbench.node.witness import Witness, answer, enroll, load_key
from workbench.provenance import cosign, heads, merkle
from workbench.provenance.cosign import WitnessRefused

LOG_ID = "0f" * 16


class Log:
    """A log as the collector keeps it: leaves, and heads signed with the collector's key."""

    def __init__(self, key=None, log_id=LOG_ID):
        self.key = key or Ed25519PrivateKey.generate()
        self.log_id = log_id
        self.leaves: list[bytes] = []

    def grow(self, count: int, tag: bytes = b"r") -> Log:
        for _ in range(count):
            self.leaves.append(sha256(tag + len(self.leaves).to_bytes(4, "big")).digest())
        return self

    def head(self, key=None) -> dict:
        return heads.sign_head(key or self.key, self.log_id, len(self.leaves),
                               merkle.root(self.leaves))

    def proof(self, old_size: int) -> list[bytes]:
        return merkle.consistency_proof(old_size, self.leaves) if old_size else []

    def rewritten(self, index: int) -> Log:
        """The same log with leaf ``index`` changed, re-signed with the same key (the attack)."""
        other = Log(self.key, self.log_id)
        other.leaves = list(self.leaves)
        other.leaves[index] = sha256(b"rewritten").digest()
        return other


@pytest.fixture
def log():
    return Log().grow(5)


@pytest.fixture
def witness(tmp_path, log):
    state = tmp_path / "witness"
    enroll(state, "hospital-a", heads.public_pem(log.key.public_key()))
    return Witness(state, load_key(state))


def refused(witness, head, proof, old_size=None) -> WitnessRefused:
    before = witness.last()
    with pytest.raises(WitnessRefused) as caught:
        witness.cosign(head, proof, old_size)
    assert witness.last() == before, "a refused head must not move the witness"
    return caught.value


def test_cosigns_a_growing_log_and_the_cosignature_verifies(witness, log):
    public = load_key(witness.state_dir).public_key()
    first = witness.cosign(log.head(), [])
    assert cosign.signature_ok(public, first)
    assert (first["tree_size"], first["witness"]) == (5, "hospital-a")
    for grow in (1, 2, 8, 17):  # odd and even steps, across powers of two
        old = len(log.leaves)
        log.grow(grow)
        cosignature = witness.cosign(log.head(), log.proof(old), old)
        assert cosign.signature_ok(public, cosignature)
        assert cosignature["root_hash"] == merkle.root(log.leaves).hex()
    assert witness.last()["head"]["tree_size"] == 33
    assert witness.refusals() == []
    # a cosignature is not a statement about any other tree, nor a head signature
    forged = dict(cosignature, tree_size=34)
    assert not cosign.signature_ok(public, forged)
    assert not heads.head_signature_ok(public, {**log.head(), "signature":
                                                cosignature["signature"]})


def test_state_is_private_and_replaced_atomically(witness, log):
    witness.cosign(log.head(), [])
    assert stat.S_IMODE(os.stat(witness.state_dir).st_mode) == 0o700
    for name in ("witness.key", "head.json", "witness.json", "log.pub"):
        assert stat.S_IMODE(os.stat(witness.state_dir / name).st_mode) == 0o600, name
    assert sorted(p.name for p in witness.state_dir.iterdir()) == \
        [".lock", "head.json", "log.pub", "witness.json", "witness.key"]  # no temp file left
    os.chmod(witness.state_dir / "witness.key", 0o644)
    with pytest.raises(WorkbenchUserError, match="chmod 600"):
        load_key(witness.state_dir)


def test_refuses_a_head_signed_by_another_key(witness, log):
    witness.cosign(log.head(), [])
    log.grow(3)
    exc = refused(witness, log.head(key=Ed25519PrivateKey.generate()), log.proof(5), 5)
    assert exc.reason == "wrong-key"
    assert witness.refusals()[-1]["reason"] == "wrong-key"
    # nor a head whose fields were changed after signing
    tampered = dict(log.head(), tree_size=7)
    assert refused(witness, tampered, log.proof(5), 5).reason == "wrong-key"


def test_refuses_a_shrinking_log(witness, log):
    log.grow(5)
    witness.cosign(log.head(), [])
    shorter = Log(log.key).grow(7)
    exc = refused(witness, shorter.head(), [], 10)
    assert exc.reason == "shrunk" and "from 10 to 7" in str(exc)
    assert witness.refusals()[-1]["head"]["tree_size"] == 7


def test_refuses_a_fork_at_the_same_size(witness, log):
    witness.cosign(log.head(), [])
    assert witness.cosign(log.head(), [], 5)["tree_size"] == 5  # the same head again: fine
    fork = log.rewritten(4)
    exc = refused(witness, fork.head(), [], 5)
    assert exc.reason == "fork"
    assert [r["reason"] for r in witness.refusals()] == ["fork"]


@pytest.mark.parametrize("index", [0, 3, 4])
def test_refuses_a_rewritten_history_re_signed_with_the_collectors_key(witness, log, index):
    witness.cosign(log.head(), [])
    attack = log.rewritten(index).grow(6)
    # the attacker's own proof over its rewritten tree, honestly computed: it proves the new
    # tree extends the *rewritten* old one, not the one the witness cosigned
    exc = refused(witness, attack.head(), attack.proof(5), 5)
    assert exc.reason == "inconsistent" and "rewritten" in str(exc)
    # nor can it pass with the honest log's proof
    honest = Log(log.key).grow(0)
    honest.leaves = list(log.leaves)
    honest.grow(6)
    assert refused(witness, attack.head(), honest.proof(5), 5).reason == "inconsistent"
    assert len(witness.refusals()) == 2
    # the honest continuation is still cosigned: the refusal did not move the witness
    assert witness.cosign(honest.head(), honest.proof(5), 5)["tree_size"] == 11


def test_refuses_another_log(witness, log):
    witness.cosign(log.head(), [])
    other = Log(log.key, log_id="aa" * 16).grow(9)
    assert refused(witness, other.head(), other.proof(5), 5).reason == "other-log"


def test_a_stale_proof_is_not_an_alarm_and_says_where_the_witness_stands(witness, log):
    witness.cosign(log.head(), [])
    log.grow(4)
    exc = refused(witness, log.head(), log.proof(3), 3)
    assert (exc.reason, exc.size) == ("stale-proof", 5)
    assert witness.refusals() == []


def test_garbage_requests_are_refused_without_moving_the_witness(witness, log):
    witness.cosign(log.head(), [])
    for line in (b"", b"not json", b"[]", b'{"head": 1}', b'{"head": {}, "proof": ["zz"]}',
                 json.dumps({"head": {"tree_size": "5"}, "proof": []}).encode()):
        reply = answer(witness, line)
        assert not reply["ok"] and reply["reason"] in ("bad-request", "bad-head"), line
    assert witness.last()["head"]["tree_size"] == 5


def test_racing_forks_get_one_cosignature(witness, log):
    witness.cosign(log.head(), [])
    forks = [Log(log.key) for _ in range(6)]
    for number, fork in enumerate(forks):
        fork.leaves = list(log.leaves)
        fork.grow(3, tag=bytes([number]))
    outcomes: list[str] = []

    def present(fork):
        try:
            witness.cosign(fork.head(), fork.proof(5), 5)
            outcomes.append("cosigned")
        except WitnessRefused as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=present, args=(fork,)) for fork in forks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["cosigned"] + ["fork"] * 5


def test_message_fields_cannot_be_confused():
    with pytest.raises(ValueError):
        cosign.message("ab\n12", 5, "00" * 32, 1)
    with pytest.raises(ValueError):
        cosign.message("ab", True, "00" * 32, 1)
    assert cosign.message("ab", 12, "00" * 32, 3) != cosign.message("ab", 1, "00" * 32, 23)


def test_enrolment_refuses_a_second_witness_and_a_bad_id(tmp_path, log):
    pem = heads.public_pem(log.key.public_key())
    enroll(tmp_path / "w", "hospital-a", pem)
    with pytest.raises(WorkbenchUserError, match="already holds a witness"):
        enroll(tmp_path / "w", "hospital-a", pem)
    with pytest.raises(WorkbenchUserError, match="must match"):
        enroll(tmp_path / "x", "Hospital A", pem)
