"""``workbench deploy render``: the admin's way to the objects beside the z2jh chart prints
exactly what kube_manifests renders from the policy file (each valid against the Kubernetes
schemas), and a bad policy file names its problems, without a traceback or any YAML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.kube_support import validate
from workbench.hub import kube_manifests as km

WORKBENCH = str(Path(sys.executable).parent / "workbench")


def _render(policy_file) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return subprocess.run([WORKBENCH, "deploy", "render", "--policy", str(policy_file)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_render_prints_the_policys_objects(space_and_policy, policy):
    done = _render(space_and_policy[1])
    assert done.returncode == 0, done.stderr
    printed = [o for o in yaml.safe_load_all(done.stdout) if o is not None]
    assert printed == km.render(policy)
    assert {o["metadata"]["name"] for o in printed} >= {"study-cml-tki-kernel", "gateway"}
    for obj in printed:
        validate(obj)


def test_a_bad_policy_file_names_its_problems(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("studies: [\n")
    done = _render(bad)
    assert done.returncode == 2 and done.stdout == "", done
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and str(bad) in lines[0], done.stderr
    assert f"{bad}:line 2" in done.stderr
    assert "Traceback" not in done.stderr
