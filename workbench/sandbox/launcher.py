"""The kernel launcher: a small root service that starts sealed kernels for non-root study servers.

SECURITY BOUNDARY. A study server runs as its own uid (``wbs-<study>``) and cannot switch to the
study's kernel uid (``wbk-<study>``) itself. It asks this service over ``DATA_DIR/run/
kernel-launcher.sock``; the service takes the caller's uid from the socket (SO_PEERCRED), accepts
only the server uid of the study named (or root), builds the whole command line itself
(:func:`workbench.sandbox.launch.bwrap_argv`, the interpreter of this service, nothing from the
request but the study and the caller's own socket directory) and keeps the kernel's lifetime tied
to the connection: signals are relayed, the exit code is sent back, and a closed connection kills
the kernel. The kernel gets the server's gid so the server can reach its ZMQ sockets.
Guarded by tests/sandbox/test_launcher.py.

A reviewer dashboard's server (``wbv-<study>``, the Voila review service) asks the same way with
``"dashboard": true``: its kernel runs as the study's dashboard account (``wbr-<study>``), never the
kernel account, with no workspace, in the sandbox's root-owned ``/``, and its one socket is the
decision relay the server made in its socket directory (``relay.sock``, bound at
``/run/gateway.sock``). The shared review service (``wbv-review-studies``) may ask for a dashboard
kernel of any study (still ``wbr-<study>``; its per-visit checks are in workbench.review).
Guarded by tests/review/test_reviewer_isolation.py too.

Protocol (JSON lines): -> {"study": S, "kernel_dir": D[, "dashboard": true]}  <- {"ok": true,
"pid": P} | {"ok": false, "message": M}; then -> {"signal": N} any number of times;
<- {"exit": CODE} when the kernel ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.hub.limits import inherit_limits
from workbench.paths import Space
from workbench.peercred import peer_credentials
from workbench.sandbox import seccomp
from workbench.sandbox.launch import (
    KERNEL_DIR_INSIDE,
    SandboxSpec,
    account_fds,
    bwrap_argv,
    close_fds,
)

log = logging.getLogger("workbench.sandbox.launcher")

RELAY_SOCKET = "relay.sock"  # a dashboard kernel's decision relay, in its socket directory
_ALLOWED_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGKILL}


def launcher_socket(space: Space) -> Path:
    return space.kernel_launcher_socket


def _account(prefix: str, study: str) -> str:
    """``accounts``' naming (at most 32 characters) for the dashboard accounts."""
    name = f"{prefix}{study}"
    if len(name) <= 32:
        return name
    digest = hashlib.sha256(study.encode()).hexdigest()[:6]
    return f"{prefix}{study[:32 - len(prefix) - 7]}-{digest}"


def dashboard_kernel_user(study: str) -> str:
    """The uid of a study's reviewer-dashboard kernels (untrusted, but no researcher's)."""
    return _account("wbr-", study)


def dashboard_server_user(study: str) -> str:
    """The uid of a study's review service (Voila; trusted like a study server)."""
    return _account("wbv-", study)


SHARED_REVIEW = "review-studies"  # a reserved sandbox name: no study may take it


def shared_dashboard_server_user() -> str:
    """The uid of the one review service that serves every study's reviewers (each of its
    kernels still runs as its visit's study's ``wbr-<study>``)."""
    return dashboard_server_user(SHARED_REVIEW)


def kernel_command() -> list[str]:
    """The study kernel's command inside the sandbox (the kernelspec's argv, filled in)."""
    from workbench.sandbox.kernelspec import kernelspec_dict

    argv = kernelspec_dict()["argv"]
    return [sys.executable if a == "python" else
            f"{KERNEL_DIR_INSIDE}/kernel.json" if a == "{connection_file}" else a for a in argv]


def _peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the connected process, from the kernel (not from anything it says)."""
    pid, uid, _gid = peer_credentials(conn)
    return pid, uid


def _check_kernel_dir(path: str, owners: set[int]) -> Path:
    """The caller's own socket directory: absolute, no symlink anywhere, owned by the caller (or
    already handed to the study's kernel uid, on a restart)."""
    kernel_dir = Path(path)
    if not kernel_dir.is_absolute() or os.path.realpath(kernel_dir) != str(kernel_dir):
        raise WorkbenchUserError("kernel_dir must be an absolute path without symlinks")
    info = os.lstat(kernel_dir)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners:
        raise WorkbenchUserError("kernel_dir must be a directory owned by the caller")
    connection = kernel_dir / "kernel.json"
    cinfo = os.lstat(connection)
    if not stat.S_ISREG(cinfo.st_mode) or cinfo.st_uid not in owners:
        raise WorkbenchUserError("kernel_dir/kernel.json must be a file owned by the caller")
    return kernel_dir


def _check_relay(path: Path, owner: int) -> Path:
    """A dashboard server's decision relay: a socket it made itself in its socket directory."""
    info = os.lstat(path)
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != owner:
        raise WorkbenchUserError("kernel_dir/relay.sock must be a socket owned by the caller")
    return path


