"""Running the gateway: ``workbench gateway --data-dir DIR --policy FILE``.

Started as root, it (1) loads the policy and the holders' data and the study re-keying key,
(2) creates one socket per study at ``Space.gateway_socket(study)``, owned by the study's kernel
account with mode 0600 so only that uid (and root, which the peer check then refuses) can connect,
and a second one, ``Space.rerun_socket(study)``, for re-run kernels (release requests dry-run),
(3) drops to the ``wb-gateway`` account and serves. Without root everything runs as the current
user (development only). New studies need a restart (sockets are made at start); grants and
revocations in the policy file take effect on the next request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from functools import partial
from pathlib import Path

from aiohttp import web

from workbench import accounts
from workbench.gateway.app import GatewayState, make_app
from workbench.gateway.ledger import UsageLedger
from workbench.gateway.openapi import MAX_ROWS
from workbench.paths import Space
from workbench.policy.loader import load_policy
from workbench.provenance.client import ProvenanceClient
from workbench.runtime import (
    ServiceProcess,
    bind_socket,
    drop_privileges,
    start_service,
    workbench_command,
)
from workbench.views import ViewEngine

log = logging.getLogger("workbench.gateway")
READY = "gateway ready"


def _bind(path: Path, uid: int, gid: int) -> socket.socket:
    """Only the study's kernel uid (and root, which the peer check refuses) may connect."""
    listener = bind_socket(path, 0o600, (uid, gid) if accounts.is_root() else None)
    listener.setblocking(False)
    return listener


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


async def _serve(apps_and_sockets, stop: asyncio.Event) -> None:
    runners = []
    for app, listener in apps_and_sockets:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        runners.append(runner)
    print(READY, flush=True)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


def run_gateway(data_dir: str, policy_path: str, max_rows: int = MAX_ROWS) -> None:
    space = Space.at(data_dir)
    policy_file = Path(policy_path).resolve()
    policy = load_policy(policy_file)
    from workbench.node.enroll import is_node_space

    nodes = is_node_space(space)  # then the gateway holds no store: the nodes read their own
    engine = ViewEngine(space, data=not nodes)
    for view_id, problem in sorted(engine.problems.items()):
        log.warning("view %s is not served: %s", view_id, problem)
    gateway_ids = _prepare_dirs(space)
    bound = []
    for study in sorted(policy.studies):
        uid, gid = accounts.ensure_user(accounts.study_kernel_user(study))
        bound.append((study, uid, False, _bind(space.gateway_socket(study), uid, gid)))
        bound.append((study, uid, True, _bind(space.rerun_socket(study), uid, gid)))
    drop_privileges(gateway_ids)
    state = GatewayState(space=space, engine=engine, policy_path=policy_file,
                         provenance=ProvenanceClient(space.collector_socket),
                         ledger=UsageLedger(space), max_rows=max_rows)
    if nodes:  # its certificate is the gateway account's own: read after dropping privileges
        from workbench.node.client import NodeSet
        from workbench.node.coordinator import NodeCoordinator

        state.nodes = NodeCoordinator(NodeSet.for_space(space), engine)
    state.policy()
    apps = [(make_app(state, study, uid, rerun=rerun), listener)
            for study, uid, rerun, listener in bound]

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await _serve(apps, stop)

    asyncio.run(main())


class GatewayHandle(ServiceProcess):
    """A gateway running as a child process (tests, benchmarks, ``workbench demo``)."""

    def __init__(self, space: Space, *args):
        super().__init__(*args)
        self.space = space

    def socket(self, study: str) -> Path:
        return self.space.gateway_socket(study)


def start_gateway(space: Space, policy_path: str | os.PathLike, max_rows: int = MAX_ROWS,
                  ready_timeout: float = 60.0) -> GatewayHandle:
    """Start ``workbench gateway`` as a subprocess; return once it serves every study socket."""
    command = workbench_command("gateway", "--data-dir", str(space.root), "--policy",
                                str(policy_path), "--max-rows", str(max_rows))
    return start_service("data gateway", command, lambda handle: READY in handle.output(),
                         ready_timeout=ready_timeout, handle_type=partial(GatewayHandle, space))
