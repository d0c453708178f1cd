"""What several test folders share: the small space's size and build log, and running code as a
study's kernel account."""

from __future__ import annotations

import json
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PATIENTS, SEED, CHUNK = 2_000, 7, 800
BUILD_LOG: list[str] = []  # progress lines printed while building the session space


def run_as_kernel(space, study: str, code: str, kernel_id: str = "k-test") -> dict:
    """Run ``code`` (after ``import json, workbench as wb``) as ``study``'s kernel account
    against its gateway socket, as a sealed kernel would; return the JSON of its last line."""
    from workbench.accounts import study_kernel_user

    uid = pwd.getpwnam(study_kernel_user(study)).pw_uid
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent",
           "WORKBENCH_GATEWAY_SOCKET": str(space.gateway_socket(study)),
           "WORKBENCH_STUDY": study, "WORKBENCH_USER": "alice", "WORKBENCH_KERNEL_ID": kernel_id}
    prelude = "import json, workbench as wb\n"
    out = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                          sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                         capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout.strip().splitlines()[-1])
