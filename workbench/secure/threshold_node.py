"""Threshold decryption between the holder nodes and the release checker (issue 17).

After collective key generation (``threshold.py``; driven over the nodes' mTLS channels by
``node/keygen.py``) the space's BFV public context is the joint key: no process holds its secret.
For each round, every key party (holder node) is asked for its partial decryption of the pooled
BFV ciphertexts. ``partial_for_round`` is what a node runs before it answers: it verifies every
contribution's signature against the space's holder registry, requires at least ``min_holders``
distinct signers, RECOMPUTES their homomorphic sum itself (so no coordinator can get one holder's
contribution, or anything but this round's sum, partially decrypted), refuses a target that is
not that sum, marks the nonce used, and only then partially decrypts (with ``threshold.py``'s
40-bit flooding). The partials are sealed (libsodium sealed box, X25519) to the release checker's
key, so the gateway and the aggregator, which relay them, cannot combine them: the plaintext
appears only in the checker (``open_and_combine``), which then checks MACs and release rules.

Sums are compared as canonical SEAL bytes (coefficient residues, compression off): the node's
NumPy sum and the aggregator's SEAL additions give the same residues, so the same digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from workbench.errors import WorkbenchUserError
from workbench.secure import ops, signing, tensealproto, wire
from workbench.secure import threshold as th
from workbench.secure import threshold_seal as sealio

PARTIAL_DOMAIN = "workbench-threshold-partial-v1"
BOX_KEY, BOX_PUB = "checker-box.key", "checker-box.pub"  # in he/, beside release.key / .pub
RECORD = "threshold.json"  # he/threshold.json: the public record of the key generation


def refuse(reason: str, message: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"Partial decryption refused ({reason}): {message}", reason=reason)


def vector_residues(blob: bytes) -> np.ndarray:
    """(c0, c1) residues, shape (2, primes, N), of a serialized one-ciphertext BFVVector at
    the joint key's parameters, validated as SEAL's ``load`` validates it (fresh level,
    coefficient form, every residue reduced, the context's parameters:
    ``threshold.ciphertext_residues``)."""
    try:
        cts = tensealproto.vector_ciphertexts(blob)
        if len(cts) != 1:
            raise ValueError("not one ciphertext")
        return th.ciphertext_residues(cts[0])
    except (ValueError, th.ThresholdError, sealio.SealFormatError):
        raise refuse("malformed-ciphertext", "a contribution is not one BFV ciphertext under "
                                             "the space's joint parameters.") from None


def canonical(polys: np.ndarray) -> bytes:
    return th.canonical_bytes(polys)


def digest(data: bytes) -> str:
    return th._digest(data)  # noqa: SLF001 - SHA-256, remembered per bytes object


_POOLED: OrderedDict[tuple, list[bytes]] = OrderedDict()
_POOLED_LOCK = threading.Lock()
_POOLED_KEEP = 2  # sums of the last two sets of contributions (a round's: ~11 MB for Cox d=5)


def pooled(per_part: list[list[bytes]]) -> list[bytes]:
    """The canonical SEAL bytes of the sum, ciphertext by ciphertext, of the parts' BFV
    ciphertexts (each part a list of serialized BFVVectors, all of one layout).

    The sum is a function of the contributions' exact bytes, so it is remembered under their
    SHA-256 digests (the digests every caller checks against the signed ones anyway): in one
    process, the simulated key parties of ``threshold_local`` each get the very sum the first
    one computed from the same bytes; every party still checks the signatures, the digests and
    that the sum's digest is the one asked for."""
    if not per_part or len({len(p) for p in per_part}) != 1:
        raise refuse("malformed-message", "the contributions do not share one layout.")
    key = tuple(tuple(digest(b) for b in part) for part in per_part)
    with _POOLED_LOCK:
        hit = _POOLED.get(key)
        if hit is not None:
            _POOLED.move_to_end(key)
            return list(hit)
    out = []
    for index in range(len(per_part[0])):
        total = np.zeros((2, len(th.DATA_PRIMES), th.POLY_DEGREE), dtype=np.int64)
        for part in per_part:
            total += vector_residues(part[index])
        # residues < 2^31: int64 holds the sum of up to 2^32 of them before the one reduction
        out.append(canonical(total % th._PRIMES))  # noqa: SLF001
    with _POOLED_LOCK:
        _POOLED[key] = out
        while len(_POOLED) > _POOLED_KEEP:
            _POOLED.popitem(last=False)
    return list(out)


