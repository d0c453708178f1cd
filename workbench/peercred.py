"""Who is on the other end of a Unix socket, from the kernel (SO_PEERCRED), never from anything
the peer says: the identity every local service decides on. A leaf module: it imports nothing
of the project."""

from __future__ import annotations

import socket
import struct

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process connected to ``sock``."""
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                 _CRED.size))
    return pid, uid, gid


def request_peer_uid(request) -> int | None:
    """The peer uid of an aiohttp request on a Unix socket (None on any other transport)."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    return peer_credentials(sock)[1]
