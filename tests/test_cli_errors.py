"""User mistakes on the real `workbench` command end as one clear line on stderr and a non-zero
exit, never a traceback (issue 19 item 8). Each case runs the installed entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from workbench.errors import WorkbenchUserError

WORKBENCH = str(Path(sys.executable).parent / "workbench")
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = str(REPO / "workbench" / "notebooks" / "lung_validation.ipynb")
POLICY = str(REPO / "workbench" / "hub_config" / "policy.yaml")


def workbench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return subprocess.run([WORKBENCH, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def root():
    """A traversable scratch directory (pytest's own tmp dirs sit under a 0700 parent)."""
    path = Path(tempfile.mkdtemp(prefix="wb-cli-", dir="/tmp"))  # noqa: S108
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def space(root):
    done = workbench("init", "--data-dir", str(root / "space"), "--patients", "0")
    assert done.returncode == 0, done.stderr
    (root / "bad.yaml").write_text("studies: [\n")
    return str(root / "space")


def _one_line(done: subprocess.CompletedProcess, expected: str, lines: int = 1) -> None:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == lines and err[0].startswith("error: "), done.stderr
    assert expected in err[0], done.stderr


def test_run_under_a_parent_others_cannot_traverse(root):
    locked = root / "locked"
    locked.mkdir(mode=0o700)
    done = workbench("run", "--study", "cml-tki", "--user", "alice", "--data-dir",
                     str(locked / "space"), NOTEBOOK)
    _one_line(done, f"chmod o+x {locked}")


@pytest.mark.parametrize("command", [
    ("run", "--study", "cml-tki", "--user", "alice", NOTEBOOK),
    ("rerun", "--study", "cml-tki"),
    ("gateway", "--policy", POLICY),
    ("hub", "users", "alice"),
    ("collector",),
    ("usage", "report"),
])
def test_a_directory_that_is_no_space(root, command):
    done = workbench(*command, "--data-dir", str(root))
    _one_line(done, "is not a data space")
    assert not (root / "run").exists()  # nothing was started or made for it


def test_without_root_a_private_parent_is_the_callers_own(root, monkeypatch):
    """Without root the services run as the caller: a space in a 0700 home is fine."""
    from workbench import accounts
    from workbench.space.cli import existing_space

    space = root / "home" / "space"
    space.mkdir(parents=True)
    os.chmod(root / "home", 0o700)
    (space / "space.json").write_text("{}")
    monkeypatch.setattr(accounts, "is_root", lambda: False)
    assert existing_space(str(space)).root == space
    monkeypatch.setattr(accounts, "is_root", lambda: True)
    with pytest.raises(WorkbenchUserError, match="chmod o\\+x"):
        existing_space(str(space))


def test_no_data_space_given():
    _one_line(workbench("catalog", "list"), "No data space given")


def test_init_where_nothing_can_be_made():
    _one_line(workbench("init", "--data-dir", "/proc/wb-no-such-space", "--patients", "0"),
              "cannot use /proc/")


@pytest.mark.parametrize(("args", "expected"), [
    (("--study", "cml-tki", "--user", "alice", "/nonexistent.ipynb"), "does not exist"),
    (("--study", "no-such-study", "--user", "alice", NOTEBOOK), "no study 'no-such-study'"),
    (("--study", "cml-tki", "--user", "mallory", NOTEBOOK), "'mallory' may not"),
    (("--study", "cml-tki", "--user", "alice", "-p", "seed", NOTEBOOK), "not name=value"),
    (("--study", "cml-tki", "--user", "alice", "--policy", "/nonexistent.yaml", NOTEBOOK),
     "cannot read policy file"),
])
def test_run_mistakes(space, args, expected):
    _one_line(workbench("run", "--data-dir", space, *args), expected)


def test_a_bad_policy_file_lists_its_problems_without_a_traceback(space, root):
    done = workbench("run", "--data-dir", space, "--study", "cml-tki", "--user", "alice",
                     "--policy", str(root / "bad.yaml"), NOTEBOOK)
    _one_line(done, "bad.yaml has 1 problem", lines=3)  # the summary, the problem, the fix


def test_catalog_mistakes(space):
    _one_line(workbench("catalog", "show", "--data-dir", space, "no-such-dataset"),
              "no-such-dataset")
    _one_line(workbench("provenance", "log", "--data-dir", space), "No provenance store")


def test_sandbox_check_without_its_tools(monkeypatch, capsys):
    """An installation without bubblewrap (an admin's mistake) is told what to install
    (in-process: this machine has the tools, so their absence is simulated)."""
    from workbench import cli
    from workbench.sandbox import launch

    monkeypatch.setattr(launch.shutil, "which", lambda *_a, **_k: None)
    monkeypatch.setattr(sys, "argv", ["workbench", "sandbox", "check"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: bwrap is not installed")
