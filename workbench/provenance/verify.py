"""Verify a provenance store: the chain, the Merkle tree and every signed tree head.

SECURITY BOUNDARY (the regulator's check). One pass over the records recomputes each record's hash
from its bytes, checks each link to the previous record and folds the hashes into the RFC 9162 tree;
the root at every signed size must match the signed head. What each check catches:

- a field edited without recomputing hashes     -> that record's hash does not match
- a record deleted, two swapped, one inserted   -> the sequence or the link to the previous breaks
- any of those with all hashes recomputed       -> the next signed head's root does not match
- the tail truncated                            -> a signed head covers more records than stored
- the database file replaced                    -> log id or roots differ from the heads file
- all of it re-signed with the collector's key  -> the space's witnesses never cosigned the new
  heads (they refuse heads inconsistent with what they saw): no quorum once the grace period
  has passed, and a witness's cosignature on the old root contradicts the store
Records after the last signed head are protected by the chain only until the next head is signed
(every N records or T seconds); the report says how many there are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workbench.provenance import cosign
from workbench.provenance import heads as heads_mod
from workbench.provenance.merkle import GENESIS, node_hash
from workbench.provenance.store import Row


@dataclass
class VerifyReport:
    ok: bool = True
    records: int = 0
    signed_heads: int = 0
    last_signed_size: int = 0
    root_hash: str = ""
    first_bad_record: int | None = None
    problems: list[str] = field(default_factory=list)
    witnesses: int = 0  # listed in the space (0: the log is not witnessed)
    quorum: int = 0
    witnessed_size: int = 0  # records covered by a quorum of cosignatures
    awaiting_cosignatures: int = 0  # signed heads past witnessed_size, still within the grace

    @property
    def unsigned_tail(self) -> int:
        """Records not yet covered by a signed head (protected by the chain only)."""
        return max(0, self.records - self.last_signed_size)

    def fail(self, message: str, record: int | None = None) -> None:
        self.ok = False
        self.problems.append(message)
        if record is not None and self.first_bad_record is None:
            self.first_bad_record = record

    def summary(self) -> str:
        if self.ok:
            return (f"OK: {self.records} records, chain and tree intact, {self.signed_heads} "
                    f"signed head(s) match (last covers {self.last_signed_size}; "
                    f"{self.unsigned_tail} newer record(s) not yet signed); "
                    f"{self.witness_summary()}; root {self.root_hash}")
        where = f" first bad record: {self.first_bad_record};" if self.first_bad_record else ""
        return f"FAILED:{where} " + "; ".join(self.problems[:5])


    def witness_summary(self) -> str:
        if not self.witnesses:
            return "no witnesses listed: heads re-signed with the collector's key would pass"
        return (f"a quorum of {self.quorum} of {self.witnesses} witnesses cosigned the first "
                f"{self.witnessed_size} records ({self.awaiting_cosignatures} newer head(s) "
                "within the grace period)")


@dataclass(frozen=True)
class Witnessing:
    """What verify needs to require cosignatures: the space's list, the cosignatures found (the
    collector's file and any a witness handed over), and the time to measure the grace from."""

    listing: cosign.WitnessList
    cosignatures: list[dict]
    now: float


def _root(stack: list[bytes]) -> bytes:
    """RFC 9162 root from the subtree roots, largest first (the empty tree: SHA-256 of nothing)."""
    if not stack:
        return sha256(b"").digest()
    digest = stack[-1]
    for left in reversed(stack[:-1]):
        digest = node_hash(left, digest)
    return digest


def _valid_heads(report: VerifyReport, log_id: str, public: Ed25519PublicKey,
                 candidates: Iterable[dict]) -> dict[int, dict]:
    by_size: dict[int, dict] = {}
    for head in candidates:
        if "invalid_line" in head:
            report.fail(f"heads file line {head['invalid_line']} is not a tree head")
            continue
        if not heads_mod.head_signature_ok(public, head):
            report.fail(f"tree head at size {head.get('tree_size')} has a bad signature "
                        "(forged or signed by another key)")
            continue
        if head["log_id"] != log_id:
            report.fail(f"the store's log id {log_id} differs from the signed heads' "
                        f"{head['log_id']}: the database was replaced")
            continue
        size = int(head["tree_size"])
        if size in by_size and by_size[size]["root_hash"] != head["root_hash"]:
            report.fail(f"two signed heads disagree at size {size}")
        by_size[size] = head
    return by_size


def _diagnose_link(rows: Callable[[], Iterator[Row]], seq: int, link: bytes) -> tuple[str, int]:
    """A record whose stored link is not the previous record's hash: find what it points at."""
    for other, _prev, digest, _body in rows():
        if digest == link:
            if other < seq - 1:
                return (f"records {other + 1}..{seq - 1} were inserted between records {other} "
                        f"and {seq}", other + 1)
            if other > seq:
                return f"record {seq} was moved here from after record {other - 1}: reordered", seq
    return (f"record {seq} does not link to record {seq - 1}: the record it followed was "
            "deleted or records were reordered", seq)


