"""The twin is made without a row: a gateway whose engine holds the catalog only (no dataset is
loaded, as for a coordinator of holder nodes) and whose node set fails the test if it is asked
anything serves the twin of an 'aggregates' view, and refuses its rows."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import aiohttp
import pyarrow as pa
import pytest
from aiohttp import web

from workbench.gateway.app import GatewayState, make_app
from workbench.gateway.ledger import UsageLedger
from workbench.provenance.client import ProvenanceClient
from workbench.provenance.service import start_collector
from workbench.views import ViewEngine
from workbench.views.sample import build_sample_space

POLICY = textwrap.dedent("""\
    users:
      alice: {roles: [researcher]}
    studies:
      tw:
        title: T
        purpose: twin without rows
        sponsor: tests
        members: [alice]
        views: [visits, visits_monthly]
        visibility: {visits: aggregates}
        expires: 2099-12-31
    """)


class Tripwire:
    """Stands where the holder nodes would be: any use of it is a read the twin must not make."""

    asked: list[str] = []

    def __getattr__(self, name):
        Tripwire.asked.append(name)
        raise RuntimeError("no holder node here")


@pytest.fixture(scope="module")
def space():
    root = Path(tempfile.mkdtemp(prefix="wb-twin-", dir="/tmp"))
    os.chmod(root, 0o755)  # the collector's account must reach the space
    space = build_sample_space(root / "space", rows=60)
    (root / "policy.yaml").write_text(POLICY)
    collector = start_collector(space)
    try:
        yield space, root / "policy.yaml"
    finally:
        collector.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _get(space, policy, path: str) -> tuple[int, dict, bytes]:
    engine = ViewEngine(space, data=False)  # the catalog only: there is no row to read
    state = GatewayState(space=space, engine=engine, policy_path=policy,
                         provenance=ProvenanceClient(space.collector_socket),
                         ledger=UsageLedger(space), nodes=Tripwire())
    runner = web.AppRunner(make_app(state, "tw", kernel_uid=os.getuid()))
    await runner.setup()
    sock = str(policy.parent / "gw.sock")
    await web.UnixSite(runner, sock).start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as client:
            async with client.get(f"http://gw{path}") as response:
                return response.status, dict(response.headers), await response.read()
    finally:
        await runner.cleanup()


def test_a_catalog_only_gateway_serves_the_twin_and_asks_no_node(space):
    Tripwire.asked.clear()
    status, headers, body = asyncio.run(_get(*space, "/views/visits/arrow?limit=40"))
    assert status == 200, body
    assert Tripwire.asked == []
    assert headers["X-Workbench-Synthetic"] == "twin"
    table = pa.ipc.open_stream(body).read_all()
    assert table.num_rows == 40
    assert table.column_names == ["person_id", "visit_date", "age", "diagnosis", "holder"]
    assert set(table["holder"].to_pylist()) <= {"hospital-a", "insurer-b"}


def test_rows_of_a_rows_view_would_need_the_nodes(space):
    """The control: the same gateway does go to the nodes for a 'rows' view (so the tripwire
    is live), and it is the policy's level, not the request, that picks the twin."""
    Tripwire.asked.clear()
    status, _, _ = asyncio.run(_get(*space, "/views/visits_monthly/arrow"))
    assert status == 500 and Tripwire.asked == ["read"]
