"""A wrong partial decryption is named (issue 17): t = 2 of 3 holder nodes, one node's Shamir
share corrupted on disk (so it answers every check and then sends a wrong partial). The
coordinator asks the two key parties that contributed first and a spare, each for its partials
of the t + 1 sets ``threshold_shamir.blame_sets`` names; the MAC fails on the set released from,
the checker combines the other sets and names exactly the corrupted node, in the refusal and in
the he-decryption record, and releases nothing. No value is in the message."""

from __future__ import annotations

import re

import pytest

from tests.node.conftest import he_operations, run_as_kernel, running_node_space
from tests.node.test_node_faults import restart
from tests.node.test_node_quorum import HOLDERS, KM
from tests.node.test_node_threshold_quorum import POLICY_TWO_OF_THREE
from workbench.node.keyshare import _load_shamir, _shamir_bytes
from workbench.secure import threshold as th

WRONG = "hospital-b"


@pytest.fixture(scope="module")
def blamed_nodes():
    with running_node_space("wb-node-th-b-", rows=900, holders=HOLDERS,
                            policy=POLICY_TWO_OF_THREE) as made:
        yield made


def _corrupt_share(space, holder: str) -> None:
    """Add 1 to one NTT coordinate of the node's Shamir share, in place (owner and mode kept):
    a well-formed share of another secret, so every partial it gives is wrong."""
    path = space.node_dir(holder) / "threshold" / "shamir.key"
    party = _load_shamir(path.read_bytes())
    share = party.share.copy()
    share[:, 0] = (share[:, 0] + 1) % th._PRIMES[:, 0]
    with open(path, "r+b") as out:
        out.write(_shamir_bytes(type(party)(party.index, party.t, party.parties, share)))
        out.truncate()


def test_a_wrong_partial_is_named_and_the_round_releases_nothing(blamed_nodes):
    space = blamed_nodes.space
    honest = run_as_kernel(space, KM)
    assert honest == {"holders": list(HOLDERS)}, honest  # all three contribute, spare asked
    _corrupt_share(space, WRONG)
    restart(blamed_nodes, WRONG)  # the node reads its share when it starts
    refused = run_as_kernel(space, KM)
    said = refused.get("said", "")
    assert "(bad-partial)" in said and "holders" not in refused, refused
    named = [h for h in HOLDERS if h in said]
    assert named == [WRONG], said
    # names, never values: no pooled count or at-risk figure, no number but the sets' count
    assert set(re.findall(r"\d+", said.replace(WRONG, ""))) <= {"3"}, said
    record = he_operations(space, "he-decryption")[-1]
    assert (record["decision"], record["reason"]) == ("refused", "bad-partial")
    checks = {c["name"]: c for c in record["rules"]}
    assert checks["threshold-partials"]["status"] == "fail"
    assert [n.split()[-1] for n, c in checks.items()
            if n.startswith("partial-decryption") and c["status"] == "fail"] == [WRONG]
    assert sorted(n.split()[-1] for n in checks if n.startswith("partial-decryption")) \
        == sorted(HOLDERS)
