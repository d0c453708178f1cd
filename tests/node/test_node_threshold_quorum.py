"""t-out-of-N in the holder nodes (issue 17): after the joint key generation the three nodes
re-share their shares with Shamir's scheme for t = 2 (pieces sealed node to node, relayed by
the coordinator); a study with a quorum then goes on without a node that is down, decrypted
from the two remaining nodes' partials, while a study without one stops, naming the node. No
file holds the whole key (the Shamir shares interpolated by a test oracle)."""

from __future__ import annotations

import json
import pwd

import numpy as np
import pytest

from tests.node.conftest import pooled_rows, run_as_kernel, running_node_space
from tests.node.test_node_quorum import HOLDERS, KM, POLICY_WITH_QUORUM, QUORUM_STUDY
from tests.node.test_node_threshold import _whole_key_found
from workbench.node.keygen import ensure_joint_key
from workbench.node.keyshare import _load_shamir
from workbench.node.process import start_node
from workbench.secure import threshold as th
from workbench.secure import threshold_shamir as sh
from workbench.secure.keys import load_public

# t comes from the admin-signed policy (every node checks it), not from the coordinator
POLICY_TWO_OF_THREE = POLICY_WITH_QUORUM + "secure:\n  decryption_threshold: 2\n"


@pytest.fixture(scope="module")
def shamir_nodes():
    with running_node_space("wb-node-th-q-", rows=900, holders=HOLDERS,
                            policy=POLICY_TWO_OF_THREE) as made:
        yield made


def _oracle_interpolated_secret(space, holders) -> np.ndarray:
    """TEST ORACLE ONLY: the joint secret from t nodes' Shamir shares (Lagrange at 0)."""
    parties = [_load_shamir((space.node_dir(h) / "threshold" / "shamir.key").read_bytes())
               for h in holders]
    present = [p.index for p in parties]
    s_hat = sum(p.share * sh.lagrange(p.index, present) % th._PRIMES for p in parties)
    coefficients = sh._transform(s_hat % th._PRIMES, to_ntt=False)
    centred = np.where(coefficients > th._PRIMES // 2, coefficients - th._PRIMES, coefficients)
    assert (centred == centred[0]).all()  # one small polynomial: the interpolation is a key
    return centred[0]


def test_each_node_keeps_only_its_shamir_share_and_no_file_holds_the_key(shamir_nodes):
    space = shamir_nodes.space
    assert load_public(space).threshold["t"] == 2 == shamir_nodes.record["t"]
    for holder in HOLDERS:
        folder = space.node_dir(holder) / "threshold"
        assert not (folder / "share.key").exists()  # the additive share was dropped
        stat = (folder / "shamir.key").stat()
        assert stat.st_uid == pwd.getpwnam(f"wbh-{holder}").pw_uid and stat.st_mode & 0o777 \
            == 0o600
    secret = _oracle_interpolated_secret(space, HOLDERS[:2])
    assert np.array_equal(secret, _oracle_interpolated_secret(space, HOLDERS[1:]))
    assert _whole_key_found(space, secret) == []
    assert ensure_joint_key(space, policy_path=shamir_nodes.policy)["keygen"] \
        == shamir_nodes.record["keygen"]


def test_two_of_three_nodes_decrypt_for_a_quorum_study(shamir_nodes):
    space = shamir_nodes.space
    everyone = run_as_kernel(space, """
        km = wb.secure.kaplan_meier("visit_survival", duration_col="days", event_col="event")
        print(json.dumps({"holders": km.holders,
                          "n": int(km.event_table["at_risk"].iloc[0])}))
    """)
    assert everyone == {"holders": list(HOLDERS), "n": len(pooled_rows(space))}
    shamir_nodes.nodes["hospital-b"].stop()
    partial = run_as_kernel(space, KM, study=QUORUM_STUDY)
    assert partial.get("holders") == ["hospital-a", "insurer-b"], partial
    strict = run_as_kernel(space, KM)  # no quorum in its policy entry
    assert strict["said"].startswith("holder hospital-b: ")

    # the node is back: the same curve with it would, next to the one without it, give away
    # hospital-b's own small cells, so the key holder's query auditing refuses it
    address = json.loads(space.node_registry.read_text())["nodes"]["hospital-b"]["address"]
    shamir_nodes.nodes["hospital-b"], _ = start_node(space.node_dir("hospital-b"),
                                                     listen=address)
    again = run_as_kernel(space, KM, study=QUORUM_STUDY)
    assert again["said"].startswith("Release refused by rule 'query-audit'"), again
