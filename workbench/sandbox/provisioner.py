"""``workbench-sandbox``: the kernel provisioner that seals a study kernel and audits its channels.

Every launcher that uses jupyter_client (Jupyter Server, Voila, nbclient, papermill) goes through
a provisioner, so this is where the kernel gets its sandbox (:mod:`workbench.sandbox.launch`) and
its audit proxy (:mod:`workbench.sandbox.proxy`). The kernel's ZMQ sockets are Unix sockets
(ipc transport) in a directory bound at ``/run/kernel`` inside the sandbox; clients connect to the
proxy's sockets in a sibling directory that only this (trusted) process can reach.

Configuration: ``c.SandboxProvisioner.data_dir`` / ``study`` (defaults: ``$WORKBENCH_DATA_DIR``,
``$WORKBENCH_STUDY``), ``run_user`` (``$WORKBENCH_RUN_USER``, else ``$JUPYTERHUB_USER``, else the
process's own user) for requests that did not come through an authenticated websocket.
``dashboard`` (set by the Voila review services, workbench.review.voila_app): a reviewer
dashboard's kernel, out of the researcher's reach (own account, no workspace, no token, a
decision relay as its one socket); guarded by tests/review/test_reviewer_isolation.py. With
``study = "*"`` (the shared review service) each dashboard kernel takes its study from its own
start's environment (``WORKBENCH_REVIEW_STUDY``, set by the service's per-visit hook), like its
reviewer.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner
from traitlets import Bool, Enum, Unicode, default

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.sandbox import seccomp
from workbench.sandbox.launch import (
    KERNEL_DIR_INSIDE,
    SandboxSpec,
    account_fds,
    bwrap_argv,
    close_fds,
)
from workbench.sandbox.launcher import (
    RELAY_SOCKET,
    LaunchedKernel,
    dashboard_kernel_user,
    launcher_socket,
)
from workbench.sandbox.proxy import AuditProxy
from workbench.sandbox.recorder import CollectorRecorder

PROVISIONER_NAME = "workbench-sandbox"
PER_VISIT = "*"  # a dashboard provisioner's study: the one its kernel start names
STUDY_ID = re.compile(r"^[a-z][a-z0-9-]{0,28}[a-z0-9]$|^[a-z]$")


def check_study_id(study: str) -> str:
    if not STUDY_ID.match(study or ""):
        raise WorkbenchUserError(
            f"'{study}' is not a study id: use 1-30 characters of a-z, 0-9 and '-', starting "
            "with a letter (set WORKBENCH_STUDY or c.SandboxProvisioner.study).",
            reason="bad-study-id")
    return study


def prepare_workspace(space: Space, study: str, kernel_uid: int | None) -> Path:
    """The study workspace: 0770, owned by the kernel uid, group of the study server uid."""
    workspace = space.workspace(study)
    if not workspace.is_dir():
        workspace.mkdir(parents=True, exist_ok=True)
        if kernel_uid is not None:
            _, server_gid = accounts.ensure_user(accounts.study_server_user(study))
            for path in (workspace.parent, workspace):
                os.chown(path, kernel_uid, server_gid)
            os.chmod(workspace.parent, 0o750)  # noqa: S103 - the server group reads it
            os.chmod(workspace, 0o770)  # noqa: S103 - kernel and server both write it
    return workspace


class SandboxProvisioner(LocalProvisioner):
    """Runs the kernel under bubblewrap + setpriv behind an :class:`AuditProxy`."""

    data_dir = Unicode(config=True, help="The data space (default: $WORKBENCH_DATA_DIR).")
    study = Unicode(config=True, help="The study this server serves (default: $WORKBENCH_STUDY), "
                                      "e.g. 'cml-tki'.")
    run_user = Unicode(config=True, help="Who requests without an authenticated websocket "
                                         "(nbclient, papermill, Voila) are attributed to.")
    runtime_root = Unicode("/tmp", config=True,  # noqa: S108 - each kernel gets a 0700 mkdtemp
                           help="Where the per-kernel socket directories are made (kept short: "
                                "a Unix socket path has at most 107 bytes).")

    launch_mode = Enum(["auto", "direct", "launcher", "userns"], "auto", config=True,
                       help="How the kernel gets its uid. 'direct': this process is root and runs "
                            "bwrap + setpriv itself; 'launcher': ask the root kernel launcher "
                            "service (DATA_DIR/run/kernel-launcher.sock) to start it as the "
                            "study kernel uid; 'userns': unprivileged bwrap, the kernel keeps this "
                            "process's uid (development only, needs allow_same_uid_kernel). "
                            "'auto': direct when root, else launcher.")
    rerun = Bool(False, config=True,
                 help="A `workbench rerun` kernel: bind the study's re-run gateway socket, whose "
                      "release route only checks outputs (nothing reaches the reviewers). "
                      "Needs direct mode; without that socket the kernel does not start.")
    dashboard = Bool(False, config=True,
                     help="A reviewer dashboard's kernel (Voila review services): it runs as the "
                          "study's dashboard account (wbr-<study>), never its kernel account, "
                          "mounts no workspace, starts in the sandbox's root-owned '/' and has "
                          "one socket, a decision relay acting for the reviewer of this visit "
                          "(the kernel's WORKBENCH_RUN_USER, set by the service's prelaunch "
                          "hook; without it the kernel does not start).")
    allow_same_uid_kernel = Bool(False, config=True,
                                 help="Allow 'userns' mode, where the kernel runs as the server's "
                                      "own uid. Weaker: for development without root only.")

    @default("data_dir")
    def _data_dir_default(self) -> str:
        return os.environ.get("WORKBENCH_DATA_DIR", "")

    @default("study")
    def _study_default(self) -> str:
        return os.environ.get("WORKBENCH_STUDY", "")

    @default("run_user")
    def _run_user_default(self) -> str:
        return (os.environ.get("WORKBENCH_RUN_USER") or os.environ.get("JUPYTERHUB_USER")
                or pwd.getpwuid(os.getuid()).pw_name)

    _mode: str = "direct"
    _launch: tuple | None = None  # (launcher socket, study, kernel dir) in launcher mode
    _proxy: AuditProxy | None = None
    _base: Path | None = None
    _recorder = None
    _relay = None  # a dashboard kernel's decision relay (workbench.review.relay)
    _fds: tuple[int, ...] = ()  # the seccomp program and account files, open until bwrap starts

    def attribute(self, msg_id: str, user: str, notebook_path: str | None = None) -> None:
        """Called by the authenticated websocket handler before it sends ``msg_id`` on."""
        if self._proxy is None:
            raise WorkbenchError("kernel has no audit proxy")
        self._proxy.attribute(msg_id, user, notebook_path)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        try:
            return await self._prepare(**kwargs)
        except BaseException:
            self._close_fds()
            await self.cleanup(restart=False)  # no half-made socket dirs or orphaned proxy
            raise

    async def _prepare(self, **kwargs: Any) -> dict[str, Any]:
        km = self.parent
        server_env = dict(kwargs.get("env") or {})
        study = self.study
        if self.dashboard and study == PER_VISIT:  # the shared review service: this visit's
            study = server_env.get("WORKBENCH_REVIEW_STUDY", "")  # (the hook checked it)
        study = check_study_id(study)
        space = Space.at(self.data_dir or None)
        self._mode = self._choose_mode()
        gateway = space.gateway_socket(study)
        if self.rerun:  # fail closed: a re-run kernel never gets the submitting socket
            from workbench.gateway import rerun_socket

            gateway = rerun_socket(space, study)
            if self._mode != "direct" or not gateway.exists():
                raise WorkbenchUserError(
                    f"a re-run kernel needs the gateway's re-run socket {gateway} and root (direct "
                    "mode); restart the gateway with this version of workbench.",
                    reason="rerun-unavailable")
        kernel_uid = kernel_gid = None
        account = (dashboard_kernel_user(study) if self.dashboard
                   else accounts.study_kernel_user(study))
        if self.dashboard:
            # this visit's reviewer, from the hook's environment of this very kernel start (the
            # process environment may already hold the next visitor's)
            self.run_user = server_env.get("WORKBENCH_RUN_USER", "")
            if not self.run_user:
                raise WorkbenchError("a dashboard kernel needs the reviewer it serves "
                                     "(WORKBENCH_RUN_USER)")
        if self._mode == "direct":
            kernel_uid, kernel_gid = accounts.ensure_user(account)
            workspace = None if self.dashboard else prepare_workspace(space, study, kernel_uid)
        else:
            workspace = None if self.dashboard else space.workspace(study)  # the launcher's
        outer, inner = self._directories(kernel_uid, kernel_gid)
        km.transport, km.cache_ports = "ipc", False
        km.ip = str(outer / "k")
        km.connection_file = str(outer / "kernel.json")
        if self.dashboard:
            gateway = self._start_relay(space, study, inner, account)
        kwargs = await super().pre_launch(**kwargs)

        info = json.loads(Path(km.connection_file).read_text())
        inner_file = inner / "kernel.json"
        if not inner_file.exists():  # a restart reuses it (the launcher made it the kernel's)
            inner_file.write_text(json.dumps(dict(info, ip=f"{KERNEL_DIR_INSIDE}/k")))
            os.chmod(inner_file, 0o400)
            if kernel_uid is not None:
                os.chown(inner_file, kernel_uid, kernel_gid)

        context = {"study": study, "kernel_id": self.kernel_id,
                   "notebook_path": server_env.get("JPY_SESSION_NAME") or None}
        if self._recorder is None:
            self._recorder = CollectorRecorder(space.collector_socket)
            if self.dashboard:  # a review page's visit is not study code: its own kind
                from workbench.review.visits import ReviewViewRecorder

                self._recorder = ReviewViewRecorder(self._recorder)
        if self._proxy is not None:  # a restart: cells the old kernel was running are aborted
            self._proxy.abort_pending()
        # Fail closed: a kernel whose start cannot be recorded does not start.
        await self._recorder("kernel-lifecycle", {
            "study": study, "kernel_id": self.kernel_id, "user": self.run_user,
            "event": "restart" if self._proxy is not None else "start", "status": "ok",
            "kernel_name": km.kernel_name or "unknown",
            "sandbox": {"direct": "bwrap-setpriv", "launcher": "bwrap-setpriv-launcher",
                        "userns": "bwrap-userns"}[self._mode],
            "seccomp_sha256": seccomp.sha256(),  # the filter this installation's bwrap loads
            "uid": (os.getuid() if self._mode == "userns" else pwd.getpwnam(account).pw_uid)})
        if self._proxy is None:
            self._proxy = AuditProxy(info, dict(info, ip=str(inner / "k")), context,
                                     self._recorder, self.run_user)
            self._proxy.start()

        if not gateway.exists():
            self.log.warning("study %s: gateway socket %s is missing; the kernel starts without "
                             "data access", study, gateway)
        spec = SandboxSpec(study=study, workspace=workspace, kernel_dir=inner,
                           kernel_uid=kernel_uid, kernel_gid=kernel_gid,
                           gateway_socket=gateway if gateway.exists() else None,
                           extra_env={"WORKBENCH_KERNEL_ID": self.kernel_id or ""})
        outer_file = os.path.realpath(km.connection_file)
        kernel_cmd = [f"{KERNEL_DIR_INSIDE}/kernel.json" if a == outer_file else a
                      for a in kwargs["cmd"]]
        if self._mode == "launcher":  # the launcher builds the command line itself
            self._launch = (launcher_socket(space), study, inner, self.dashboard)
            kwargs["cmd"] = ["workbench-kernel-launcher"]
        else:
            self._close_fds()
            filter_fd = seccomp.program_fd()  # closed once bwrap has started, like the others
            self._fds = (filter_fd,)
            accounts_fds = account_fds(spec)
            self._fds += tuple(accounts_fds.values())
            kwargs["cmd"] = bwrap_argv(spec, kernel_cmd, filter_fd, accounts_fds)
            kwargs["pass_fds"] = self._fds
        # bwrap's own environment; the kernel's is built by --clearenv/--setenv
        kwargs["env"] = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        kwargs["cwd"] = "/"
        return kwargs

    def _choose_mode(self) -> str:
        if self.launch_mode == "direct" and not accounts.is_root():
            raise WorkbenchError("launch_mode 'direct' needs root")
        if self.launch_mode == "userns" or (self.launch_mode == "auto" and not accounts.is_root()
                                            and self.allow_same_uid_kernel):
            if not self.allow_same_uid_kernel:
                raise WorkbenchError("launch_mode 'userns' runs the kernel as the server's uid: "
                                     "set allow_same_uid_kernel = True (development only)")
            if accounts.is_root():  # the kernel would be host root inside its user namespace
                raise WorkbenchError("launch_mode 'userns' is refused as root: use 'direct'")
            return "userns"
        if self.launch_mode == "auto":
            return "direct" if accounts.is_root() else "launcher"
        return self.launch_mode

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        if self._mode != "launcher":
            try:
                return await super().launch_kernel(cmd, **kwargs)
            finally:
                self._close_fds()  # bwrap holds its own copy
        socket_path, study, inner, dashboard = self._launch
        self.process = LaunchedKernel(socket_path, study, inner, dashboard=dashboard)
        self.pid, self.pgid = self.process.pid, None  # signals go through the launcher
        self.cwd = "/"
        return self.connection_info

    def _start_relay(self, space: Space, study: str, inner: Path, account: str) -> Path:
        """The dashboard kernel's one socket (bound at /run/gateway.sock): decisions, for this
        visit's reviewer only. Kept across restarts, like the audit proxy."""
        from workbench.review.relay import DecisionRelay

        path = inner / RELAY_SOCKET
        if self._relay is None:
            uid = None if self._mode == "userns" else pwd.getpwnam(account).pw_uid
            self._relay = DecisionRelay(path, study, self.run_user, uid, space=space)
        return path

    def _close_fds(self) -> None:
        fds, self._fds = self._fds, ()
        close_fds(fds)

    def _directories(self, kernel_uid: int | None, kernel_gid: int | None) -> tuple[Path, Path]:
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix="wbk-", dir=self.runtime_root))
            (self._base / "o").mkdir(mode=0o700)
            (self._base / "i").mkdir(mode=0o700)
            if kernel_uid is not None:
                os.chown(self._base / "i", kernel_uid, kernel_gid)
        return self._base / "o", self._base / "i"

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if restart:
            return  # the proxy and the socket directories serve the restarted kernel too
        try:
            if self._proxy is not None:
                context = self._proxy.context
                self._proxy.stop()
                self._proxy = None
                try:
                    await self._recorder("kernel-lifecycle", {
                        "study": context["study"], "kernel_id": context["kernel_id"],
                        "user": self.run_user, "event": "shutdown", "status": "ok"})
                except Exception as exc:
                    self.log.error("kernel %s: cleanup not recorded: %s", self.kernel_id, exc)
        finally:  # even when cancelled half-way: no socket directories left behind
            if self._relay is not None:
                self._relay.stop()
                self._relay = None
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None
