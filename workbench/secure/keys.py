"""The space's homomorphic-encryption key: one BFV context, for counts and (in fixed point,
``ops.encode_reals``) real-valued sums alike.

``he/public.ctx`` holds the public context (public key only: no secret key, no relinearisation or
Galois keys, since every operation here is ciphertext addition). Its BFV key is always a joint key
made without a dealer (issue 17, ``threshold.py``): the holder nodes' (``node/keygen.py``) or, in
a space without nodes, simulated key parties' (``threshold_local.make_space_key``). No file and no
process of the space holds a whole secret key: the release checker reads this same public
context, whose header carries the key generation's record (its key parties and t), and combines
the parties' partial decryptions. The file is a workbench frame (see ``wire.py``) whose header
carries the parameters and a fingerprint of the public key material, so a ciphertext made under
another space's key is recognised and refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.secure import wire

BFV_POLY_DEGREE = 4096
BFV_PLAIN_MODULUS = 1073750017  # smallest prime >= 2^30 with p = 1 mod 2N: batching, exact counts

PUBLIC_FILE = "public.ctx"
RETIRED_FILE = "secret.ctx"  # the single key's file, in spaces built before issue 17: removed


def _tenseal():
    import tenseal  # heavy: imported only where HE actually runs

    return tenseal


def parameters() -> dict:
    """The HE parameters: the joint key's (``threshold.py``), and the fixed point of the reals."""
    from workbench.secure import ops
    from workbench.secure import threshold as th

    table = th.parameters()
    return {
        "bfv": {"poly_modulus_degree": table["poly_modulus_degree"],
                "plain_modulus": table["plain_modulus"], "slots": table["poly_modulus_degree"],
                "coeff_modulus": table["data_primes"] + [table["special_prime"]],
                "flood_bits": table["flood_bits"],
                "security": "128-bit (109-bit coefficient modulus at N=4096)"},
        # real values in the same BFV slots (ops.encode_reals)
        "fixed-point": {"fraction_bits": ops.FRAC_BITS, "digit_bits": ops.DIGIT_BITS,
                        "digits": ops.REAL_DIGITS, "max_abs_per_holder": ops.MAX_REAL},
    }


@dataclass
class PublicKeys:
    """What holders and the aggregator get: encryption and addition only."""

    bfv_bytes: bytes
    fingerprint: str
    # the public record of the collective key generation (key parties, t, the joint context's
    # digest; ``threshold_node.py``)
    threshold: dict | None = None

    @cached_property
    def bfv(self):
        ctx = _tenseal().context_from(self.bfv_bytes)
        if ctx.has_secret_key():
            raise WorkbenchError("public BFV context unexpectedly carries a secret key")
        return ctx

    def to_bytes(self) -> bytes:
        header = {"kind": "public", "fingerprint": self.fingerprint,
                  "parameters": parameters()}
        if self.threshold:
            header["threshold"] = self.threshold
        return wire.encode(header, [self.bfv_bytes])

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKeys:
        header, blobs = wire.decode(data)
        if header.get("kind") != "public" or len(blobs) != 1:
            raise WorkbenchUserError("not a workbench HE context file", reason="bad-context")
        return cls(blobs[0], header["fingerprint"], header.get("threshold"))


def fingerprint_of(bfv_public: bytes) -> str:
    return hashlib.sha256(bfv_public).hexdigest()[:32]


def install_threshold(space: Space, joint_context: bytes, record: dict) -> PublicKeys:
    """After collective key generation: the joint BFV context, with its public record, becomes
    ``he/public.ctx`` (holders, the aggregator and the release checker all read it). A key of
    the holder nodes replaces a space's simulated one, whose shares then go; a single key's
    ``he/secret.ctx`` left by an older build goes too. Root, or the owner of the files."""
    from workbench.secure.threshold_local import SPACE_KEY, drop_space_shares

    public = PublicKeys(joint_context, fingerprint_of(joint_context), record)
    write_key_file(space.he / PUBLIC_FILE, public.to_bytes(), 0o644, None)
    (space.he / RETIRED_FILE).unlink(missing_ok=True)
    if record.get("simulated") != SPACE_KEY:
        drop_space_shares(space)
    return public


class KeysFile:
    """A context file re-read when it changes (collective key generation replaces the BFV key
    of services already running: the aggregator, the key holder)."""

    def __init__(self, path: Path, load, keys=None):
        self.path, self.load, self.keys = Path(path), load, keys
        self._stamp = self._current_stamp() if keys is not None else None

    def _current_stamp(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self):
        stamp = self._current_stamp()
        if stamp is not None and stamp != self._stamp:
            self.keys, self._stamp = self.load(self.path.read_bytes()), stamp
        return self.keys


def write_key_file(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Write a key file atomically, owned and moded before it appears under its name."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def create_keys(space: Space) -> None:
    """The space's keys (``workbench init``): every holder's signing and MAC keys, the release
    checker's signing key, and the HE key, made among the space's key parties
    (``threshold_local.make_space_key``) until its holder nodes make their own."""
    space.he.mkdir(parents=True, exist_ok=True)
    os.chmod(space.he, 0o755)  # noqa: S103 - public.ctx must be reachable by services
    from workbench.secure.signing import Registry, create_holder_keys

    create_holder_keys(space)  # each holder signs its contributions (signing.py)
    from workbench.secure.attest import create_release_key

    create_release_key(space)  # the key holder signs what it releases (attest.py)
    from workbench.secure.threshold_local import make_space_key, space_key_parties

    registered = Registry.from_json(space.holder_registry.read_bytes()).keys
    make_space_key(space, space_key_parties(sorted(registered)))


def load_public(space: Space) -> PublicKeys:
    path = space.he / PUBLIC_FILE
    try:
        return PublicKeys.from_bytes(path.read_bytes())
    except FileNotFoundError:
        raise WorkbenchUserError(f"{path} is missing: the space has no HE keys. "
                                 "Run 'workbench init' to build the space.",
                                 reason="no-he-keys") from None