def pooled_from_sum(blobs: list[bytes]) -> list[bytes]:
    """Canonical bytes of an aggregate the aggregator sent (one BFVVector per ciphertext)."""
    return [canonical(vector_residues(b)) for b in blobs]


def _signed(holder: str, nonce: str, kind: str, spec_hash: str, aggregates: list[str],
            box_sha256: str, present: list[str] | None) -> bytes:
    message = json.dumps([PARTIAL_DOMAIN, holder, nonce, kind, spec_hash, aggregates,
                          box_sha256, present], separators=(",", ":"))
    return hashlib.sha256(message.encode()).digest()


def partial_for_round(party, signer, checker_public: bytes, registry, *,
                      fingerprint: str, kind: str, spec: dict, nonce: str,
                      parts: list[dict], blobs: list[bytes], aggregates: list[str],
                      min_holders: int, nonces, parties: list[str] | None = None,
                      present: list[str] | None = None) -> tuple[dict, bytes]:
    """A node's answer to a partial-decryption request, or a refusal (``WorkbenchUserError``).

    ``parts``: ``[{holder, per_scheme, envelope}]`` of every signed contribution to the round;
    ``blobs``: their BFV ciphertexts, part after part; ``aggregates``: the digests of the
    canonical sums the coordinator wants decrypted; ``nonces``: this node's guard of nonces
    already used for a partial (``signing.NonceGuard``). ``party``: a ``threshold.Party``
    (N-out-of-N) or a ``threshold_shamir.ShamirParty`` (t-out-of-N: then ``present`` names the
    t key parties, this one among them, whose partials will be combined, out of ``parties``)."""
    ids = _present_ids(party, signer.holder, parties, present)  # one list per set it is in
    if kind not in ops.KINDS or not isinstance(spec, dict):
        raise refuse("malformed-message", "the request names no known operation.")
    try:
        spec_hash = signing.spec_sha256(spec)
        needed = ops.ciphertexts_needed(kind, spec, {"bfv": th.POLY_DEGREE})["bfv"]
    except (KeyError, TypeError, ValueError):
        raise refuse("malformed-message", "the spec does not describe the operation.") from None
    if not isinstance(parts, list) or not parts or not isinstance(aggregates, list):
        raise refuse("malformed-message", "the request lists no contributions.")
    signers, per_part, start = [], [], 0
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("per_scheme"), dict):
            raise refuse("malformed-message", "each contribution is {holder, per_scheme, "
                                              "envelope}.")
        holder = registry.verify(part.get("envelope"), nonce, kind, spec_hash, fingerprint)
        bfv = part["per_scheme"].get("bfv")  # every ciphertext is BFV (reals in fixed point)
        hashes = part["envelope"]["blobs_sha256"]
        mine = blobs[start:start + bfv] if isinstance(bfv, int) else []
        start += len(mine)
        if part.get("holder") != holder or set(part["per_scheme"]) != {"bfv"} \
                or bfv != needed or len(hashes) != bfv or len(mine) != bfv \
                or [digest(b) for b in mine] != hashes:
            raise refuse("bad-signature", f"the contribution of {holder} is not the one it "
                                          "signed (holder, layout or ciphertexts differ).")
        signers.append(holder)
        per_part.append(mine)
    if start != len(blobs):
        raise refuse("malformed-message", "more ciphertexts than the contributions declare.")
    if len(set(signers)) != len(signers):
        raise refuse("duplicate-holder", "a holder's contribution is listed twice.")
    if len(signers) < max(2, min_holders):
        raise refuse("min-holders", f"{len(signers)} signed contribution(s); this node "
                                    f"decrypts only sums of at least {max(2, min_holders)}.")
    sums = pooled(per_part) if needed else []
    digests = [digest(s) for s in sums]
    if digests != aggregates:
        raise refuse("not-the-aggregate", "the ciphertext to decrypt is not the sum of this "
                                          "round's signed contributions.")
    nonces.accept(nonce)  # only now: a refused request does not use up the round
    return seal_partials(party, signer, checker_public, nonce=nonce, kind=kind,
                         spec_hash=spec_hash, sums=sums, signers=signers, ids=ids,
                         present=present)


