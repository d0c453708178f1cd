"""Signed tree heads: the collector's Ed25519 signature over (log id, tree size, root, time).

The private key lives in DATA_DIR/provenance/tree-head.key (0600, collector uid); writers never see
it. Every head is stored in the database *and* appended to DATA_DIR/provenance/heads.jsonl, so a
replaced or truncated database is caught against the heads file, and ``workbench provenance heads
export`` lets an admin anchor heads outside the space (a second medium, a witness).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workbench.errors import WorkbenchError
from workbench.paths import Space

_DOMAIN = b"workbench-provenance-tree-head-v1\n"
_SIGNED_FIELDS = ("log_id", "tree_size", "root_hash", "timestamp")


def key_path(space: Space) -> Path:
    return space.provenance / "tree-head.key"


def public_key_path(space: Space) -> Path:
    return space.provenance / "tree-head.pub"


def heads_log_path(space: Space) -> Path:
    return space.provenance / "heads.jsonl"


def load_or_create_key(space: Space) -> Ed25519PrivateKey:
    """The collector's signing key, created on first start (0600, readable by its owner only)."""
    path = key_path(space)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        public_key_path(space).write_bytes(public_pem(key.public_key()))
        os.chmod(public_key_path(space), 0o644)
    if path.stat().st_mode & 0o077:
        raise WorkbenchError(f"{path} must be readable by the collector only (mode 0600)")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise WorkbenchError(f"{path} is not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise WorkbenchError("the tree-head public key is not an Ed25519 key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(head: dict) -> bytes:
    return _DOMAIN + json.dumps({name: head[name] for name in _SIGNED_FIELDS},
                                sort_keys=True, separators=(",", ":")).encode()


def sign_head(key: Ed25519PrivateKey, log_id: str, tree_size: int, root: bytes,
              timestamp: datetime | None = None) -> dict:
    head = {"log_id": log_id, "tree_size": tree_size, "root_hash": root.hex(),
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(timespec="microseconds")}
    head["key_id"] = key_id(key.public_key())
    head["signature"] = base64.b64encode(key.sign(_message(head))).decode()
    return head


def head_signature_ok(public: Ed25519PublicKey, head: dict) -> bool:
    try:
        public.verify(base64.b64decode(head["signature"], validate=True), _message(head))
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
    return True


def append_head_log(space: Space, head: dict) -> None:
    """Append one head to heads.jsonl and fsync: it must survive a crash of the collector."""
    fd = os.open(heads_log_path(space), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, json.dumps(head, sort_keys=True).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_head_log(path: Path) -> list[dict]:
    """Heads from a heads.jsonl file or an exported heads document (``{"heads": [...]}``).

    A line that is not JSON becomes ``{"invalid_line": N}`` (verify reports it), except a torn
    last line, which a crash while appending leaves behind and which is skipped."""
    if not path.exists():
        return []
    text = path.read_text()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("heads"), list):
        return list(document["heads"])
    lines = text.splitlines()
    heads = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            heads.append(json.loads(line))
        except ValueError:
            if number < len(lines) or text.endswith("\n"):
                heads.append({"invalid_line": number})
    return heads
