"""RFC 9162 consistency proofs, the check every witness makes: against a brute-force tree written
from the RFC's recursive definitions, against published known answers, and against every
single change to a proof, its sizes and its roots."""

from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.provenance import merkle

# the 8-entry test tree of RFC 6962 implementations (transparency-dev/merkle testonly data)
INPUTS = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                     "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = {5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
         6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
         8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"}
KNOWN_PROOFS = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


# -- the brute-force tree: RFC 9162 2.1.1 and 2.1.4.1 over the entries, nothing shared ----------

def mth(data: list[bytes]) -> bytes:
    if not data:
        return sha256(b"").digest()
    if len(data) == 1:
        return sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if complete else [mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, data[:k], complete) + [mth(data[k:])]
    return subproof(m - k, data[k:], False) + [mth(data[:k])]


def entries(n: int) -> list[bytes]:
    return [i.to_bytes(3, "big") for i in range(n)]


def leaves(data: list[bytes]) -> list[bytes]:
    return [sha256(b"\x00" + d).digest() for d in data]


def sizes(max_size: int = 80):
    """(m, n) with 1 <= m < n: odd, even and power-of-two sizes alike."""
    return st.integers(2, max_size).flatmap(lambda n: st.tuples(st.integers(1, n - 1), st.just(n)))


def test_known_answer_proofs_are_produced_and_verify():
    tree = leaves(INPUTS)
    for (m, n), expected in KNOWN_PROOFS.items():
        proof = merkle.consistency_proof(m, tree[:n])
        assert [node.hex() for node in proof] == expected
        old_root = ROOTS.get(m) or merkle.root(tree[:m]).hex()
        assert merkle.verify_consistency(m, n, bytes.fromhex(old_root), bytes.fromhex(ROOTS[n]),
                                         proof)
    assert merkle.root(tree).hex() == ROOTS[8]


@settings(max_examples=300, deadline=None)
@given(sizes())
def test_proofs_equal_the_rfc_definition_and_verify(mn):
    m, n = mn
    data = entries(n)
    tree = leaves(data)
    expected = subproof(m, data, True)
    assert merkle.consistency_proof(m, tree) == expected
    # the collector's way: the old tree's frontier and only the leaves added since
    frontier = merkle.Frontier()
    for leaf in tree[:m]:
        frontier.append(leaf)
    assert merkle.consistency_proof_from(m, frontier.subtrees(), tree[m:]) == expected
    assert merkle.verify_consistency(m, n, mth(data[:m]), mth(data), expected)


@settings(max_examples=200, deadline=None)
@given(sizes(), st.data())
def test_every_single_change_is_refused(mn, draw):
    m, n = mn
    data = entries(n)
    old_root, new_root = mth(data[:m]), mth(data)
    proof = subproof(m, data, True)
    check = merkle.verify_consistency
    # any node of the proof changed, dropped, or one added
    index = draw.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[index] = sha256(bad[index]).digest()
    assert not check(m, n, old_root, new_root, bad)
    assert not check(m, n, old_root, new_root, proof[:index] + proof[index + 1:])
    assert not check(m, n, old_root, new_root, proof + [old_root])
    assert not check(m, n, old_root, new_root, [])
    # the roots swapped, or either from another history (the sizes are bound to the roots by
    # the collector's signature, not by the proof: RFC 9162 proves roots, not sizes)
    assert not check(m, n, new_root, old_root, proof)
    rewritten = list(data)
    rewritten[draw.draw(st.integers(0, m - 1))] = b"rewritten"
    forged_old, forged_new = mth(rewritten[:m]), mth(rewritten)
    assert not check(m, n, old_root, forged_new, subproof(m, rewritten, True))
    assert not check(m, n, forged_old, new_root, proof)


def test_rfc_step_one_an_empty_proof_fails_even_from_a_power_of_two():
    tree = leaves(entries(8))
    # from size 4 the old root is itself a node of the new tree; [] still proves nothing
    assert not merkle.verify_consistency(4, 8, merkle.root(tree[:4]), merkle.root(tree), [])
    assert not merkle.verify_consistency(4, 4, merkle.root(tree[:4]), merkle.root(tree[:4]),
                                         [merkle.root(tree[:4])])
    assert merkle.verify_consistency(4, 4, merkle.root(tree[:4]), merkle.root(tree[:4]), [])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 64, 65, 100])
def test_frontier_round_trips_through_its_subtrees(size):
    frontier = merkle.Frontier()
    for leaf in leaves(entries(size)):
        frontier.append(leaf)
    again = merkle.Frontier.at(size, frontier.subtrees())
    assert [hi - lo for lo, hi in merkle.subtree_ranges(size)] == \
        [1 << b for b in reversed(range(size.bit_length())) if size >> b & 1]
    extra = leaves([b"next"])[0]
    frontier.append(extra)
    again.append(extra)
    assert again.root() == frontier.root() == mth(entries(size) + [b"next"])
    with pytest.raises(ValueError):
        merkle.consistency_proof_from(size, [], [])
