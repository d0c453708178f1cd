"""Fixtures of the sandbox tests: one space + collector per session, one sealed kernel per module.
Kernels are real (bubblewrap + setpriv, as root)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from sandbox_support import (
    OTHER,
    STUDY,
    SocketListener,
    kernel_manager,
    kernelspec_dir,
    make_space,
)

from workbench.provenance.service import start_collector


@pytest.fixture(scope="session")
def sandbox_space():
    """One space + collector for the whole sandbox test session."""
    root = Path(tempfile.mkdtemp(prefix="wb-sbx-", dir="/tmp"))
    space = make_space(root)
    jupyter = kernelspec_dir(root)
    own = SocketListener(space.gateway_socket(STUDY), b"gateway:" + STUDY.encode() + b"\n")
    other = SocketListener(space.gateway_socket(OTHER), b"gateway:" + OTHER.encode() + b"\n")
    collector = start_collector(space, sign_interval=1.0)
    yield {"space": space, "jupyter": jupyter, "collector": collector}
    collector.stop()
    own.close()
    other.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def kernel(sandbox_space):
    """One sealed kernel shared by a module's tests (kernel start is the slow part)."""
    km = kernel_manager(sandbox_space["space"], sandbox_space["jupyter"])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield {"km": km, "kc": kc, **sandbox_space}
    kc.stop_channels()
    km.shutdown_kernel(now=False)
