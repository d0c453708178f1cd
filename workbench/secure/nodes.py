"""Holder nodes and the aggregator: the roles that hold only the public HE contexts.

A ``HolderNode`` reduces its own rows to one packed vector (``ops.holder_vectors``: counts as
they are, real values as fixed-point digits), encrypts it with the space's public BFV context
(``ceil(slots used / (slots - 1))`` ciphertexts, whatever the number of patients; the last slot
of each carries the holder's MAC, bound to the values, ``mac.py``) and signs the round
(``signing.py``). The ``Aggregator`` checks every contribution's
context, layout and signature envelope, adds the ciphertexts under the public context and forwards
the pooled sum with the holders' envelopes to the key holder; it cannot decrypt (no secret key)
and needs no relinearisation or Galois keys. Under a joint key (threshold decryption) it adds
the residues of the ciphertexts with NumPy and sends canonical SEAL bytes (``_joint_sum``), the
sum the key parties recompute. In the service it runs as its own process
(``aggregator.py``); ``Federation`` keeps it in-process.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchUserError
from workbench.secure import mac, ops, signing, tensealproto
from workbench.secure.keys import BFV_POLY_DEGREE, PublicKeys

MAX_HOLDERS = 32  # more "holders" than this is a per-patient encryption pattern, not a federation


@dataclass
class Encrypted:
    """Serialized BFV ciphertexts of one holder (or of the pooled sum) for one operation."""

    kind: str
    fingerprint: str
    blobs: list[bytes]
    contributors: list[str] = field(default_factory=list)
    envelope: dict | None = None  # the holder's signature over this round (signing.py)

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.blobs)

    @property
    def per_scheme(self) -> dict[str, int]:
        """The messages' ``per_scheme`` field, ``{"bfv": number of ciphertexts}``: every
        ciphertext is BFV, but the wire format between holders, nodes and the aggregator keeps
        the field (``aggregator.py``, ``threshold_node.py`` check it against the blob count)."""
        return {"bfv": len(self.blobs)}


class Contributions(list):
    """A round's signed contributions (``Encrypted``) and, when the BFV key is a joint one,
    every key party's partial decryption of their sum: ``(meta, sealed box)`` pairs that only
    the release checker can open (``threshold_node.py``); the aggregator relays them."""

    def __init__(self, parts, partials=()):
        super().__init__(parts)
        self.partials = list(partials)


def slots() -> dict[str, int]:
    """Slots per ciphertext: N for BFV batching."""
    return {"bfv": BFV_POLY_DEGREE}


def encrypt_vector(keys: PublicKeys, vector: np.ndarray,
                   macs: list | None = None) -> list[bytes]:
    """Pack a vector into ``ceil(values / (slots - 1))`` ciphertexts, the last slot of each
    holding its MAC (``macs``, one per ciphertext; zeros when None: what anyone with the public
    key can make, and what a genuine holder never sends)."""
    import tenseal as ts

    n = BFV_POLY_DEGREE
    vector = np.asarray(vector)
    count = math.ceil(len(vector) / ops.data_slots(n))
    # TenSEAL's Python wrappers first copy the list into a PlainTensor (~0.2-0.6 ms per
    # ciphertext, a sixth of a BFV encryption); its C++ constructors take the list directly.
    ctx = keys.bfv.data
    blobs = []
    for full in ops.chunks(vector, n, macs if macs is not None else [0] * count):
        blobs.append(ts._ts_cpp.BFVVector(ctx, full.astype(np.int64).tolist()).serialize())
    return blobs


def seal(keys: PublicKeys, signer: signing.Signer, kind: str, spec: dict, nonce: str,
         vectors: dict[str, np.ndarray]) -> Encrypted:
    """Encrypt a holder's vectors with its MAC in every ciphertext (bound to the ciphertext's
    values by the round weights) and sign them for the round ``nonce``."""
    spec_hash = signing.spec_sha256(spec)
    count = math.ceil(len(vectors["bfv"]) / ops.data_slots(BFV_POLY_DEGREE))
    # the MAC of each ciphertext binds its data slots (mac.value_tags)
    data = [full[:-ops.MAC_SLOTS] for full in
            ops.chunks(np.asarray(vectors["bfv"]), BFV_POLY_DEGREE, [0] * count)]
    macs = mac.holder_slots(signer.mac_key_or_refuse(), signer.weight_key_or_refuse(), nonce,
                            kind, spec_hash, data)
    blobs = encrypt_vector(keys, vectors["bfv"], macs)
    envelope = signer.sign(nonce, kind, spec_hash, keys.fingerprint, blobs)
    return Encrypted(kind, keys.fingerprint, blobs, [signer.holder], envelope)


class HolderNode:
    """One data holder: its own rows, the public contexts and its signing and MAC keys only."""

    def __init__(self, name: str, frame: pd.DataFrame, keys: PublicKeys,
                 signer: signing.Signer):
        self.name, self.frame, self.keys, self.signer = name, frame, keys, signer
        self._cache: dict = {}  # beta-independent model statistics, reused across Newton rounds

    @property
    def has_secret_key(self) -> bool:
        return self.keys.bfv.has_secret_key()

    def vectors(self, kind: str, spec: dict) -> dict[str, np.ndarray]:
        """This holder's statistics for one operation, in plaintext (they never leave it so)."""
        return ops.holder_vectors(kind, spec, self.frame, self._cache)

    def seal(self, kind: str, spec: dict, nonce: str, vectors: dict[str, np.ndarray]) -> Encrypted:
        return seal(self.keys, self.signer, kind, spec, nonce, vectors)

    def contribute(self, kind: str, spec: dict, nonce: str) -> Encrypted:
        return self.seal(kind, spec, nonce, self.vectors(kind, spec))


