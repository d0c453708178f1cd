"""Holder signatures on HE contributions (security boundary: checked by ``keyholder.py``).

Every holder has an Ed25519 key. For each round it signs the round's nonce, the operation kind,
the hash of the public spec, the public-context fingerprint, the sha256 of each of its ciphertext
blobs and its own name. The key holder decrypts a pooled aggregate only when every claimed
contributor's signature verifies under that holder's registered public key for THIS round's
nonce, when no more holders are counted inside the ciphertexts than signed, and when the nonce was
never accepted before. An aggregator (public key only) can thus encrypt a vector, but it cannot
make a signature for it: a fabricated extra contribution is refused. (One that *replaces* a
signed contribution is not caught here: the key holder sees only the sum; docs/secure.md, Limits.)

Files (``create_holder_keys``, run as root by ``process.start_keyholder``, so by the supervisor):
``he/holders.json`` (0644, root) is the registry of public keys; ``he/holder-keys/<holder>.key``
(0600, in a 0700 directory, owned by the gateway account, which plays the holders on one machine)
holds each private key. The aggregator and the key holder cannot read the private keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space

DOMAIN = "workbench-he-contribution-v1"  # a signature means nothing outside this protocol
ENVELOPE_FIELDS = frozenset({"holder", "nonce", "kind", "spec_sha256", "fingerprint",
                             "blobs_sha256", "signature"})
HOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NONCE = re.compile(r"^(\d{13})-([0-9a-f]{32})$")  # unix milliseconds - 128 random bits
NONCE_WINDOW_MS = 10 * 60 * 1000  # a round older than this is refused (clock skew allowed)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def spec_sha256(spec: dict) -> str:
    """The canonical hash of a public spec: both ends compute it from the same JSON."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def new_nonce() -> str:
    return f"{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(16)}"


def _digest(holder: str, nonce: str, kind: str, spec_hash: str, fingerprint: str,
            blob_hashes: list[str]) -> bytes:
    message = json.dumps([DOMAIN, holder, nonce, kind, spec_hash, fingerprint, blob_hashes],
                         separators=(",", ":"))
    return hashlib.sha256(message.encode()).digest()


def _refuse(reason: str, message: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"Contribution refused ({reason}): {message}", reason=reason)


@dataclass
class Signer:
    """One holder's signing key."""

    holder: str
    key: Ed25519PrivateKey

    def sign(self, nonce: str, kind: str, spec_hash: str, fingerprint: str,
             blobs: list[bytes]) -> dict:
        hashes = [hashlib.sha256(b).hexdigest() for b in blobs]
        signature = self.key.sign(_digest(self.holder, nonce, kind, spec_hash, fingerprint,
                                          hashes))
        return {"holder": self.holder, "nonce": nonce, "kind": kind, "spec_sha256": spec_hash,
                "fingerprint": fingerprint, "blobs_sha256": hashes,
                "signature": base64.b64encode(signature).decode()}

    @property
    def public_raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)


def check_shape(envelope, nonce: str, kind: str, spec_hash: str, fingerprint: str) -> str:
    """The envelope is well formed and names this round; returns its holder. Used by the
    aggregator (which cannot tell a forged signature, only a wrong envelope) and the key holder."""
    if not isinstance(envelope, dict) or set(envelope) != ENVELOPE_FIELDS:
        raise _refuse("unsigned-contribution", "a contribution carries no holder signature "
                                               "envelope (or a malformed one).")
    holder = envelope["holder"]
    if not isinstance(holder, str) or not HOLDER_NAME.match(holder):
        raise _refuse("unsigned-contribution", "a signature envelope names no valid holder.")
    if (envelope["nonce"], envelope["kind"], envelope["spec_sha256"], envelope["fingerprint"]) != (
            nonce, kind, spec_hash, fingerprint):
        raise _refuse("bad-signature", f"the contribution signed by {holder} is for another "
                                       "round, operation, spec or public context.")
    hashes = envelope["blobs_sha256"]
    if not isinstance(hashes, list) or not all(isinstance(h, str) and _HEX64.match(h)
                                               for h in hashes):
        raise _refuse("bad-signature", f"the envelope of {holder} lists no ciphertext hashes.")
    if not isinstance(envelope["signature"], str) or len(envelope["signature"]) != 88:
        raise _refuse("bad-signature", f"the envelope of {holder} has no Ed25519 signature.")
    return holder