class _Session:
    """One kernel: started for one connection, killed when that connection goes away."""

    def __init__(self, space: Space, conn: socket.socket):
        self.space, self.conn = space, conn
        self.reader = conn.makefile("rb")
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def send(self, message: dict) -> None:
        with self.lock:
            try:
                self.conn.sendall(json.dumps(message).encode() + b"\n")
            except OSError:
                pass  # the caller went away; the kernel is killed by run()

    def start(self, request: dict, peer: int, peer_pid: int) -> None:
        from workbench.sandbox.provisioner import check_study_id, prepare_workspace

        study = check_study_id(str(request.get("study", "")))
        dashboard = request.get("dashboard") is True
        server, kernel = ((dashboard_server_user(study), dashboard_kernel_user(study)) if dashboard
                          else (accounts.study_server_user(study),
                                accounts.study_kernel_user(study)))
        server_uid, server_gid = accounts.ensure_user(server)
        if dashboard and peer not in (0, server_uid):  # the shared review service, any study
            shared_uid, shared_gid = accounts.ensure_user(shared_dashboard_server_user())
            if peer == shared_uid:
                server_uid, server_gid = shared_uid, shared_gid
        if peer not in (0, server_uid):
            raise WorkbenchUserError(f"uid {peer} is not the server of study {study}",
                                     reason="access-denied")
        kernel_uid, _ = accounts.ensure_user(kernel)
        kernel_dir = _check_kernel_dir(str(request.get("kernel_dir", "")), {peer, kernel_uid})
        relay = _check_relay(kernel_dir / RELAY_SOCKET, peer) if dashboard else None
        # kernel uid owns its connection file; the server's group reaches the kernel's sockets
        os.chown(kernel_dir, kernel_uid, server_gid)
        os.chmod(kernel_dir, 0o770)  # noqa: S103 - kernel uid + its own server's group
        os.chown(kernel_dir / "kernel.json", kernel_uid, server_gid)
        os.chmod(kernel_dir / "kernel.json", 0o400)
        if dashboard:  # no workspace; the server's relay is the one socket
            workspace, gateway = None, relay
        else:
            workspace = prepare_workspace(self.space, study, kernel_uid)
            gateway = self.space.gateway_socket(study)
        spec = SandboxSpec(study=study, workspace=workspace, kernel_dir=kernel_dir,
                           kernel_uid=kernel_uid, kernel_gid=server_gid,
                           gateway_socket=gateway if gateway.exists() else None)
        # the kernel joins its server's cgroups and takes its rlimits: a study's kernels count
        # against the study's resource limits although this service starts them
        filter_fd = seccomp.program_fd()
        fds = {}
        try:
            fds = account_fds(spec)
            self.process = subprocess.Popen(
                bwrap_argv(spec, kernel_command(), filter_fd, fds),
                pass_fds=(filter_fd, *fds.values()),
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/",
                stdin=subprocess.DEVNULL, start_new_session=True, umask=0o007,
                preexec_fn=inherit_limits(peer_pid))  # noqa: PLW1509 - files, setrlimit only
        finally:
            close_fds((filter_fd, *fds.values()))  # bwrap holds its own copies
        log.info("study %s: kernel pid %d for uid %d", study, self.process.pid, peer)

    def run(self) -> None:
        try:
            peer_pid, peer = _peer(self.conn)
            try:
                self.start(json.loads(self.reader.readline() or b"{}"), peer, peer_pid)
            except (WorkbenchError, ValueError, OSError) as exc:
                log.warning("refused a kernel launch: %s", exc)
                self.send({"ok": False, "message": str(exc)})
                return
            self.send({"ok": True, "pid": self.process.pid})
            threading.Thread(target=self._report_exit, daemon=True).start()
            for line in self.reader:  # signals until the caller hangs up
                signum = json.loads(line).get("signal")
                if signum in _ALLOWED_SIGNALS and self.process.poll() is None:
                    os.killpg(self.process.pid, signum)
        except (OSError, ValueError):
            pass
        finally:
            if self.process is not None and self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.conn.close()

    def _report_exit(self) -> None:
        self.send({"exit": self.process.wait()})


def serve(space: Space) -> None:
    """``workbench sandbox launcher``: serve until killed (root only)."""
    if not accounts.is_root():
        raise WorkbenchUserError("the kernel launcher must run as root (it switches to the "
                                 "study kernel uids)", reason="not-root")
    path = launcher_socket(space)
    space.run.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o666)  # noqa: S103 - any server uid may ask; SO_PEERCRED decides
    listener.listen(64)
    log.info("kernel launcher ready on %s", path)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_Session(space, conn).run, daemon=True).start()


class LaunchedKernel:
    """The server's handle on a kernel the launcher started: a ``Popen``-like object for
    ``LocalProvisioner`` (poll, wait, send_signal, kill, terminate)."""

    def __init__(self, socket_path: Path, study: str, kernel_dir: Path, timeout: float = 30,
                 dashboard: bool = False):
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.settimeout(timeout)
        try:
            self.conn.connect(str(socket_path))
        except OSError as exc:
            self.conn.close()
            raise WorkbenchError(f"kernel launcher unreachable at {socket_path} "
                                 f"({exc.strerror}): start 'workbench sandbox launcher'") from None
        request = {"study": study, "kernel_dir": str(kernel_dir)}
        if dashboard:
            request["dashboard"] = True
        self.conn.sendall(json.dumps(request).encode() + b"\n")
        self.reader = self.conn.makefile("rb")
        reply = json.loads(self.reader.readline() or b'{"ok": false, "message": "no reply"}')
        if not reply.get("ok"):
            self.conn.close()
            raise WorkbenchError(f"kernel launcher refused: {reply.get('message')}")
        self.conn.settimeout(None)
        self.pid = reply["pid"]
        self.returncode: int | None = None
        self._exited = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        try:
            for line in self.reader:
                if "exit" in (message := json.loads(line)):
                    self.returncode = message["exit"]
                    break
        except (OSError, ValueError):
            pass
        if self.returncode is None:
            self.returncode = -signal.SIGKILL  # the launcher went away: so did the kernel
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode if self._exited.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._exited.wait(timeout)
        if self.poll() is not None:
            self.close()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if not self._exited.is_set():
            try:
                self.conn.sendall(json.dumps({"signal": int(signum)}).encode() + b"\n")
            except OSError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        self.conn.close()

    # LocalProvisioner.wait closes these
    stdin = stdout = stderr = None

