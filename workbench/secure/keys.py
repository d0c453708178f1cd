"""The space's homomorphic-encryption key: one BFV context, for counts and (in fixed point,
``ops.encode_reals``) real-valued sums alike.

``he/public.ctx`` holds the public context (public key only: no secret key, no relinearisation or
Galois keys, since every operation here is ciphertext addition). ``he/secret.ctx`` adds the secret
key and is readable only by the key holder account; after collective key generation
(``install_threshold``) the BFV key is the holder nodes' joint key and ``he/secret.ctx`` holds no
secret key at all, only the release checker's copy of the joint public context. Both files are
workbench frames (see ``wire.py``) whose header carries the parameters and a fingerprint of the
public key material, so a ciphertext made under another space's key is recognised and refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.secure import tensealproto, wire

BFV_POLY_DEGREE = 4096
BFV_PLAIN_MODULUS = 1073750017  # smallest prime >= 2^30 with p = 1 mod 2N: batching, exact counts
# One 60-bit coefficient prime and no key-switching prime: only additions are ever done, so no
# relinearisation or Galois key is needed, and SEAL then encrypts at that one level instead of
# encrypting at two primes and switching down: 0.6 ms per ciphertext instead of 1.1 ms. 60 bits
# is far below the 109-bit maximum for 128-bit security at N=4096; the noise budget is 19 bits
# fresh, 16 after 32 holders' additions (tests/secure/test_secure_parameters.py). The ciphertext is
# one 60-bit prime's words: 66 KB, and zstd finds little to squeeze out of it (0.1 ms to
# serialize). TenSEAL cannot make such a context itself: ``_bfv_contexts``.
BFV_COEFF_BITS = [60]

PUBLIC_FILE = "public.ctx"
SECRET_FILE = "secret.ctx"  # noqa: S105 - a file name, not a password


def _tenseal():
    import tenseal  # heavy: imported only where HE actually runs

    return tenseal


def parameters(threshold: dict | None = None) -> dict:
    """The HE parameters; ``threshold``: a key's threshold record (``PublicKeys.threshold``),
    whose BFV key is then the holder nodes' joint key at ``threshold.py``'s parameters."""
    if threshold:
        return _threshold_parameters()
    from workbench.secure import ops

    return {
        "bfv": {"poly_modulus_degree": BFV_POLY_DEGREE, "plain_modulus": BFV_PLAIN_MODULUS,
                "coeff_mod_bit_sizes": BFV_COEFF_BITS, "slots": BFV_POLY_DEGREE,
                "security": "128-bit (60-bit coefficient modulus at N=4096; at most 109 bits "
                            "keep 128-bit security)"},
        # real values in the same BFV slots (ops.encode_reals)
        "fixed-point": {"fraction_bits": ops.FRAC_BITS, "digit_bits": ops.DIGIT_BITS,
                        "digits": ops.REAL_DIGITS, "max_abs_per_holder": ops.MAX_REAL},
    }


@dataclass
class PublicKeys:
    """What holders and the aggregator get: encryption and addition only."""

    bfv_bytes: bytes
    fingerprint: str
    # with threshold decryption (``threshold_node.py``): the public record of the collective key
    # generation (parties, seed, commitments); the BFV context is then the joint key
    threshold: dict | None = None

    @cached_property
    def bfv(self):
        ctx = _tenseal().context_from(self.bfv_bytes)
        if ctx.has_secret_key():
            raise WorkbenchError("public BFV context unexpectedly carries a secret key")
        return ctx

    def to_bytes(self) -> bytes:
        header = {"kind": "public", "fingerprint": self.fingerprint,
                  "parameters": parameters(self.threshold)}
        if self.threshold:
            header["threshold"] = self.threshold
        return wire.encode(header, [self.bfv_bytes])

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKeys:
        header, blobs = wire.decode(data)
        if header.get("kind") not in ("public", "secret") or len(blobs) < 1:
            raise WorkbenchUserError("not a workbench HE context file", reason="bad-context")
        return cls(blobs[0], header["fingerprint"], header.get("threshold"))


@dataclass
class SecretKeys:
    """The key holder's context (secret key included, except with threshold decryption). Never
    leaves the key holder process."""

    bfv_bytes: bytes  # with threshold decryption: the joint public context (no secret key)
    fingerprint: str
    public: PublicKeys
    threshold: dict | None = None  # as PublicKeys.threshold: BFV is then never decrypted here

    @cached_property
    def bfv(self):
        return _tenseal().context_from(self.bfv_bytes)

    def to_bytes(self) -> bytes:
        header = {"kind": "secret", "fingerprint": self.fingerprint,
                  "parameters": parameters(self.threshold)}
        if self.threshold:
            header["threshold"] = self.threshold
        return wire.encode(header, [self.public.bfv_bytes, self.bfv_bytes])

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretKeys:
        header, blobs = wire.decode(data)
        if header.get("kind") != "secret" or len(blobs) != 2:
            raise WorkbenchUserError("not a workbench HE secret context file", reason="bad-context")
        threshold = header.get("threshold")
        public = PublicKeys(blobs[0], header["fingerprint"], threshold)
        return cls(blobs[1], header["fingerprint"], public, threshold)

    @classmethod
    def generate(cls) -> SecretKeys:
        bfv_public, bfv_secret = _bfv_contexts()
        fingerprint = fingerprint_of(bfv_public)
        return cls(bfv_secret, fingerprint, PublicKeys(bfv_public, fingerprint))


def fingerprint_of(bfv_public: bytes) -> str:
    return hashlib.sha256(bfv_public).hexdigest()[:32]


def _threshold_parameters() -> dict:
    """With threshold decryption, the BFV parameters are the joint key's."""
    from workbench.secure import threshold as th

    out, table = parameters(), th.parameters()
    out["bfv"] = {"poly_modulus_degree": table["poly_modulus_degree"],
                  "plain_modulus": table["plain_modulus"], "slots": table["poly_modulus_degree"],
                  "coeff_modulus": table["data_primes"] + [table["special_prime"]],
                  "flood_bits": table["flood_bits"], "threshold": "N-out-of-N",
                  "security": "128-bit (109-bit coefficient modulus at N=4096)"}
    return out


