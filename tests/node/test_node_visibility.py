"""'aggregates' where the holders are nodes: the kernel's wb.view gets the synthetic twin from
the gateway (no node is asked for a row), wb.secure still pools the nodes' encrypted sums, and a
node itself refuses the view's rows to the coordinator's certificate under the signed policy, so
a compromised gateway could not fetch them either."""

from __future__ import annotations

import pytest

from tests.node.conftest import (
    POLICY,
    run_as_kernel,
    running_node_space,
)
from tests.node.test_node_refusals import call, reason, request

AGGREGATES = POLICY.replace("    views: [visit_survival]\n",
                            "    views: [visit_survival]\n    visibility: aggregates\n")


@pytest.fixture(scope="module")
def aggregates_space():
    assert AGGREGATES != POLICY
    with running_node_space("wb-nodes-agg-", policy=AGGREGATES) as made:
        yield made


def test_the_kernel_gets_the_twin_and_real_counts_through_the_nodes(aggregates_space):
    out = run_as_kernel(aggregates_space.space, """
        frame = wb.view("visit_survival")
        print(json.dumps({"synthetic": frame.attrs["workbench_synthetic"], "rows": len(frame),
                          "ids": sorted(set(frame["person_id"]))[:2],
                          "total": int(wb.secure.count("visit_survival"))}))
    """)
    assert out["synthetic"] is True and out["rows"] == 1000
    assert out["ids"] == ["synthetic-000001", "synthetic-000002"]
    assert out["total"] == 600  # the real number: every node's rows, pooled under HE


def test_a_node_refuses_the_rows_of_an_aggregates_view(aggregates_space):
    reply = call(aggregates_space, "hospital-a", "/v1/view", request(aggregates_space))
    assert reason(reply) == "access-denied"
    assert "aggregates" in reply[1]["error"]["message"]
