"""The HE services' wire format (key holder, aggregator, holder processes): one framed message is
a JSON header plus raw binary blobs.

    frame := b"WBHE" version:u8 header_len:u32 header:JSON blob_count:u32 (blob_len:u32 blob)*

Ciphertexts travel as SEAL/TenSEAL serialized bytes, never as pickles, so the same frames work over
a Unix socket on one machine and over a TLS stream between hosts. Every size is bounded before
anything is allocated; a bad frame raises ``WireError`` (a ``WorkbenchUserError``: the sender
made it).
"""

from __future__ import annotations

import json
import socket
import struct

from workbench.errors import WorkbenchUserError

MAGIC = b"WBHE"
VERSION = 1
MAX_HEADER = 1 << 20  # 1 MiB of JSON is far more than any request needs
MAX_BLOB = 1 << 24  # one ciphertext is at most ~0.5 MB at the space's parameters
MAX_BLOBS = 512
_U32 = struct.Struct(">I")


class WireError(WorkbenchUserError):
    def __init__(self, message: str):
        super().__init__(f"Malformed HE message: {message}", reason="malformed-message")


def encode(header: dict, blobs: list[bytes] = ()) -> bytes:
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    parts = [MAGIC, bytes([VERSION]), _U32.pack(len(head)), head, _U32.pack(len(blobs))]
    for blob in blobs:
        parts += [_U32.pack(len(blob)), bytes(blob)]
    return b"".join(parts)


class _Reader:
    """Reads a frame either from a byte string or from a socket, with the same checks."""

    def __init__(self, data: bytes | None = None, sock: socket.socket | None = None,
                 stream=None):
        self.data, self.pos, self.sock, self.stream = data, 0, sock, stream

    def take(self, n: int) -> bytes:
        if self.sock is not None or self.stream is not None:
            chunks, left = [], n
            while left:
                chunk = (self.sock.recv(min(left, 1 << 20)) if self.sock is not None
                         else self.stream.read(left))
                if not chunk:
                    raise WireError("the connection closed in the middle of a frame")
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        if self.pos + n > len(self.data):
            raise WireError("the frame is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]


def _read(reader: _Reader, max_blob: int = MAX_BLOB) -> tuple[dict, list[bytes]]:
    if reader.take(4) != MAGIC:
        raise WireError("it does not start with the WBHE magic bytes (not a workbench HE frame)")
    version = reader.take(1)[0]
    if version != VERSION:
        raise WireError(f"frame version {version} is not supported (this side speaks {VERSION})")
    size = reader.u32()
    if size > MAX_HEADER:
        raise WireError(f"header of {size} bytes exceeds the {MAX_HEADER}-byte limit")
    try:
        header = json.loads(reader.take(size))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WireError("the header is not valid JSON") from None
    if not isinstance(header, dict):
        raise WireError("the header must be a JSON object")
    count = reader.u32()
    if count > MAX_BLOBS:
        raise WireError(f"{count} blobs exceed the limit of {MAX_BLOBS}")
    blobs = []
    for _ in range(count):
        n = reader.u32()
        if n > max_blob:
            raise WireError(f"a blob of {n} bytes exceeds the {max_blob}-byte limit")
        blobs.append(reader.take(n))
    return header, blobs


def decode(data: bytes) -> tuple[dict, list[bytes]]:
    reader = _Reader(data=data)
    out = _read(reader)
    if reader.pos != len(data):
        raise WireError("trailing bytes after the frame")
    return out


def recv(sock: socket.socket) -> tuple[dict, list[bytes]]:
    return _read(_Reader(sock=sock))


def read_stream(stream, max_blob: int = MAX_BLOB) -> tuple[dict, list[bytes]]:
    """One frame from a binary file object (a pipe)."""
    return _read(_Reader(stream=stream), max_blob)


def send(sock: socket.socket, header: dict, blobs: list[bytes] = ()) -> None:
    sock.sendall(encode(header, blobs))
