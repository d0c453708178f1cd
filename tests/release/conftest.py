"""Fixtures of the airlock tests: a space on disk, a policy file, a real provenance collector."""

from __future__ import annotations

import json
import textwrap

import pytest

from workbench.paths import Space
from workbench.policy import load_policy
from workbench.provenance.client import ProvenanceClient
from workbench.provenance.service import start_collector
from workbench.provenance.store import open_store
from workbench.release.airlock import Airlock

POLICY = textwrap.dedent("""
    users:
      alice: {roles: [researcher]}
      bob: {roles: [researcher]}
      rita: {roles: [reviewer]}
      remy: {roles: [reviewer]}
      olga: {roles: [reviewer]}
      ada: {roles: [admin]}
    studies:
      cml-tki:
        title: CML
        purpose: test
        sponsor: test
        members: [alice]
        reviewers: [rita, remy]
        views: [cml_cohort, cml_costs]
        expires: 2099-12-31
        thresholds: {min_cell_count: 10, dominance: {n: 2, k: 0.9}}
      other:
        title: Other
        purpose: test
        sponsor: test
        members: [bob]
        reviewers: [olga]
        views: [cml_cohort]
        expires: 2099-12-31
""")


@pytest.fixture
def space(open_tmp):
    return Space(open_tmp / "space")


@pytest.fixture
def policy_file(open_tmp):
    path = open_tmp / "policy.yaml"
    path.write_text(POLICY)
    path.chmod(0o644)
    return path


@pytest.fixture
def policy(policy_file):
    return load_policy(policy_file)


@pytest.fixture
def collector(space):
    space.root.mkdir(parents=True, exist_ok=True)
    space.root.chmod(0o755)
    with start_collector(space) as handle:
        yield handle


@pytest.fixture
def airlock(space, policy, collector):
    lock = Airlock(space, policy, ProvenanceClient(space.collector_socket))
    yield lock
    lock.store.close()


@pytest.fixture
def read_records(space):
    """Every stored provenance record as {id, kind, fields, writer}, optionally of one kind."""
    def read(kind=None) -> list[dict]:
        store = open_store(space, readonly=True)
        try:
            rows = list(store.rows())
        finally:
            store.close()
        out = []
        for _seq, _prev, digest, body in rows:
            rec = json.loads(body)
            rec["id"] = bytes(digest).hex()
            out.append(rec)
        return [r for r in out if kind is None or r["kind"] == kind]
    return read
