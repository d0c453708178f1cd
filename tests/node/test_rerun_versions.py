"""`workbench rerun` re-creates a stale study on the dataset versions it ran on, read from the
holder node's kept versions: a study run on the insurer's version 1, the insurer ingests a
version 2 with a claim withdrawn, and the re-run (through the gateway's re-run socket, which asks
the node for version 1) gives the original output digests, while a re-run on today's data reports
the cell stale. A study kernel cannot ask for an old version, a version the node does not keep
is refused in one line (and journalled), and a running node serves each new ingest."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from tests.node import ingest_support as support
from tests.node.conftest import build_node_space, run_as_kernel, stop_node_space
from workbench.catalog.models import Column, View
from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError

STUDY = "rerun-versions"
POLICY = f"""\
users:
  alice: {{roles: [researcher]}}
studies:
  {STUDY}:
    title: re-run on kept versions
    purpose: holder node tests
    sponsor: tests
    members: [alice]
    views: [claim_amounts]
    expires: 2099-12-31
"""
VIEW = View(id="claim_amounts", title="claims", description="paid claims", tables=("cost",),
            sql="SELECT person_id, holder, cost_domain, total_paid FROM cost", min_rows=5,
            person_column="person_id", columns=(
                Column(name="person_id", type="string", description="pseudonym",
                       sensitivity="quasi_identifier"),
                Column(name="holder", type="string", description="data holder"),
                Column(name="cost_domain", type="string", description="domain"),
                Column(name="total_paid", type="float64", description="paid")))
CELL = ("import hashlib\nimport workbench as wb\ndf = wb.view('claim_amounts')\n"
        "df = df.sort_values(list(df.columns)).reset_index(drop=True)\n"
        "print(len(df), hashlib.sha256(df.to_csv(index=False).encode()).hexdigest())")


@pytest.fixture(scope="module")
def ran():
    """The study run on the insurer's first ingested version, then a version 2 ingested."""
    from workbench.node.enroll import enroll_node
    from workbench.node.ingest import write_sources
    from workbench.run.headless import run_notebook
    from workbench.space.build import init_space

    root = Path(tempfile.mkdtemp(prefix="wb-rerunv-", dir="/tmp"))
    os.chmod(root, 0o755)
    made = None
    try:
        # no lifelines datasets: their ~20 holders would each be enrolled and started as a node
        space = init_space(root / "space", patients=support.PATIENTS, seed=support.SEED,
                           echo=lambda _l: None, public_datasets=False)
        Catalog.write(space, VIEW)
        enroll_node(space, "insurer")
        write_sources(root / "src-insurer", "insurer", support.PATIENTS, support.SEED, "csv")
        support.give(root / "src-insurer", "insurer")
        done = support.ingest(space, "insurer", root / "src-insurer")
        assert done.returncode == 0, done.stderr
        first = support.version_json(space, "insurer")["id"]
        made = build_node_space(root, space=space, policy=POLICY)
        notebook = root / "claims.ipynb"
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(CELL)]
        nbformat.write(nb, notebook)
        result = run_notebook(space, made.policy, STUDY, "alice", notebook, echo=lambda _l: None)
        assert result.ok, result.failed
        changed = support.copy_sources(root, "insurer", "withdrawn")
        claims = changed / "claims.csv"
        lines = claims.read_text().splitlines(keepends=True)
        claims.write_text("".join(lines[:1] + lines[2:]))  # the holder withdrew one claim
        done = support.ingest(space, "insurer", changed)
        assert done.returncode == 0, done.stderr
        second = support.version_json(space, "insurer")["id"]
        assert second != first
        yield {"root": root, "space": space, "made": made, "first": first, "second": second}
    finally:
        if made is not None:
            stop_node_space(made)
        shutil.rmtree(root, ignore_errors=True)


def _journal(space) -> list[dict]:
    path = space.node_dir("insurer") / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_stale_study_is_recreated_on_the_version_it_ran_on(ran):
    from workbench.run.rerun import rerun_study

    space, made = ran["space"], ran["made"]
    report = rerun_study(space, made.policy, STUDY, echo=lambda _l: None)
    cells = report.as_dict()["cells"]
    assert report.exit_code == 0, report.summary()
    assert [c["status"] for c in cells] == ["match"]
    assert cells[0]["recreated"] == {"claim_amounts": {"insurer": ran["first"]}}
    assert f"insurer version {ran['first']}" in cells[0]["detail"]
    assert "outputs match" in cells[0]["detail"]
    served = [e for e in _journal(space) if e.get("path") == "/v1/view"
              and e.get("decision") == "served"]
    assert served[-1]["version"] == ran["first"]  # the node's journal names the kept version

    # the same re-run on today's data: the withdrawn claim shows, the cell is stale
    report = rerun_study(space, made.policy, STUDY, echo=lambda _l: None, current_data=True)
    cells = report.as_dict()["cells"]
    assert report.exit_code == 3, report.summary()
    assert cells[0]["status"] == "stale" and "outputs differ" in cells[0]["detail"]
    assert not cells[0]["recreated"]
    assert cells[0]["ran_on"] == {"claim_amounts": {"insurer": ran["first"]}}
    # the running node serves the newest ingest without a restart
    served = [e for e in _journal(space) if e.get("path") == "/v1/view"
              and e.get("decision") == "served"]
    assert served[-1]["version"] == ran["second"]


