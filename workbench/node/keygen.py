"""Collective key generation among a space's holder nodes, driven by the coordinator.

``ensure_joint_key(space)`` (run as root by ``start_holder_nodes``, so by ``workbench demo``,
once the nodes answer) makes the space's BFV key the nodes' joint key, without a dealer
(``threshold.py``, ``node/keyshare.py``): a fresh public seed; every node commits to its public
key share; once all have committed, every node reveals it; the coordinator checks each share
against its commitment and sums them, and every node does the same itself and answers the digest
of the joint context it computed, which must be the coordinator's. Then ``keys.install_threshold``
puts the joint context into ``he/public.ctx`` (holders and the aggregator encrypt and add with
it, the release checker reads its record) in place of the space's simulated key from
``workbench init`` (whose shares it deletes), and ``he/threshold.json`` (0644) keeps
the public record: seed, parties, commitments, the joint context's digest. The release checker's
X25519 key (``he/checker-box.key``, 0600 the key holder account) is made first, for the nodes to
seal their partial decryptions to. The key parties and t are the signed policy's
(``secure.key_parties``, default every registered holder; ``secure.decryption_threshold``,
default all), and each node checks them against the policy it verifies itself. Idempotent: a
space whose record names the same parties and t is left alone; a changed set or t gets a new
joint key; a space of one node keeps the simulated key of ``workbench init``.
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


def _registered(space: Space) -> list[str]:
    """The space's registered holders (``he/holders.json``; none without one)."""
    from workbench.secure.signing import Registry

    return sorted(Registry.from_json(space.holder_registry.read_bytes()).keys) \
        if space.holder_registry.exists() else []


def key_status(space: Space, policy) -> dict:
    """The space's HE key as its public record states it (who holds shares, how many decrypt
    together) and whether it is the key the signed ``policy`` sets: after an admin changes
    ``secure:``, the nodes refuse every round (``threshold-policy``) until a key generation has
    made the new key. For the admin overview and ``workbench policy apply``."""
    from workbench.secure.threshold_local import SPACE_KEY
    from workbench.secure.threshold_node import key_set_mismatch

    record = current_record(space)
    if record is None:
        return {"available": False, "reason": f"no readable key record at {space.he / RECORD}"}
    parties, t = list(record.get("parties") or []), record.get("t")
    key = {"available": True, "parties": parties, "t": t, "keygen": record.get("keygen", ""),
           "scheme": record.get("scheme") or ("N-out-of-N" if t == len(parties)
                                              else f"{t}-out-of-{len(parties)}")}
    if record.get("simulated") == SPACE_KEY:
        return key | {"status": "simulated", "note": (
            "a space without holder nodes: one account (wb-gateway) keeps every share and plays "
            "the key parties; holder nodes keep their own shares (docs/nodes.md)")}
    try:
        mismatch = key_set_mismatch(policy, _registered(space), parties, t, "the space's key")
    except WorkbenchUserError as exc:  # the policy names a holder that is not registered
        mismatch = str(exc)
    if mismatch is None:
        return key | {"status": "in force", "note": "the key the signed policy sets"}
    return key | {"status": "re-key needed", "note": (
        f"{mismatch} Until 'workbench node keygen' (or the nodes' supervisor's next start) makes "
        "that key, the nodes refuse every decryption (threshold-policy).")}


def ensure_joint_key(space: Space, nodes: NodeSet | None = None,
                     policy_path=None) -> dict | None:
    """The space's joint BFV key among the key parties of the signed policy in force
    (``policy_path``, by default the space's ``policy/policy.yaml``): made now if missing or if
    the policy's key parties or threshold changed. Returns the public record, or None for fewer
    than 2 (or more than 32) key parties, which keep the space's simulated key
    (``threshold_local``). t comes from the policy's ``secure.decryption_threshold`` (default
    'all': every key party is needed, N-out-of-N); below N, any t nodes decrypt (Shamir
    re-sharing after the key generation, ``threshold_shamir.py``). Every node checks the key
    parties and t it is asked for against the same signed policy, so the coordinator cannot
    choose them."""
    doc, parties, want = _policy_key_set(space, policy_path)
    record = current_record(space)
    public = load_public(space)
    if record and record.get("parties") == parties and public.threshold \
            and not record.get("simulated") \
            and public.threshold.get("keygen") == record.get("keygen") \
            and record.get("t", len(parties)) == want:
        return record
    if not 2 <= len(parties) <= th.MAX_PARTIES:
        # one node alone could decrypt by itself, and nothing is released from fewer than two
        # holders anyway; more than 32 is beyond the parameters' noise budget
        return None
    absent = sorted(set(parties) - set(key_parties(space)))
    if absent:
        raise WorkbenchUserError(f"holder {absent[0]} is a key party of the signed policy but "
                                 "has no node: enroll it ('workbench node enroll') or name the "
                                 "key parties in secure.key_parties.", reason="threshold-policy")
    owner = accounts.ensure_user(accounts.KEYHOLDER) if accounts.is_root() else None
    create_box_key(space.he, owner)
    own = nodes is None
    nodes = nodes or NodeSet.for_space(space)
    try:
        record = _generate(nodes, parties, want, doc)
        if want < len(parties):
            _reshare(nodes, record, want, doc)
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


def _policy_key_set(space: Space, policy_path) -> tuple[dict, list[str], int]:
    """(signed policy document, key parties, t) of the policy in force, verified here as the
    nodes will verify it: an unsigned or altered policy makes no key."""
    from workbench.policy.loader import parse_policy
    from workbench.policy.signed import load_admin_keys, read_signed, verify_policy

    path = policy_path or space.policy
    try:
        text, signature = read_signed(path)
    except OSError:
        raise WorkbenchUserError(f"no signed policy at {path}: the key parties and the "
                                 "decryption threshold come from it ('workbench policy "
                                 "apply').", reason="threshold-policy") from None
    verify_policy(text, signature, load_admin_keys(space))
    policy = parse_policy(text.decode(), str(path))
    parties, t = policy.secure.key_set(_registered(space))
    return {"text": text.decode(), "signature": signature}, parties, t


def _generate(nodes: NodeSet, parties: list[str], t: int, policy: dict) -> dict:
    import base64

    keygen, seed = uuid.uuid4().hex, os.urandom(32)
    committed = nodes.keygen("commit", {"keygen": keygen, "seed": seed.hex(),
                                        "parties": parties, "t": t, "policy": policy}, parties)
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


def _reshare(nodes: NodeSet, record: dict, t: int, policy: dict) -> None:
    """t-out-of-N: every node deals Shamir pieces of its additive share, each sealed to its
    recipient's box key and signed by the dealer; the coordinator only relays them."""
    parties, keygen = record["parties"], record["keygen"]
    dealt = nodes.keygen("deal", {"keygen": keygen, "t": t, "boxes": record.pop("boxes"),
                                  "policy": policy}, parties)
    for holder in parties:
        pieces = {dealer: dealt[dealer]["pieces"][holder] for dealer in parties}
        nodes.keygen("receive", {"keygen": keygen, "t": t, "pieces": pieces, "policy": policy},
                     [holder])