def seal_partials(party, signer, checker_public: bytes, *, nonce: str, kind: str,
                  spec_hash: str, sums: list[bytes], signers: list[str],
                  ids: list[list[int]] | None = None,
                  present: list | None = None) -> tuple[dict, bytes]:
    """The partial decryptions of ``sums`` (canonical aggregates) with fresh flooding, sealed
    to the release checker and signed: what ``partial_for_round`` answers once every check
    passed (the tests call it directly to play key parties that decrypt whatever they get)."""
    digests = [digest(s) for s in sums]
    shares = party.partials(sums) if ids is None \
        else [party.partial(s, one) for one in ids for s in sums]
    inner = wire.encode({"holder": signer.holder, "nonce": nonce, "aggregates": digests,
                         "present": present if ids else None}, shares)
    box = SealedBox(PublicKey(checker_public)).encrypt(inner)
    box_sha256 = digest(box)
    present = present if ids else None
    signature = signer.key.sign(_signed(signer.holder, nonce, kind, spec_hash, digests,
                                        box_sha256, present)).signature
    return ({"holder": signer.holder, "aggregates": digests, "box_sha256": box_sha256,
             "signature": base64.b64encode(signature).decode(), "signers": sorted(signers),
             "present": present}, box)


def key_set_mismatch(policy, registered, parties, t: int, what: str) -> str | None:
    """How key parties and t differ from the signed policy's (``secure.key_parties`` /
    ``secure.decryption_threshold``), or None when they are the policy's. ``registered``: the
    space's registered holders."""
    want_parties, want_t = policy.secure.key_set(sorted(registered))
    if list(parties or []) == want_parties and t == want_t:
        return None
    return (f"{what} is t = {t} of {len(parties or [])} key parties, but the signed policy sets "
            f"t = {want_t} of {', '.join(want_parties)} (secure.decryption_threshold, "
            "secure.key_parties).")


def check_key_set(policy, registered, parties, t: int, what: str) -> None:
    """Refuse (``threshold-policy``) key parties or a t other than the signed policy's: the
    coordinator does not choose who can decrypt together."""
    mismatch = key_set_mismatch(policy, registered, parties, t, what)
    if mismatch is not None:
        raise refuse("threshold-policy", f"{mismatch} The space's admin makes that key with "
                                         "'workbench node keygen'.")


def _present_ids(party, holder: str, parties, present) -> list[list[int]] | None:
    """The Shamir party numbers of each set of t partials to combine that names this node
    (None for N-out-of-N). ``present``: one set of t key parties, or a list of such sets
    (``threshold_shamir.blame_sets``: the first is the one released from, the others let the
    checker name a wrong partial's sender)."""
    t = getattr(party, "t", None)
    if t is None:
        return None
    sets = _sets(present, t, parties)
    mine = [one for one in (sets or []) if holder in one]
    if not mine:
        raise refuse("malformed-message", f"a t-out-of-N partial names the {t} key parties "
                                          "to combine, this node among them.")
    return [[parties.index(h) + 1 for h in one] for one in mine]


def _sets(present, t: int, parties) -> list[list[str]] | None:
    """``present`` as a list of distinct sets of t key parties (each sorted), or None."""
    if not isinstance(parties, list) or not isinstance(present, list) or not present:
        return None
    sets = present if all(isinstance(p, list) for p in present) else [present]
    if len(sets) > t + 1 or len({tuple(one) for one in sets}) != len(sets):
        return None
    for one in sets:
        if not all(isinstance(h, str) for h in one) or one != sorted(set(one)) \
                or len(one) != t or not set(one) <= set(parties):
            return None
    return sets


def verify_keys(registry) -> dict:
    """The holders' Ed25519 verify keys of a ``signing.Registry`` or ``RegistryFile``."""
    if isinstance(getattr(registry, "keys", None), dict):
        return registry.keys
    return signing.Registry.from_json(Path(registry.path).read_bytes()).keys


class Opened:
    """The opened partials of one round: ``sets`` of key parties (one with N-out-of-N; with
    t-out-of-N the first is the set released from and any others are there to name a wrong
    partial's sender), each combined on demand by ``combine``."""

    def __init__(self, sums: list[bytes], sets: list[list[str]],
                 shares: dict[tuple[int, str], list[bytes]], t: int | None):
        self.sums, self.sets, self._shares, self.t = sums, sets, shares, t

    def combine(self, index: int = 0) -> list[np.ndarray]:
        """The slots of each pooled ciphertext from the partials of set ``index``."""
        members = self.sets[index]
        return [th.decrypt(s, [self._shares[(index, h)][i] for h in members])
                for i, s in enumerate(self.sums)]


