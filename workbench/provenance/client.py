"""The writers' side: append one record to the collector and wait for its durability ack.

    client = ProvenanceClient(space.collector_socket)
    record_id = client.append("view-read", {"study": "cml-tki", "view": "cml_cohort"})

``append`` returns only after the collector has committed the record; on any failure (no collector,
timeout, refused record, broken connection) it raises ``ProvenanceUnavailable`` and the caller must
refuse the action it was about to take (fail closed). A request is never retried once sent: a lost
ack could otherwise store the record twice.

Wire format (one JSON object per line, both ways): ``{"op": "append", "kind": K, "fields": F}``
-> ``{"ok": true, "id": HEX}`` or ``{"ok": false, "reason": LABEL, "message": TEXT}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import threading
from pathlib import Path

from workbench.errors import WorkbenchError

MAX_LINE = 4 * 1024 * 1024  # a cell's code may be long; anything bigger is refused
DEFAULT_TIMEOUT = 10.0


class ProvenanceUnavailable(WorkbenchError):
    """No durable record: the collector is down, slow, or refused the record. Refuse the action."""

    def __init__(self, message: str, reason: str = "provenance-unavailable"):
        super().__init__(message)
        self.reason = reason


class ProvenanceRefused(ProvenanceUnavailable):
    """The collector refused the record itself (unknown kind, a field breaking its schema)."""


def _encode(request: dict) -> bytes:
    try:
        line = json.dumps(request, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        # the message names the offending type only, never a value
        raise ProvenanceRefused(f"record fields are not plain JSON: {type(exc).__name__}",
                                reason="record-refused") from None
    if len(line) > MAX_LINE:
        raise ProvenanceRefused(f"record is larger than {MAX_LINE} bytes", reason="record-refused")
    return line


def _decode(line: bytes, socket_path: Path) -> dict:
    if not line.endswith(b"\n"):
        raise ProvenanceUnavailable(f"provenance collector at {socket_path} closed the connection "
                                    "before acknowledging the record")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ProvenanceUnavailable("provenance collector sent an unreadable reply") from None
    if not isinstance(reply, dict):
        raise ProvenanceUnavailable("provenance collector sent an unreadable reply")
    if not reply.get("ok"):
        raise ProvenanceRefused(str(reply.get("message", "record refused")),
                                reason=str(reply.get("reason", "record-refused")))
    return reply


class ProvenanceClient:
    """Thread-safe: each thread keeps its own connection to the collector's Unix socket."""

    def __init__(self, socket_path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT):
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._local = threading.local()

    # -- synchronous ---------------------------------------------------------------------------
    def append(self, kind: str, fields: dict) -> str:
        """Store one record; return its id (the record's SHA-256 hex) once it is durable."""
        return self._call({"op": "append", "kind": kind, "fields": fields})["id"]

    def ping(self) -> None:
        """Raise ProvenanceUnavailable unless the collector answers."""
        self._call({"op": "ping"})

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    def _connection(self) -> tuple[socket.socket, object]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid != os.getpid():
            # a forked child must not share its parent's connection (replies would interleave)
            self._local.conn = conn = None
        if conn is not None:
            # a readable idle connection means the collector closed it (e.g. it restarted)
            readable, _, _ = select.select([conn], [], [], 0)
            if readable:
                self.close()
                conn = None
        if conn is None:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(self.timeout)
            try:
                conn.connect(str(self.socket_path))
            except OSError as exc:
                conn.close()
                raise ProvenanceUnavailable(
                    f"provenance collector unreachable at {self.socket_path} "
                    f"({exc.strerror or type(exc).__name__}); start it with "
                    "'workbench collector --data-dir DIR'") from None
            self._local.conn, self._local.pid = conn, os.getpid()
            self._local.reader = conn.makefile("rb")
        return conn, self._local.reader

    def _call(self, request: dict) -> dict:
        line = _encode(request)
        conn, reader = self._connection()
        try:
            conn.sendall(line)
            reply_line = reader.readline(MAX_LINE)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise ProvenanceUnavailable(
                f"no acknowledgement from the provenance collector at {self.socket_path} "
                f"({type(exc).__name__})") from None
        try:
            return _decode(reply_line, self.socket_path)
        except ProvenanceUnavailable:
            if not reply_line.endswith(b"\n"):
                self.close()
            raise

    # -- asyncio ---------------------------------------------------------------------------------
    async def append_async(self, kind: str, fields: dict) -> str:
        """``append`` for asyncio callers (one short connection per record)."""
        line = _encode({"op": "append", "kind": kind, "fields": fields})
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(
                    str(self.socket_path), limit=MAX_LINE)
                try:
                    writer.write(line)
                    await writer.drain()
                    reply_line = await reader.readline()
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError) as exc:
            raise ProvenanceUnavailable(
                f"no acknowledgement from the provenance collector at {self.socket_path} "
                f"({type(exc).__name__})") from None
        return _decode(reply_line, self.socket_path)["id"]
