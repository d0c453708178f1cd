"""Run a space's services for as long as something needs them, and only the missing ones.

    with space_services(space, policy_path) as started:
        ...                         # collector, gateway, key holder, aggregator, airlock answer
    # the services this block started are stopped again; ones already running are left alone

Each service is started by its owning component's own ``start_*`` helper (through
``workbench.runtime``: its click command, as its own uid), in dependency order (the gateway, key
holder and airlock write provenance, so the collector comes first; the aggregator forwards to the
key holder), and stopped in reverse. A service counts as running when its socket answers, not
when a socket file exists: a killed service leaves its socket file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from workbench.gateway.server import start_gateway
from workbench.hub.services import start_kernel_launcher
from workbench.linkage import socket_path as linkage_socket
from workbench.linkage import state_dir as linkage_state
from workbench.linkage.process import start_linkage
from workbench.node.enroll import is_node_space
from workbench.node.process import (
    has_witnesses,
    nodes_answer,
    start_cosigner,
    start_holder_nodes,
)
from workbench.paths import Space
from workbench.policy.loader import load_policy
from workbench.provenance.service import start_collector
from workbench.release.service import start_airlock
from workbench.runtime import ServiceProcess, socket_answers
from workbench.secure.process import start_aggregator, start_keyholder

__all__ = ["KERNEL_LAUNCHER", "SERVICES", "Service", "running", "socket_answers",
           "space_services"]

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Service:
    label: str
    start: Callable[..., ServiceProcess]
    needs_policy: bool
    socket: Callable[[Space, list[str]], list[Path]]  # sockets that must answer
    answers: Callable[[Space], bool] | None = None  # instead of sockets (TCP services)
    applies: Callable[[Space], bool] = lambda _space: True


def _gateway_sockets(space: Space, studies: list[str]) -> list[Path]:
    return [space.gateway_socket(study) for study in studies]


SERVICES = (
    Service("provenance collector", start_collector, False,
            lambda space, _studies: [space.collector_socket]),
    # the OPRF linkage service, once the space has one (its key in linkage/): nodes' ingest
    Service("linkage service", start_linkage, False,
            lambda space, _studies: [linkage_socket(space)],
            applies=lambda space: linkage_state(space).is_dir()),
    # the holders' nodes, when the space has them (workbench node enroll): before the gateway
    # (given the policy: the key parties and decryption threshold of their joint key are its own)
    Service("holder nodes", start_holder_nodes, True, lambda _space, _studies: [],
            answers=nodes_answer, applies=is_node_space),
    Service("data gateway", start_gateway, True, _gateway_sockets),
    Service("key holder", start_keyholder, False,
            lambda space, _studies: [space.keyholder_socket]),
    Service("aggregator", start_aggregator, False,
            lambda space, _studies: [space.aggregator_socket]),
    Service("airlock", start_airlock, True, lambda space, _studies: [space.airlock_socket]),
    # the nodes witness the collector's signed heads (when the space lists witnesses)
    Service("witness cosigner", start_cosigner, False, lambda _space, _studies: [],
            answers=lambda _space: False, applies=has_witnesses),
)

# Not needed by `workbench run` as root (the provisioner starts the sandbox itself); a hub whose
# study servers are not root needs it: space_services(..., services=SERVICES + (KERNEL_LAUNCHER,)).
KERNEL_LAUNCHER = Service("kernel launcher", start_kernel_launcher, False,
                          lambda space, _studies: [space.kernel_launcher_socket])


def running(space: Space, service: Service, studies: list[str]) -> bool:
    if service.answers is not None:
        return service.answers(space)
    sockets = service.socket(space, studies)
    return bool(sockets) and all(socket_answers(path) for path in sockets)


def _studies_of(policy_path: str) -> list[str]:
    return sorted(load_policy(policy_path).studies)


@contextlib.contextmanager
def space_services(space: Space, policy_path: str | os.PathLike, echo: Echo = print,
                   services: tuple[Service, ...] = SERVICES) -> Iterator[list[str]]:
    """Start every service of ``space`` that is not answering; yield the labels started; stop
    exactly those on exit (also on error or Ctrl-C)."""
    policy_path = str(Path(policy_path).resolve())
    studies = _studies_of(policy_path)
    handles: list[tuple[str, ServiceProcess]] = []
    try:
        for service in services:
            if not service.applies(space):
                continue
            if running(space, service, studies):
                echo(f"  {service.label}: already running")
                continue
            handle = (service.start(space, policy_path) if service.needs_policy
                      else service.start(space))
            handles.append((service.label, handle))
            echo(f"  {service.label}: started (pid {handle.process.pid})")
        yield [label for label, _ in handles]
    finally:
        for label, handle in reversed(handles):
            try:
                handle.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others whatever one does
                echo(f"  {label}: did not stop cleanly ({exc})")
