"""Signed policies: the policy a service acts on is the one an admin signed.

An admin's Ed25519 key (``workbench policy keygen``) is registered, by root, in the space's public
``admins.json``. ``workbench policy apply`` signs each new policy with a detached signature record
(``policy.yaml.sig``: serial, issue time, SHA-256 of the bytes, key id, signature over a
domain-separated message). Once a space lists an admin key, every service that acts on the policy
(gateway, airlock, hub, holder nodes) refuses an unsigned, altered, unknown-key or rolled-back
policy: fail closed. A space with no admin key yet (a development space) accepts an unsigned one.

The active policy lives in the space: ``policy/policy.yaml`` and ``policy/policy.yaml.sig``, each
replaced in one rename; every version is kept in ``policy/history/v<serial>.yaml`` (+ ``.sig``),
written once, so a serial is never reused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.policy.loader import parse_policy
from workbench.policy.model import Policy

log = logging.getLogger("workbench.policy")

# What is signed is this prefix and the record's canonical JSON: a policy signature can never be
# mistaken for (or replayed as) any other Ed25519 signature the space makes.
DOMAIN = b"workbench policy signature v1\x00"
SIGNED_FIELDS = ("serial", "issued_at", "sha256", "key_id")
SIGNATURE_SUFFIX = ".sig"


# -- where things live: Space.admin_keys, Space.policy_dir, Space.policy (workbench/paths.py) --
def signature_path(policy_path: str | os.PathLike) -> Path:
    path = Path(policy_path)
    return path.with_name(path.name + SIGNATURE_SUFFIX)


# -- signing and verifying -----------------------------------------------------------------------
def _message(record: dict) -> bytes:
    body = {name: record[name] for name in SIGNED_FIELDS}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_policy(policy_bytes: bytes, key: Ed25519PrivateKey, key_id: str, serial: int) -> dict:
    """The detached signature record of ``policy_bytes`` (JSON-able)."""
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise WorkbenchUserError("a policy serial is a whole number from 1", reason="bad-serial")
    record = {"serial": serial,
              "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "sha256": hashlib.sha256(policy_bytes).hexdigest(),
              "key_id": key_id}
    record["signature"] = base64.b64encode(key.sign(_message(record))).decode()
    return record


def _bad(message: str) -> WorkbenchUserError:
    return WorkbenchUserError(message, reason="bad-policy-signature")


def verify_policy(policy_bytes: bytes, record: dict | None,
                  admin_keys: dict[str, Ed25519PublicKey]) -> dict:
    """``record`` if it is a valid signature of ``policy_bytes`` by one of ``admin_keys``;
    otherwise WorkbenchUserError with reason ``unsigned-policy`` or ``bad-policy-signature``."""
    if record is None:
        raise WorkbenchUserError("the policy is not signed by an admin", reason="unsigned-policy")
    if not isinstance(record, dict) or any(name not in record for name in
                                           (*SIGNED_FIELDS, "signature")):
        raise _bad("the policy's signature record is malformed")
    serial = record["serial"]
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise _bad("the policy's signature record has no valid serial")
    if not all(isinstance(record[name], str) for name in ("issued_at", "sha256", "key_id",
                                                          "signature")):
        raise _bad("the policy's signature record is malformed")
    key = admin_keys.get(record["key_id"])
    if key is None:
        raise _bad(f"the policy is signed by key '{record['key_id'][:64]}', which is not a "
                   "registered admin key of the space")
    if hashlib.sha256(policy_bytes).hexdigest() != record["sha256"]:
        raise _bad("the policy file was changed after it was signed")
    try:
        key.verify(base64.b64decode(record["signature"], validate=True), _message(record))
    except (InvalidSignature, ValueError):
        raise _bad(f"the policy's signature does not verify with key '{record['key_id']}'") \
            from None
    return record


def check_serial(record: dict | None, newest: tuple[int, str] | None) -> None:
    """Refuse a policy older than ``newest`` (serial, sha256) that was already accepted, and a
    different policy under an accepted serial: an older signed policy put back is a rollback."""
    if record is None or newest is None:
        return
    serial, sha = newest
    if record["serial"] < serial or (record["serial"] == serial and record["sha256"] != sha):
        raise WorkbenchUserError(
            f"the policy has serial {record['serial']}, but serial {serial} was already in "
            "force: an older policy was put back (rollback)", reason="policy-rollback")


def read_signed(policy_path: Path) -> tuple[bytes, dict | None]:
    """The policy's bytes and its detached signature record (None when there is none), both
    read beside the file the path resolves to (a symlinked policy keeps its signature)."""
    real = Path(os.path.realpath(policy_path))
    data = real.read_bytes()
    try:
        sig_text = signature_path(real).read_text()
    except FileNotFoundError:
        return data, None
    try:
        record = json.loads(sig_text)
    except json.JSONDecodeError:
        raise _bad(f"{signature_path(real)} is not JSON") from None
    return data, record


# -- the space's active policy ------------------------------------------------------------------
def _history(space: Space) -> Path:
    return space.policy_dir / "history"


def newest_serial(space: Space) -> int:
    """The highest serial ever put in the space (0: none): the next one is this + 1."""
    found = [int(p.stem[1:]) for p in _history(space).glob("v*.yaml") if p.stem[1:].isdigit()]
    return max(found, default=0)


def _write_public(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Write a public (0644) file whole: aside, then one rename (exclusive: never over one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    if exclusive:
        try:
            os.link(tmp, path)
        finally:
            tmp.unlink()
    else:
        os.replace(tmp, path)


def stage(space: Space, policy_bytes: bytes, record: dict) -> Path:
    """Keep the signed policy as ``policy/history/v<serial>.yaml`` (+ ``.sig``), once: a serial
    is never reused. Nothing acts on it until ``activate``."""
    folder = _history(space)
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(space.policy_dir, 0o755)  # noqa: S103 - public, root-owned: services read it
    version = folder / f"v{record['serial']:06d}.yaml"
    try:
        _write_public(version, policy_bytes, exclusive=True)
    except FileExistsError:
        raise WorkbenchUserError(f"{version} exists: serial {record['serial']} was used already",
                                 reason="policy-serial-used") from None
    _write_public(signature_path(version), _record_bytes(record))
    return version


def activate(space: Space, version: Path) -> Path:
    """Put a staged version in force: the policy, then its signature, each in one rename (a
    reader between the two sees a mismatch, refuses, and reads again: ``ActivePolicy``)."""
    path = space.policy
    _write_public(path, version.read_bytes())
    _write_public(signature_path(path), signature_path(version).read_bytes())
    return path


def _record_bytes(record: dict) -> bytes:
    return (json.dumps(record, indent=2) + "\n").encode()


# -- admin keys ----------------------------------------------------------------------------------
def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_for(name: str, key: Ed25519PublicKey) -> str:
    """``<admin>-<first 12 hex of the key's SHA-256>``: readable, and distinct per key."""
    return f"{name}-{hashlib.sha256(_raw(key)).hexdigest()[:12]}"


