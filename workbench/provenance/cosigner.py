"""The central side of witnessing: ask each listed witness to cosign the newest signed tree head,
with the RFC 9162 consistency proof from the last head it cosigned, and keep the cosignatures
with the heads (DATA_DIR/provenance/cosignatures.jsonl, appended and fsynced).

It runs beside the collector, as root or the collector's account, and reads the store read-only
(``workbench provenance cosign [--every SECONDS]``), so the collector's write path is untouched
and a witness that is slow or down delays nothing but its own cosignature. A witness is reached
through a ``WitnessClient`` (cosign.py): here a Unix socket (``unix:PATH`` in the witness list,
served by ``workbench provenance witness serve``); a holder node's mTLS endpoint plugs in as
another scheme in ``CLIENTS``.

Cost: a proof needs the old tree's perfect-subtree roots and the leaves added since. The
cosigner keeps the former for every size a witness stands at, so a round reads and hashes only
the new records; only its first round (or a witness far behind) reads the whole log once.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.provenance import cosign, heads, merkle
from workbench.provenance.cosign import WitnessClient, WitnessRefused
from workbench.provenance.reader import ProvenanceReader


class WitnessUnreachable(WorkbenchError):
    """No answer, or an answer that is not a reply, from a witness's endpoint."""


class SocketWitnessClient:
    """A witness on this machine, answering on a Unix socket (one request per connection)."""

    def __init__(self, path: str | os.PathLike, timeout: float = 10.0):
        self.path, self.timeout = Path(path), timeout

    def cosign(self, head: dict, proof: list[bytes], old_size: int | None = None) -> dict:
        request = json.dumps({"head": head, "proof": [node.hex() for node in proof],
                              "old_size": old_size}).encode() + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(str(self.path))
                conn.sendall(request)
                with conn.makefile("rb") as stream:
                    reply = json.loads(stream.readline(1 << 20))
        except (OSError, ValueError) as exc:
            raise WitnessUnreachable(f"no answer at {self.path} ({type(exc).__name__})") from None
        if not isinstance(reply, dict):
            raise WitnessUnreachable(f"the answer at {self.path} is not a reply")
        if not reply.get("ok"):
            raise WitnessRefused(str(reply.get("reason")), str(reply.get("message"))[:500],
                                 reply.get("size") if type(reply.get("size")) is int else None)
        return reply.get("cosignature")


def _node_client(address: str, space) -> WitnessClient:
    from workbench.node.client import NodeWitnessClient

    return NodeWitnessClient(space, address)


# endpoint scheme -> client(address, space): "unix:PATH" a local witness, "node:HOLDER" a holder
# node's witness endpoint over mTLS (workbench/node)
CLIENTS: dict[str, Callable[[str, object], WitnessClient]] = {
    "unix": lambda address, _space: SocketWitnessClient(address), "node": _node_client}


def clients_for(listing: cosign.WitnessList, space=None) -> dict[str, WitnessClient]:
    """A client for every listed witness with an endpoint the cosigner knows how to reach."""
    clients = {}
    for name, endpoint in listing.endpoints.items():
        scheme, _, address = endpoint.partition(":")
        if scheme in CLIENTS:
            clients[name] = CLIENTS[scheme](address, space)
    return clients


@dataclass
class RoundResult:
    head: dict | None = None
    cosigned: dict[str, dict] = field(default_factory=dict)
    refused: dict[str, WitnessRefused] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        if self.head is None:
            return ["no signed tree head yet: nothing to cosign"]
        size = self.head["tree_size"]
        out = [f"witness {name} cosigned the head at size {size}" for name in self.cosigned]
        out += [f"ALARM: witness {name} refused the head at size {size} ({exc.reason}): {exc}"
                for name, exc in self.refused.items()]
        out += [f"witness {name} not reached: {why}" for name, why in self.unreachable.items()]
        return out


