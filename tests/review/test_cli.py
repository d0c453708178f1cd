"""The reviewer services are ``workbench review ...`` commands (workbench/review/cli.py): the
commands the hub is given parse with the real CLI and load as each service's own account, and a
mistake ends in one line (the broker's socket handed over by ``--listen-fd`` is tested in
test_broker.py, the services under a real hub in test_hub_live.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from workbench.cli import cli
from workbench.review.services import hub_services

WORKBENCH = str(Path(sys.executable).parent / "workbench")


@pytest.fixture(params=["shared", "per-study"])
def services(review_env, request):
    return hub_services(review_env.policy, review_env.space, review_env.policy_file,
                        per_study=request.param == "per-study")[0]


def _parse(args: list[str]) -> click.Context:
    """``args`` parsed by the real command they name, as click would before running it."""
    command, ctx = cli, None
    while isinstance(command, click.Group):
        parent = command.make_context("workbench", args, parent=ctx, resilient_parsing=True)
        name, command, args = command.resolve_command(parent, parent.protected_args + parent.args)
        ctx = parent
    return command.make_context(name, args, parent=ctx)


def test_every_hub_service_is_a_workbench_command_it_accepts(services):
    expected = {"review": "dashboard", "review-cml-tki": "dashboard",
                "review-lonely": "dashboard", "review-admin": "dashboard",
                "review-files": "files", "review-broker": "broker"}
    for service in services:
        command = service["command"]
        # this interpreter, by path: the hub's PATH need not hold it
        assert command[:4] == [sys.executable, "-m", "workbench.cli", "review"], command
        assert command[4] == expected[service["name"]]
        ctx = _parse(command[3:])  # an option the command does not take is an error here
        assert ctx.params["data_dir"] == service["environment"]["WORKBENCH_DATA_DIR"]


def test_each_service_loads_its_command_as_its_own_account(services):
    """As the hub starts it: its account, its environment and working directory, this
    interpreter, nothing else on PATH; ``--help`` so that nothing is served."""
    for service in services:
        user = service.get("user")
        prefix = (["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
                  if user else [])
        env = {**service["environment"], "PATH": "/usr/bin:/bin"}
        if os.environ.get("PYTHONPATH"):  # JupyterHub keeps the hub's (Spawner.env_keep)
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        done = subprocess.run([*prefix, *service["command"], "--help"], capture_output=True,
                              text=True, env=env, cwd=service["cwd"], timeout=120, check=False)
        assert done.returncode == 0, (service["name"], done.stderr)
        name = service["command"][4]
        assert f" review {name} [OPTIONS]" in done.stdout, done.stdout


def _workbench(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return subprocess.run([*prefix, WORKBENCH, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False, cwd="/")


@pytest.mark.parametrize("args", [["broker", "--policy", "p.yaml"], ["files"],
                                  ["dashboard", "--notebooks", "/", "--policy", "p.yaml",
                                   "--dashboards", "results"]])
def test_no_data_space_is_one_line(args):
    done = _workbench("review", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: No data space given: pass --data-dir DIR or set WORKBENCH_DATA_DIR. "
        "Build one with 'workbench init --data-dir DIR'."]


def test_the_broker_refuses_to_run_unprivileged_in_one_line(review_env):
    done = _workbench("review", "broker", "--data-dir", str(review_env.space.root),
                      "--policy", str(review_env.policy_file),
                      prefix=("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "--"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the review broker must run as root")


def test_a_missing_required_option_is_a_usage_error():
    done = _workbench("review", "dashboard", "--data-dir", "/tmp", "--policy", "p.yaml")
    assert done.returncode == 2 and "Missing option '--notebooks'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_study_and_all_studies_together_is_one_line():
    done = _workbench("review", "dashboard", "--notebooks", "/", "--policy", "p.yaml",
                      "--dashboards", "results", "--study", "a", "--all-studies")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: give --study or --all-studies, not both"]
