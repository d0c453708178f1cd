"""Release attestations: the key holder signs every result it releases (security boundary).

The key holder is the release checker: it alone sees a pooled aggregate in plaintext and applies
the disclosure rules. Everything it releases leaves with an Ed25519 signature over the result and
what it describes (study, request, operation, the hash of the public spec), so the airlock can
tell numbers the release checker produced from numbers a kernel typed in, and re-check the signed
numbers instead of the kernel's copy of them.

Files: ``he/release.key`` (0600, the key holder account) and ``he/release.pub`` (0644), made by
``create_release_key`` beside the HE keys. An in-process ``KeyHolder`` (``Federation``) signs with
a fresh key of its own; its attestations verify only against that key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space

DOMAIN = b"workbench-release-attestation-v1\n"  # a signature means nothing outside this use
KEY_FILE, PUB_FILE = "release.key", "release.pub"
BODY_FIELDS = frozenset({"study", "request_id", "op", "kind", "spec_sha256", "result",
                         "checks"})
# The view the result describes and the public spec (its levels, grid, for a model the
# coefficients of the round): the key holder signs them too, so the airlock can check the
# view a request names and a model's final coefficients.
OPTIONAL_FIELDS = frozenset({"view", "spec"})


def canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def key_id(verify_key: VerifyKey) -> str:
    return hashlib.sha256(bytes(verify_key)).hexdigest()[:16]


def _message(body: dict, result_sha256: str) -> bytes:
    """What is signed: the body with its result replaced by the result's digest (the key
    holder has that digest already, for its provenance record: the result is encoded once)."""
    head = {k: v for k, v in body.items() if k != "result"} | {"result_sha256": result_sha256}
    return DOMAIN + canonical(head)


def result_digest(result: dict) -> tuple[bytes, str]:
    """The result's canonical encoding and its sha256."""
    encoded = canonical(result)
    return encoded, hashlib.sha256(encoded).hexdigest()


def sign(key: SigningKey, body: dict, result_sha256: str | None = None) -> dict:
    """``{"body", "key_id", "signature"}`` for one released result."""
    digest = result_sha256 or result_digest(body["result"])[1]
    signature = key.sign(_message(body, digest)).signature
    return {"body": body, "key_id": key_id(key.verify_key),
            "signature": base64.b64encode(signature).decode()}


def verify(attestation, verify_key: VerifyKey) -> dict:
    """The attested body, or ``unverified-result`` when anything does not check out."""
    try:
        body = attestation["body"]
        signature = base64.b64decode(attestation["signature"], validate=True)
        if not isinstance(body, dict) or not BODY_FIELDS <= set(body) <= BODY_FIELDS | \
                OPTIONAL_FIELDS:
            raise ValueError
        verify_key.verify(_message(body, result_digest(body["result"])[1]), signature)
    except (KeyError, TypeError, ValueError, BadSignatureError):
        raise WorkbenchUserError("the result does not carry a valid signature of this space's "
                                 "release checker: it is treated as unverified output.",
                                 reason="unverified-result") from None
    return body


def create_release_key(space: Space) -> None:
    """The key holder's signing key (0600, its account) and the public half (0644)."""
    from workbench.secure.keys import write_key_file

    key = SigningKey.generate()
    owner = accounts.ensure_user(accounts.KEYHOLDER) if accounts.is_root() else None
    write_key_file(space.he / KEY_FILE, bytes(key), 0o600, owner)
    write_key_file(space.he / PUB_FILE, bytes(key.verify_key), 0o644, None)


def load_signing_key(space: Space) -> SigningKey:
    return SigningKey(_read(space.he / KEY_FILE, 32))


def load_verify_key(space: Space) -> VerifyKey:
    return VerifyKey(_read(space.he / PUB_FILE, 32))


def _read(path: Path, size: int) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WorkbenchUserError(f"{path} is missing: the space has no release-signing key; "
                                 "run 'workbench init' (or rebuild the space).",
                                 reason="no-release-key") from None
    if len(data) != size:
        raise WorkbenchUserError(f"{path} is not a {size}-byte Ed25519 key.",
                                 reason="bad-key")
    return data
