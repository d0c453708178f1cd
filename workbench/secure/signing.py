"""Holder signatures on HE contributions (security boundary: checked by ``keyholder.py``).

Every holder has an Ed25519 key. For each round it signs the round's nonce, the operation kind,
the hash of the public spec, the public-context fingerprint, the sha256 of each of its ciphertext
blobs and its own name. The key holder decrypts a pooled aggregate only when every claimed
contributor's signature verifies under that holder's registered public key for THIS round's
nonce, when no more holders are counted inside the ciphertexts than signed, and when the nonce was
never accepted before. An aggregator (public key only) can thus encrypt a vector, but it cannot
make a signature for it: a fabricated extra contribution is refused. One that *replaces* a
signed contribution is caught by the holders' MACs (``mac.py``), whose keys live here too.
Signing and verifying go through libsodium (PyNaCl): every round pays three of each, and
libsodium's take half the time of OpenSSL's (18 / 52 µs against 46 / 102 µs measured); the keys
and signatures are plain Ed25519 either way.

Files (``create_holder_keys``, run as root by ``keys.create_keys`` and ``process.start_keyholder``,
so by ``workbench init`` and the supervisor): ``he/holders.json`` (0644, root) is the registry of
public keys; ``he/holder-keys/<holder>.key`` (0600, in a 0700 directory, owned by the gateway
account, which plays the holders on one machine) holds each private key; ``he/holder-macs/
<holder>.key`` (0640, owner the gateway account, group the key holder's, in a 0750 directory of
the same owner and group) holds each holder's MAC key, shared with the key holder only, and
``he/holder-macs/_weights.key`` (same mode and owners; holder names start with a letter or
digit, so it names no holder) the round-weight key that every holder and the key holder share to
bind the MAC slots to the values (``mac.py``). The aggregator can read none of them; the key
holder cannot read the private signing keys.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.secure import mac
from workbench.secure.keys import write_key_file

DOMAIN = "workbench-he-contribution-v1"  # a signature means nothing outside this protocol
ENVELOPE_FIELDS = frozenset({"holder", "nonce", "kind", "spec_sha256", "fingerprint",
                             "blobs_sha256", "signature"})
HOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NONCE = re.compile(r"^(\d{13})-([0-9a-f]{32})$")  # unix milliseconds - 128 random bits
NONCE_WINDOW_MS = 10 * 60 * 1000  # a round older than this is refused (clock skew allowed)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
WEIGHTS_FILE = "_weights.key"  # cannot clash with a holder's "<holder>.key": see HOLDER_NAME


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


def mac_dir(he: Path) -> Path:
    """The holders' MAC keys: readable by the gateway account and the key holder only."""
    return Path(he) / "holder-macs"


