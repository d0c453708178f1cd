"""The gateway's row cap, with its own small space and a gateway started with --max-rows 100."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from workbench.accounts import ensure_user, study_kernel_user
from workbench.gateway.server import start_gateway
from workbench.provenance.service import start_collector
from workbench.views.sample import build_sample_space

ROOT = Path(__file__).resolve().parents[2]
STUDY = "gw-cap"


@pytest.mark.slow
def test_views_over_the_row_cap_need_a_limit():
    root = Path(tempfile.mkdtemp(prefix="wb-gw-cap-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        space = build_sample_space(root / "space", rows=150)
        policy = root / "policy.yaml"
        policy.write_text(f"users: {{alice: {{roles: [researcher]}}}}\nstudies:\n  {STUDY}: "
                          "{title: t, purpose: p, sponsor: s, members: [alice], views: [visits], "
                          "expires: 2099-01-01}\n")
        os.chmod(policy, 0o644)
        uid, gid = ensure_user(study_kernel_user(STUDY))
        code = """
import json, workbench as wb
from workbench.errors import WorkbenchUserError
out = {"limited": len(wb.view("visits", limit=100))}
for limit in (None, 101):
    try:
        wb.view("visits", limit=limit)
    except WorkbenchUserError as exc:
        out[str(limit)] = exc.reason
print(json.dumps(out))
"""
        collector = start_collector(space)
        try:
            with start_gateway(space, policy, max_rows=100):
                result = subprocess.run(
                    ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                     sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                    env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                         "WORKBENCH_GATEWAY_SOCKET": str(space.gateway_socket(STUDY))})
        finally:
            collector.stop()
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out == {"limited": 100, "None": "too-many-rows", "101": "too-large"}
        ledger = [json.loads(line) for line in
                  (space.usage / "ledger.jsonl").read_text().splitlines()]
        assert [e["rows"] for e in ledger] == [100]  # refused reads are not metered
        assert pwd.getpwuid(os.stat(space.usage / "ledger.jsonl").st_uid).pw_name == "wb-gateway"
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
