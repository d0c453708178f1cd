"""Reviewer tokens: how a dashboard kernel (untrusted, sandboxed) proves which reviewer it serves.

The review service knows the reviewer from hub OAuth and mints a short-lived token signed with a
key only it and the airlock can read; the kernel relays the token, and the airlock verifies it.
The kernel cannot mint a token for anyone else and a token expires with the dashboard visit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from workbench.errors import WorkbenchUserError

DEFAULT_TTL = 8 * 3600


def load_or_create_key(path: Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created meanwhile by another process
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(key: bytes, user: str, study: str, ttl: int = DEFAULT_TTL,
               now: float | None = None) -> str:
    claims = {"user": user, "study": study, "exp": int((now or time.time()) + ttl)}
    body = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    mac = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify_token(key: bytes, token: str, now: float | None = None) -> dict:
    try:
        body, mac = token.split(".", 1)
        expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, mac):
            raise ValueError("bad mac")
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError):
        raise WorkbenchUserError("the reviewer token is not valid: reload the dashboard",
                                 reason="unauthenticated") from None
    if not isinstance(claims, dict) or claims.get("exp", 0) < (now or time.time()):
        raise WorkbenchUserError("the reviewer token has expired: reload the dashboard",
                                 reason="unauthenticated")
    return claims
