"""Values published from R's ``survival`` package, reproduced through holder nodes: the NCCTG
lung trial split by institution, every institution its own node (own account, own store, mTLS)
and key party of the space's joint BFV key (issue 17: every round's sums decrypted from every
node's partial), the gateway holding no row. The bounds are half a unit in R's last printed
digit (see tests/secure/test_secure_published_r.py for the sources)."""

from __future__ import annotations

import pytest

from tests.node.conftest import run_as_kernel, running_node_space
from tests.secure.test_secure_published_r import LUNG_SEX_COX, LUNG_SEX_LOGRANK
from workbench.secure.keys import load_public
from workbench.space.build import init_space

STUDY = "lung-nodes"
POLICY = f"""\
users:
  alice: {{roles: [researcher]}}
studies:
  {STUDY}:
    title: lung through nodes
    purpose: published values through holder nodes
    sponsor: tests
    members: [alice]
    views: [lung_survival]
    expires: 2099-12-31
    thresholds: {{min_cell_count: 10}}
"""


@pytest.fixture(scope="module")
def lung_nodes():
    def public_space(root):
        return init_space(root / "space", patients=0, echo=lambda _line: None)

    with running_node_space("wb-node-lung-", build=public_space, policy=POLICY) as made:
        yield made


def test_logrank_and_cox_equal_r_through_the_institutions_nodes(lung_nodes):
    parties = load_public(lung_nodes.space).threshold["parties"]
    assert parties == lung_nodes.record["parties"] and len(parties) >= 10
    out = run_as_kernel(lung_nodes.space, """
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
    assert len(out["holders"]) >= 10  # the institutions, each a node
    assert all(h.startswith("ncctg-inst-") for h in out["holders"])
    assert set(out["holders"]) <= set(parties)


def test_ownership_certificates_verify_against_the_nodes_stores(lung_nodes):
    from workbench.catalog import certificates

    space = lung_nodes.space
    paths = sorted((space.catalog / "certificates").glob("*.json"))
    assert len(paths) >= 20
    for path in paths:  # as root: the files are in the nodes' own directories now
        result = certificates.verify(space, path)
        assert (space.node_dir(result.holder) / "holders" / result.holder).is_dir()
    assert not any(p.suffix == ".parquet" for p in space.holders.rglob("*"))
