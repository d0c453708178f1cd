"""Witness cosignatures on signed tree heads: their encoding, the space's witness list, where the
collector keeps them, and the one interface a witness answers.

A cosignature is a witness's Ed25519 signature over ``(log id, tree size, root, time)`` after it
checked that the head extends every head it cosigned before (RFC 9162 consistency). The collector's
own key cannot make one, so an operator who rewrites the log and re-signs the heads with that key
is left with heads no witness will cosign (see verify.py and workbench/node/witness.py).

The space lists its witnesses in the public file ``Space.witnesses`` (DATA_DIR/witnesses.json,
written by ``workbench provenance witnesses add``): ids, Ed25519 public keys, the quorum and the
grace period a new head may wait for its cosignatures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space

_DOMAIN = b"workbench-provenance-cosignature-v1\n"
_HEX = re.compile(r"^[0-9a-f]{1,128}$")
WITNESS_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
GRACE_SECONDS = 600  # how long the newest heads may wait for their cosignatures by default
COSIGNATURES_FILE = "cosignatures.jsonl"


class WitnessRefused(WorkbenchError):
    """A witness would not cosign. ``reason``: wrong-key, other-log, shrunk, fork, inconsistent
    (these are alarms: the log was rewritten or shown differently to someone), bad-head, or
    stale-proof (the proof starts from another size than the witness's; ``size`` says which)."""

    def __init__(self, reason: str, message: str, size: int | None = None):
        super().__init__(message)
        self.reason, self.size = reason, size


class WitnessClient(Protocol):
    """What the central side needs of a witness, wherever it runs (in process, a local account, a
    holder's node behind mTLS). ``old_size`` is the size the proof starts from; it must be the
    size of the last head the witness cosigned (0 for none), or the witness refuses with
    stale-proof and its own size."""

    def cosign(self, head: dict, proof: list[bytes], old_size: int | None = None) -> dict: ...


def check_id(name: str) -> str:
    if not isinstance(name, str) or not WITNESS_ID.match(name):
        raise WorkbenchUserError(f"witness id {str(name)[:64]!r} must match {WITNESS_ID.pattern}",
                                 reason="bad-witness-id")
    return name


# -- the cosignature ---------------------------------------------------------------------------

def message(log_id: str, tree_size: int, root_hash: str, when: int) -> bytes:
    """The signed bytes: a domain line, then one field per line. Each field is checked to be hex
    or a plain integer, so no two different tuples encode the same bytes."""
    if not (isinstance(log_id, str) and _HEX.match(log_id) and isinstance(root_hash, str)
            and re.fullmatch(r"[0-9a-f]{64}", root_hash)):
        raise ValueError("log id and root hash must be lower-case hex")
    if type(tree_size) is not int or type(when) is not int or tree_size < 0 or when < 0:
        raise ValueError("tree size and time must be non-negative integers")
    return _DOMAIN + f"{log_id}\n{tree_size}\n{root_hash}\n{when}\n".encode()


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, witness: str, head: dict, when: int | None = None) -> dict:
    when = int(time.time()) if when is None else when
    data = message(head["log_id"], head["tree_size"], head["root_hash"], when)
    return {"witness": witness, "key_id": key_id(key.public_key()), "log_id": head["log_id"],
            "tree_size": head["tree_size"], "root_hash": head["root_hash"], "time": when,
            "signature": base64.b64encode(key.sign(data)).decode()}


def signature_ok(public: Ed25519PublicKey, cosignature: dict) -> bool:
    try:
        data = message(cosignature["log_id"], cosignature["tree_size"],
                       cosignature["root_hash"], cosignature["time"])
        public.verify(base64.b64decode(cosignature["signature"], validate=True), data)
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
    return True


# -- the space's witness list ------------------------------------------------------------------

@dataclass(frozen=True)
class WitnessList:
    witnesses: dict[str, Ed25519PublicKey]
    quorum: int
    grace_seconds: int = GRACE_SECONDS
    endpoints: dict[str, str] = field(default_factory=dict)  # id -> "unix:PATH" (cosigner.py)

    def as_json(self) -> dict:
        entries = []
        for name, key in sorted(self.witnesses.items()):
            entry = {"id": name, "public_key": base64.b64encode(raw_public(key)).decode()}
            if name in self.endpoints:
                entry["endpoint"] = self.endpoints[name]
            entries.append(entry)
        return {"quorum": self.quorum, "grace_seconds": self.grace_seconds, "witnesses": entries}


def public_key_from(text: str, where: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise WorkbenchUserError(f"{where}: not an Ed25519 public key (base64 of 32 bytes)",
                                 reason="bad-witness-list") from None


def load_witnesses(path: Path) -> WitnessList | None:
    """The list at ``path``, or None when there is none (the log is then not witnessed)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        entries, quorum = data["witnesses"], data["quorum"]
        grace = data.get("grace_seconds", GRACE_SECONDS)
    except (ValueError, KeyError, TypeError) as exc:
        raise WorkbenchUserError(f"{path}: not a witness list ({type(exc).__name__}: needs "
                                 "'witnesses' and 'quorum')", reason="bad-witness-list") from None
    if not isinstance(entries, list):
        raise WorkbenchUserError(f"{path}: field 'witnesses' must be a list",
                                 reason="bad-witness-list")
    witnesses, endpoints = {}, {}
    for number, entry in enumerate(entries, start=1):
        name = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not WITNESS_ID.match(name):
            raise WorkbenchUserError(f"{path}: witness {number}: field 'id' must match "
                                     f"{WITNESS_ID.pattern}", reason="bad-witness-list")
        witnesses[name] = public_key_from(entry.get("public_key", ""),
                                          f"{path}: witness {name}: field 'public_key'")
        if "endpoint" in entry:
            if not isinstance(entry["endpoint"], str) or ":" not in entry["endpoint"]:
                raise WorkbenchUserError(f"{path}: witness {name}: field 'endpoint' must be "
                                         "SCHEME:ADDRESS (e.g. unix:/run/witness.sock)",
                                         reason="bad-witness-list")
            endpoints[name] = entry["endpoint"]
    listing = WitnessList(witnesses, quorum, grace, endpoints)
    check(listing, path)
    return listing


def check(listing: WitnessList, where: Path | str) -> None:
    if type(listing.quorum) is not int or not 1 <= listing.quorum <= len(listing.witnesses):
        raise WorkbenchUserError(f"{where}: field 'quorum' must be between 1 and the number of "
                                 f"witnesses ({len(listing.witnesses)})",
                                 reason="bad-witness-list")
    if type(listing.grace_seconds) is not int or listing.grace_seconds < 0:
        raise WorkbenchUserError(f"{where}: field 'grace_seconds' must be a whole number >= 0",
                                 reason="bad-witness-list")


def save_witnesses(space: Space, listing: WitnessList) -> None:
    """Write the public list atomically (0644: everyone who verifies reads it)."""
    check(listing, space.witnesses)
    fd, tmp = tempfile.mkstemp(dir=space.root, prefix=".witnesses-")
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(listing.as_json(), indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, space.witnesses)


# -- where the collector keeps them --------------------------------------------------------------

def cosignatures_path(space: Space) -> Path:
    return space.provenance / COSIGNATURES_FILE


def append_jsonl(path: Path, item: dict) -> None:
    """Append one JSON line, 0600, fsynced before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, json.dumps(item, sort_keys=True).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict]:
    """Objects from a JSON-lines file (cosignatures: the collector's, or ones a witness exported).
    Lines that are not JSON objects are skipped: a cosignature counts only once verify checked
    it."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            found.append(item)
    return found
