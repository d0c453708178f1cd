"""A sealed study kernel for a headless run: the sandbox kernelspec, the strict kernelspec
manager and the ``workbench-sandbox`` provisioner, exactly as a study server configures them.

The run user and the notebook name reach the audit proxy the way they do for papermill in a
study server: ``WORKBENCH_RUN_USER`` (attribution of requests without a websocket) and the
``JPY_SESSION_NAME`` of the kernel's start environment (the records' ``notebook_path``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

from workbench.paths import Space
from workbench.sandbox.kernelspec import KERNEL_NAME, StrictKernelSpecManager, install_kernelspec


@contextlib.contextmanager
def run_user(user: str) -> Iterator[None]:
    """Attribute this process's kernel requests to ``user`` (restored afterwards)."""
    before = os.environ.get("WORKBENCH_RUN_USER")
    os.environ["WORKBENCH_RUN_USER"] = user
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("WORKBENCH_RUN_USER", None)
        else:
            os.environ["WORKBENCH_RUN_USER"] = before


@contextlib.contextmanager
def sandbox_kernel_manager(space: Space, study: str,
                           rerun: bool = False) -> Iterator[AsyncKernelManager]:
    """A kernel manager that can only start the sandboxed kernel of ``study``; its kernelspec
    lives in a fresh root-owned directory removed afterwards. ``rerun``: the kernel gets the
    gateway's re-run socket (release requests are only checked, never submitted)."""
    jupyter = Path(tempfile.mkdtemp(prefix="wb-run-jupyter-"))
    try:
        install_kernelspec(jupyter)
        config = Config({"SandboxProvisioner": {"study": study, "data_dir": str(space.root),
                                                "rerun": rerun}})
        ksm = StrictKernelSpecManager(kernel_dirs=[str(jupyter / "kernels")])
        yield AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, config=config)
    finally:
        shutil.rmtree(jupyter, ignore_errors=True)
