"""Run a space's services for as long as something needs them, and only the missing ones.

    with space_services(space, policy_path) as started:
        ...                         # collector, gateway, key holder, aggregator, airlock answer
    # the services this block started are stopped again; ones already running are left alone

Each service is started by its owning component's own ``start_*`` helper (as its own uid), in
dependency order (the gateway, key holder and airlock write provenance, so the collector comes
first; the aggregator forwards to the key holder), and stopped in reverse. A service counts as
running when its socket answers, not when a socket file exists: a killed service leaves its
socket file behind.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from workbench.paths import Space

Echo = Callable[[str], None]


class ServiceProcess:
    """A space service running as a child process (tests, benchmarks, ``workbench demo``,
    ``workbench run``): its log, the socket files it leaves behind, and a clean stop."""

    def __init__(self, process: subprocess.Popen, log_path: Path, sockets: tuple[Path, ...] = ()):
        self.process, self.log_path, self.sockets = process, log_path, sockets

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it hangs; remove its socket files (a service that dropped
        privileges cannot remove what it bound as root). Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in self.sockets:
            with contextlib.suppress(OSError):
                if path.is_socket():
                    path.unlink()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class Service:
    label: str
    module: str
    function: str
    needs_policy: bool
    socket: Callable[[Space, list[str]], list[Path]]  # sockets that must answer


def _gateway_sockets(space: Space, studies: list[str]) -> list[Path]:
    return [space.gateway_socket(study) for study in studies]


SERVICES = (
    Service("provenance collector", "workbench.provenance.service", "start_collector", False,
            lambda space, _studies: [space.collector_socket]),
    Service("data gateway", "workbench.gateway.server", "start_gateway", True, _gateway_sockets),
    Service("key holder", "workbench.secure.process", "start_keyholder", False,
            lambda space, _studies: [space.keyholder_socket]),
    Service("aggregator", "workbench.secure.process", "start_aggregator", False,
            lambda space, _studies: [space.aggregator_socket]),
    Service("airlock", "workbench.release.service", "start_airlock", True,
            lambda space, _studies: [space.run / "airlock.sock"]),
)

# Not needed by `workbench run` as root (the provisioner starts the sandbox itself); a hub whose
# study servers are not root needs it: space_services(..., services=SERVICES + (KERNEL_LAUNCHER,)).
KERNEL_LAUNCHER = Service(
    "kernel launcher", "workbench.hub.services", "start_kernel_launcher", False,
    lambda space, _studies: [
        importlib.import_module("workbench.sandbox.launcher").launcher_socket(space)])


def socket_answers(path: Path, timeout: float = 1.0) -> bool:
    """True when something accepts a connection on the Unix socket ``path``."""
    if not path.is_socket():
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


def running(space: Space, service: Service, studies: list[str]) -> bool:
    sockets = service.socket(space, studies)
    return bool(sockets) and all(socket_answers(path) for path in sockets)


def _studies_of(policy_path: str) -> list[str]:
    from workbench.policy import load_policy

    return sorted(load_policy(policy_path).studies)


@contextlib.contextmanager
def space_services(space: Space, policy_path: str | os.PathLike, echo: Echo = print,
                   services: tuple[Service, ...] = SERVICES) -> Iterator[list[str]]:
    """Start every service of ``space`` that is not answering; yield the labels started; stop
    exactly those on exit (also on error or Ctrl-C)."""
    policy_path = str(Path(policy_path).resolve())
    studies = _studies_of(policy_path)
    handles: list[tuple[str, object]] = []
    try:
        for service in services:
            if running(space, service, studies):
                echo(f"  {service.label}: already running")
                continue
            start = getattr(importlib.import_module(service.module), service.function)
            handle = start(space, policy_path) if service.needs_policy else start(space)
            handles.append((service.label, handle))
            echo(f"  {service.label}: started (pid {handle.process.pid})")
        yield [label for label, _ in handles]
    finally:
        for label, handle in reversed(handles):
            try:
                handle.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others whatever one does
                echo(f"  {label}: did not stop cleanly ({exc})")
