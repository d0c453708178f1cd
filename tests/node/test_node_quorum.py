"""A node that is down under the default joint key (N-out-of-N, as ``workbench demo`` makes it):
every key party can veto every decryption, so even a study that allows a quorum of contributing
nodes stops, naming the missing node, and goes on once it is back. With t-out-of-N the quorum
study goes on without it: ``test_node_threshold_quorum.py``."""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import (
    POLICY,
    STUDY,
    he_operations,
    run_as_kernel,
    running_node_space,
)
from workbench.node.process import start_node

QUORUM_STUDY = "node-quorum"
HOLDERS = ("hospital-a", "hospital-b", "insurer-b")
POLICY_WITH_QUORUM = POLICY + f"""\
  {QUORUM_STUDY}:
    title: nodes with a quorum
    purpose: holder node tests
    sponsor: tests
    members: [alice]
    views: [visit_survival]
    expires: 2099-12-31
    thresholds: {{min_cell_count: 10}}
    node_quorum: 2
"""
KM = """
    from workbench.errors import WorkbenchUserError
    try:
        km = wb.secure.kaplan_meier("visit_survival", duration_col="days", event_col="event")
        print(json.dumps({"holders": km.holders}))
    except WorkbenchUserError as exc:
        print(json.dumps({"said": str(exc)}))
"""


@pytest.fixture(scope="module")
def three_nodes():
    with running_node_space("wb-node-quorum-", rows=900, holders=HOLDERS,
                            policy=POLICY_WITH_QUORUM) as made:
        yield made


def test_without_a_key_party_even_a_quorum_study_stops_naming_it(three_nodes):
    space = three_nodes.space
    assert three_nodes.record["parties"] == list(HOLDERS)  # N-out-of-N: all three
    address = json.loads(space.node_registry.read_text())["nodes"]["hospital-b"]["address"]
    three_nodes.nodes["hospital-b"].stop()
    for study in (QUORUM_STUDY, STUDY):
        stopped = run_as_kernel(space, KM, study=study)
        assert stopped.get("said", "").startswith("holder hospital-b: "), stopped
    stopped = [(r["study"], r["status"], r["reason"]) for r in he_operations(space)[-2:]]
    assert stopped == [(QUORUM_STUDY, "denied", "node-down"), (STUDY, "denied", "node-down")]

    three_nodes.nodes["hospital-b"], _ = start_node(space.node_dir("hospital-b"), listen=address)
    assert run_as_kernel(space, KM, study=QUORUM_STUDY)["holders"] == list(HOLDERS)
