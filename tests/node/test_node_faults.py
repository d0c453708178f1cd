"""Nodes that die, stall or lie: one clear line naming the node, nothing released, and the
central record and the node's own journal agree on what happened."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from aiohttp import web

from tests.node.conftest import (
    ROOT,
    STUDY,
    he_operations,
    run_as_kernel,
    running_node_space,
)
from workbench.node import pki
from workbench.node.config import NodeConfig
from workbench.node.journal import Journal
from workbench.node.process import start_node

TIMEOUT = 6  # the gateway's node timeout in this module (WORKBENCH_NODE_TIMEOUT)


@pytest.fixture(scope="module")
def faulty():
    with running_node_space("wb-node-faults-",
                            env={"WORKBENCH_NODE_TIMEOUT": str(TIMEOUT)}) as made:
        yield made


def node_address(made, holder: str) -> str:
    return json.loads(made.space.node_registry.read_text())["nodes"][holder]["address"]


def restart(made, holder: str) -> None:
    made.nodes[holder].stop()
    made.nodes[holder], _ = start_node(made.space.node_dir(holder),
                                       listen=node_address(made, holder))


def kernel_call(made, code: str) -> subprocess.Popen:
    import pwd

    uid = pwd.getpwnam(f"wbk-{STUDY}").pw_uid
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent",
           "WORKBENCH_GATEWAY_SOCKET": str(made.space.gateway_socket(STUDY)),
           "WORKBENCH_STUDY": STUDY, "WORKBENCH_USER": "alice", "WORKBENCH_KERNEL_ID": "k-f"}
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                             sys.executable, "-c", "import json, workbench as wb\n"
                             + textwrap.dedent(code)], env=env, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_node_killed_mid_round_fails_the_fit_naming_it(faulty):
    """The node is frozen (SIGSTOP) before the fit starts, so the operation's first request is in
    flight at it for certain (the other node has answered it) when it is killed with SIGKILL."""
    config = NodeConfig.load(faulty.space.node_dir("hospital-a"))
    journal = Journal(config.journal)
    other = Journal(NodeConfig.load(faulty.space.node_dir("insurer-b")).journal)
    before = len(other.entries())
    node = faulty.nodes["hospital-a"].process
    os.kill(node.pid, signal.SIGSTOP)
    call = kernel_call(faulty, """
        from workbench.errors import WorkbenchUserError
        try:
            wb.secure.cox_ph("visit_survival", "days", "event", covariates=["age"])
            print(json.dumps({"said": None}))
        except WorkbenchUserError as exc:
            print(json.dumps({"said": str(exc)}))
    """)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not other.entries()[before:]:
        time.sleep(0.05)  # the other node answered this operation's first request
    node.kill()
    out, err = call.communicate(timeout=180)
    said = json.loads(out.strip().splitlines()[-1])["said"]
    assert said is not None and said.startswith("holder hospital-a: "), out + err
    assert "\n" not in said
    record = [r for r in he_operations(faulty.space) if r["op"] == "cox_ph"][-1]
    assert record["status"] == "denied" and record["reason"] in ("node-down", "node-timeout")
    assert record["iteration"] == 0  # no round completed, so nothing was decrypted
    # the killed node served nothing for this operation; the one that answered says so
    assert not [e for e in journal.entries() if e.get("operation") == record["request_id"]]
    assert {e["decision"] for e in other.entries()
            if e.get("operation") == record["request_id"]} <= {"served"}
    assert journal.verify() == len(journal.entries())
    restart(faulty, "hospital-a")
    run_as_kernel(faulty.space, 'print(json.dumps({"n": int(wb.secure.count("visit_survival"))}))')


class FakeNode:
    """A server holding a node's real certificate that answers wrongly: garbage, or nothing."""

    def __init__(self, made, holder: str, behaviour: str):
        # an impostor answers at this holder's address with another holder's real certificate
        other = "hospital-a" if behaviour == "impostor" else holder
        self.config = NodeConfig.load(made.space.node_dir(other))
        host, port = node_address(made, holder).rsplit(":", 1)
        self.host, self.port, self.behaviour = host, int(port), behaviour
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _reply(self, request: web.Request) -> web.Response:
        if self.behaviour == "stall":
            await asyncio.sleep(TIMEOUT * 3)
        if request.path == "/v1/rules":
            return web.json_response({"holder": self.config.holder, "thresholds": {}})
        return web.Response(body=b"WBHE\x01garbage that is no frame", status=200)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._reply)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        ctx = pki.server_context(self.config.ca, self.config.cert, self.config.key)
        site = web.TCPSite(self.runner, self.host, self.port, ssl_context=ctx,
                           reuse_address=True)
        self.loop.run_until_complete(site.start())
        self.started.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self.started.wait(20)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.mark.parametrize("behaviour,reason", [
    ("garbage", "its reply is malformed"), ("stall", f"no answer within {TIMEOUT} s"),
    ("impostor", "its certificate is not a valid, unrevoked certificate of the space CA for "
                 "this holder")])
def test_a_node_replying_garbage_nothing_or_as_another_releases_nothing(faulty, behaviour,
                                                                       reason):
    faulty.nodes["insurer-b"].stop()
    released = len([r for r in he_operations(faulty.space) if r["status"] == "ok"])
    try:
        with FakeNode(faulty, "insurer-b", behaviour):
            out = run_as_kernel(faulty.space, """
                from workbench.errors import WorkbenchUserError
                try:
                    wb.secure.kaplan_meier("visit_survival", duration_col="days",
                                           event_col="event")
                    said = None
                except WorkbenchUserError as exc:
                    said = str(exc)
                print(json.dumps({"said": said}))
            """)
    finally:
        faulty.nodes["insurer-b"], _ = start_node(faulty.space.node_dir("insurer-b"),
                                                  listen=node_address(faulty, "insurer-b"))
    assert out["said"].startswith(f"holder insurer-b: {reason}")
    records = he_operations(faulty.space)
    assert len([r for r in records if r["status"] == "ok"]) == released
    assert records[-1]["status"] == "denied"
