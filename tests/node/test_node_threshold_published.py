"""Values published from R's ``survival`` package, reproduced through holder nodes that hold
the space's BFV key only jointly (issue 17): the NCCTG lung trial split by institution, every
institution its own node and key party; every round's counts decrypted from every node's
partial. Same bounds as tests/node/test_node_published_r.py (half a unit in R's last digit)."""

from __future__ import annotations

import pytest

from tests.node.conftest import run_as_kernel, running_node_space
from tests.node.test_node_published_r import POLICY, STUDY
from tests.secure.test_secure_published_r import LUNG_SEX_COX, LUNG_SEX_LOGRANK
from workbench.node.keygen import ensure_joint_key
from workbench.secure.keys import load_public
from workbench.space.build import init_space


@pytest.fixture(scope="module")
def lung_joint():
    def public_space(root):
        return init_space(root / "space", patients=0, echo=lambda _line: None)

    with running_node_space("wb-node-lung-th-", build=public_space, policy=POLICY) as made:
        made.record = ensure_joint_key(made.space, policy_path=made.policy)
        yield made


def test_logrank_and_cox_equal_r_with_the_institutions_joint_key(lung_joint):
    space = lung_joint.space
    parties = load_public(space).threshold["parties"]
    assert parties == lung_joint.record["parties"] and len(parties) >= 10
    out = run_as_kernel(space, """
        lr = wb.secure.logrank_test("lung_survival", "time", "status", group_col="sex")
        cox = wb.secure.cox_ph("lung_survival", "time", "status", covariates=["sex"])
        row = cox.summary.loc["sex"]
        print(json.dumps({"test_statistic": float(lr.test_statistic),
                          "p_value": float(lr.p_value), "coef": float(row["coef"]),
                          "se(coef)": float(row["se(coef)"]), "z": float(row["z"]),
                          "p": float(row["p"]), "holders": cox.holders}))
    """, study=STUDY)
    for name, (published, bound) in (LUNG_SEX_LOGRANK | LUNG_SEX_COX).items():
        assert abs(out[name] - published) <= bound, name
    assert len(out["holders"]) >= 10 and set(out["holders"]) <= set(parties)
