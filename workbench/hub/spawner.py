"""StudySpawner: one sealed single-user Jupyter server per (user, study).

SECURITY BOUNDARY. On every start, the server name (= the study id) and ``user_options`` are user
input: membership and expiry are decided again by ``workbench.policy.access`` against the policy
file as it is *now* (so revoking a member takes effect at the next start), and the start is
refused with 403 otherwise, also when the policy cannot be read (fail closed). The server then
runs as the study's server uid (not the hub user's), with the root-owned config of
:mod:`workbench.hub.singleuser` and the limits of :mod:`workbench.hub.limits`. Each start is a
``server-spawn`` provenance record; no record, no server.

Guarded by tests/hub/test_hub_live.py and tests/hub/test_server_live.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from tornado.web import HTTPError
from traitlets import Integer, Unicode, default

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.hub import singleuser
from workbench.hub.layout import HubLayout
from workbench.hub.limits import Limits, ServerCgroup, make_preexec
from workbench.paths import Space
from workbench.policy.access import ensure_allowed
from workbench.policy.signed import active_policy


def prepare_workspace(space: Space, study: str) -> Path:
    """The study workspace as docs/architecture.md lays it out: 0770, owner the kernel uid,
    group the server uid (setgid, so files either side writes stay shared)."""
    workspace = space.workspace(study)
    workspace.mkdir(parents=True, exist_ok=True)
    if accounts.is_root():
        kernel_uid, _ = accounts.ensure_user(accounts.study_kernel_user(study))
        _, server_gid = accounts.ensure_user(accounts.study_server_user(study))
        os.chown(workspace, kernel_uid, server_gid)
        os.chmod(workspace, 0o2770)  # noqa: S103 - kernel uid + server group
    return workspace


LOADING = 70  # the spawn page's progress once the server process runs


def _limits_text(limits: Limits, max_kernels: int | None) -> str:
    parts = [f"{limits.memory_bytes / 2**30:g} GiB" if limits.memory_bytes else None,
             f"{limits.cpu:g} CPU" if limits.cpu else None,
             f"{max_kernels} kernel(s)" if max_kernels else None]
    return ", ".join(p for p in parts if p) or "the hub's defaults"


class StudySpawner(LocalProcessSpawner):
    """Starts ``jupyterhub-singleuser`` for the study named by the server name."""

    policy_file = Unicode(
        config=True,
        help="The hub policy file (YAML), re-read at every start, "
             "e.g. '/etc/workbench/policy.yaml'.",
    )
    data_dir = Unicode(config=True,
                       help="The data space directory, e.g. '/var/lib/workbench/demo'.")
    kernel_idle_timeout = Integer(
        3600, config=True, help="Seconds before an idle kernel is shut down by its server.")
    server_idle_timeout = Integer(
        0, config=True,
        help="Seconds without activity before a server stops itself (0: leave it to the hub's "
             "idle culler service).")
    max_processes = Integer(
        512, config=True,
        help="RLIMIT_NPROC / pids.max of a study server and its kernels (threads count too).")

    @default("cmd")
    def _cmd_default(self):
        return [str(Path(sys.executable).parent / "jupyterhub-singleuser")]

    @default("env_keep")
    def _env_keep_default(self):
        return []  # nothing of the hub's environment leaks into a study server

    @default("default_url")
    def _default_url_default(self):
        return "/lab"

    @default("disable_user_config")
    def _disable_user_config_default(self):
        return True

    # -- what the spawn page shows ----------------------------------------------------------------
    _progress_log: list[dict] | None = None

    def _step(self, progress: int, message: str) -> None:
        self._progress_log.append({"progress": progress, "message": message})

    async def progress(self):
        """The spawn page's events: each step of ``start`` as it is done, then, while JupyterLab
        loads, how long it has been loading (the hub stops reading when the server answers)."""
        log, sent, quiet = None, 0, 0
        while True:
            if self._progress_log is not log:  # a new start: its own steps from the first
                log, sent = self._progress_log, 0
            while log is not None and sent < len(log):
                yield log[sent]
                sent, quiet = sent + 1, 0
            await asyncio.sleep(1)
            quiet += 1
            if log and log[-1]["progress"] >= LOADING and quiet % 3 == 0:
                yield {"message": f"JupyterLab is loading in the study server ({quiet} s)"}

    # -- the decision --------------------------------------------------------------------------
    @property
    def study(self) -> str:
        return self.name

    def _refuse(self, message: str, status: int = 403):
        self.log.warning("refused server %s for %s: %s", self.name or "(default)",
                         self.user.name, message)
        raise HTTPError(status, message)

    def check_access(self):
        """The policy, after ``ensure_allowed(policy, user, 'spawn-server', study)``; raises 403."""
        if not self.name:
            self._refuse("Open a study: each study has its own server, named after the study "
                         "(e.g. /hub/spawn/<you>/cml-tki). There is no default server.")
        try:
            policy = active_policy(self.policy_file, Space.at(self.data_dir or None),
                                   "the hub").current()
        except WorkbenchUserError as exc:
            self.log.error("policy unreadable, refusing every start: %s", exc)
            self._refuse("The hub policy cannot be read, so no study server can start. "
                         "An admin must fix the policy file ('workbench policy check').", 503)
        try:
            ensure_allowed(policy, self.user.name, "spawn-server", self.study)
        except WorkbenchUserError as exc:
            self._record_denied()
            self._refuse(str(exc))
        return policy

    def _record_denied(self) -> None:
        """Best effort: a refusal stands whether or not it could be recorded."""
        from workbench.provenance.client import ProvenanceClient

        fields = {"study": self.study, "user": self.user.name, "event": "denied",
                  "status": "denied", "reason": "access-denied"}
        try:
            client = ProvenanceClient(Space.at(self.data_dir or None).collector_socket, timeout=5)
            client.append("server-spawn", fields)
            client.close()
        except WorkbenchError as exc:
            self.log.warning("refused spawn not recorded: %s", exc)

    # -- start ---------------------------------------------------------------------------------
    def _limits(self, policy) -> Limits:
        resources = policy.studies[self.study].resources
        return Limits(memory_bytes=resources.memory_bytes, cpu=resources.cpu,
                      max_processes=self.max_processes)

    @property
    def cgroup_name(self) -> str:
        return f"{self.user.name}-{self.study}"

    async def start(self):
        self._progress_log = []
        policy = self.check_access()
        self._step(15, f"Access checked: {self.user.name} is a member of {self.study} "
                       "(the policy as it is now)")
        study = policy.studies[self.study]
        space = Space.at(self.data_dir or None)
        layout = HubLayout(space)
        layout.ensure()
        limits = self._limits(policy)
        server_user = accounts.study_server_user(self.study)
        uid, gid = accounts.ensure_user(server_user)
        prepare_workspace(space, self.study)
        state = layout.server_state(self.study, self.user.name)
        state.parent.mkdir(parents=True, exist_ok=True)
        for sub in ("", "runtime", "lab-settings", "lab-workspaces", "ipython", "xdg-config",
                    "xdg-data", "xdg-cache", "notary"):
            path = state / sub
            path.mkdir(parents=True, exist_ok=True)
            if accounts.is_root():
                os.chown(path, uid, gid)
            os.chmod(path, 0o700)
        config_dir, data_dir = singleuser.prepare_config(
            layout, self.study, self.user.name, study, self.kernel_idle_timeout,
            self.server_idle_timeout)
        self._extra_env = singleuser.server_environment(
            layout, self.study, self.user.name, config_dir, data_dir, self.policy_file)
        self._step(30, "Study workspace and the server's sealed configuration ready")

        cgroup = ServerCgroup(self.cgroup_name) if accounts.is_root() else None
        has_cgroup = bool(cgroup and cgroup.create(limits))
        self._preexec = make_preexec(
            limits, cgroup.procs_files() if has_cgroup else [], use_rlimit_as=not has_cgroup,
            uid=uid if accounts.is_root() else None, gid=gid if accounts.is_root() else None)

        # Fail closed: a server whose start cannot be recorded does not start.
        await self._record(space, {
            "study": self.study, "user": self.user.name, "server_name": self.study,
            "event": "spawn", "status": "ok", "uid": uid,
            "resources": {**limits.describe(), "max_kernels": study.resources.max_kernels,
                          "server_user": server_user,
                          "enforced_by": f"cgroup-{cgroup.mode}" if has_cgroup else "rlimit"},
        })
        self._step(45, "Start recorded in provenance")
        self._step(55, f"Starting the study server as {server_user} (limits: "
                       f"{_limits_text(limits, study.resources.max_kernels)})")
        ip, port = await super().start()
        self._step(LOADING, "Study server started; JupyterLab is loading (sandboxed kernels "
                            "start when a notebook opens)")
        self.log.info("study server %s/%s started as %s (pid %s)", self.user.name, self.study,
                      server_user, self.pid)
        return ip, port

    async def _record(self, space: Space, fields: dict) -> None:
        from workbench.provenance.client import ProvenanceClient

        try:
            await ProvenanceClient(space.collector_socket).append_async("server-spawn", fields)
        except WorkbenchError as exc:
            self.log.error("server-spawn not recorded, refusing start: %s", exc)
            self._refuse("The provenance collector is not reachable, so no study server can "
                         "start (every action must be recorded). Ask an admin to start it "
                         "('workbench collector').", 503)

    def make_preexec_fn(self, name):
        return self._preexec

    def user_env(self, env):
        env.update(self._extra_env)
        env["USER"] = accounts.study_server_user(self.study)
        return env

    async def stop(self, now=False):
        await super().stop(now=now)
        if not self.name:
            return
        if accounts.is_root():
            ServerCgroup(self.cgroup_name).remove()
        from workbench.provenance.client import ProvenanceClient

        fields = {"study": self.study, "user": self.user.name, "server_name": self.study,
                  "event": "stop", "status": "ok"}
        try:  # stopping is always allowed; its record is best effort
            client = ProvenanceClient(Space.at(self.data_dir or None).collector_socket, timeout=5)
            await client.append_async("server-spawn", fields)
        except WorkbenchError as exc:
            self.log.warning("server stop of %s/%s not recorded: %s", self.user.name,
                             self.study, exc)
