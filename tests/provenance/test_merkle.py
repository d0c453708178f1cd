"""RFC 9162 Merkle tree: roots against the recursive definition, inclusion and consistency
proofs."""

from __future__ import annotations

from hashlib import sha256

from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.provenance import merkle


def reference_mth(data: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, written straight from the text over the leaf *data*."""
    if not data:
        return sha256(b"").digest()
    if len(data) == 1:
        return sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return sha256(b"\x01" + reference_mth(data[:k]) + reference_mth(data[k:])).digest()


def leaves_of(data):
    return [sha256(b"\x00" + d).digest() for d in data]


def test_known_answer_rfc6962_test_vector():
    # leaf and root of the one-entry tree over the empty string (certificate-transparency-go
    # testdata): H(0x00) and the empty tree H("")
    assert merkle.root([]).hex() == \
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.root(leaves_of([b""])).hex() == \
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_record_hash_is_the_leaf_hash_of_prev_and_body():
    prev, body = bytes(range(32)), b'{"a":1}'
    assert merkle.record_hash(prev, body) == sha256(b"\x00" + prev + body).digest()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_frontier_root_equals_the_recursive_definition(data):
    frontier = merkle.Frontier()
    for i, leaf in enumerate(leaves_of(data), start=1):
        frontier.append(leaf)
        assert frontier.root() == reference_mth(data[:i])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_verify_and_break_when_changed(size_index):
    size, index = size_index
    leaves = leaves_of([i.to_bytes(4, "big") for i in range(size)])
    root = merkle.root(leaves)
    proof = merkle.inclusion_proof(index, leaves)
    assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
    other = sha256(b"forged").digest()
    assert not merkle.verify_inclusion(index, size, other, proof, root)
    if proof:
        bad = list(proof)
        bad[0] = other
        assert not merkle.verify_inclusion(index, size, leaves[index], bad, root)
        assert not merkle.verify_inclusion(index, size, leaves[index], proof[:-1], root)
    if size > 1:
        assert not merkle.verify_inclusion((index + 1) % size, size, leaves[index], proof, root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_verify_and_catch_a_rewritten_history(sizes):
    old, new = sizes
    leaves = leaves_of([i.to_bytes(4, "big") for i in range(new)])
    old_root, new_root = merkle.root(leaves[:old]), merkle.root(leaves)
    proof = merkle.consistency_proof(old, leaves)
    assert merkle.verify_consistency(old, new, old_root, new_root, proof)
    # a log that rewrote one of the first `old` leaves is not consistent with the old head
    rewritten = list(leaves)
    rewritten[old - 1] = sha256(b"rewritten").digest()
    forged_proof = merkle.consistency_proof(old, rewritten)
    assert not merkle.verify_consistency(old, new, old_root, merkle.root(rewritten), forged_proof)
    if proof:
        assert not merkle.verify_consistency(old, new, old_root, new_root, proof[:-1])


def test_proof_arguments_are_checked():
    leaves = leaves_of([b"a", b"b"])
    for bad in (lambda: merkle.inclusion_proof(2, leaves),
                lambda: merkle.consistency_proof(0, leaves),
                lambda: merkle.consistency_proof(3, leaves)):
        try:
            bad()
        except ValueError:
            continue
        raise AssertionError("accepted an out-of-range argument")
    assert not merkle.verify_inclusion(5, 2, leaves[0], [], merkle.root(leaves))
