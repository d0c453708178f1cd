"""The gateway's socket binder: binds a study's two sockets, also after the gateway dropped root.

A study's sockets are the boundary's first layer: owned by the study's kernel account, mode 0600,
so only that uid (and root, which the gateway's peer check then refuses) can connect; the second
layer is the gateway's SO_PEERCRED check on every request. Making a file owned by another uid
needs root, and a study added by ``workbench policy apply`` appears while the gateway runs as
``wb-gateway``. So, as root, the gateway starts this binder (``python -m
workbench.gateway.binder``), a small root process that does only this, over a socketpair only the
two hold (SOCK_SEQPACKET, one message per request)::

    "bind STUDY"    -> "ok UID" + the two listening sockets' fds (SCM_RIGHTS) | "no WHY"
    "unbind STUDY"  -> "ok" (its socket files removed)                          | "no WHY"

It binds only for a study in the verified policy in force (its own ``ActivePolicy``) and unbinds
only a study no longer in it, so a subverted gateway gets no socket it could not have had at
start. It creates the study's kernel account if the hub has not yet (as the gateway did at
start). It exits when the gateway's end closes (the gateway stopped or died). Without root (a
development space) the gateway binds in its own process and nothing is chowned.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.policy.model import STUDY_ID
from workbench.runtime import bind_socket, remove_stale_socket

log = logging.getLogger("workbench.gateway")
MESSAGE = 512  # bytes: a verb and a study id, or a one-line answer


def bind_study(space: Space, study: str) -> tuple[int, list[socket.socket]]:
    """The study's kernel uid and its two listening sockets (gateway, re-run), 0600 and owned by
    that uid when root."""
    uid, gid = accounts.ensure_user(accounts.study_kernel_user(study))
    owner = (uid, gid) if accounts.is_root() else None
    return uid, [bind_socket(space.gateway_socket(study), 0o600, owner),
                 bind_socket(space.rerun_socket(study), 0o600, owner)]


def unbind_study(space: Space, study: str) -> None:
    for path in (space.gateway_socket(study), space.rerun_socket(study)):
        remove_stale_socket(path)


class Binder:
    """The gateway's side: ``bind(study) -> (uid, [listener, rerun_listener])``, ``unbind``."""

    def __init__(self, space: Space, policy_path: Path):
        self.space = space
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        if not accounts.is_root():
            return
        self._channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workbench.gateway.binder", str(space.root),
                 str(policy_path), str(theirs.fileno())], pass_fds=(theirs.fileno(),))

    def _ask(self, message: str) -> tuple[str, list[int]]:
        with self._lock:
            self._channel.send(message.encode())
            answer, fds, _flags, _addr = socket.recv_fds(self._channel, MESSAGE, 2)
        if not answer:
            raise WorkbenchError("the gateway's socket binder stopped")
        text = answer.decode(errors="replace")
        if not text.startswith("ok"):
            for fd in fds:
                socket.close(fd)
            raise WorkbenchError(f"the gateway's socket binder refused '{message}': {text[3:]}")
        return text, fds

    def bind(self, study: str) -> tuple[int, list[socket.socket]]:
        if self.process is None:
            return bind_study(self.space, study)
        text, fds = self._ask(f"bind {study}")
        listeners = [socket.socket(fileno=fd) for fd in fds]
        if len(listeners) != 2:
            for listener in listeners:
                listener.close()
            raise WorkbenchError("the gateway's socket binder sent no sockets")
        return int(text.split()[1]), listeners

    def unbind(self, study: str) -> None:
        if self.process is None:
            unbind_study(self.space, study)
        else:
            self._ask(f"unbind {study}")

    def close(self) -> None:
        if self.process is not None:
            self._channel.close()  # the binder sees the end of the channel and exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                log.error("the gateway's socket binder did not stop")


def serve(channel: socket.socket, space: Space, policy_path: Path) -> None:
    """The binder's loop (root): one answer per message until the gateway's end closes."""
    from workbench.policy.signed import ActivePolicy

    source = ActivePolicy(policy_path, space, "the gateway's socket binder")
    while message := channel.recv(MESSAGE):
        verb, _, study = message.decode(errors="replace").partition(" ")
        try:
            if not STUDY_ID.fullmatch(study) or verb not in ("bind", "unbind"):
                raise WorkbenchUserError("not a request", reason="bad-request")
            in_force = study in source.current().studies
            if verb == "bind":
                if not in_force:
                    raise WorkbenchUserError("no such study in the policy in force",
                                             reason="unknown-study")
                uid, listeners = bind_study(space, study)
                socket.send_fds(channel, [f"ok {uid}".encode()], [s.fileno() for s in listeners])
                for listener in listeners:
                    listener.close()
                continue
            if in_force:
                raise WorkbenchUserError("the study is in the policy in force", reason="in-force")
            unbind_study(space, study)
            channel.send(b"ok")
        except (WorkbenchError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            log.error("binder: %s %s refused: %s", verb[:10], study[:40], reason)
            channel.send(f"no {reason}".encode()[:MESSAGE])


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root, policy_path, fd = argv
    with contextlib.suppress(KeyboardInterrupt), \
            socket.socket(fileno=int(fd)) as channel:
        serve(channel, Space.at(root), Path(policy_path))


if __name__ == "__main__":
    main(sys.argv[1:])
