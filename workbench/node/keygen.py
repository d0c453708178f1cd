"""Collective key generation among a space's holder nodes, driven by the coordinator.

``ensure_joint_key(space)`` (run as root by ``start_holder_nodes``, so by ``workbench demo``,
once the nodes answer) makes the space's BFV key the nodes' joint key, without a dealer
(``threshold.py``, ``node/keyshare.py``): a fresh public seed; every node commits to its public
key share; once all have committed, every node reveals it; the coordinator checks each share
against its commitment and sums them, and every node does the same itself and answers the digest
of the joint context it computed, which must be the coordinator's. Then ``keys.install_threshold``
puts the joint context into ``he/public.ctx`` (holders and the aggregator encrypt and add with
it) and leaves ``he/secret.ctx`` with the CKKS key only, and ``he/threshold.json`` (0644) keeps
the public record: seed, parties, commitments, the joint context's digest. The release checker's
X25519 key (``he/checker-box.key``, 0600 the key holder account) is made first, for the nodes to
seal their partial decryptions to. Idempotent: a space whose record names the same parties is
left alone; a changed set of nodes gets a new joint key; a space of one node keeps the single
key.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.node.client import NodeSet
from workbench.paths import Space
from workbench.secure import threshold as th
from workbench.secure.keys import install_threshold, load_public, write_key_file
from workbench.secure.threshold_node import RECORD, create_box_key


def key_parties(space: Space) -> list[str]:
    return sorted(p.name for p in space.nodes.iterdir() if (p / "node.json").exists()) \
        if space.nodes.is_dir() else []


def current_record(space: Space) -> dict | None:
    try:
        return json.loads((space.he / RECORD).read_text())
    except (OSError, ValueError):
        return None


def ensure_joint_key(space: Space, nodes: NodeSet | None = None,
                     t: int | None = None) -> dict | None:
    """The space's joint BFV key among its enrolled nodes (made now if missing); returns the
    public record, or None for a space with fewer than 2 (or more than 32) nodes, which keeps
    the single key. ``t``: any t of the N nodes decrypt (Shamir re-sharing after the key
    generation, ``threshold_shamir.py``); by default every node is needed (N-out-of-N)."""
    parties = key_parties(space)
    record = current_record(space)
    public = load_public(space)
    want = t if t is not None and t < len(parties) else len(parties)
    if record and record.get("parties") == parties and public.threshold \
            and public.threshold.get("keygen") == record.get("keygen") \
            and record.get("t", len(parties)) == want:
        return record
    if not 2 <= len(parties) <= th.MAX_PARTIES:
        # one node alone could decrypt by itself, and nothing is released from fewer than two
        # holders anyway; more than 32 is beyond the parameters' noise budget: single key
        return None
    owner = accounts.ensure_user(accounts.KEYHOLDER) if accounts.is_root() else None
    create_box_key(space.he, owner)
    own = nodes is None
    nodes = nodes or NodeSet.for_space(space)
    try:
        record = _generate(nodes, parties)
        if want < len(parties):
            _reshare(nodes, record, want)
    finally:
        if own:
            nodes.close()
    joint = record.pop("joint_context")
    record.pop("boxes", None)  # public, but only the re-sharing needed them
    record["t"] = want
    install_threshold(space, joint, {k: record[k] for k in ("keygen", "parties", "t",
                                                            "joint_sha256", "parameters")})
    write_key_file(space.he / RECORD, json.dumps(record, indent=1).encode() + b"\n", 0o644,
                   None)
    return record


def _generate(nodes: NodeSet, parties: list[str]) -> dict:
    import base64

    keygen, seed = uuid.uuid4().hex, os.urandom(32)
    committed = nodes.keygen("commit", {"keygen": keygen, "seed": seed.hex(),
                                        "parties": parties}, parties)
    boxes = {h: {"box": committed[h].get("box"), "signature": committed[h].get("box_signature")}
             for h in parties}
    commitments = {h: committed[h]["commitment"] for h in parties}
    revealed = nodes.keygen("reveal", {"keygen": keygen, "commitments": commitments}, parties)
    shares = {h: revealed[h]["public_share"] for h in parties}
    # the coordinator sums the public shares too (each checked against its commitment), and
    # every node must have computed the same joint context
    joint = th.tenseal_context(th.joint_public_key(
        seed, [base64.b64decode(shares[h]) for h in parties],
        [commitments[h] for h in parties]))
    digest = hashlib.sha256(joint).hexdigest()
    finished = nodes.keygen("finish", {"keygen": keygen, "public_shares": shares}, parties)
    wrong = [h for h in parties if finished[h].get("joint_sha256") != digest]
    if wrong:
        raise WorkbenchUserError(f"holder {wrong[0]} computed another joint key; the space keeps "
                                 "its old key.", reason="keygen-refused")
    return {"keygen": keygen, "scheme": "N-out-of-N", "seed": seed.hex(), "parties": parties,
            "commitments": commitments, "joint_sha256": digest, "parameters": th.FINGERPRINT,
            "flood_bits": th.FLOOD_BITS, "joint_context": joint, "boxes": boxes}


def _reshare(nodes: NodeSet, record: dict, t: int) -> None:
    """t-out-of-N: every node deals Shamir pieces of its additive share, each sealed to its
    recipient's box key and signed by the dealer; the coordinator only relays them."""
    parties, keygen = record["parties"], record["keygen"]
    dealt = nodes.keygen("deal", {"keygen": keygen, "t": t, "boxes": record.pop("boxes")},
                         parties)
    for holder in parties:
        pieces = {dealer: dealt[dealer]["pieces"][holder] for dealer in parties}
        nodes.keygen("receive", {"keygen": keygen, "t": t, "pieces": pieces}, [holder])
