"""The space's own keys: the Ed25519 key that signs ownership certificates, the linkage key and
the gateway's study re-keying key. Created once by ``workbench init``; see docs/space.md."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.space import linkage


def create_space_keys(space: Space) -> None:
    """Write signing.key, linkage.key (keys/, root only), signing.pub (public) and the gateway's
    re-keying key. Files are created exclusively: an existing key is never overwritten."""
    space.keys.mkdir(mode=0o700)
    signing = Ed25519PrivateKey.generate()
    pem = signing.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(space.signing_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    space.signing_pub.write_bytes(public_pem(signing.public_key()))
    os.chmod(space.signing_pub, 0o644)
    linkage.write_key(space.linkage_key, linkage.new_key())
    space.holders.mkdir(exist_ok=True)
    linkage.write_key(linkage.study_rekey_key_path(space), linkage.new_key())


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signing_key(space: Space) -> Ed25519PrivateKey:
    try:
        data = space.signing_key.read_bytes()
    except PermissionError:
        raise WorkbenchUserError(
            f"{space.signing_key} is readable by root only: run this command as root.",
            reason="permission-denied",
        ) from None
    except FileNotFoundError:
        raise WorkbenchUserError(
            f"{space.signing_key} is missing: is {space.root} a space built by 'workbench init'?",
            reason="no-space",
        ) from None
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise WorkbenchError(f"{space.signing_key} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise WorkbenchUserError(
            f"{path} is missing: is this a space built by 'workbench init'?", reason="no-space"
        ) from None
    except ValueError:
        raise WorkbenchUserError(
            f"{path} is not a PEM public key: restore it from the space's build.",
            reason="bad-key",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise WorkbenchUserError(f"{path} is not an Ed25519 public key", reason="bad-key")
    return key


def load_linkage_key(space: Space) -> bytes:
    return linkage.read_key(space.linkage_key)