class Cosigner:
    def __init__(self, reader: ProvenanceReader, listing: cosign.WitnessList):
        self.reader, self.listing = reader, listing
        self.store_path = cosign.cosignatures_path(reader.space)
        self.subtrees: dict[int, list[bytes]] = {}  # tree size -> its perfect-subtree roots
        self.last: dict[str, tuple[int, str]] = {}  # witness -> (size, root) it last cosigned
        for item in cosign.read_jsonl(self.store_path):
            if self._valid(item):
                known = self.last.get(item["witness"], (0, ""))
                if item["tree_size"] >= known[0]:
                    self.last[item["witness"]] = (item["tree_size"], item["root_hash"])

    def _valid(self, item: dict, head: dict | None = None) -> bool:
        public = self.listing.witnesses.get(item.get("witness")) if isinstance(item, dict) \
            else None
        if public is None or not cosign.signature_ok(public, item):
            return False
        if item["log_id"] != self.reader.store.log_id:
            return False
        return head is None or (item["tree_size"], item["root_hash"]) == \
            (head["tree_size"], head["root_hash"])

    def newest_head(self) -> dict | None:
        public, log_id = self.reader.public_key(), self.reader.store.log_id
        valid = [h for h in self.reader.heads() if h.get("log_id") == log_id
                 and heads.head_signature_ok(public, h)]
        return max(valid, key=lambda h: h["tree_size"], default=None)

    def _frontier(self, size: int) -> merkle.Frontier:
        if size in self.subtrees:
            return merkle.Frontier.at(size, self.subtrees[size])
        frontier = merkle.Frontier()
        hashes = self.reader.store.hashes()
        try:
            for digest in islice(hashes, size):
                frontier.append(digest)
        finally:
            hashes.close()  # PostgreSQL: one named cursor at a time
        if frontier.size != size:
            raise WorkbenchError(f"the store holds {frontier.size} records, fewer than {size}")
        self.subtrees[size] = frontier.subtrees()
        return frontier

    def proof(self, old_size: int, head: dict) -> list[bytes]:
        """PROOF(old_size, D[size]) for ``head``; empty when there is nothing to prove from (the
        witness's first head) or nothing can be (a log now shorter: the witness refuses it)."""
        size = head["tree_size"]
        if old_size == 0 or old_size >= size:
            return []
        frontier = self._frontier(old_size)
        rows = self.reader.store.rows(start=old_size + 1)
        try:
            added = [digest for _seq, _prev, digest, _body in islice(rows, size - old_size)]
        finally:
            rows.close()
        proof = merkle.consistency_proof_from(old_size, frontier.subtrees(), added)
        for digest in added:
            frontier.append(digest)
        if frontier.size == size and frontier.root().hex() == head["root_hash"]:
            self.subtrees[size] = frontier.subtrees()  # the next round starts from here
        return proof

    def ask(self, name: str, client: WitnessClient, head: dict) -> dict:
        """One witness: the proof from where we believe it stands; if it stands elsewhere (a
        cosignature lost on the way back), once more from where it says it stands."""
        old_size = self.last.get(name, (0, ""))[0]
        try:
            return client.cosign(head, self.proof(old_size, head), old_size)
        except WitnessRefused as refusal:
            if refusal.reason != "stale-proof" or refusal.size in (None, old_size):
                raise
            return client.cosign(head, self.proof(refusal.size, head), refusal.size)

    def round(self, clients: Mapping[str, WitnessClient] | None = None) -> RoundResult:
        """Ask every witness (default: every listed one with an endpoint) to cosign the newest
        head, unless it already did; keep each valid cosignature."""
        result = RoundResult(head=self.newest_head())
        head = result.head
        if head is None:
            return result
        if clients is None:
            clients = clients_for(self.listing, self.reader.space)
            for name, endpoint in self.listing.endpoints.items():
                if name not in clients:
                    result.unreachable[name] = f"no client for endpoint {endpoint[:80]!r}"
        for name, client in clients.items():
            if self.last.get(name) == (head["tree_size"], head["root_hash"]):
                continue
            try:
                cosignature = self.ask(name, client, head)
            except WitnessRefused as refusal:
                result.refused[name] = refusal
                continue
            except (WitnessUnreachable, OSError) as exc:
                result.unreachable[name] = str(exc)
                continue
            if not self._valid(cosignature, head) or cosignature.get("witness") != name:
                result.unreachable[name] = "its answer is not a valid cosignature of this head"
                continue
            cosign.append_jsonl(self.store_path, cosignature)
            self._keep_with_owner()
            self.last[name] = (head["tree_size"], head["root_hash"])
            result.cosigned[name] = cosignature
        standing = {size for size, _ in self.last.values()} | {head["tree_size"]}
        self.subtrees = {s: t for s, t in self.subtrees.items() if s in standing}
        return result

    def _keep_with_owner(self) -> None:
        """Run as root, the file still belongs to the collector's account like its directory."""
        if os.geteuid() == 0:
            owner = self.store_path.parent.stat()
            os.chown(self.store_path, owner.st_uid, owner.st_gid)