def open_and_combine(box_key: PrivateKey, registry, parties: list[str], *, nonce: str,
                     kind: str, spec: dict, sums: list[bytes], partials: list[dict],
                     boxes: list[bytes], t: int | None = None) -> list[np.ndarray]:
    """The release checker's side: every key party's partials (with t-out-of-N, those of the t
    parties the partials name), signed by that party and opened with the checker's key,
    combined into the slots of each pooled BFV ciphertext."""
    return open_partials(box_key, registry, parties, nonce=nonce, kind=kind, spec=spec,
                         sums=sums, partials=partials, boxes=boxes, t=t).combine(0)


def open_partials(box_key: PrivateKey, registry, parties: list[str], *, nonce: str,
                  kind: str, spec: dict, sums: list[bytes], partials: list[dict],
                  boxes: list[bytes], t: int | None = None) -> Opened:
    """Verify and open every partial of the round (``open_and_combine`` without the combine):
    with t-out-of-N, those of every party in the sets the partials name, each signed by it."""
    keys, spec_hash = verify_keys(registry), signing.spec_sha256(spec)
    aggregates = [digest(s) for s in sums]
    found: dict[str, list[bytes]] = {}
    if not isinstance(partials, list) or len(partials) != len(boxes):
        raise refuse("malformed-message", "the partial decryptions do not match their boxes.")
    present, sets = None, [list(parties)]
    if t is not None and t < len(parties):
        present = partials[0].get("present") if partials and isinstance(partials[0], dict) \
            else None
        sets = _sets(present, t, list(parties))
        if sets is None:
            raise refuse("missing-partial", f"a t-out-of-N round needs the partials of t = {t} "
                                            "named key parties.")
        parties = sorted(set().union(*sets))
    for meta, box in zip(partials, boxes, strict=True):
        holder = meta.get("holder") if isinstance(meta, dict) else None
        if holder not in parties or holder in found:
            raise refuse("unknown-party", "a partial decryption comes from no key party of this "
                                          "space, or twice from one.")
        try:
            keys[holder].verify(_signed(holder, nonce, kind, spec_hash, aggregates, digest(box),
                                        present),
                                base64.b64decode(meta.get("signature", ""), validate=True))
            header, shares = wire.decode(SealedBox(box_key).decrypt(box))
        except (KeyError, BadSignatureError, ValueError, CryptoError, wire.WireError):
            raise refuse("bad-partial", f"the partial decryption of {holder} is not signed by "
                                        "it for this round's sum, or not sealed to this "
                                        "release checker.") from None
        expected = len(sums) * sum(holder in one for one in sets)
        if (header.get("holder"), header.get("nonce"), header.get("aggregates"),
                header.get("present")) != (holder, nonce, aggregates, present) \
                or len(shares) != expected:
            raise refuse("bad-partial", f"the partial decryption of {holder} is for another "
                                        "round or sum.")
        found[holder] = shares
    missing = sorted(set(parties) - set(found))
    if missing:
        raise refuse("missing-partial", f"no partial decryption from {', '.join(missing)}; "
                                        "every key party's is needed.")
    by_set, seen = {}, dict.fromkeys(found, 0)
    for index, one in enumerate(sets):  # a party's shares: set after set it is in, in order
        for h in one:
            by_set[(index, h)] = found[h][seen[h] * len(sums):(seen[h] + 1) * len(sums)]
            seen[h] += 1
    return Opened(sums, sets, by_set, t if present is not None else None)


# -- the release checker's box key -------------------------------------------------------------
def create_box_key(he: Path, owner: tuple[int, int] | None) -> bytes:
    """The checker's X25519 key: ``he/checker-box.key`` (0600, the key holder account) and
    ``he/checker-box.pub`` (0644). Kept if it exists; returns the public key."""
    from workbench.secure.keys import write_key_file

    pub = Path(he) / BOX_PUB
    if pub.exists() and (Path(he) / BOX_KEY).exists():
        return pub.read_bytes()
    key = PrivateKey.generate()
    write_key_file(Path(he) / BOX_KEY, bytes(key), 0o600, owner)
    write_key_file(pub, bytes(key.public_key), 0o644, None)
    return bytes(key.public_key)


def load_box_key(he: Path) -> PrivateKey:
    path = Path(he) / BOX_KEY
    try:
        raw = path.read_bytes()
    except OSError:
        raise refuse("no-box-key", f"{path} cannot be read: only the release checker opens "
                                   "partial decryptions.") from None
    return PrivateKey(raw)


def new_seed() -> bytes:
    return os.urandom(32)
