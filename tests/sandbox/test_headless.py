"""Headless execution (nbclient, as papermill and Voila use it) goes through the same sandbox and
audit proxy; with no websocket it is attributed to the run user from the environment. A kernel
restart keeps the proxy (and the records) in place."""

from __future__ import annotations

import hashlib
import pwd

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from sandbox_support import STUDY, execute, read_records, wait_for_records
from traitlets.config import Config

from workbench import accounts
from workbench.sandbox.kernelspec import KERNEL_NAME, StrictKernelSpecManager

pytestmark = pytest.mark.slow



def test_nbclient_cells_are_sealed_and_attributed_to_the_run_user(sandbox_space, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RUN_USER", "papermill-runner")
    space = sandbox_space["space"]
    config = Config({"SandboxProvisioner": {"study": STUDY, "data_dir": str(space.root)}})
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, config=config,
                            kernel_spec_manager=StrictKernelSpecManager(
                                kernel_dirs=[str(sandbox_space["jupyter"] / "kernels")]))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os; os.getuid()"),
                nbformat.v4.new_code_cell("import socket; [n for _, n in socket.if_nameindex()]")]
    client = NotebookClient(nb, km=km, timeout=60)
    client.owns_km = True  # shut the kernel down afterwards, as papermill's own client does
    client.execute()
    assert not km.has_kernel
    kernel_uid = pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == str(kernel_uid)
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "['lo']"
    for cell in nb.cells:  # nbclient sends no cell ids: the code's digest names the cell
        digest = hashlib.sha256(cell.source.encode()).hexdigest()
        done = wait_for_records(space, lambda r, digest=digest: r["kind"] == "cell-execution"
                                and r["fields"]["code_sha256"] == digest
                                and r["fields"]["status"] == "ok")
        assert done, cell.source
        assert done[0]["fields"]["user"] == "papermill-runner"
        assert done[0]["fields"]["source"] == "server"


def test_restart_keeps_the_sandbox_and_the_audit(kernel):
    km, kc = kernel["km"], kernel["kc"]
    before = execute(kc, "import os; print(os.getpid(), os.getuid())")["text"].split()
    km.restart_kernel(now=True)
    kc.wait_for_ready(timeout=60)
    result = execute(kc, "import os; print(os.getpid(), os.getuid())")
    assert result["status"] == "ok"
    assert result["text"].split()[1] == before[1]  # still the study kernel uid
    restarts = [r for r in read_records(kernel["space"]) if r["kind"] == "kernel-lifecycle"
                and r["fields"]["kernel_id"] == km.kernel_id and r["fields"]["event"] == "restart"]
    assert restarts and restarts[0]["fields"]["sandbox"] == "bwrap-setpriv"
    assert wait_for_records(kernel["space"], lambda r: r["fields"].get("msg_id")
                            == result["msg_id"])