def _registry(space: Space) -> list[dict]:
    path = space.admin_keys
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, json.JSONDecodeError):
        raise WorkbenchUserError(f"{path} cannot be read as JSON: restore it from a backup",
                                 reason="bad-admin-keys") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str)
            and isinstance(e.get("public_key"), str) for e in entries):
        raise WorkbenchUserError(f"{path}: field 'keys' must list {{id, public_key}} entries",
                                 reason="bad-admin-keys")
    return entries


def load_admin_keys(space: Space) -> dict[str, Ed25519PublicKey]:
    """{key id: public key} of the space's registered admins (empty: none registered)."""
    keys = {}
    for entry in _registry(space):
        try:
            raw = base64.b64decode(entry["public_key"], validate=True)
            keys[entry["id"]] = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise WorkbenchUserError(f"{space.admin_keys}: key '{entry['id'][:64]}' is not "
                                     "a base64 Ed25519 public key", reason="bad-admin-keys") \
                from None
    return keys


def admin_key_entries(space: Space) -> list[dict]:
    """The registry as stored (id, name, public_key, added_at) for listings."""
    return _registry(space)


def create_admin_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """A new Ed25519 key written to ``path`` (PEM, mode 0600, never over an existing file)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WorkbenchUserError(f"{path} exists: an admin key is never overwritten; choose "
                                 "another path", reason="key-exists") from None
    except OSError as exc:
        raise WorkbenchUserError(f"cannot create the admin key {path}: {exc.strerror}",
                                 reason="bad-key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def load_admin_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise WorkbenchUserError(f"cannot read the admin key {path}: {exc.strerror}",
                                 reason="bad-key") from None
    except (ValueError, TypeError):
        raise WorkbenchUserError(f"{path} is not an unencrypted PEM private key",
                                 reason="bad-key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise WorkbenchUserError(f"{path} is not an Ed25519 key", reason="bad-key")
    return key


def register_admin_key(space: Space, name: str, key: Ed25519PublicKey) -> str:
    """Add ``key`` to the space's admins (root only: it decides who may sign the policy)."""
    if os.geteuid() != 0:
        raise WorkbenchUserError("registering an admin key is a root action on the space: run "
                                 "it as root", reason="permission-denied")
    entries = _registry(space)
    key_id = key_id_for(name, key)
    if any(e["id"] == key_id for e in entries):
        return key_id
    entries.append({"id": key_id, "name": name,
                    "public_key": base64.b64encode(_raw(key)).decode(),
                    "added_at": datetime.now(UTC).isoformat(timespec="seconds")})
    _write_public(space.admin_keys, (json.dumps({"keys": entries}, indent=2) + "\n").encode())
    return key_id