def _listed_cosignatures(witnessing: Witnessing, log_id: str) -> dict[int, list[dict]]:
    """Cosignatures by a listed witness's key, for this log, by tree size. Others do not count
    (a removed witness, a rotated key, another space's log); they are not an alarm either."""
    by_size: dict[int, list[dict]] = {}
    for item in witnessing.cosignatures:
        public = witnessing.listing.witnesses.get(item.get("witness"))
        if public is None or item.get("log_id") != log_id \
                or not cosign.signature_ok(public, item):
            continue
        by_size.setdefault(item["tree_size"], []).append(item)
    return by_size


def _check_witnesses(report: VerifyReport, witnessing: Witnessing, signed: dict[int, dict],
                     roots: dict[int, bytes], cosigned: dict[int, list[dict]]) -> None:
    """A head counts as witnessed when a quorum of listed witnesses cosigned it or a later head
    whose root this pass recomputed from the same records (a later tree that verify rebuilt
    from these records contains the earlier one). Heads past the witnessed size may wait for
    their cosignatures for the grace period, measured from the time the collector signed them."""
    listing = witnessing.listing
    report.witnesses, report.quorum = len(listing.witnesses), listing.quorum
    reach: dict[str, int] = {}
    for size, items in sorted(cosigned.items()):
        for item in items:
            root = roots.get(size)
            if root is None or root.hex() != item["root_hash"]:
                report.fail(f"witness {item['witness']} cosigned the log at size {size} with "
                            "another root than these records give: the records it saw were "
                            "rewritten, or removed")
                return
            reach[item["witness"]] = max(reach.get(item["witness"], 0), size)
    reached = sorted(reach.values(), reverse=True)
    report.witnessed_size = reached[listing.quorum - 1] if len(reached) >= listing.quorum else 0
    late, deadline = [], witnessing.now - listing.grace_seconds
    for size, head in sorted(signed.items()):
        if size <= report.witnessed_size or size > report.records:
            continue
        try:
            signed_at = datetime.fromisoformat(head["timestamp"]).timestamp()
        except (KeyError, TypeError, ValueError):
            signed_at = float("-inf")
        if signed_at > witnessing.now + 300:  # five minutes of clock skew, no more
            report.fail(f"the head at size {size} claims to be signed in the future "
                        f"({head.get('timestamp')}): a head dated to wait out the grace period")
            return
        if signed_at < deadline:
            late.append((size, head))
        else:
            report.awaiting_cosignatures += 1
    if late:
        size, head = late[0]
        report.fail(f"{len(late)} signed head(s) older than the {listing.grace_seconds} s grace "
                    f"period lack cosignatures from a quorum of {listing.quorum} of the "
                    f"{len(listing.witnesses)} listed witnesses, the first at size {size} "
                    f"(signed {head.get('timestamp')}): the log was rewritten after the "
                    "witnesses saw it, or the witnesses have not been asked ('workbench "
                    "provenance cosign')")


def verify_rows(rows: Callable[[], Iterator[Row]], log_id: str, public: Ed25519PublicKey,
                heads: Iterable[dict], witnessing: Witnessing | None = None) -> VerifyReport:
    """``rows`` opens a fresh iteration over the stored records in seq order."""
    report = VerifyReport()
    signed = _valid_heads(report, log_id, public, heads)
    report.signed_heads = len(signed)
    cosigned = _listed_cosignatures(witnessing, log_id) if witnessing else {}
    marks = set(signed) | set(cosigned)  # sizes whose root the pass keeps
    roots: dict[int, bytes] = {}
    # the Merkle frontier is kept inline (one list of subtree roots): this loop is the cost of
    # verify, so it does one SHA-256 per record plus one per interior node and nothing else
    stack: list[bytes] = []
    prev, expected, leaf, node = GENESIS, 1, b"\x00", b"\x01"
    last_good_head, broken_link = 0, None
    iterator = rows()
    for seq, link, digest, body in iterator:
        if seq != expected:
            report.fail(f"record {expected} is missing (next stored record is {seq}): "
                        "records were deleted or renumbered", expected)
            break
        if link != prev:
            broken_link = (seq, link)
            break
        if sha256(leaf + link + body).digest() != digest:
            report.fail(f"record {seq}'s content does not match its hash: it was edited", seq)
            break
        merged, carry = digest, seq - 1  # a perfect subtree closes for each trailing 1 bit
        while carry & 1:
            merged = sha256(node + stack.pop() + merged).digest()
            carry >>= 1
        stack.append(merged)
        if seq in marks:
            roots[seq] = _root(stack)
            if seq in signed and roots[seq].hex() != signed[seq]["root_hash"]:
                report.fail(f"records {last_good_head + 1}..{seq} do not match the tree head "
                            f"signed at size {seq}: they were changed and re-hashed",
                            last_good_head + 1)
                break
            if seq in signed:
                last_good_head = seq
        prev, expected = digest, expected + 1
    if hasattr(iterator, "close"):  # end the pass first (PostgreSQL: one named cursor at a time)
        iterator.close()
    if broken_link:
        report.fail(*_diagnose_link(rows, *broken_link))
    report.records = expected - 1
    report.root_hash = _root(stack).hex()
    report.last_signed_size = last_good_head
    if report.ok:
        beyond = sorted(size for size in signed if size > report.records)
        if beyond:
            report.fail(f"a signed tree head covers {beyond[-1]} records but the store holds "
                        f"{report.records}: the log was truncated", report.records + 1)
    if report.ok and witnessing is not None:
        _check_witnesses(report, witnessing, signed, roots, cosigned)
    return report
