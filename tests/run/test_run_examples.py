"""Every example study runs end to end through `workbench run` on the demo space (10 000
patients, built by `workbench init`), with the services running as `workbench demo` runs them
(the runs find them up and leave them alone); a re-run reproduces an example's output digests."""

from __future__ import annotations

import json
import pwd
import re
from pathlib import Path

import nbformat
import pytest
from run_support import NOTEBOOKS, workbench

from workbench import accounts
from workbench.services import socket_answers, space_services

pytestmark = pytest.mark.slow

GATEWAY_APP = Path(__file__).resolve().parents[2] / "workbench" / "gateway" / "app.py"


def release_route_enabled() -> bool:
    """Whether the gateway forwards /release to the airlock yet (wired by the gateway owner)."""
    return "release_forwarder" in GATEWAY_APP.read_text()


@pytest.fixture(scope="module")
def running(demo_space):
    with space_services(demo_space["space"], demo_space["policy"], echo=lambda _l: None) as up:
        assert up == ["provenance collector", "data gateway", "key holder", "aggregator", "airlock"]
        yield demo_space


def run_example(env: dict, notebook: str, study: str, *extra: str):
    result = workbench("run", NOTEBOOKS / notebook, "--study", study, "--user", "alice",
                       "--data-dir", env["space"].root, "--policy", env["policy"], *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "started" not in result.stdout  # the running services were used, not restarted
    executed = Path(re.search(r"executed notebook: (\S+)", result.stdout).group(1))
    assert executed.parent == env["space"].workspace(study) / "runs"
    assert executed.stat().st_uid == pwd.getpwnam(accounts.study_kernel_user(study)).pw_uid
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    return result, code


def text_of(cells) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                   for c in cells for o in c.outputs)


def test_cml_example_recovers_the_documented_hazard_ratios(running):
    extra = [] if release_route_enabled() else ["-p", "request_release=False"]
    result, cells = run_example(running, "cml_tki_rws.ipynb", "cml-tki", *extra)
    assert re.search(r"\[1/\d+\] alpha = 0.05", result.stdout)
    output = text_of(cells)
    # the notebook asserts it; this checks the check ran and said so
    assert "age_at_start: true HR 1.030 per unit lies in" in output
    assert "risk_score: true HR 2.000 per unit lies in" in output
    if release_route_enabled():
        assert output.count("automatic checks:") == 2


def test_lung_example_matches_lifelines(running):
    _, cells = run_example(running, "lung_validation.ipynb", "lung-validation")
    assert "largest difference between the curves: 0.0e+00" in text_of(cells)


def test_descriptive_t1d_example_runs(running):
    extra = [] if release_route_enabled() else ["-p", "request_release=False"]
    _, cells = run_example(running, "t1d_glycaemic_control.ipynb", "t1d-registry", *extra)
    output = text_of(cells)
    assert "HbA1c results are at or above 7 %" in output
    # the histogram is the view's public grid, bins merged by the key holder until each holds k
    assert "bins released on the view's grid (every bin holds at least the study's minimum: " \
        "True)" in output


def test_rerun_of_the_cml_example_reproduces_its_output_digests(running):
    """Plain reads, HE Kaplan-Meier, log-rank and Cox, the truth check and the release requests:
    every output digest of the logged run comes out again in a fresh sealed kernel, and the
    release requests are checked again (same digests and verdicts), not re-submitted."""
    result = workbench("rerun", "--study", "cml-tki", "--json",
                       "--data-dir", running["space"].root, "--policy", running["policy"])
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert report["counts"]["match"] == len(report["cells"]) >= 12
    reading = [c for c in report["cells"] if "cml_cohort" in c["views"]]
    assert len(reading) >= 4  # the plain read, KM, log-rank and Cox carry their view version
    # the two release requests were checked again, not sent to the reviewers again
    releases = [r for c in report["cells"] for r in c["releases"]]
    assert report["release_requests_not_resubmitted"] == 2 == len(releases)
    assert all(r["same"] and r["check"].startswith("rerun-") for r in releases)
    assert socket_answers(running["space"].collector_socket)  # left running: not rerun's own
