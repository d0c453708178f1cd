"""Starting the kernel launcher (the SANDBOX component's root service) as a child process, for
``workbench demo`` and the hub tests; it has no start helper of its own (yet)."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import Space
from workbench.services import ServiceProcess


def start_kernel_launcher(space: Space, ready_timeout: float = 30.0) -> ServiceProcess:
    """``python -m workbench.sandbox.launcher``; returns once its socket exists."""
    launcher = importlib.import_module("workbench.sandbox.launcher")
    socket_path = launcher.launcher_socket(space)
    with contextlib.suppress(FileNotFoundError):
        if socket_path.is_socket():
            socket_path.unlink()  # a stale socket must not pass for the new launcher
    log = Path(tempfile.mkstemp(prefix="wb-launcher-", suffix=".log")[1])
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "workbench.sandbox.launcher", "--data-dir", str(space.root)],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    handle = ServiceProcess(process, log, (socket_path,))
    deadline = time.monotonic() + ready_timeout
    while not socket_path.is_socket():
        if process.poll() is not None or time.monotonic() > deadline:
            handle.stop()
            raise WorkbenchError(f"kernel launcher did not start:\n{handle.output()}")
        time.sleep(0.05)
    return handle