def key_id_of(space: Space, key: Ed25519PrivateKey) -> str:
    """The registered id of a private key's public half, or a one-line refusal."""
    raw = _raw(key.public_key())
    for key_id, public in load_admin_keys(space).items():
        if _raw(public) == raw:
            return key_id
    raise WorkbenchUserError("this key is not a registered admin key of the space: register it "
                             "with 'workbench policy keygen' (as root)", reason="unknown-key")


def _stat(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:  # missing or unreadable: a stamp of its own, and the read says why
        return (None,)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


# -- the policy a service acts on ------------------------------------------------------------------
class ActivePolicy:
    """A policy file re-read when it (or its signature, or the admin keys) changes, verified
    before use. Any problem refuses everything (fail closed) until a good policy is in place.
    Keeps the newest serial it accepted, so an older signed policy put back is refused; once it
    has seen admin keys, an admins.json that disappears does not turn verification off."""

    def __init__(self, path: str | os.PathLike, space: Space, service: str = "the service"):
        self.path = Path(path)
        self.space = space
        self.service = service
        self.record: dict | None = None  # the signature record of the policy in force
        self._policy: Policy | None = None
        self._problem: WorkbenchUserError | None = None
        self._stamp = None
        self._newest: tuple[int, str] | None = None
        self._keys_seen = False
        self._lock = threading.Lock()
        self._watched = (str(self.path), str(signature_path(self.path)), str(space.admin_keys))

    def _stamp_now(self) -> tuple:
        # asked on every request: plain os.stat on prepared strings (pathlib costs 10x more)
        return tuple(_stat(path) for path in self._watched)

    def _load(self) -> tuple[Policy, dict | None]:
        data, record = read_signed(self.path)
        keys = load_admin_keys(self.space)
        if keys or self._keys_seen:
            self._keys_seen = True
            verify_policy(data, record, keys)
            check_serial(record, self._newest)
        else:
            record = None  # a development space: nothing to verify against
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise WorkbenchUserError(f"policy file {self.path} is not UTF-8 text",
                                     reason="bad-policy") from None
        return parse_policy(text, str(self.path)), record

    def current(self) -> Policy:
        with self._lock:
            for attempt in range(3):
                try:
                    stamp = self._stamp_now()
                except OSError:
                    stamp = None
                if stamp is not None and stamp == self._stamp:
                    break
                self._stamp = stamp
                try:
                    self._policy, self.record = self._load()
                    self._problem = None
                    if self.record is not None:
                        self._newest = (self.record["serial"], self.record["sha256"])
                    break
                except (OSError, WorkbenchUserError) as exc:
                    self._policy, self._problem = None, self._refusal(exc)
                # ``apply`` replaces the policy, then its signature: a read between the two
                # sees a mismatch; if the files moved on meanwhile, read them again
                time.sleep(0.05)
                if attempt == 2 or self._stamp_now() == stamp:
                    log.error("%s", self._problem)
                    break
            if self._problem is not None:
                raise WorkbenchUserError(str(self._problem), reason=self._problem.reason)
            return self._policy

    def _refusal(self, exc: Exception) -> WorkbenchUserError:
        problems = getattr(exc, "problems", None)  # a PolicyError: name its first line
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            why, reason = f"{problems[0]}{more}", exc.reason
        elif isinstance(exc, WorkbenchUserError):
            why, reason = str(exc).splitlines()[0], exc.reason
        else:
            why, reason = f"it cannot be read ({exc.strerror})", "policy-unavailable"
        return WorkbenchUserError(
            f"{self.service} refuses every request: policy file {self.path}: {why} "
            f"[{reason}]; an admin must put a valid signed policy in place "
            "('workbench policy apply').", reason="policy-unavailable")


_ACTIVE: dict[tuple[str, str, str], ActivePolicy] = {}
_ACTIVE_LOCK = threading.Lock()


def active_policy(path: str | os.PathLike, space: Space, service: str = "the service") \
        -> ActivePolicy:
    """One ActivePolicy per (file, space, service) in a process, so the serial it keeps spans
    every request (the hub's spawners and home page ask at each start or page)."""
    key = (str(path), str(space.root), service)
    with _ACTIVE_LOCK:
        if key not in _ACTIVE:
            _ACTIVE[key] = ActivePolicy(path, space, service)
        return _ACTIVE[key]
