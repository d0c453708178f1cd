"""A space with a collector, the airlock service, a stand-in study gateway (only the /release/*
forwarder the real gateway mounts) and a few release requests in every state."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi

from workbench.paths import Space
from workbench.policy import load_policy
from workbench.provenance.client import ProvenanceClient
from workbench.provenance.service import start_collector
from workbench.release.airlock import airlock_socket
from workbench.release.helpers import coarsen_survival
from workbench.release.http import UnixHTTP
from workbench.release.serialize import to_payload
from workbench.release.service import start_airlock

POLICY = textwrap.dedent("""
    users:
      alice: {roles: [researcher]}
      rita: {roles: [reviewer]}
      remy: {roles: [reviewer]}
      olga: {roles: [reviewer]}
      ada: {roles: [admin]}
    holders:
      hospital-a: {title: Hospital A, kind: hospital}
    studies:
      cml-tki:
        title: CML study
        purpose: test
        sponsor: test
        members: [alice]
        reviewers: [rita, remy]
        views: [cml_cohort]
        expires: 2099-12-31
      lonely:
        title: Other
        purpose: test
        sponsor: test
        members: [alice]
        reviewers: [olga]
        views: [cml_cohort]
        expires: 2099-12-31
""")


class Env:
    pass


def _gateway_thread(space: Space, study: str, sock: Path):
    from aiohttp import web

    from workbench.release.forward import release_forwarder

    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def start():
        app = web.Application()
        app.router.add_route("*", "/release/{tail:.*}", release_forwarder(space, study))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, str(sock)).start()
        return runner

    def run():
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    return loop, thread


@pytest.fixture(scope="package")
def review_env():
    root = Path(tempfile.mkdtemp(prefix="wb-test-", dir="/tmp"))
    os.chmod(root, 0o755)
    env = Env()
    env.space = Space(root / "space")
    env.space.root.mkdir(mode=0o755)
    env.policy_file = root / "policy.yaml"
    env.policy_file.write_text(POLICY)
    env.policy_file.chmod(0o644)
    env.policy = load_policy(env.policy_file)
    env.gateway_socket = root / "gateway.sock"
    try:
        with start_collector(env.space), start_airlock(env.space, env.policy_file):
            loop, thread = _gateway_thread(env.space, "cml-tki", env.gateway_socket)
            _populate(env)
            yield env
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _populate(env):
    """A study kernel's start and a cell-execution record as the provisioner and the audit proxy
    write them; requests in several states made while that cell ran; then its completion."""
    import hashlib
    from datetime import UTC, datetime

    from workbench import accounts

    provenance = ProvenanceClient(env.space.collector_socket)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    provenance.append("kernel-lifecycle", {
        "study": "cml-tki", "kernel_id": "k-1", "user": "alice", "event": "start",
        "status": "ok", "uid": accounts.ensure_user(accounts.study_kernel_user("cml-tki"))[0]})
    code = "km = wb.secure.kaplan_meier('cml_cohort', time='days', event='progressed')"
    cell = {"study": "cml-tki", "user": "alice", "kernel_id": "k-1", "msg_id": "m-1",
            "code_sha256": hashlib.sha256(code.encode()).hexdigest(), "started": now}
    provenance.append("cell-execution", {**cell, "code": code, "status": "submitted"})
    kernel = UnixHTTP(airlock_socket(env.space), headers={
        "X-Workbench-Actor": "wbk-cml-tki", "X-Workbench-Study": "cml-tki",
        "X-Workbench-Kernel": "k-1", "X-Workbench-Msg-Id": "m-1"})

    def create(obj, name, **kw):
        return kernel.json("POST", "/requests", {"name": name, "description": f"about {name}",
                                                 "payload": to_payload(obj, **kw)})

    rossi = load_rossi()
    km = coarsen_survival(KaplanMeierFitter().fit(rossi.week, rossi.arrest), 10)
    env.released = create(km, "km_all", view="cml_cohort")
    for reviewer in ("rita", "remy"):
        UnixHTTP(airlock_socket(env.space), headers={"X-Workbench-Actor": reviewer}).json(
            "POST", f"/requests/{env.released['id']}/decision", {"decision": "approve"})
    table = pd.DataFrame({"tki": ["imatinib", "<b>nilotinib</b>"], "n": [40, 35]})
    env.pending = create(table, "by_tki", view="cml_cohort")
    env.failed = create(pd.DataFrame({"tki": ["x", "y"], "n": [40, 3]}), "small", view="cml_cohort")
    env.model = create(CoxPHFitter().fit(rossi, "week", "arrest"), "cox", view="cml_cohort")
    provenance.append("cell-execution", {**cell, "status": "ok", "ended": now})
