"""The one HTTP/1.1 client over a Unix socket: the notebook's to its study's gateway socket, the
services' and dashboards' to the airlock's. The stdlib client: it reads a large Arrow body in a
few big reads, noticeably faster than pure-Python HTTP stacks, and it needs nothing installed in
a sandbox."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

from workbench.errors import WorkbenchError, WorkbenchUserError


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` whose transport is the Unix socket ``path``."""

    def __init__(self, path: str | Path, timeout: float, host: str = "localhost"):
        super().__init__(host, timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class UnixHTTP:
    """JSON requests to one socket, with default headers (a trusted caller's identity claims)."""

    def __init__(self, path: str | Path, timeout: float = 60.0, headers: dict | None = None):
        self.path = str(path)
        self.timeout = timeout
        self.headers = dict(headers or {})

    def request(self, method: str, url: str, body: dict | None = None,
                headers: dict | None = None) -> tuple[int, bytes, str]:
        conn = UnixHTTPConnection(self.path, self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            all_headers = {**self.headers, **(headers or {})}
            if data is not None:
                all_headers["Content-Type"] = "application/json"
            try:
                conn.request(method, url, body=data, headers=all_headers)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # a server that refuses the caller before reading the body (the airlock's peer
                # check) answers and hangs up while the body is still being sent: its answer
                # is waiting on the socket, and it is the one that says why
                try:
                    response = conn.getresponse()
                except (OSError, http.client.HTTPException):
                    raise exc from None
            else:
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
