"""A study that allows a quorum goes on without a node that is down, and its result names exactly
the holders that contributed; a study without one stops, naming the missing node."""

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


def test_a_quorum_goes_on_without_a_down_node_and_names_who_contributed(three_nodes):
    space = three_nodes.space
    node = three_nodes.nodes["hospital-b"]
    address = json.loads(space.node_registry.read_text())["nodes"]["hospital-b"]["address"]
    node.stop()
    partial = run_as_kernel(space, KM, study=QUORUM_STUDY)
    assert partial.get("holders") == ["hospital-a", "insurer-b"], partial
    record = he_operations(space)[-1]
    assert (record["study"], record["status"]) == (QUORUM_STUDY, "ok")
    assert record["holders"] == ["hospital-a", "insurer-b"]
    strict = run_as_kernel(space, KM, study=STUDY)  # no quorum in its policy entry
    assert strict["said"].startswith("holder hospital-b: ")

    # the node is back: the same curve with it would, next to the one without it, give away
    # hospital-b's own small cells, so the key holder's query auditing refuses it
    three_nodes.nodes["hospital-b"], _ = start_node(space.node_dir("hospital-b"), listen=address)
    again = run_as_kernel(space, KM, study=QUORUM_STUDY)
    assert again["said"].startswith("Release refused by rule 'query-audit'")
    assert run_as_kernel(space, KM, study=STUDY)["holders"] == list(HOLDERS)
