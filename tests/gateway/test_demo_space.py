"""The demo policy against a space built by the real `workbench init`: every granted view exists
and loads in the locked-down engine, and alice's kernel reads cml_cohort through the gateway."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from workbench.accounts import ensure_user, study_kernel_user
from workbench.gateway.server import start_gateway
from workbench.paths import Space
from workbench.policy import load_policy
from workbench.provenance.service import start_collector

ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICY = ROOT / "workbench" / "hub_config" / "policy.yaml"
WORKBENCH = str(Path(sys.executable).parent / "workbench")  # the console script


@pytest.fixture(scope="module")
def demo_space():
    root = Path(tempfile.mkdtemp(prefix="wb-gw-demo-", dir="/tmp"))
    os.chmod(root, 0o755)
    subprocess.run([WORKBENCH, "init", "--data-dir", str(root / "d"),
                    "--patients", "2000"], check=True, capture_output=True, cwd=ROOT)
    yield Space(root / "d")
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.mark.slow
def test_demo_policy_views_exist_in_an_init_space(demo_space):
    result = subprocess.run([WORKBENCH, "policy", "check",
                             str(DEMO_POLICY), "--data-dir", str(demo_space.root)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "valid (" in result.stdout


@pytest.mark.slow
def test_demo_study_reads_through_the_gateway(demo_space):
    policy = load_policy(DEMO_POLICY)
    uid, gid = ensure_user(study_kernel_user("cml-tki"))
    collector = start_collector(demo_space)
    try:
        with start_gateway(demo_space, DEMO_POLICY) as gateway:
            # the kernel may not touch the stores itself: only the gateway reads them
            store = next(demo_space.holders.glob("*/*.parquet"))
            code = ("import workbench as wb, json\n"
                    f"try:\n    open({str(store)!r}, 'rb'); direct = 'read'\n"
                    "except PermissionError:\n    direct = 'denied'\n"
                    "f = wb.view('cml_cohort')\n"
                    "print(json.dumps({'rows': len(f), 'cols': list(f.columns), "
                    "'direct': direct, 'views': sorted(wb.views()['id'])}))")
            out = subprocess.run(
                ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                 sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                     "WORKBENCH_GATEWAY_SOCKET": str(demo_space.gateway_socket("cml-tki")),
                     "WORKBENCH_STUDY": "cml-tki"})
            assert out.returncode == 0, out.stderr + gateway.output()
    finally:
        collector.stop()
    import json
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["views"] == sorted(policy.studies["cml-tki"].views)
    assert result["rows"] >= 10
    assert result["direct"] == "denied"
    assert "days" not in result["cols"] and "progressed" not in result["cols"]  # sensitive
    assert pwd.getpwuid(os.stat(demo_space.gateway_socket("cml-tki")).st_uid).pw_name == \
        study_kernel_user("cml-tki")