def check_federation(partitions: dict[str, pd.DataFrame]) -> None:
    """Refuse no holder at all, and holder splits that amount to one ciphertext per patient
    (also more holders than the joint key's parameters take: ``threshold.MAX_PARTIES``)."""
    if not partitions:
        # the same refusal as a selection of too few people: an empty view is no oracle
        from workbench.secure.release import ReleaseRefused, too_few

        raise ReleaseRefused("min-cell-count", too_few())
    if len(partitions) > MAX_HOLDERS or (
            len(partitions) > 3 and all(len(f) <= 1 for f in partitions.values())):
        raise WorkbenchUserError(
            f"{len(partitions)} holders with at most {max(len(f) for f in partitions.values())} "
            "row(s) each looks like one ciphertext per patient, which costs ~5.7 ms and 331 KB "
            "per patient and is refused. Give each real data holder's rows as one DataFrame: "
            "every holder reduces its rows locally and encrypts packed per-bin sums.",
            reason="per-patient-encryption")


class Aggregator:
    """Adds the holders' ciphertexts under the public context and forwards the sum to
    ``keyholder`` (anything with ``handle(header, blobs)``: ``KeyHolder`` or its client)."""

    def __init__(self, keys: PublicKeys, keyholder=None):
        self.keys, self.keyholder = keys, keyholder

    def submit(self, header: dict, parts: list[Encrypted]) -> dict:
        """One round: ``header`` holds kind, op, spec, thresholds, context, fingerprint and nonce
        (the coordinator's); each part carries its holder's signature envelope."""
        try:
            kind, spec, nonce = header["kind"], header["spec"], header["nonce"]
            spec_hash = signing.spec_sha256(spec)
        except (KeyError, TypeError, ValueError):
            raise WorkbenchUserError("a round needs kind, spec and nonce.",
                                     reason="malformed-message") from None
        digest = _sha256
        if self.keys.threshold:  # each contribution's digest, as the key parties hash it
            from workbench.secure.threshold_node import digest
        for part in parts:
            who = ", ".join(part.contributors)
            holder = signing.check_shape(part.envelope, nonce, kind, spec_hash, part.fingerprint)
            hashes = [digest(b) for b in part.blobs]
            if part.contributors != [holder] or part.envelope["blobs_sha256"] != hashes:
                raise WorkbenchUserError(f"the contribution of {who} does not match its signed "
                                         "envelope (holder or ciphertexts differ).",
                                         reason="bad-signature")
        pooled = self.combine(parts)
        if pooled.kind != kind:
            raise WorkbenchUserError("the contributions are for another operation kind.",
                                     reason="malformed-message")
        return self.forward(header, pooled, [p.envelope for p in parts],
                            getattr(parts, "partials", ()))

    def forward(self, header: dict, pooled: Encrypted, signatures: list,
                partials=()) -> dict:
        """Send the pooled ciphertexts with the holders' signed envelopes (and the key parties'
        sealed partial decryptions, after the ciphertexts) to the key holder."""
        request = {k: header.get(k) for k in ("kind", "op", "spec", "thresholds", "context",
                                              "nonce")}
        request |= {"type": "decrypt-release", "fingerprint": pooled.fingerprint,
                    "contributors": pooled.contributors, "signatures": signatures}
        if partials:
            request["partials"] = [meta for meta, _box in partials]
        return self.keyholder.handle(request, pooled.blobs + [box for _m, box in partials])

    def combine(self, parts: list[Encrypted]) -> Encrypted:
        import tenseal as ts

        if not parts:
            raise WorkbenchUserError("no holder contributed to this operation.",
                                     reason="no-contributions")
        if len(parts) > MAX_HOLDERS:
            raise WorkbenchUserError(f"{len(parts)} contributions exceed {MAX_HOLDERS} holders: "
                                     "per-patient encryption is refused.",
                                     reason="per-patient-encryption")
        names = [n for p in parts for n in p.contributors]
        if len(set(names)) != len(names):
            raise WorkbenchUserError("a holder contributed twice to one aggregate.",
                                     reason="duplicate-holder")
        first = parts[0]
        if self.keys.threshold:  # the joint key: NumPy residue sums (``_joint_sum``)
            for part in parts:
                self._check_part(part, first)
            return Encrypted(first.kind, first.fingerprint, _joint_sum(parts), names)
        total = None
        for part in parts:
            who = self._check_part(part, first)
            cts = [_load(ts.bfv_vector_from, self.keys.bfv, blob, who) for blob in part.blobs]
            # in place: the running sum is this method's own (no new ciphertext per addition)
            total = cts if total is None else [a.add_(b) for a, b in zip(total, cts, strict=True)]
        return Encrypted(first.kind, first.fingerprint, [ct.serialize() for ct in total], names)


    def _check_part(self, part: Encrypted, first: Encrypted) -> str:
        who = ", ".join(part.contributors)
        if part.fingerprint != self.keys.fingerprint:
            raise WorkbenchUserError(
                f"ciphertexts from {who} were made under another public context "
                f"(fingerprint {part.fingerprint[:12]}, this space uses "
                f"{self.keys.fingerprint[:12]}): re-encrypt with this space's he/public.ctx.",
                reason="wrong-context")
        if (part.kind, len(part.blobs)) != (first.kind, len(first.blobs)):
            raise WorkbenchUserError(f"ciphertexts from {who} do not match the operation's "
                                     "layout.", reason="malformed-message")
        return who


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _malformed(who: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"a ciphertext from {who} is malformed or was made with other HE "
                              "parameters; re-encrypt with this space's he/public.ctx.",
                              reason="malformed-ciphertext")