@dataclass
class Signer:
    """One holder's signing key, its MAC key and the holders' round-weight key (both shared
    with the key holder, ``mac.py``)."""

    holder: str
    key: SigningKey
    mac_key: bytes | None = None
    weight_key: bytes | None = None

    def mac_key_or_refuse(self) -> bytes:
        if not self.mac_key:
            raise _no_mac_key(self.holder)
        return self.mac_key

    def weight_key_or_refuse(self) -> bytes:
        if not self.weight_key:
            raise _no_weight_key()
        return self.weight_key

    def sign(self, nonce: str, kind: str, spec_hash: str, fingerprint: str,
             blobs: list[bytes]) -> dict:
        hashes = [hashlib.sha256(b).hexdigest() for b in blobs]
        signature = self.key.sign(_digest(self.holder, nonce, kind, spec_hash, fingerprint,
                                          hashes)).signature
        return {"holder": self.holder, "nonce": nonce, "kind": kind, "spec_sha256": spec_hash,
                "fingerprint": fingerprint, "blobs_sha256": hashes,
                "signature": base64.b64encode(signature).decode()}

    @property
    def public_raw(self) -> bytes:
        return bytes(self.key.verify_key)


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

    def __init__(self, keys: dict[str, VerifyKey] | None = None,
                 macs: dict[str, bytes] | None = None, weight_key: bytes | None = None):
        self.keys, self.macs, self.weight_key = dict(keys or {}), dict(macs or {}), weight_key

    def trust(self, holder: str, public_raw: bytes, mac_key: bytes | None = None) -> None:
        """Register a holder's keys in-process (``Federation``'s ephemeral holders); never over
        a socket."""
        self.keys[holder] = VerifyKey(public_raw)
        if mac_key:
            self.macs[holder] = bytes(mac_key)

    def mac_key(self, holder: str) -> bytes:
        key = self.macs.get(holder)
        if not key:
            raise _no_mac_key(holder)
        return key

    def round_weight_key(self) -> bytes:
        if not self.weight_key:
            raise _no_weight_key()
        return self.weight_key

    def verify(self, envelope: dict, nonce: str, kind: str, spec_hash: str,
               fingerprint: str) -> str:
        holder = check_shape(envelope, nonce, kind, spec_hash, fingerprint)
        key = self.keys.get(holder)
        if key is None:
            raise _refuse("unsigned-contribution", f"holder {holder!r} has no registered "
                                                   "signing key in this space.")
        try:
            signature = base64.b64decode(envelope["signature"], validate=True)
            key.verify(_digest(holder, nonce, kind, spec_hash, fingerprint,
                               envelope["blobs_sha256"]), signature)
        except (BadSignatureError, ValueError):
            raise _refuse("bad-signature", f"the signature claimed for holder {holder!r} does "
                                           "not verify under its registered key.") from None
        return holder

    @classmethod
    def from_json(cls, data: bytes) -> Registry:
        try:
            doc = json.loads(data)
            return cls({name: VerifyKey(base64.b64decode(value))
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
            # forget what left the window, oldest first (rounds arrive about in issue order; one
            # kept a little longer is refused by the window check anyway): no pass over them all
            for old in list(itertools.takewhile(lambda n: now - self._seen[n] > self.window_ms,
                                                self._seen)):
                del self._seen[old]
            self._seen[nonce] = issued


def _no_mac_key(holder: str) -> WorkbenchUserError:
    return _refuse("unsigned-contribution", f"holder {holder!r} has no MAC key the key holder can "
                                            "read; starting the key holder as root gives every "
                                            "holder of the space one.")


def _no_weight_key() -> WorkbenchUserError:
    return _refuse("unsigned-contribution", "the holders' round-weight key (he/holder-macs/"
                                            f"{WEIGHTS_FILE}) is missing or unreadable; starting "
                                            "the key holder as root creates it.")


# -- the space's holder keys -----------------------------------------------------------------------
def ephemeral(holders, weight_key: bytes | None = None) -> tuple[dict[str, Signer], Registry]:
    """Fresh signing and MAC keys, and a round-weight key shared by all (``weight_key`` if
    given), for in-process federations (tests, holders' own validation)."""
    weight_key = weight_key or secrets.token_bytes(mac.KEY_BYTES)
    signers = {h: Signer(h, SigningKey.generate(), secrets.token_bytes(mac.KEY_BYTES),
                         weight_key) for h in holders}
    registry = Registry(weight_key=weight_key)
    for name, signer in signers.items():
        registry.trust(name, signer.public_raw, signer.mac_key)
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
    """Give every holder of the space (or ``holders``) a signing key and a MAC key if it has none
    yet; return the holders given a signing key now. Existing keys are kept. Run as root (or the
    space's owner)."""
    names = sorted(set(holders) if holders is not None else _space_holders(space))
    for name in names:
        if not HOLDER_NAME.match(name):
            raise WorkbenchUserError(f"holder name {name!r} cannot name a key file; use letters, "
                                     "digits, '.', '_' and '-'.", reason="bad-holder")
    registry = {}
    if space.holder_registry.exists():
        registry = json.loads(space.holder_registry.read_text())["holders"]
    owner = accounts.ensure_user(accounts.GATEWAY) if accounts.is_root() else None
    _create_mac_keys(space, names, owner)
    new = [n for n in names if n not in registry]
    if not new:
        return []
    space.holder_keys.mkdir(parents=True, exist_ok=True)
    os.chmod(space.holder_keys, 0o700)
    if owner:
        os.chown(space.holder_keys, *owner)
    for name in new:
        key = SigningKey.generate()
        write_key_file(space.holder_keys / f"{name}.key", bytes(key), 0o600, owner)
        registry[name] = base64.b64encode(Signer(name, key).public_raw).decode()
    tmp = space.holder_registry.with_name(".holders.json.tmp")
    tmp.write_text(json.dumps({"holders": registry}, indent=1, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, space.holder_registry)
    return new


def _create_mac_keys(space: Space, names: list[str], owner) -> None:
    """``he/holder-macs/<holder>.key`` and the round-weight key ``_weights.key``: 0640, the
    gateway account's, group the key holder's."""
    files = [f"{n}.key" for n in names] + [WEIGHTS_FILE]
    missing = [f for f in files if not (mac_dir(space.he) / f).exists()]
    if not missing:
        return
    group = accounts.ensure_user(accounts.KEYHOLDER)[1] if owner else None
    folder = mac_dir(space.he)
    folder.mkdir(parents=True, exist_ok=True)
    if owner:
        os.chown(folder, owner[0], group)
    os.chmod(folder, 0o750)  # noqa: S103 - the key holder's group reads the MAC keys
    for name in missing:
        write_key_file(folder / name, secrets.token_bytes(mac.KEY_BYTES), 0o640,
                       (owner[0], group) if owner else None)


def read_mac_key(he: Path, holder: str) -> bytes:
    """A holder's MAC key from the space (as the gateway account or the key holder)."""
    if not isinstance(holder, str) or not HOLDER_NAME.match(holder):
        raise _no_mac_key(str(holder)[:64])
    return _read_key(mac_dir(he) / f"{holder}.key", lambda: _no_mac_key(holder))


def read_weight_key(he: Path) -> bytes:
    """The holders' round-weight key (as the gateway account or the key holder)."""
    return _read_key(mac_dir(he) / WEIGHTS_FILE, _no_weight_key)


def _read_key(path: Path, missing) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise missing() from None
    except PermissionError:
        raise WorkbenchUserError(f"{path} is readable only by the {accounts.GATEWAY} and "
                                 f"{accounts.KEYHOLDER} accounts.",
                                 reason="access-denied") from None
    if len(key) != mac.KEY_BYTES:
        raise missing()
    return key


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

    def mac_key(self, holder: str) -> bytes:
        """Read on each round: a holder keyed later counts without a restart."""
        try:
            return read_mac_key(self.path.parent, holder)
        except WorkbenchUserError as exc:
            if exc.reason == "access-denied":  # fail closed, named as a missing key
                raise _no_mac_key(holder) from None
            raise

    def round_weight_key(self) -> bytes:
        try:
            return read_weight_key(self.path.parent)
        except WorkbenchUserError as exc:
            if exc.reason == "access-denied":
                raise _no_weight_key() from None
            raise


def signers_for(keyholder, holders) -> dict[str, Signer]:
    """Signing keys for ``holders`` that ``keyholder`` will trust: fresh ones registered with an
    in-process key holder, or the space's own when talking to a key holder (or aggregator)
    process of a space."""
    registry = getattr(keyholder, "registry", None)
    if isinstance(registry, Registry):
        if not registry.weight_key:  # one round-weight key per in-process key holder
            registry.weight_key = secrets.token_bytes(mac.KEY_BYTES)
        signers, _ = ephemeral(holders, registry.weight_key)
        for name, signer in signers.items():
            registry.trust(name, signer.public_raw, signer.mac_key)
        return signers
    space = getattr(keyholder, "space", None)
    if space is None:
        raise WorkbenchUserError("no signing keys for the holders: pass signers= (e.g. "
                                 "signing.load_signers(space, holders)).", reason="no-signers")
    return load_signers(space, holders)


def load_signers(space: Space, holders) -> dict[str, Signer]:
    """The holders' private signing keys, MAC keys and round-weight key (as the account that
    plays the holders)."""
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
        if len(raw) != 32:
            raise WorkbenchUserError(f"{path} is not a 32-byte Ed25519 key; restore it from the "
                                     "space's build.", reason="bad-key")
        out[name] = Signer(name, SigningKey(raw), read_mac_key(space.he, name))
    weight_key = read_weight_key(space.he)
    for signer in out.values():
        signer.weight_key = weight_key
    return out