def test_a_study_kernel_cannot_ask_for_an_old_version(ran):
    space, first = ran["space"], ran["first"]
    out = run_as_kernel(space, f"""
        from workbench.client import _request
        try:
            _request("GET", "/views/claim_amounts/arrow", view="claim_amounts",
                     params={{"version": {first!r}}})
            print(json.dumps({{"served": True}}))
        except Exception as exc:
            print(json.dumps({{"served": False, "error": str(exc),
                               "reason": getattr(exc, "reason", None)}}))
        """, study=STUDY)
    assert not out["served"] and out["reason"] == "access-denied", out
    assert "only 'workbench rerun'" in out["error"] and "\n" not in out["error"]
    # and with no pins the study socket reads today's data
    now = run_as_kernel(space, "print(json.dumps({'rows': len(wb.view('claim_amounts'))}))",
                        study=STUDY)
    assert now["rows"] > 0


def test_the_gateway_describes_the_newest_ingest_without_a_restart(ran):
    """The gateway started before version 2 was ingested; its reads must still record the view
    version they really read (the catalog it follows), or a re-run would misjudge them."""
    from workbench.views import ViewEngine

    space = ran["space"]
    now = ViewEngine(space, data=False).versions["claim_amounts"]
    seen = run_as_kernel(space, "print(json.dumps({'v': wb.describe('claim_amounts')['version']}))",
                         study=STUDY)
    assert seen["v"] == now


def test_a_version_the_node_does_not_keep_is_refused_in_one_line(ran):
    from workbench.node.client import NodeSet
    from workbench.node.coordinator import NodeCoordinator
    from workbench.views import ViewEngine

    space, made = ran["space"], ran["made"]
    nodes = NodeSet.for_space(space)
    try:
        coordinator = NodeCoordinator(nodes, ViewEngine(space, data=False))
        with pytest.raises(WorkbenchUserError) as refused:
            coordinator.read(STUDY, "claim_amounts", None, None, made.policy,
                             {"holders": {"insurer": "20000101T000000Z-gone"},
                              "view_version": "0" * 16})
        old = coordinator.read(STUDY, "claim_amounts", None, None, made.policy,
                               {"holders": {"insurer": ran["first"]}, "view_version": "v1"})
        new = coordinator.read(STUDY, "claim_amounts", None, None, made.policy)
    finally:
        nodes.close()
    message = str(refused.value)
    assert refused.value.reason == "unknown-version" and "\n" not in message
    assert "holder insurer does not keep dataset version" in message
    assert old.rows == new.rows + 1 and old.version == "v1"  # the withdrawn claim
    refusals = [e for e in _journal(space) if e.get("reason") == "unknown-version"]
    assert refusals and refusals[-1]["version"] == "20000101T000000Z-gone"


def test_a_version_retention_let_go_is_said_in_one_line(ran):
    """Last (it changes the insurer's retention): once version 1 is gone, the cell is replayed
    on today's data and its detail says why it was not re-created."""
    import pwd

    from workbench.run.rerun import rerun_study

    root, space, made = ran["root"], ran["space"], ran["made"]
    rules = space.node_dir("insurer") / "rules.yaml"
    rules.write_text("retention: {versions: 1}\n")
    user = pwd.getpwnam("wbh-insurer")
    os.chown(rules, user.pw_uid, user.pw_gid)
    done = support.ingest(space, "insurer", root / "withdrawn")
    assert done.returncode == 0, done.stderr
    assert ran["first"] not in {v["id"] for v in support.versions(space, "insurer")}
    report = rerun_study(space, made.policy, STUDY, echo=lambda _l: None)
    cell = report.as_dict()["cells"][0]
    assert report.exit_code == 3 and cell["status"] == "stale" and not cell["recreated"]
    assert cell["ran_on"] == {"claim_amounts": None}
    assert "let go by a holder's retention" in cell["detail"] and "\n" not in cell["detail"]
