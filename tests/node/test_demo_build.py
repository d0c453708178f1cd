"""The demo's build through the holders' nodes (``workbench demo``: ``init_space(...,
synthetic_at_nodes=True)``, enrolment, ``at_nodes.build_at_nodes``): the central builder writes
no synthetic store, each holder's raw sources are its node account's own files (0700 folder, 0600
files, made by that account) before its ingest, the catalog's certificates are signed by the
holders, the OPRF pseudonyms link the holders exactly as the central build's HMAC ones, and a
secure KM and a plaintext view through the nodes work on the result."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from tests.node.conftest import NodeSpace, run_as_kernel
from workbench.catalog.models import Column, View

PATIENTS, SEED = 400, 11
HOLDERS = ("hospital-a", "hospital-b", "insurer", "insurer-b", "pharma")
STUDY = "demo-build"
POLICY = f"""\
users:
  alice: {{roles: [researcher]}}
studies:
  {STUDY}:
    title: demo built at the nodes
    purpose: holder node tests
    sponsor: tests
    members: [alice]
    views: [followup]
    expires: 2099-12-31
    thresholds: {{min_cell_count: 5}}
"""
# follow-up at each holder, and whether the holder saw the person die (joins within a holder)
FOLLOWUP = View(
    id="followup", title="follow-up", description="days observed and death", tables=(
        "observation_period", "death"), min_rows=5, person_column="person_id",
    sql="SELECT o.person_id, o.holder, CAST(date_diff('day', o.observation_period_start_date, "
        "o.observation_period_end_date) AS BIGINT) AS days, "
        "CAST(d.person_id IS NOT NULL AS INTEGER) AS died FROM observation_period o "
        "LEFT JOIN (SELECT DISTINCT holder, person_id FROM death) d "
        "ON o.holder = d.holder AND o.person_id = d.person_id "
        "WHERE o.observation_period_end_date >= o.observation_period_start_date",
    columns=(Column(name="person_id", type="string", description="pseudonym",
                    sensitivity="quasi_identifier"),
             Column(name="holder", type="string", description="data holder"),
             Column(name="days", type="int64", description="days observed",
                    sensitivity="sensitive", role="time", granularity=100, horizon=20000,
                    grid=(0, 1000, 2000, 4000, 8000, 20000)),
             Column(name="died", type="int64", description="death seen by the holder",
                    sensitivity="sensitive", role="event")))


def _uid(holder: str) -> int:
    return pwd.getpwnam(f"wbh-{holder}").pw_uid


@pytest.fixture(scope="module")
def built():
    from workbench.catalog.store import Catalog
    from workbench.node.enroll import enroll_space
    from workbench.space.at_nodes import build_at_nodes
    from workbench.space.build import init_space

    root = Path(tempfile.mkdtemp(prefix="wb-demo-build-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        space = init_space(root / "space", patients=PATIENTS, seed=SEED, echo=lambda _l: None,
                           synthetic_at_nodes=True, public_datasets=False)
        central_stores = sorted(p.name for p in space.holders.iterdir()) \
            if space.holders.is_dir() else []
        Catalog.write(space, FOLLOWUP)  # before enrolment, which copies the views to the nodes
        enroll_space(space)
        lines: list[str] = []
        done = build_at_nodes(space, lines.append)
        central = init_space(root / "central", patients=PATIENTS, seed=SEED,
                             echo=lambda _l: None, public_datasets=False)
        yield {"root": root, "space": space, "done": done, "lines": lines,
               "central_stores": central_stores, "central": central}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_no_central_store_and_each_source_is_its_node_accounts_own(built):
    space = built["space"]
    assert built["done"] == list(HOLDERS)
    assert [name for name in built["central_stores"] if name in HOLDERS] == []
    assert not [h for h in HOLDERS if (space.holders / h).exists()]
    for holder in HOLDERS:
        node, uid = space.node_dir(holder), _uid(holder)
        sources = node / "sources"
        assert node.stat().st_uid == uid and node.stat().st_mode & 0o777 == 0o700
        assert sources.stat().st_uid == uid and sources.stat().st_mode & 0o777 == 0o700
        files = sorted(sources.iterdir())
        assert files, holder
        for path in files:  # made by the node's account itself, readable by it alone
            assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (uid, 0o600), path
        versions = json.loads((node / "versions" / "current" / "version.json").read_text())
        assert versions["pseudonyms"] == "oprf" and "adopted" not in versions
        assert {p.name for p in files} == set(versions["sources"])
        # the sources existed before the version that was made from them
        made = datetime.fromisoformat(versions["created_at"]).timestamp()
        assert max(p.stat().st_mtime for p in files) <= made
        kept = [p.name for p in (node / "versions").iterdir() if not p.name.startswith(".")]
        assert sorted(kept) == sorted([versions["id"], "current"])  # nothing adopted
        store = node / "versions" / versions["id"] / "holders" / holder
        assert {p.stat().st_uid for p in store.iterdir()} == {uid}


def test_a_second_run_has_nothing_left_to_do(built):
    from workbench.space.at_nodes import build_at_nodes

    space = built["space"]
    assert json.loads(space.manifest.read_text())["ingest_at_nodes"]["checked"] is True
    before = {h: os.readlink(space.node_dir(h) / "versions" / "current") for h in HOLDERS}
    assert build_at_nodes(space, lambda _l: None) == []
    assert {h: os.readlink(space.node_dir(h) / "versions" / "current") for h in HOLDERS} == before


def test_the_catalog_certificates_are_signed_by_the_holders(built):
    from workbench.catalog import certificates
    from workbench.catalog.store import Catalog

    space = built["space"]
    datasets = Catalog.load(space).datasets
    assert {d.holder for d in datasets.values()} == set(HOLDERS)
    assert sorted(json.loads(space.manifest.read_text())["datasets"]) == sorted(datasets)
    for dataset_id, dataset in datasets.items():
        checked = certificates.verify(space, space.catalog / "certificates" /
                                      f"{dataset_id}.json")
        assert checked.holder == dataset.holder
        assert checked.vouched_by.startswith(f"holder {dataset.holder} (its enrolled")


def test_oprf_pseudonyms_link_the_holders_as_the_central_build_did(built):
    at_nodes = json.loads((built["space"].catalog / "linkage.json").read_text())
    central = json.loads((built["central"].catalog / "linkage.json").read_text())
    assert at_nodes["method"].startswith("OPRF") and central["method"].startswith("HMAC")
    assert at_nodes["persons_total"] == central["persons_total"] == PATIENTS
    assert at_nodes["holders"] == central["holders"]
    assert at_nodes["pairs"] == central["pairs"]
    assert any(p["persons_in_both"] for p in at_nodes["pairs"])


def test_derived_marks_reach_every_copy_of_the_views(built):
    from workbench.catalog.store import Catalog
    from workbench.paths import Space

    space = built["space"]
    views = Catalog.load(space).views
    marked = [line.split(":")[0].removeprefix("view ") for line in built["lines"]
              if "made sensitive" in line]
    for view_id in marked:
        assert any(c.derived_from for c in views[view_id].columns)
    for holder in HOLDERS:
        assert Catalog.load(Space(space.node_dir(holder))).views == views


def test_a_secure_km_and_a_view_through_the_nodes(built):
    from workbench.accounts import ensure_user, study_kernel_user
    from workbench.policy.signed import create_admin_key, register_admin_key
    from workbench.services import SERVICES, space_services
    from workbench.views import ViewEngine

    space, root = built["space"], built["root"]
    key = create_admin_key(root / "admin.key")
    made = NodeSpace(space, root / "policy.yaml", key,
                     register_admin_key(space, "test-admin", key.public_key()))
    made.sign(POLICY, 1)
    ensure_user(study_kernel_user(STUDY))
    # the rows the nodes hold, read here as root for the expected figures
    expected = sum(len(ViewEngine(type(space)(space.node_dir(h)), rekey_key=bytes(32))
                       .unprotected_frame("followup", ("days",)))
                   for h in HOLDERS if (space.node_dir(h) / "holders" / h /
                                        "observation_period.parquet").exists())
    chosen = tuple(s for s in SERVICES if s.label in (
        "provenance collector", "linkage service", "holder nodes", "data gateway",
        "key holder", "aggregator"))
    with space_services(space, made.policy, echo=lambda _line: None, services=chosen):
        out = run_as_kernel(space, """
            km = wb.secure.kaplan_meier("followup", duration_col="days", event_col="died")
            rows = wb.view("followup")
            print(json.dumps({"at_risk": int(km.event_table["at_risk"].iloc[0]),
                              "rows": len(rows), "holders": sorted(set(rows["holder"])),
                              "person": rows["person_id"].iloc[0]}))
        """, study=STUDY)
    assert out["at_risk"] == out["rows"] == expected > 0
    assert set(out["holders"]) <= set(HOLDERS) and len(out["holders"]) >= 2
    # the study sees its own re-keyed pseudonyms, not the space-wide ones the nodes store
    import pyarrow.parquet as pq

    stored = set()
    for holder in HOLDERS:
        path = space.node_dir(holder) / "holders" / holder / "observation_period.parquet"
        if path.exists():
            stored |= set(pq.read_table(path, columns=["person_id"]).column(0).to_pylist())
    assert out["person"] not in stored
