"""The holder nodes witness the central provenance log over mTLS: they cosign each consistent
signed tree head, and when root rewrites a record and re-signs every head with the collector's
own key, every node refuses (its alarm, in its journal) and verify fails for want of a quorum."""

from __future__ import annotations

import time

import pytest

from tests.node.conftest import run_as_kernel, running_node_space
from tests.provenance.test_witness_attack import cosign_round, rewrite_and_resign, verify
from workbench.node.config import NodeConfig
from workbench.node.journal import Journal
from workbench.provenance import cosign

HOUR = 3600.0


@pytest.fixture(scope="module")
def witnessed():
    with running_node_space("wb-node-witness-") as made:
        yield made


def test_nodes_cosign_heads_and_catch_a_rewritten_log(witnessed):
    space = witnessed.space
    listing = cosign.load_witnesses(space.witnesses)
    assert set(listing.witnesses) == {"hospital-a", "insurer-b"} and listing.quorum == 2
    assert listing.endpoints == {"hospital-a": "node:hospital-a", "insurer-b": "node:insurer-b"}
    run_as_kernel(space, """
        for _ in range(3):
            wb.view("visit_survival", columns=["age"])
        print(json.dumps({}))
    """)
    witnessed.services[0].stop()  # the collector drains and signs a final head
    first = cosign_round(space, None)  # through each node's witness endpoint, over mTLS
    assert sorted(first.cosigned) == ["hospital-a", "insurer-b"], first.lines()
    honest = verify(space, now=time.time() + HOUR)
    assert honest.ok, honest.summary()

    rewrite_and_resign(space, target_seq=2)  # root rewrites a read's user and re-signs
    second = cosign_round(space, None)
    assert second.cosigned == {}
    assert set(second.refused) == {"hospital-a", "insurer-b"}, second.lines()
    assert any("ALARM" in line for line in second.lines())
    caught = verify(space, now=time.time() + HOUR)
    assert not caught.ok
    for holder in ("hospital-a", "insurer-b"):
        journal = Journal(NodeConfig.load(space.node_dir(holder)).journal)
        last = [e for e in journal.entries() if e["path"] == "/v1/witness"][-1]
        assert last["decision"] == "refused" and last["reason"] in ("inconsistent", "fork")
