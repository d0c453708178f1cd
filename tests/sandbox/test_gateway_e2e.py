"""End to end with the real gateway: a sealed kernel reads a granted view through
/run/gateway.sock (its one way out), is refused a view its study was not granted, and the
gateway's view-read record names the audited cell (msg_id) and the kernel that read it."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
from sandbox_support import execute, kernel_manager, kernelspec_dir, read_records

from workbench.gateway.server import start_gateway
from workbench.provenance.service import start_collector
from workbench.views.sample import build_sample_space

pytestmark = pytest.mark.slow

STUDY = "sbx-gw"
POLICY = textwrap.dedent(f"""\
    users:
      alice: {{roles: [researcher]}}
    studies:
      {STUDY}:
        title: Sandbox gateway
        purpose: sandbox tests
        sponsor: tests
        members: [alice]
        views: [visits_monthly]
        expires: 2099-12-31
    """)


@pytest.fixture(scope="module")
def gateway_kernel():
    root = Path(tempfile.mkdtemp(prefix="wb-sbx-gw-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = build_sample_space(root / "space", rows=200)
    os.chmod(space.root, 0o755)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    os.chmod(policy, 0o644)
    services = []
    try:
        services.append(start_collector(space))
        services.append(start_gateway(space, policy))
        km = kernel_manager(space, kernelspec_dir(root), study=STUDY)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        yield {"space": space, "km": km, "kc": kc}
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_granted_view_is_read_through_the_gateway_socket(gateway_kernel):
    result = execute(gateway_kernel["kc"], "df = wb.view('visits_monthly')\nprint(len(df) > 0)")
    assert result["status"] == "ok", result
    assert result["text"].strip() == "True"
    reads = [r["fields"] for r in read_records(gateway_kernel["space"])
             if r["kind"] == "view-read" and r["fields"].get("view") == "visits_monthly"]
    assert reads, "the gateway did not record the read"
    read = reads[-1]
    # the read is tied to the audited cell that made it (claims, recorded as such by the gateway)
    assert read["msg_id"] == result["msg_id"]
    assert read["kernel_id"] == gateway_kernel["km"].kernel_id
    cells = [r for r in read_records(gateway_kernel["space"]) if r["kind"] == "cell-execution"
             and r["fields"]["msg_id"] == result["msg_id"]]
    assert cells


def test_a_view_the_study_was_not_granted_is_refused(gateway_kernel):
    result = execute(gateway_kernel["kc"], "wb.view('visits')")
    assert result["status"] == "error"
    assert "WorkbenchUserError" in result["errors"]
    assert "Traceback" not in result["errors"]
