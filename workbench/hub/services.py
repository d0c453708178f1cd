"""Starting the kernel launcher (the SANDBOX component's root service) as a child process, for
``workbench demo`` and the hub tests; it has no start helper of its own (yet)."""

from __future__ import annotations

from workbench.paths import Space
from workbench.runtime import ServiceProcess, start_service, workbench_command


def start_kernel_launcher(space: Space, ready_timeout: float = 30.0) -> ServiceProcess:
    """``workbench sandbox launcher``; returns once its socket exists."""
    socket_path = space.kernel_launcher_socket
    return start_service("kernel launcher",
                         workbench_command("sandbox", "launcher", "--data-dir", str(space.root)),
                         lambda _handle: socket_path.is_socket(), (socket_path,), ready_timeout)