class Registry:
    """The holders' registered public keys: what the key holder trusts."""

    def __init__(self, keys: dict[str, Ed25519PublicKey] | None = None):
        self.keys = dict(keys or {})

    def trust(self, holder: str, public_raw: bytes) -> None:
        """Register a key in-process (``Federation``'s ephemeral holders); never over a socket."""
        self.keys[holder] = Ed25519PublicKey.from_public_bytes(public_raw)

    def verify(self, envelope: dict, nonce: str, kind: str, spec_hash: str,
               fingerprint: str) -> str:
        holder = check_shape(envelope, nonce, kind, spec_hash, fingerprint)
        key = self.keys.get(holder)
        if key is None:
            raise _refuse("unsigned-contribution", f"holder {holder!r} has no registered "
                                                   "signing key in this space.")
        try:
            signature = base64.b64decode(envelope["signature"], validate=True)
            key.verify(signature, _digest(holder, nonce, kind, spec_hash, fingerprint,
                                          envelope["blobs_sha256"]))
        except (InvalidSignature, ValueError):
            raise _refuse("bad-signature", f"the signature claimed for holder {holder!r} does "
                                           "not verify under its registered key.") from None
        return holder

    @classmethod
    def from_json(cls, data: bytes) -> Registry:
        try:
            doc = json.loads(data)
            return cls({name: Ed25519PublicKey.from_public_bytes(base64.b64decode(value))
                        for name, value in doc["holders"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            raise WorkbenchUserError("the holder key registry (he/holders.json) is not JSON of "
                                     "Ed25519 keys; restore it from the space's build.",
                                     reason="bad-registry") from None


class NonceGuard:
    """Accepts each round nonce once. Nonces issued before this guard was made (e.g. before a
    restart) or outside the time window are refused, so remembering the window is enough."""

    def __init__(self, window_ms: int = NONCE_WINDOW_MS):
        self.window_ms, self.started_ms = window_ms, time.time_ns() // 1_000_000
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def accept(self, nonce) -> None:
        match = NONCE.match(nonce) if isinstance(nonce, str) else None
        if match is None:
            raise _refuse("unsigned-contribution", "the round carries no valid nonce.")
        issued, now = int(match.group(1)), time.time_ns() // 1_000_000
        with self._lock:
            if nonce in self._seen:
                raise _refuse("replayed-round", "this round's nonce was already used; every "
                                                "decryption needs a fresh round.")
            if issued < self.started_ms - 1000 or abs(now - issued) > self.window_ms:
                raise _refuse("replayed-round", "the round's nonce is stale (issued before this "
                                                "key holder started or outside its time "
                                                "window); run the operation again.")
            self._seen = {n: t for n, t in self._seen.items() if now - t <= self.window_ms}
            self._seen[nonce] = issued


# -- the space's holder keys -----------------------------------------------------------------------
def ephemeral(holders) -> tuple[dict[str, Signer], Registry]:
    """Fresh keys for in-process federations (tests, holders' own validation)."""
    signers = {h: Signer(h, Ed25519PrivateKey.generate()) for h in holders}
    registry = Registry()
    for name, signer in signers.items():
        registry.trust(name, signer.public_raw)
    return signers, registry


def _space_holders(space: Space) -> set[str]:
    names = set()
    try:
        names.update(json.loads(space.manifest.read_text()).get("holders", []))
    except (OSError, ValueError, AttributeError):
        pass
    if space.holders.is_dir():
        names.update(p.name for p in space.holders.iterdir() if p.is_dir())
    return {n for n in names if isinstance(n, str) and HOLDER_NAME.match(n)}


def create_holder_keys(space: Space, holders=None) -> list[str]:
    """Give every holder of the space (or ``holders``) a signing key if it has none yet; return
    the holders keyed now. Existing keys are kept. Run as root (or the space's owner)."""
    from cryptography.hazmat.primitives import serialization

    names = sorted(set(holders) if holders is not None else _space_holders(space))
    for name in names:
        if not HOLDER_NAME.match(name):
            raise WorkbenchUserError(f"holder name {name!r} cannot name a key file; use letters, "
                                     "digits, '.', '_' and '-'.", reason="bad-holder")
    registry = {}
    if space.holder_registry.exists():
        registry = json.loads(space.holder_registry.read_text())["holders"]
    new = [n for n in names if n not in registry]
    if not new:
        return []
    owner = accounts.ensure_user(accounts.GATEWAY) if accounts.is_root() else None
    space.holder_keys.mkdir(parents=True, exist_ok=True)
    os.chmod(space.holder_keys, 0o700)
    if owner:
        os.chown(space.holder_keys, *owner)
    for name in new:
        key = Ed25519PrivateKey.generate()
        path = space.holder_keys / f"{name}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_bytes(serialization.Encoding.Raw,
                                        serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption()))
            if owner:
                os.fchown(out.fileno(), *owner)
        registry[name] = base64.b64encode(Signer(name, key).public_raw).decode()
    tmp = space.holder_registry.with_name(".holders.json.tmp")
    tmp.write_text(json.dumps({"holders": registry}, indent=1, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, space.holder_registry)
    return new


def load_registry(space: Space) -> Registry:
    try:
        return Registry.from_json(space.holder_registry.read_bytes())
    except FileNotFoundError:
        return Registry()  # no holder is registered: every contribution is refused


class RegistryFile:
    """The space's registry, re-read when the file changes (a holder registered later counts
    without restarting the key holder). A missing file registers nobody: everything is refused."""

    def __init__(self, path: Path):
        self.path, self._stamp, self._registry = Path(path), None, Registry()

    def verify(self, envelope: dict, nonce: str, kind: str, spec_hash: str,
               fingerprint: str) -> str:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._registry = Registry.from_json(self.path.read_bytes()) if stamp else Registry()
            self._stamp = stamp
        return self._registry.verify(envelope, nonce, kind, spec_hash, fingerprint)


def signers_for(keyholder, holders) -> dict[str, Signer]:
    """Signing keys for ``holders`` that ``keyholder`` will trust: fresh ones registered with an
    in-process key holder, or the space's own when talking to a key holder (or aggregator)
    process of a space."""
    registry = getattr(keyholder, "registry", None)
    if isinstance(registry, Registry):
        signers, _ = ephemeral(holders)
        for name, signer in signers.items():
            registry.trust(name, signer.public_raw)
        return signers
    space = getattr(keyholder, "space", None)
    if space is None:
        raise WorkbenchUserError("no signing keys for the holders: pass signers= (e.g. "
                                 "signing.load_signers(space, holders)).", reason="no-signers")
    return load_signers(space, holders)


def load_signers(space: Space, holders) -> dict[str, Signer]:
    """The holders' private keys (as the account that plays the holders)."""
    out = {}
    for name in holders:
        if not isinstance(name, str) or not HOLDER_NAME.match(name):
            raise _refuse("unsigned-contribution", f"holder {name!r} cannot have a signing key.")
        path = space.holder_keys / f"{name}.key"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise _refuse("unsigned-contribution", f"holder {name!r} has no signing key in "
                                                   f"{space.holder_keys}; starting the key "
                                                   "holder as root registers every holder of "
                                                   "the space.") from None
        except PermissionError:
            raise WorkbenchUserError(f"{path} is readable only by the {accounts.GATEWAY} "
                                     "account, which plays the holders.",
                                     reason="access-denied") from None
        out[name] = Signer(name, Ed25519PrivateKey.from_private_bytes(raw))
    return out