def install_threshold(space: Space, joint_context: bytes, record: dict) -> PublicKeys:
    """After collective key generation: the joint BFV context replaces the single key's in
    ``he/public.ctx``, and ``he/secret.ctx`` then holds no secret key at all (the joint public
    context in place of the secret one: the key holder never decrypts anything itself again).
    Secret first, so the key holder knows before anyone encrypts under the joint key. Root, or
    the owner of both files."""
    public = PublicKeys(joint_context, fingerprint_of(joint_context), record)
    secret_path = space.he / SECRET_FILE
    if secret_path.exists():
        stat = secret_path.stat()
        write_key_file(secret_path, SecretKeys(joint_context, public.fingerprint, public,
                                               record).to_bytes(),
                       0o600, (stat.st_uid, stat.st_gid) if accounts.is_root() else None)
    write_key_file(space.he / PUBLIC_FILE, public.to_bytes(), 0o644, None)
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


def _bfv_contexts() -> tuple[bytes, bytes]:
    """The (public, secret) serialized TenSEAL BFV contexts at ``BFV_COEFF_BITS``.

    ``tenseal.context`` always makes relinearisation keys, which SEAL cannot make without a
    key-switching prime. So the keys are made with SEAL's own API as TenSEAL ships it
    (``tenseal.sealapi``) and written into TenSEAL's context message
    (``tenseal/proto/tensealcontext.proto``: parameters, then the public part — public key, the
    flags and "no scale" TenSEAL writes for BFV — then the secret key), which
    ``tenseal.context_from`` loads like one of its own."""
    from tenseal import sealapi

    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(BFV_POLY_DEGREE)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(BFV_POLY_DEGREE, BFV_COEFF_BITS))
    parms.set_plain_modulus(sealapi.Modulus(BFV_PLAIN_MODULUS))
    context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise WorkbenchError("SEAL refused the BFV parameters")
    keygen = sealapi.KeyGenerator(context)
    public_key = sealapi.PublicKey()
    keygen.create_public_key(public_key)
    field = tensealproto.field
    public_part = field(1, _seal_bytes(public_key)) + field(2, 7) + field(3, -1.0)  # auto flags
    public = field(1, _seal_bytes(parms)) + field(2, public_part)
    # encryption type 0 (public key) is proto3's default and so not written
    return public, public + field(3, field(1, _seal_bytes(keygen.secret_key())))


def _seal_bytes(seal_object) -> bytes:
    """SEAL's own serialization of an object: ``tenseal.sealapi`` saves only to a path, so it
    writes to a memfd (anonymous memory: the secret key never reaches a disk)."""
    fd = os.memfd_create("workbench-he-key", os.MFD_CLOEXEC)
    try:
        seal_object.save(f"/proc/self/fd/{fd}")
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


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
    """Generate the space's HE keys: ``he/public.ctx`` (0644) and ``he/secret.ctx`` (0600, owned by
    the key holder account when root). Called by ``workbench init``."""
    keys = SecretKeys.generate()
    space.he.mkdir(parents=True, exist_ok=True)
    os.chmod(space.he, 0o755)  # noqa: S103 - public.ctx must be reachable by services
    owner = accounts.ensure_user(accounts.KEYHOLDER) if accounts.is_root() else None
    write_key_file(space.he / PUBLIC_FILE, keys.public.to_bytes(), 0o644, None)
    write_key_file(space.he / SECRET_FILE, keys.to_bytes(), 0o600, owner)
    from workbench.secure.signing import create_holder_keys

    create_holder_keys(space)  # each holder signs its contributions (signing.py)
    from workbench.secure.attest import create_release_key

    create_release_key(space)  # the key holder signs what it releases (attest.py)


def load_public(space: Space) -> PublicKeys:
    path = space.he / PUBLIC_FILE
    try:
        return PublicKeys.from_bytes(path.read_bytes())
    except FileNotFoundError:
        raise WorkbenchUserError(f"{path} is missing: the space has no HE keys. "
                                 "Run 'workbench init' to build the space.",
                                 reason="no-he-keys") from None


def load_secret(space: Space) -> SecretKeys:
    path = space.he / SECRET_FILE
    try:
        return SecretKeys.from_bytes(path.read_bytes())
    except FileNotFoundError:
        raise WorkbenchUserError(f"{path} is missing: the space has no HE secret key.",
                                 reason="no-he-keys") from None
    except PermissionError:
        raise WorkbenchUserError(f"{path} is readable only by the {accounts.KEYHOLDER} account: "
                                 "only the key holder process may load it.",
                                 reason="access-denied") from None
