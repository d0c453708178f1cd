"""t comes from the admin-signed policy (issue 17): key generation takes the key parties and the
decryption threshold from ``secure:`` of the policy in force, and every node checks them against
the policy it verified itself, before each key generation step that fixes them and before each
partial decryption. A coordinator asking for another t or another set of key parties is refused
by every node; a changed t is honoured only once an admin signed it, and only with a new key.

Three nodes, a policy with ``secure: {decryption_threshold: 2}``; the requests are sent over the
coordinator's real mTLS channel, as a rogue coordinator would send them."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from click.testing import CliRunner

from tests.node.conftest import POLICY, run_as_kernel, running_node_space
from tests.node.test_node_quorum import HOLDERS, KM
from workbench.errors import WorkbenchUserError
from workbench.node.cli import node_group
from workbench.node.client import NodeError, NodeSet
from workbench.node.coordinator import policy_document
from workbench.node.keygen import current_record, ensure_joint_key, key_status
from workbench.policy import load_policy
from workbench.policy.cli import apply_policy
from workbench.policy.signed import signature_path
from workbench.review.dashboards import _he_key_html
from workbench.secure.keys import load_public

TWO_OF_THREE = POLICY + "secure:\n  decryption_threshold: 2\n"
ALL_THREE = POLICY + "secure:\n  decryption_threshold: all\n"


@pytest.fixture(scope="module")
def policy_nodes():
    with running_node_space("wb-node-th-p-", rows=600, holders=HOLDERS,
                            policy=TWO_OF_THREE) as made:
        yield made


def _commit(nodes: NodeSet, holder: str, policy: dict, parties: list[str], t: int) -> dict:
    return nodes.keygen("commit", {"keygen": uuid.uuid4().hex, "seed": os.urandom(32).hex(),
                                   "parties": parties, "t": t, "policy": policy}, [holder])


def test_key_generation_takes_t_from_the_signed_policy(policy_nodes):
    space = policy_nodes.space
    assert policy_nodes.record["t"] == 2 and policy_nodes.record["parties"] == list(HOLDERS)
    assert load_public(space).threshold["t"] == 2
    for holder in HOLDERS:  # each node re-shared for t = 2: a Shamir share, no additive one
        joint = json.loads((space.node_dir(holder) / "threshold" / "joint.json").read_text())
        assert joint["t"] == 2 and joint["parties"] == list(HOLDERS)


def test_every_node_refuses_a_t_or_key_parties_other_than_the_policys(policy_nodes):
    space = policy_nodes.space
    signed = policy_document(policy_nodes.policy)
    nodes = NodeSet.for_space(space)
    try:
        for holder in HOLDERS:
            for parties, t in ((list(HOLDERS), 3), (list(HOLDERS[:2]), 2),
                               (list(HOLDERS), 1)):
                if holder not in parties:
                    continue
                with pytest.raises(NodeError) as refused:
                    _commit(nodes, holder, signed, parties, t)
                assert refused.value.reason == "threshold-policy", str(refused.value)
                assert "the signed policy sets t = 2 of hospital-a, hospital-b, insurer-b" \
                    in str(refused.value)
                assert "\n" not in str(refused.value)
            # a re-sharing for another t of the node's current key is refused the same way
            with pytest.raises(NodeError) as refused:
                nodes.keygen("deal", {"keygen": policy_nodes.record["keygen"], "t": 3,
                                      "boxes": {}, "policy": signed}, [holder])
            assert refused.value.reason == "threshold-policy"
            # and a commit with no signed policy at all: the node has nothing to take t from
            with pytest.raises(NodeError) as refused:
                nodes.keygen("commit", {"keygen": uuid.uuid4().hex, "seed": "00" * 32,
                                        "parties": list(HOLDERS), "t": 2}, [holder])
            assert refused.value.reason == "keygen-refused"
        # the policy's own t and key parties are accepted (a commit only: no key changes)
        assert _commit(nodes, HOLDERS[0], signed, list(HOLDERS), 2)[HOLDERS[0]]["commitment"]
    finally:
        nodes.close()
    assert current_record(space)["keygen"] == policy_nodes.record["keygen"]


def test_a_changed_t_is_honoured_only_when_signed(policy_nodes):
    space, root = policy_nodes.space, policy_nodes.policy.parent
    # an altered policy under the old signature: neither the coordinator nor a node takes it
    altered = root / "altered.yaml"
    altered.write_text(ALL_THREE)
    signature_path(altered).write_text(signature_path(policy_nodes.policy).read_text())
    with pytest.raises(WorkbenchUserError) as refused:
        ensure_joint_key(space, policy_path=altered)
    assert refused.value.reason == "bad-policy-signature"
    nodes = NodeSet.for_space(space)
    try:
        with pytest.raises(NodeError) as refused:
            _commit(nodes, HOLDERS[0], policy_document(altered), list(HOLDERS), 3)
        assert refused.value.reason == "bad-policy-signature"
    finally:
        nodes.close()
    assert current_record(space)["t"] == 2
    assert run_as_kernel(space, KM) == {"holders": list(HOLDERS)}  # the 2-of-3 key works
    key = key_status(space, load_policy(policy_nodes.policy))  # the admin overview's view
    assert (key["status"], key["t"], key["parties"]) == ("in force", 2, list(HOLDERS))

    # signed (serial 2): the nodes stop using their 2-of-3 shares at once, and a new key
    # generation makes the policy's 3-of-3 key
    policy_nodes.sign(ALL_THREE, 2)
    stopped = run_as_kernel(space, KM)
    assert "refused (threshold-policy): this node's key share is t = 2 of 3 key parties, but " \
        "the signed policy sets t = 3 of hospital-a, hospital-b, insurer-b" in stopped["said"]
    assert "\n" not in stopped["said"]
    # the admin overview says why and what to do
    key = key_status(space, load_policy(policy_nodes.policy))
    assert key["status"] == "re-key needed" and key["t"] == 2
    assert "the signed policy sets t = 3 of hospital-a, hospital-b, insurer-b" in key["note"]
    assert "'workbench node keygen'" in key["note"]
    page = _he_key_html(key)
    assert "re-key needed" in page and "2 of 3" in page and "#cf222e" in page
    # the admin re-keys with 'workbench node keygen' (the supervisor's next start would too)
    out = CliRunner().invoke(node_group, ["keygen", "--data-dir", str(space.root),
                                          "--policy", str(policy_nodes.policy)])
    assert out.exit_code == 0, out.output
    record = current_record(space)
    assert out.output.strip() == (f"joint key {record['keygen'][:12]}: t = 3 of hospital-a, "
                                  "hospital-b, insurer-b")
    assert record["t"] == 3 and record["keygen"] != policy_nodes.record["keygen"]
    assert load_public(space).threshold["t"] == 3
    assert run_as_kernel(space, KM) == {"holders": list(HOLDERS)}
    assert key_status(space, load_policy(policy_nodes.policy))["status"] == "in force"

    # an admin who changes secure: with 'workbench policy apply' is told what it takes
    lines: list[str] = []
    apply_policy(space, TWO_OF_THREE.encode(), "two-of-three.yaml", policy_nodes.admin_key,
                 echo=lines.append)
    told = [line for line in lines if line.startswith("HE key: ")]
    assert told == [f"HE key: {key_status(space, load_policy(space.policy))['note']}"], lines
    assert "the space's key is t = 3 of 3 key parties, but the signed policy sets t = 2" in \
        told[0] and "'workbench node keygen'" in told[0]

