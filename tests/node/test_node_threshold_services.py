"""The supervisor's order (``workbench demo``: ``services.space_services``): the holder nodes
start first and make the joint BFV key among themselves, then the key holder starts on a
``secret.ctx`` without a BFV secret key, and a study's KM through the gateway is decrypted from
the nodes' partials; started again, the same joint key is kept (idempotent)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tests.node.conftest import POLICY, VIEW, NodeSpace, run_as_kernel
from workbench.accounts import ensure_user, study_kernel_user
from workbench.secure.keys import load_public


def _enrolled_space(root: Path) -> NodeSpace:
    from workbench.node.enroll import enroll_space
    from workbench.policy.loader import parse_policy
    from workbench.policy.signed import create_admin_key, register_admin_key
    from workbench.secure.keys import create_keys
    from workbench.views.sample import build_sample_space

    space = build_sample_space(root / "space", rows=600, extra_views=[VIEW])
    os.chmod(space.root, 0o755)
    key = create_admin_key(root / "admin.key")
    made = NodeSpace(space, root / "policy.yaml", key,
                     register_admin_key(space, "test-admin", key.public_key()))
    made.sign(POLICY, 1)
    for study in parse_policy(POLICY).studies:
        ensure_user(study_kernel_user(study))
    create_keys(space)
    enroll_space(space)
    return made


def test_the_supervisor_makes_the_joint_key_before_the_key_holder_starts():
    from workbench.services import SERVICES, space_services

    root = Path(tempfile.mkdtemp(prefix="wb-node-th-svc-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        made = _enrolled_space(root)
        space = made.space
        chosen = tuple(s for s in SERVICES if s.label in (
            "provenance collector", "holder nodes", "data gateway", "key holder", "aggregator"))
        with space_services(space, made.policy, echo=lambda _line: None,
                            services=chosen) as started:
            assert started.index("holder nodes") < started.index("key holder")
            keygen = load_public(space).threshold["keygen"]
            assert not load_public(space).threshold.get("simulated")  # the nodes' own key
            assert not (space.he / "key-shares").exists()  # init's simulated shares gone
            out = run_as_kernel(space, """
                km = wb.secure.kaplan_meier("visit_survival", duration_col="days",
                                            event_col="event")
                print(json.dumps({"n": int(km.event_table["at_risk"].iloc[0])}))
            """)
            assert out["n"] == 600
        with space_services(space, made.policy, echo=lambda _line: None, services=chosen):
            assert load_public(space).threshold["keygen"] == keygen  # kept, not remade
            again = run_as_kernel(space, """
                print(json.dumps({"n": int(wb.secure.count("visit_survival"))}))
            """)
            assert again["n"] == 600
        record = json.loads((space.he / "threshold.json").read_text())
        assert record["keygen"] == keygen and record["parties"] == ["hospital-a", "insurer-b"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
