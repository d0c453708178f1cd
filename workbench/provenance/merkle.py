"""The hash chain and the RFC 9162 Merkle tree over provenance records.

Each stored record is the leaf data ``d = prev_hash ‖ canonical_json(record)``; its hash is the RFC
9162 leaf hash ``H(0x00 ‖ d)``. The same 32 bytes are therefore both the record's chain link (the
next record starts with it) and its Merkle leaf, so verifying costs one SHA-256 pass over the
records plus ~one 65-byte node hash per record. Interior nodes are ``H(0x01 ‖ left ‖ right)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

GENESIS = bytes(32)  # the "previous hash" of the first record
_LEAF, _NODE = b"\x00", b"\x01"


def record_hash(prev: bytes, body: bytes) -> bytes:
    return sha256(_LEAF + prev + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """Roots of the perfect subtrees of a growing tree: O(log n) state, O(1) amortised append."""

    __slots__ = ("size", "_stack")

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []

    def append(self, leaf: bytes) -> None:
        stack, width, digest = self._stack, 1, leaf
        while stack and stack[-1][0] == width:
            digest = sha256(_NODE + stack.pop()[1] + digest).digest()
            width <<= 1
        stack.append((width, digest))
        self.size += 1

    @classmethod
    def at(cls, size: int, subtrees: Sequence[bytes]) -> Frontier:
        """The frontier of a tree of ``size`` leaves, from its ``subtrees()``."""
        ranges = subtree_ranges(size)
        if len(ranges) != len(subtrees):
            raise ValueError("subtrees do not match the tree size")
        frontier = cls()
        frontier.size = size
        frontier._stack = [(hi - lo, digest)
                           for (lo, hi), digest in zip(ranges, subtrees, strict=True)]
        return frontier

    def subtrees(self) -> list[bytes]:
        """The roots of the perfect subtrees, largest first (ranges: ``subtree_ranges(size)``)."""
        return [digest for _, digest in self._stack]

    def root(self) -> bytes:
        if not self._stack:
            return sha256(b"").digest()
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = node_hash(left, digest)
        return digest


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 section 2.1.1, from the leaf hashes."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1 for leaf ``index`` of the tree over ``leaves``."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index outside the tree")
    path: list[bytes] = []
    lo, hi, m = 0, len(leaves), index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(_mth(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(leaves, lo, lo + k))
            lo, m = lo + k, m - k
    return path[::-1]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root_hash: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, digest = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and digest == root_hash


def _subproof(old_size: int, new_size: int, mth: Callable[[int, int], bytes]) -> list[bytes]:
    """SUBPROOF(m, D[0:n], true) of RFC 9162 section 2.1.4.1, with ``mth(lo, hi)`` = MTH(D[lo:hi]).

    Every range it asks for lies either inside the old tree, where it is one of the old tree's
    perfect subtrees (its frontier), or inside the leaves added since: never across the two."""

    def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if complete else [mth(lo, hi)]
        k = _split(hi - lo)
        if m <= k:
            return subproof(m, lo, lo + k, complete) + [mth(lo + k, hi)]
        return subproof(m - k, lo + k, hi, False) + [mth(lo, lo + k)]

    return subproof(old_size, 0, new_size, True)


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1: the tree over ``leaves`` extends its first
    ``old_size`` leaves (``old_size == len(leaves)`` gives the empty proof)."""
    if not 0 < old_size <= len(leaves):
        raise ValueError("old tree size must be between 1 and the current size")
    return _subproof(old_size, len(leaves), lambda lo, hi: _mth(leaves, lo, hi))


def subtree_ranges(size: int) -> list[tuple[int, int]]:
    """The leaf ranges of the perfect subtrees a tree of ``size`` leaves decomposes into, largest
    first: the ranges of ``Frontier.subtrees()``."""
    ranges, lo = [], 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            ranges.append((lo, lo + (1 << bit)))
            lo += 1 << bit
    return ranges


def consistency_proof_from(old_size: int, old_subtrees: Sequence[bytes],
                           added: Sequence[bytes]) -> list[bytes]:
    """The same PROOF(m, D[n]) from the old tree's perfect-subtree roots (``Frontier.subtrees()``
    at size m) and only the leaves added since, D[m:n]: the cost is that of the added leaves,
    not of the whole log, which is what lets the collector answer each witness cheaply."""
    ranges = subtree_ranges(old_size)
    if old_size < 1 or len(old_subtrees) != len(ranges):
        raise ValueError("old_subtrees must be the frontier of a tree of old_size leaves")
    known = dict(zip(ranges, old_subtrees, strict=True))

    def mth(lo: int, hi: int) -> bytes:
        if hi <= old_size:
            return known[(lo, hi)]
        return _mth(added, lo - old_size, hi - old_size)

    return _subproof(old_size, old_size + len(added), mth)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2, step by step."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:  # outside the RFC (it defines m < n): the same tree, no proof
        return not proof and old_root == new_root
    if not proof:  # step 1, before the old root may be prepended
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2, an exact power of two: the old root is a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first = node_hash(node, first)
            second = node_hash(node, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and first == old_root and second == new_root
