"""Helpers of the run tests: the demo policy plus a study for the descriptive example, spaces
built by ``workbench init``, and the ``workbench`` command as a subprocess (as a user or CI calls
it)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICY = ROOT / "workbench" / "hub_config" / "policy.yaml"
NOTEBOOKS = ROOT / "workbench" / "notebooks"
# The descriptive example needs a study granted t1d_cohort; the demo policy has none yet.


def open_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


def write_policy(directory: Path) -> Path:
    policy = yaml.safe_load(DEMO_POLICY.read_text())
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def workbench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the ``workbench`` command as a user would."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, check=False)
