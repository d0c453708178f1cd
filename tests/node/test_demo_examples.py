"""The example notebooks (workbench/notebooks/) run through `workbench run` on the demo space as
`workbench demo` builds it now — the synthetic holders' stores ingested at their own nodes with
OPRF pseudonyms, every holder a node, the space's signed policy — with the demo's services
running (the gateway reaching the data only through the nodes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "workbench" / "notebooks"
DEMO_POLICY = ROOT / "workbench" / "hub_config" / "policy.yaml"


@pytest.fixture(scope="module")
def demo():
    from workbench.node.enroll import enroll_space
    from workbench.policy.cli import install_demo_policy
    from workbench.services import SERVICES, space_services
    from workbench.space.at_nodes import build_at_nodes
    from workbench.space.build import init_space

    root = Path(tempfile.mkdtemp(prefix="wb-demo-examples-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        space = init_space(root / "space", patients=10_000, echo=lambda _l: None,
                           synthetic_at_nodes=True)
        enroll_space(space)
        assert build_at_nodes(space, lambda _l: None)
        policy = install_demo_policy(space, str(DEMO_POLICY), echo=lambda _l: None)
        with space_services(space, policy, echo=lambda _l: None, services=SERVICES) as up:
            assert "holder nodes" in up and "linkage service" in up
            yield space, policy
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(demo, notebook: str, study: str) -> str:
    space, policy = demo
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "run", NOTEBOOKS / notebook,
                           "--study", study, "--user", "alice", "--data-dir", space.root,
                           "--policy", policy, "-p", "request_release=False"],
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "holder nodes: already running" in done.stdout  # the demo's nodes were used
    executed = Path(re.search(r"executed notebook: (\S+)", done.stdout).group(1))
    cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    assert not [o for c in cells for o in c.outputs if o.get("output_type") == "error"]
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                   for c in cells for o in c.outputs)


def test_cml_example_recovers_the_documented_hazard_ratios(demo):
    output = _run(demo, "cml_tki_rws.ipynb", "cml-tki")
    assert "age_at_start: true HR 1.030 per unit lies in" in output
    assert "risk_score: true HR 2.000 per unit lies in" in output


def _partials(space, holder: str) -> list[dict]:
    """The partial decryptions in ``holder``'s node journal (read as root)."""
    from workbench.node.config import NodeConfig
    from workbench.node.journal import Journal

    journal = Journal(NodeConfig.load(space.node_dir(holder)).journal)
    return [e for e in journal.entries() if e.get("path") == "/v1/partial"]


def _key_parties(demo) -> list[str]:
    from workbench.policy.loader import load_policy

    return sorted(load_policy(str(demo[1])).secure.key_parties)


def test_lung_example_matches_lifelines(demo):
    output = _run(demo, "lung_validation.ipynb", "lung-validation")
    assert "largest difference between the curves: 0.0e+00" in output
    # decrypted by the demo's key parties alone, each from a sum it recomputed from the NCCTG
    # sites' signed contributions; the sites' own nodes were never asked for a partial
    space, members = demo[0], _key_parties(demo)
    for holder in members:
        lung = [e for e in _partials(space, holder) if e.get("study") == "lung-validation"]
        assert lung and all(e["decision"] == "served" for e in lung), holder
        assert all(s.startswith("ncctg-inst-") for e in lung for s in e["signers"]), holder
    sites = sorted(p.name for p in space.nodes.iterdir() if p.name.startswith("ncctg-inst-"))
    assert len(sites) >= 10 and not [h for h in sites if _partials(space, h)]


def test_descriptive_t1d_example_runs(demo):
    output = _run(demo, "t1d_glycaemic_control.ipynb", "t1d-registry")
    assert "HbA1c results are at or above 7 %" in output


def test_the_demo_key_is_held_by_the_member_organisations(demo):
    """The demo policy's key parties (secure.key_parties) made the joint key; the nodes of the
    public validation trials contribute under it but hold no share."""
    space = demo[0]
    members = _key_parties(demo)
    assert members == ["hospital-a", "hospital-b", "insurer", "insurer-b", "pharma"]
    record = json.loads((space.he / "threshold.json").read_text())
    assert record["parties"] == members and record["t"] == len(members)
    public = sorted(p.name for p in space.nodes.iterdir() if p.name not in members)
    assert "ncctg-inst-01" in public and "gbsg" in public and "actg" in public
    for holder in public:
        shares = space.node_dir(holder) / "threshold"  # share.key, shamir.key, pending.key
        assert not shares.exists() or not list(shares.iterdir()), holder
