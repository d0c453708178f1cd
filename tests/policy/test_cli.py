"""`workbench policy check|show|schema` through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKBENCH = str(Path(sys.executable).parent / "workbench")
DEMO = ROOT / "workbench" / "hub_config" / "policy.yaml"


def run(*args):
    return subprocess.run([WORKBENCH, *args], capture_output=True, text=True, cwd=ROOT)


def test_check_valid_exits_zero():
    result = run("policy", "check", str(DEMO))
    assert result.returncode == 0 and "valid (4 users, 3 studies" in result.stdout


def test_check_invalid_lists_each_problem_with_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("expires: 2027-12-31", "expires: someday", 1)
                   .replace("members: [alice]", "members: [mallory]", 1))
    result = run("policy", "check", str(bad))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if f"{bad}:line " in line]
    assert len(lines) == 1  # pydantic stops before cross-references: the date first
    assert "field 'studies.cml-tki.expires'" in lines[0]
    bad.write_text(DEMO.read_text().replace("members: [alice]", "members: [mallory]", 1))
    result = run("policy", "check", str(bad))
    assert result.returncode != 0
    assert "field 'studies.cml-tki.members.0': unknown user 'mallory'" in result.stderr
    line = int(result.stderr.split(f"{bad}:line ")[1].split(":")[0])
    assert "mallory" in bad.read_text().splitlines()[line - 1]


def test_show_summarises():
    result = run("policy", "show", str(DEMO))
    assert result.returncode == 0
    assert "cml-tki" in result.stdout and "lung-validation" in result.stdout
    assert "rita, remy" in result.stdout


def test_schema_command_matches_published_file():
    result = run("policy", "schema")
    published = json.loads((ROOT / "docs" / "policy.schema.json").read_text())
    assert json.loads(result.stdout) == published
