"""A space whose holders are nodes: each its own account, directory and mTLS service.

``node_space`` builds the sample space with the e2e survival view, registers an admin key and
signs the study policy, makes the HE keys, enrols every holder as a node and starts the collector,
the nodes, then (once the nodes have made the joint BFV key, as ``workbench demo`` does) the key
holder, aggregator and gateway. ``netns=True`` (the namespaced fixture) puts every node in its
own network namespace behind a veth pair.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import space_support

from workbench.accounts import ensure_user, study_kernel_user
from workbench.catalog.models import Column, View
from workbench.node.netns import namespaces  # noqa: F401 - used by the netns tests

ROOT = Path(__file__).resolve().parents[2]
STUDY = "node-e2e"
POLICY = f"""\
users:
  alice: {{roles: [researcher]}}
studies:
  {STUDY}:
    title: nodes end to end
    purpose: holder node tests
    sponsor: tests
    members: [alice]
    views: [visit_survival]
    expires: 2099-12-31
    thresholds: {{min_cell_count: 10}}
"""
SQL = ("SELECT person_id, age, diagnosis, holder, "
       "CAST(date_diff('day', DATE '2020-01-01', visit_date) "
       "AS BIGINT) AS days, CAST(cost > 800 AS INTEGER) AS event FROM visit")
VIEW = View(id="visit_survival", title="visit survival", description="days to a visit",
            tables=("visit",), sql=SQL, min_rows=5, person_column="person_id", columns=(
                Column(name="person_id", type="string", description="pseudonym",
                       sensitivity="quasi_identifier"),
                Column(name="age", type="int64", description="age", role="covariate",
                       grid=(0, 20, 40, 60, 80, 100)),
                Column(name="diagnosis", type="string", description="ICD-10 chapter",
                       role="categorical", levels=("C92", "I10", "E11", "J45")),
                Column(name="holder", type="string", description="data holder"),
                Column(name="days", type="int64", description="days since 2020-01-01",
                       sensitivity="sensitive", role="time", granularity=1, horizon=1500,
                       grid=(0, 250, 500, 750, 1000, 1250, 1500)),
                Column(name="event", type="int64", description="an expensive visit",
                       sensitivity="sensitive", role="event")))


@dataclass
class NodeSpace:
    space: object
    policy: Path
    admin_key: object
    admin_id: str
    nodes: dict = field(default_factory=dict)  # holder -> ServiceProcess
    services: list = field(default_factory=list)
    netns: dict = field(default_factory=dict)  # holder -> namespace
    addresses: dict = field(default_factory=dict)
    record: dict | None = None  # he/threshold.json of the joint key, when made

    def sign(self, text: str, serial: int) -> None:
        from workbench.policy.signed import sign_policy, signature_path

        self.policy.write_text(text)
        record = sign_policy(text.encode(), self.admin_key, self.admin_id, serial)
        signature_path(self.policy).write_text(json.dumps(record))
        for path in (self.policy, signature_path(self.policy)):
            os.chmod(path, 0o644)


def pooled_rows(space) -> pd.DataFrame:
    """Every holder's rows, read as root from the nodes' own directories."""
    frames = [pd.read_parquet(p) for p in sorted(space.nodes.rglob("visit.parquet"))]
    df = pd.concat(frames, ignore_index=True)
    df["days"] = (pd.to_datetime(df["visit_date"]) - pd.Timestamp("2020-01-01")).dt.days
    df["event"] = (df["cost"] > 800).astype(int)
    return df


def run_as_kernel(space, code: str, study: str = STUDY) -> dict:
    return space_support.run_as_kernel(space, study, code, kernel_id="k-node")


def he_operations(space, kind: str = "he-operation") -> list[dict]:
    """The fields of every record of ``kind`` (he-operation, he-decryption), read from the
    collector's store as root."""
    from workbench.provenance.store import open_store

    store = open_store(space, readonly=True)
    try:
        bodies = [json.loads(body) for _seq, _prev, _hash, body in store.rows()]
    finally:
        store.close()
    return [b["fields"] for b in bodies if b.get("kind") == kind]


def build_node_space(root: Path, rows: int = 600, netns: dict | None = None,
                     listen: dict | None = None, holders: tuple[str, ...] | None = None,
                     policy: str = POLICY, space=None) -> NodeSpace:
    """The sample space with the survival view (or ``space``, already built), its holders
    enrolled as nodes and every service started. As in ``workbench demo``, the space's BFV key
    is the nodes' joint key, made once they answer, among the key parties and with the t of
    ``policy``."""
    from workbench.gateway.server import start_gateway
    from workbench.node.enroll import enroll_space, ensure_witnesses
    from workbench.node.keygen import ensure_joint_key
    from workbench.node.process import start_nodes
    from workbench.policy.loader import parse_policy
    from workbench.policy.signed import create_admin_key, register_admin_key
    from workbench.provenance.service import start_collector
    from workbench.secure.keys import create_keys
    from workbench.secure.process import start_aggregator, start_keyholder
    from workbench.views.sample import build_sample_space

    if space is None:
        space = build_sample_space(root / "space", rows=rows, extra_views=[VIEW],
                                   **({"holders": holders} if holders else {}))
    os.chmod(space.root, 0o755)
    key = create_admin_key(root / "admin.key")
    key_id = register_admin_key(space, "test-admin", key.public_key())
    made = NodeSpace(space, root / "policy.yaml", key, key_id, netns=netns or {})
    made.sign(policy, 1)
    for study in parse_policy(policy).studies:
        ensure_user(study_kernel_user(study))
    if not (space.he / "public.ctx").exists():
        create_keys(space)
    enroll_space(space)
    try:
        made.services.append(start_collector(space))
        ensure_witnesses(space)  # the nodes witness the central log (the collector's key)
        made.nodes = start_nodes(space, listen=listen, netns=netns)
        # as start_holder_nodes: the nodes make the joint key before the key holder starts
        made.record = ensure_joint_key(space, policy_path=made.policy)
        made.services.append(start_keyholder(space, min_cell_floor=5))
        made.services.append(start_aggregator(space))
        made.services.append(start_gateway(space, made.policy))
    except BaseException:
        stop_node_space(made)
        raise
    return made


def stop_node_space(made: NodeSpace) -> None:
    from workbench.node.process import NodeGroup

    for service in reversed(made.services):
        service.stop()
    NodeGroup(made.nodes).stop()


@contextlib.contextmanager
def running_node_space(prefix: str, build=None, env: dict | None = None, **kwargs):
    """A node space in a fresh /tmp folder (``build(root)`` makes the space, default the sample
    one), with every service running; ``env``: variables set while the services start."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    saved = {name: os.environ.get(name) for name in env or {}}
    try:
        os.environ.update(env or {})
        try:
            made = build_node_space(root, space=build(root) if build else None, **kwargs)
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None) if value is None else os.environ.update({name: value})
        try:
            yield made
        finally:
            stop_node_space(made)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def node_space():
    with running_node_space("wb-nodes-") as made:
        yield made
