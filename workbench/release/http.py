"""A small HTTP/1.1 client over a Unix socket (the airlock's socket, or a gateway's)."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

from workbench.errors import WorkbenchError, WorkbenchUserError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class UnixHTTP:
    def __init__(self, path: str | Path, timeout: float = 60.0, headers: dict | None = None):
        self.path = str(path)
        self.timeout = timeout
        self.headers = dict(headers or {})

    def request(self, method: str, url: str, body: dict | None = None,
                headers: dict | None = None) -> tuple[int, bytes, str]:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            all_headers = {**self.headers, **(headers or {})}
            if data is not None:
                all_headers["Content-Type"] = "application/json"
            conn.request(method, url, body=data, headers=all_headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or ""
        finally:
            conn.close()

    def json(self, method: str, url: str, body: dict | None = None, headers: dict | None = None):
        """The decoded JSON reply; an error reply is raised as WorkbenchUserError (4xx, with its
        reason) or WorkbenchError (5xx)."""
        status, data, _ = self.request(method, url, body, headers)
        return decode_reply(status, data)


def decode_reply(status: int, data: bytes):
    try:
        reply = json.loads(data)
    except ValueError:
        raise WorkbenchError(f"unreadable reply (HTTP {status})") from None
    if status >= 400:
        error = reply.get("error", {}) if isinstance(reply, dict) else {}
        message = error.get("message", f"HTTP {status}")
        if status < 500:
            raise WorkbenchUserError(message, reason=error.get("reason", "bad-request"))
        raise WorkbenchError(message)
    return reply
