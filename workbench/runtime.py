"""Running a space's services: the one way to start one as a child process, wait until it is
ready and stop it (tests, benchmarks, ``workbench demo``, ``workbench run``), and, inside the
service, to bind its socket and drop to its own account.

    handle = start_service("provenance collector", workbench_command("collector", ...),
                           sockets=(space.collector_socket,), ready=lambda h: ping())

A service is started through its ``workbench`` click command, the same one an admin runs; as root
it binds its socket and then drops to its own account itself. A service that does not start is a
one-line ``WorkbenchUserError`` naming it and its log file (kept for reading), never a traceback.

A leaf module: it imports nothing of the workbench but its errors, so every component can use it
and ``workbench.services`` can import the components.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from workbench.errors import WorkbenchError, WorkbenchUserError

POLL = 0.05  # seconds between readiness checks


def workbench_command(*args: str) -> list[str]:
    """``workbench ARGS...`` with this interpreter (which need not be on root's PATH)."""
    return [sys.executable, "-m", "workbench.cli", *args]


def socket_answers(path: Path, timeout: float = 1.0) -> bool:
    """True when something accepts a connection on the Unix socket ``path`` (a killed service
    leaves its socket file behind: the file alone says nothing)."""
    if not Path(path).is_socket():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def bind_socket(path: Path, mode: int, owner: tuple[int, int] | None = None) -> socket.socket:
    """A service's listening socket at ``path``: a stale socket file is replaced, anything else
    there is refused; bound under a umask that lets nobody connect before ``mode`` (and the
    ``owner`` uid, gid) are set. Who may use it is then decided per connection (SO_PEERCRED)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()
    elif path.exists() or path.is_symlink():
        raise WorkbenchUserError(f"{path} exists and is not a socket: remove it first",
                                 reason="socket-path-taken")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    if owner:
        os.chown(path, *owner)
    os.chmod(path, mode)
    listener.listen(64)
    return listener


def drop_privileges(ids: tuple[int, int] | None) -> None:
    """Become the service's own account (uid, gid) for good, with no supplementary groups;
    ``None`` (not root: development) keeps the caller's. Checked, not assumed."""
    if ids is None:
        return
    uid, gid = ids
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (uid, uid, gid, gid):
        raise WorkbenchError(f"could not drop privileges to uid {uid}")


def stop_requested() -> asyncio.Event:
    """Inside a service's event loop: an event set when SIGTERM or SIGINT arrives, the way every
    service is told to stop (``ServiceProcess.stop``, Ctrl-C). Call it before saying ready, so
    a stop sent right after is never lost to the default handler."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def remove_stale_socket(path: Path) -> None:
    """A socket file left by an earlier (killed) service must not pass for the new one."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()


class ServiceProcess:
    """A space service running as a child process: its log, the socket files it leaves behind,
    and a clean stop. After ``stop`` its output is kept in memory and the log file removed."""

    def __init__(self, process: subprocess.Popen, log_path: Path, sockets: Sequence[Path] = (),
                 label: str = "service"):
        self.process, self.log_path, self.label = process, Path(log_path), label
        self.sockets = tuple(Path(s) for s in sockets)
        self._output: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """What the service printed (its log lines; services never log a patient value)."""
        if self._output is not None:
            return self._output
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it hangs; remove its socket files (a service that dropped
        privileges cannot remove what it bound as root). Keeps the log. Returns the status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in self.sockets:
            remove_stale_socket(path)
        return self.process.returncode

    def stop(self, timeout: float = 10.0) -> int:
        """``terminate``, then keep the output in memory and remove the log file."""
        status = self.terminate(timeout)
        if self._output is None:
            self._output = self.output()
            with contextlib.suppress(OSError):
                self.log_path.unlink()
        return status

    def kill(self) -> None:
        """SIGKILL (crash tests): no drain, no clean shutdown."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _not_started(handle: ServiceProcess, why: str) -> WorkbenchUserError:
    """One line: which service, why, the service's own one-line error if it printed one, and
    where its log is (kept: the process is stopped, its log file is not removed)."""
    handle.terminate()
    # its own words: the CLI's user error ("error: ...", first line of a longer one) or an
    # internal fault's last traceback line, if a workbench error (they never carry a patient
    # value; a library's exception might, so it is not quoted)
    said = [line.strip().removeprefix("workbench.errors.")
            for line in reversed(handle.output().splitlines())
            if line.startswith(("error: ", "workbench.errors."))]
    own = f" ({said[0][:300]})" if said else ""
    return WorkbenchUserError(f"the {handle.label} did not start: {why}{own}; its log is "
                              f"{handle.log_path}", reason="service-did-not-start")


def start_service(label: str, command: list[str], ready: Callable[[ServiceProcess], bool],
                  sockets: Sequence[Path] = (), ready_timeout: float = 30.0,
                  handle_type: Callable[..., ServiceProcess] = ServiceProcess,
                  pass_fds: Sequence[int] = ()) -> ServiceProcess:
    """Run ``command`` (see ``workbench_command``) in its own session with its output in a
    temporary log; return its handle once ``ready(handle)`` is true. ``sockets`` are removed
    first (stale ones must not answer for it) and after it stops. ``handle_type(process,
    log_path, sockets, label)`` makes the handle. Raises WorkbenchUserError naming the service
    and its log when the process exits first or is not ready within ``ready_timeout`` s."""
    for path in sockets:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        remove_stale_socket(Path(path))
    fd, name = tempfile.mkstemp(prefix=f"wb-{label.replace(' ', '-')}-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, pass_fds=tuple(pass_fds))
    handle = handle_type(process, Path(name), tuple(sockets), label)
    try:
        _wait(handle, ready, ready_timeout)
    except BaseException:  # not ready, a broken check, Ctrl-C: never leave it running
        handle.terminate()
        raise
    return handle


def _wait(handle: ServiceProcess, ready: Callable[[ServiceProcess], bool],
          ready_timeout: float) -> None:
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            if ready(handle):
                return
        except (OSError, WorkbenchError):
            pass  # not answering yet
        if handle.process.poll() is not None:
            raise _not_started(handle, f"it exited with status {handle.process.returncode}")
        if time.monotonic() > deadline:
            raise _not_started(handle, f"it did not answer within {ready_timeout:g} s")
        time.sleep(POLL)