def _joint_sum(parts: list[Encrypted]) -> list[bytes]:
    """The sum, ciphertext by ciphertext, of the parts' BFVVectors under the joint key
    (``threshold.py``'s parameters), as NumPy additions of their residues modulo each prime
    (``threshold_node.pooled``: what SEAL's additions give, as canonical SEAL bytes, compression
    off), each in a BFVVector: the very ciphertexts whose digests the key parties recompute.
    Each input is checked as SEAL's ``load`` checks it, and more strictly
    (``threshold.ciphertext_residues``), and must be a BFVVector exactly as TenSEAL writes it;
    the sizes of the vectors added must agree, as TenSEAL's addition requires. In one process
    (``Federation``) the simulated key parties' sum of the same bytes is reused
    (``pooled`` remembers it by the contributions' digests). TenSEAL's load/add/serialize took
    0.35 s per Cox d=5 fit at n=1e5."""
    from workbench.secure import threshold as th
    from workbench.secure import threshold_node as tn
    from workbench.secure import threshold_seal

    sizes = []
    for index in range(len(parts[0].blobs)):
        size = None
        for part in parts:
            who = ", ".join(part.contributors)
            try:
                this, _ciphertext = tensealproto.one_ciphertext_vector(part.blobs[index])
            except (ValueError, TypeError):
                raise _malformed(who) from None
            if size is not None and this != size:
                raise WorkbenchUserError(f"ciphertexts from {who} do not match the operation's "
                                         "layout.", reason="malformed-message")
            size = this
        sizes.append(size)
    try:
        sums = tn.pooled([part.blobs for part in parts])  # every input validated there
    except WorkbenchUserError:
        for part in parts:  # name the holder whose ciphertext was refused
            for blob in part.blobs:
                try:
                    th.ciphertext_residues(tensealproto.one_ciphertext_vector(blob)[1])
                except (ValueError, TypeError, th.ThresholdError,
                        threshold_seal.SealFormatError):
                    raise _malformed(", ".join(part.contributors)) from None
        raise
    return [tensealproto.vector_bytes(size, total) for size, total in zip(sizes, sums, strict=True)]


def _load(load, ctx, blob: bytes, who: str):
    try:
        return load(ctx, blob)
    except (ValueError, RuntimeError, TypeError):
        raise WorkbenchUserError(f"a ciphertext from {who} is malformed or was made with other HE "
                                 "parameters; re-encrypt with this space's he/public.ctx.",
                                 reason="malformed-ciphertext") from None
