"""A holder node's share of the space's joint BFV key, and its side of key generation.

Collective key generation without a dealer (``threshold.py``; driven by ``node/keygen.py`` over
the coordinator's mTLS channel), in three steps a node answers in order:

1. ``commit``: the node draws its ternary share s_i (SEAL's sampler) for the public seed, keeps it
   in ``threshold/pending.key`` (0600, its own account, in its own 0700 directory) and answers
   only a commitment to its public share p_i = -a s_i + e_i;
2. ``reveal``: given every party's commitment (its own among them, unchanged), it answers p_i;
3. ``finish``: given every public share, it checks each against the commitment it saw before any
   was revealed (no rogue key), sums them itself into the joint public key and keeps the joint
   context it will encrypt with (``threshold/joint.ctx``); the pending share becomes its share.

For t-out-of-N (``threshold_shamir.py``) two more steps follow: ``deal`` (the node re-shares
its additive share with Shamir's scheme, one piece per party, each sealed to that party's X25519
key, which the party published at commit and signed with its round-signing key, and each piece
signed by the dealer) and ``receive`` (it checks every dealer's signature, opens its pieces,
keeps their sum F(j) as ``threshold/shamir.key`` and deletes its additive share).

A commit, a deal and a receive carry the admin-signed policy: the server verifies it and the node
refuses key parties or a t other than its ``secure:`` settings (``threshold-policy``), so the
coordinator does not choose who can decrypt together. A node never sends its share; a new key
generation replaces the share only when it finishes. Until then the node refuses partials under
its old key whenever the policy's key parties or t no longer match it (a newly registered
holder, a signed change of t: ``server.py``), failing closed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from workbench.errors import WorkbenchUserError
from workbench.secure import threshold as th
from workbench.secure import threshold_shamir as sh
from workbench.secure import wire
from workbench.secure.keys import write_key_file
from workbench.secure.signing import HOLDER_NAME

KEYGEN_ID = re.compile(r"^[0-9a-f]{32}$")


def _signed(kind: str, *fields) -> bytes:
    return hashlib.sha256(json.dumps([f"workbench-threshold-{kind}-v1", *fields],
                                     separators=(",", ":")).encode()).digest()


def _refuse(message: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"Key generation refused: {message}", reason="keygen-refused")


class KeyShare:
    """The node's threshold state in ``<node dir>/threshold`` (0700, the node's account)."""

    def __init__(self, root: Path, holder: str, signer=None, verify_keys=None):
        """``signer``: the node's round-signing key (signs its box key and its pieces);
        ``verify_keys()``: the holders' registered verify keys (``he/holders.json``)."""
        self.dir, self.holder = Path(root) / "threshold", holder
        self.signer, self.verify_keys = signer, verify_keys
        self._lock = threading.Lock()
        self.party: th.Party | None = None
        self.shamir: sh.ShamirParty | None = None  # with t-out-of-N, instead of ``party``
        self.joint: bytes | None = None  # the joint TenSEAL context (public)
        self.record: dict | None = None
        if (self.dir / "joint.ctx").exists():
            self.joint = (self.dir / "joint.ctx").read_bytes()
            self.record = json.loads((self.dir / "joint.json").read_text())
            if (self.dir / "shamir.key").exists():
                self.shamir = _load_shamir((self.dir / "shamir.key").read_bytes())
            else:
                self.party = th.Party.from_share_bytes((self.dir / "share.key").read_bytes())

    def _write(self, name: str, data: bytes) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        write_key_file(self.dir / name, data, 0o600, None)

    def _read_pending(self) -> dict | None:
        try:
            return json.loads((self.dir / "pending.json").read_text())
        except (OSError, ValueError):
            return None

    def _pending(self, keygen) -> dict:
        pending = self._read_pending()
        if pending is None:
            raise _refuse("no key generation is pending at this node; start with commit.")
        if pending.get("keygen") != keygen:
            raise _refuse("the request is for another key generation than the pending one.")
        return pending

    def step(self, step: str, body: dict, policy_check=None) -> dict:
        """``policy_check(parties, t, what)``: refuses key parties or a t other than the signed
        policy's (the server verifies the policy the request carries); asked before a commit,
        a deal and a receive, the steps that fix who holds shares and how many decrypt."""
        with self._lock:
            if step in ("commit", "deal", "receive") and policy_check is None:
                raise _refuse("the request carries no signed policy to take t from.")
            if step == "commit":
                policy_check(body.get("parties"), body.get("t"), "the key generation asked for")
                return self._commit(body)
            if step == "reveal":
                return self._reveal(body)
            if step == "finish":
                return self._finish(body)
            if step in ("deal", "receive"):
                record = self._active(body.get("keygen"))
                policy_check(record["parties"], body.get("t"), "the re-sharing asked for")
                return self._deal(body) if step == "deal" else self._receive(body)
            if step == "status":
                return {"holder": self.holder, "keygen": (self.record or {}).get("keygen"),
                        "joint_sha256": (self.record or {}).get("joint_sha256")}
        raise WorkbenchUserError(f"unknown key generation step {step[:20]!r}.",
                                 reason="bad-request")

    def _commit(self, body: dict) -> dict:
        keygen, seed, parties = body.get("keygen"), body.get("seed"), body.get("parties")
        if not isinstance(keygen, str) or not KEYGEN_ID.match(keygen) \
                or not isinstance(seed, str) or not re.fullmatch(r"[0-9a-f]{64}", seed):
            raise _refuse("a commit names a key generation id and a 32-byte seed (hex).")
        if not isinstance(parties, list) or parties != sorted(set(parties)) \
                or not all(isinstance(p, str) and HOLDER_NAME.match(p) for p in parties) \
                or not 2 <= len(parties) <= th.MAX_PARTIES or self.holder not in parties:
            raise _refuse(f"the parties must be 2 to {th.MAX_PARTIES} distinct holders, sorted, "
                          "this node among them.")
        pending = self._read_pending()
        if pending is not None and pending.get("keygen") == keygen:
            # the same commit again (a retry) gets the same answer: no second share is drawn
            if (pending["seed"], pending["parties"], pending.get("t")) == (seed, parties,
                                                                           body.get("t")):
                return {"holder": self.holder, "commitment": pending["commitment"]}
            raise _refuse("this key generation was already committed with another seed or "
                          "parties.")
        party, public_share = th.Party.generate(bytes.fromhex(seed))
        commitment = th.commitment(public_share)
        box = PrivateKey.generate()  # receives this node's Shamir pieces, if t < N
        box_pub = base64.b64encode(bytes(box.public_key)).decode()
        box_signature = base64.b64encode(self.signer.key.sign(
            _signed("box", keygen, self.holder, box_pub)).signature).decode() \
            if self.signer else None
        self._write("pending.key", party.share_bytes())
        self._write("pending-box.key", bytes(box))
        self._write("pending.json", json.dumps({
            "keygen": keygen, "seed": seed, "parties": parties, "t": body.get("t"),
            "commitment": commitment,
            "public_share": base64.b64encode(public_share).decode(), "phase": "committed",
            "box": box_pub, "box_signature": box_signature}).encode())
        return {"holder": self.holder, "commitment": commitment, "box": box_pub,
                "box_signature": box_signature}

    def _reveal(self, body: dict) -> dict:
        pending = self._pending(body.get("keygen"))
        commitments = body.get("commitments")
        if not isinstance(commitments, dict) or sorted(commitments) != pending["parties"] \
                or commitments.get(self.holder) != pending["commitment"] \
                or not all(isinstance(c, str) and re.fullmatch(r"[0-9a-f]{64}", c)
                           for c in commitments.values()):
            raise _refuse("a reveal needs every party's commitment, this node's own unchanged.")
        if pending.get("commitments") not in (None, commitments):
            raise _refuse("the commitments differ from those this node revealed against.")
        pending |= {"commitments": commitments, "phase": "revealed"}
        self._write("pending.json", json.dumps(pending).encode())
        return {"holder": self.holder, "public_share": pending["public_share"]}

    def _finish(self, body: dict) -> dict:
        pending = self._pending(body.get("keygen"))
        shares = body.get("public_shares")
        if pending.get("phase") != "revealed":
            raise _refuse("this node has not revealed its public share yet.")
        parties = pending["parties"]
        if not isinstance(shares, dict) or sorted(shares) != parties \
                or shares.get(self.holder) != pending["public_share"]:
            raise _refuse("finishing needs every party's public share, this node's own "
                          "unchanged.")
        try:
            public = [base64.b64decode(shares[p], validate=True) for p in parties]
        except (ValueError, TypeError):
            raise _refuse("a public share is not base64.") from None
        # each p_i must match the commitment this node saw before any share was revealed
        joint_key = th.joint_public_key(bytes.fromhex(pending["seed"]), public,
                                        [pending["commitments"][p] for p in parties])
        joint = th.tenseal_context(joint_key)
        record = {"keygen": pending["keygen"], "parties": parties,
                  "joint_sha256": hashlib.sha256(joint).hexdigest(),
                  "parameters": th.FINGERPRINT}
        self._write("joint.ctx", joint)
        os.replace(self.dir / "pending.key", self.dir / "share.key")
        os.replace(self.dir / "pending-box.key", self.dir / "box.key")
        (self.dir / "shamir.key").unlink(missing_ok=True)
        record["t"] = len(parties)
        self._write("joint.json", json.dumps(record).encode())
        (self.dir / "pending.json").unlink()
        self.party = th.Party.from_share_bytes((self.dir / "share.key").read_bytes())
        self.joint, self.record, self.shamir = joint, record, None
        return {"holder": self.holder, "joint_sha256": record["joint_sha256"]}

    # -- t-out-of-N: re-sharing the additive share with Shamir's scheme --------------------------
    def _active(self, keygen) -> dict:
        if self.record is None or self.record.get("keygen") != keygen:
            raise _refuse("the request is for another key generation than this node's key.")
        return self.record

    def _deal(self, body: dict) -> dict:
        record = self._active(body.get("keygen"))
        parties, t, boxes = record["parties"], body.get("t"), body.get("boxes")
        if self.party is None or record.get("dealt"):
            raise _refuse("this node has already re-shared its share.")
        if not isinstance(t, int) or not 2 <= t < len(parties) or not isinstance(boxes, dict) \
                or sorted(boxes) != parties:
            raise _refuse("dealing needs 2 <= t < N and every party's box key.")
        keys = self.verify_keys()
        sealed = {}
        for holder in parties:  # a box key the coordinator made up would let it read a piece
            entry = boxes[holder] if isinstance(boxes[holder], dict) else {}
            try:
                keys[holder].verify(_signed("box", record["keygen"], holder, entry.get("box")),
                                    base64.b64decode(entry.get("signature") or "", validate=True))
                sealed[holder] = SealedBox(PublicKey(base64.b64decode(entry["box"])))
            except (KeyError, BadSignatureError, ValueError, TypeError, CryptoError):
                raise _refuse(f"the box key of {holder} is not signed by it.") from None
        ids = {h: i for i, h in enumerate(parties, start=1)}
        pieces = sh.deal(self.party, ids[self.holder], list(ids.values()), t)
        out = {}
        for holder in parties:
            box = sealed[holder].encrypt(pieces[ids[holder]])
            digest = hashlib.sha256(box).hexdigest()
            out[holder] = {"box": base64.b64encode(box).decode(),
                           "signature": base64.b64encode(self.signer.key.sign(_signed(
                               "piece", record["keygen"], self.holder, holder, t, digest)
                           ).signature).decode()}
        record["dealt"] = t
        self._write("joint.json", json.dumps(record).encode())
        return {"holder": self.holder, "pieces": out}

    def _receive(self, body: dict) -> dict:
        record = self._active(body.get("keygen"))
        parties, t, pieces = record["parties"], body.get("t"), body.get("pieces")
        if record.get("dealt") != t or not isinstance(pieces, dict) or sorted(pieces) != parties:
            raise _refuse("receiving needs one piece from every party, for the t this node "
                          "dealt with.")
        keys, box_key = self.verify_keys(), PrivateKey((self.dir / "box.key").read_bytes())
        opened = []
        for dealer in parties:
            entry = pieces[dealer] if isinstance(pieces[dealer], dict) else {}
            try:
                box = base64.b64decode(entry.get("box") or "", validate=True)
                keys[dealer].verify(_signed("piece", record["keygen"], dealer, self.holder, t,
                                            hashlib.sha256(box).hexdigest()),
                                    base64.b64decode(entry.get("signature") or "",
                                                     validate=True))
                opened.append(SealedBox(box_key).decrypt(box))
            except (KeyError, BadSignatureError, ValueError, TypeError, CryptoError):
                raise _refuse(f"the piece from {dealer} is not signed by it or not sealed to "
                              "this node.") from None
        index = parties.index(self.holder) + 1
        shamir = sh.ShamirParty.receive(index, opened)
        if shamir.t != t or shamir.parties != tuple(range(1, len(parties) + 1)):
            raise _refuse("the pieces were dealt for another t or set of parties.")
        self._write("shamir.key", _shamir_bytes(shamir))
        (self.dir / "share.key").unlink()  # the additive share is no longer needed: dropped
        record["t"] = t
        self._write("joint.json", json.dumps(record).encode())
        self.shamir, self.party, self.record = shamir, None, record
        return {"holder": self.holder, "t": t}


def _shamir_bytes(party: sh.ShamirParty) -> bytes:
    return wire.encode({"kind": "threshold-shamir-share", "parameters": th.FINGERPRINT,
                        "index": party.index, "t": party.t, "parties": list(party.parties)},
                       [np.ascontiguousarray(party.share, dtype="<u4").tobytes()])


def _load_shamir(data: bytes) -> sh.ShamirParty:
    header, blobs = wire.decode(data)
    share = np.frombuffer(blobs[0], dtype="<u4").reshape(len(th.DATA_PRIMES), th.POLY_DEGREE)
    if header.get("kind") != "threshold-shamir-share" or (share >= th._PRIMES).any():  # noqa: SLF001
        raise th.ThresholdError("not a Shamir key share for these parameters")
    return sh.ShamirParty(int(header["index"]), int(header["t"]), tuple(header["parties"]),
                          share.astype(np.int64))
