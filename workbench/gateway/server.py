"""Running the gateway: ``workbench gateway --data-dir DIR --policy FILE``.

Started as root, it (1) loads the policy and the holders' data and the study re-keying key,
(2) starts its socket binder (``workbench.gateway.binder``, a small root process), (3) drops to
the ``wb-gateway`` account and serves. Each study of the policy in force gets one socket at
``Space.gateway_socket(study)``, owned by the study's kernel account with mode 0600 so only that
uid (and root, which the peer check then refuses) can connect, and a second one,
``Space.rerun_socket(study)``, for re-run kernels (release requests dry-run). The gateway watches
the policy (every ``WATCH`` seconds): a study added by ``workbench policy apply`` gets its sockets
from the binder and is served at once; a removed study's sockets are closed and removed. Grants
and revocations take effect on the next request. Without root everything runs as the current
user (development only).
"""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial
from pathlib import Path

from aiohttp import web

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError, log_fault
from workbench.gateway.app import GatewayState, make_app
from workbench.gateway.binder import Binder
from workbench.gateway.ledger import UsageLedger
from workbench.gateway.openapi import MAX_ROWS
from workbench.paths import Space
from workbench.policy.loader import load_policy
from workbench.provenance.client import ProvenanceClient
from workbench.runtime import (
    ServiceProcess,
    drop_privileges,
    start_service,
    stop_requested,
    workbench_command,
)
from workbench.views import ViewEngine

log = logging.getLogger("workbench.gateway")
READY = "gateway ready"
WATCH = 0.5  # seconds between looks at the policy (three stats) for studies added or removed:
# short, so a new study's sockets exist before its first kernel starts (it mounts them)


def _prepare_dirs(space: Space) -> tuple[int, int] | None:
    space.run.mkdir(parents=True, exist_ok=True)
    (space.run / "gateway").mkdir(exist_ok=True)
    os.chmod(space.run / "gateway", 0o755)  # noqa: S103 - kernels' sockets are bound from here
    space.usage.mkdir(exist_ok=True)
    os.chmod(space.usage, 0o700)
    if not accounts.is_root():
        return None
    uid, gid = accounts.ensure_user(accounts.GATEWAY)
    os.chown(space.usage, uid, gid)
    ledger = space.usage / "ledger.jsonl"
    if ledger.exists():
        os.chown(ledger, uid, gid)
    return uid, gid


class StudySockets:
    """The study sockets being served, kept equal to the studies of the policy in force."""

    def __init__(self, state: GatewayState, binder: Binder):
        self.state, self.binder = state, binder
        self.served: dict[str, list[web.AppRunner]] = {}
        self._failed: tuple[object, set[str]] = (None, set())  # (policy, studies not bound)

    async def sync(self) -> None:
        try:
            policy = self.state.policy()
        except WorkbenchUserError:
            return  # every request is refused meanwhile (fail closed); the sockets stay
        if self._failed[0] is not policy:  # a new policy: try the failed ones again
            self._failed = (policy, set())
        for study in sorted(set(policy.studies) - set(self.served) - self._failed[1]):
            await self._start(study)
        for study in sorted(set(self.served) - set(policy.studies)):
            await self._stop(study)

    async def _start(self, study: str) -> None:
        loop = asyncio.get_running_loop()
        try:  # the binder may create the kernel account (useradd): off the event loop
            uid, listeners = await loop.run_in_executor(None, self.binder.bind, study)
        except (WorkbenchError, OSError) as exc:
            log.error("study %s is not served: %s", study, exc)
            self._failed[1].add(study)
            return
        runners = []
        for listener, rerun in zip(listeners, (False, True), strict=True):
            listener.setblocking(False)
            runner = web.AppRunner(make_app(self.state, study, uid, rerun=rerun),
                                   access_log=None, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, listener).start()
            runners.append(runner)
        self.served[study] = runners
        log.info("serving study %s", study)

    async def _stop(self, study: str) -> None:
        for runner in self.served.pop(study):
            await runner.cleanup()  # closes the listener; requests in flight may finish
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.binder.unbind, study)
        except (WorkbenchError, OSError) as exc:
            log.error("the sockets of study %s were closed but not removed: %s", study, exc)
        log.info("study %s no longer served", study)

    async def close(self) -> None:
        for runners in self.served.values():
            for runner in runners:
                await runner.cleanup()
        self.served.clear()


async def _serve(studies: StudySockets, stop: asyncio.Event) -> None:
    await studies.sync()
    print(READY, flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), WATCH)
        except TimeoutError:
            try:
                await studies.sync()
            except Exception as exc:  # a fault here must not stop the studies already served
                log_fault(log, "gateway: watching the policy's studies failed", exc)
    await studies.close()


def run_gateway(data_dir: str, policy_path: str, max_rows: int = MAX_ROWS) -> None:
    space = Space.at(data_dir)
    policy_file = Path(policy_path).resolve()
    load_policy(policy_file)  # a bad file stops the start with file, line and field
    from workbench.node.enroll import is_node_space

    nodes = is_node_space(space)  # then the gateway holds no store: the nodes read their own
    engine = ViewEngine(space, data=not nodes)
    for view_id, problem in sorted(engine.problems.items()):
        log.warning("view %s is not served: %s", view_id, problem)
    gateway_ids = _prepare_dirs(space)
    binder = Binder(space, policy_file)  # as root: it keeps root to bind sockets for new studies
    try:
        drop_privileges(gateway_ids)
        state = GatewayState(space=space, engine=engine, policy_path=policy_file,
                             provenance=ProvenanceClient(space.collector_socket),
                             ledger=UsageLedger(space), max_rows=max_rows)
        if nodes:  # its certificate is the gateway account's own: read after dropping privileges
            from workbench.node.client import NodeSet
            from workbench.node.coordinator import NodeCoordinator

            state.nodes = NodeCoordinator(NodeSet.for_space(space), engine)
        state.policy()  # refused (unsigned, tampered, rolled back): the start fails, one line
        studies = StudySockets(state, binder)

        async def main() -> None:
            await _serve(studies, stop_requested())

        asyncio.run(main())
    finally:
        binder.close()
class GatewayHandle(ServiceProcess):
    """A gateway running as a child process (tests, benchmarks, ``workbench demo``)."""

    def __init__(self, space: Space, *args):
        super().__init__(*args)
        self.space = space

    def socket(self, study: str) -> Path:
        return self.space.gateway_socket(study)


def start_gateway(space: Space, policy_path: str | os.PathLike, max_rows: int = MAX_ROWS,
                  ready_timeout: float = 60.0) -> GatewayHandle:
    """Start ``workbench gateway`` as a subprocess; return once it serves every study in force
    (later ones are served as the policy adds them)."""
    command = workbench_command("gateway", "--data-dir", str(space.root), "--policy",
                                str(policy_path), "--max-rows", str(max_rows))
    return start_service("data gateway", command, lambda handle: READY in handle.output(),
                         ready_timeout=ready_timeout, handle_type=partial(GatewayHandle, space))
