"""The one Unix-socket HTTP client (workbench/unixhttp.py) against a real socket server."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from workbench.errors import WorkbenchUserError
from workbench.unixhttp import UnixHTTP

REFUSAL = json.dumps({"error": {"reason": "access-denied", "message": "not for you"}}).encode()


def _refuse_before_the_body(listener: socket.socket) -> None:
    """Read the request head only, answer 403 and hang up, as the airlock's peer check does."""
    conn, _ = listener.accept()
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(REFUSAL) + REFUSAL)
        conn.shutdown(socket.SHUT_WR)


def test_a_refusal_sent_before_the_body_is_read_reaches_the_caller():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "refuser.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        server = threading.Thread(target=_refuse_before_the_body, args=(listener,), daemon=True)
        server.start()
        try:
            # 16 MiB: far more than the socket buffers, so the server hangs up mid-body
            with pytest.raises(WorkbenchUserError) as refused:
                UnixHTTP(path, timeout=30).json("POST", "/requests", {"blob": "x" * (16 << 20)})
            assert refused.value.reason == "access-denied" and "not for you" in str(refused.value)
        finally:
            server.join(30)
            listener.close()
