"""A real ``jupyter server`` configured with ``workbench.sandbox.server_config.configure``, driven
over its REST and websocket API on 127.0.0.1: only the sandboxed kernel can be started, every
websocket request is attributed to the authenticated user (never ``header.username``), the
debugger is denied, terminals are off, and a server missing the hardening refuses to start."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from sandbox_support import STUDY, read_records, wait_for_records
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from workbench import accounts

pytestmark = pytest.mark.slow

TOKEN = uuid.uuid4().hex
USER = "alice-researcher"
V1 = "v1.kernel.websocket.jupyter.org"

CONFIG = '''
from jupyter_server.auth.identity import IdentityProvider, User
from workbench.sandbox.server_config import configure


class NamedIdentity(IdentityProvider):
    """Token auth as usual; the authenticated user gets a fixed name the test can check."""
    def generate_anonymous_user(self, handler):
        return User(username={user!r}, name="Alice")


configure(c, study={study!r}, data_dir={data_dir!r})
c.ServerApp.identity_provider_class = NamedIdentity
c.IdentityProvider.token = {token!r}
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = {port}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
c.ServerApp.root_dir = {root_dir!r}
{extra}
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(sandbox_space, extra: str = "") -> tuple[subprocess.Popen, str, Path]:
    space, jupyter = sandbox_space["space"], sandbox_space["jupyter"]
    home = space.root / f"server-{uuid.uuid4().hex[:6]}"
    for sub in ("config", "data", "runtime"):
        (home / sub).mkdir(parents=True)
    port = _free_port()
    config = home / "config" / "jupyter_server_config.py"
    workspace = space.workspace(STUDY)
    workspace.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.format(user=USER, study=STUDY, data_dir=str(space.root), token=TOKEN,
                                    port=port, root_dir=str(workspace), extra=extra))
    env = {**os.environ, "JUPYTER_PATH": str(jupyter), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(home / "server.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
    process = subprocess.Popen([sys.executable, "-m", "jupyter_server", f"--config={config}"],
                               env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return process, f"http://127.0.0.1:{port}", home / "server.log"


def wait_ready(process, url, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/api/status", headers=_auth(), timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready:\n{log_path.read_text()[-3000:]}")


def _auth():
    return {"Authorization": f"token {TOKEN}"}


@pytest.fixture(scope="module")
def server(sandbox_space):
    process, url, log_path = start_server(sandbox_space)
    try:
        assert wait_ready(process, url, log_path), log_path.read_text()[-3000:]
        yield {"url": url, "log": log_path, **sandbox_space}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"server did not stop:\n{log_path.read_text()[-3000:]}")
        assert process.returncode == 0, log_path.read_text()[-3000:]


@pytest.fixture(scope="module")
def session(server):
    """A notebook session with the default (sandboxed) kernel, created over REST."""
    r = httpx.post(f"{server['url']}/api/sessions", headers=_auth(), timeout=60,
                   json={"path": "analysis.ipynb", "type": "notebook", "name": "analysis.ipynb",
                         "kernel": {}})
    assert r.status_code == 201, r.text
    return r.json()


def test_kernelspecs_api_lists_only_the_sandboxed_kernel(server):
    specs = httpx.get(f"{server['url']}/api/kernelspecs", headers=_auth()).json()
    assert specs["default"] == "workbench-python"
    assert set(specs["kernelspecs"]) == {"workbench-python"}


@pytest.mark.parametrize("name", ["python3", "python", "does-not-exist"])
def test_starting_another_kernel_by_name_is_refused(server, name):
    before = {k["id"] for k in httpx.get(f"{server['url']}/api/kernels", headers=_auth()).json()}
    r = httpx.post(f"{server['url']}/api/kernels", headers=_auth(), json={"name": name},
                   timeout=60)
    assert r.status_code == 403 and "workbench-python" in r.json()["message"], r.text
    r = httpx.post(f"{server['url']}/api/sessions", headers=_auth(), timeout=60,
                   json={"path": "x.ipynb", "type": "notebook", "kernel": {"name": name}})
    assert r.status_code == 501 and "not available" in r.json()["message"]
    after = {k["id"] for k in httpx.get(f"{server['url']}/api/kernels", headers=_auth()).json()}
    assert after == before


def test_terminals_are_off(server):
    r = httpx.post(f"{server['url']}/api/terminals", headers=_auth())
    assert r.status_code == 404


async def _ws_run(server, kernel_id, msgs, protocol, wait_for):
    """Send ``msgs`` [(channel, msg)] over the kernel websocket; collect messages until each
    msg_id in ``wait_for`` has a reply and an idle status (or only a reply, for control)."""
    ws_url = server["url"].replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
    request = HTTPRequest(f"{ws_url}?session_id={uuid.uuid4().hex}", headers=_auth())
    conn = await websocket_connect(request, subprotocols=[protocol] if protocol else None)
    session = Session(key=b"")
    for channel, msg in msgs:
        if protocol == V1:
            await conn.write_message(serialize_msg_to_ws_v1(msg, channel, session.pack),
                                     binary=True)
        else:
            await conn.write_message(json.dumps({**msg, "channel": channel}, default=str))
    got: dict[str, list[dict]] = {m: [] for m in wait_for}
    deadline = time.monotonic() + 60
    while any(not any(x["msg_type"].endswith("_reply") for x in got[m]) for m in wait_for):
        raw = await asyncio.wait_for(conn.read_message(), max(0.1, deadline - time.monotonic()))
        if isinstance(raw, bytes):
            channel, parts = deserialize_msg_from_ws_v1(raw)
            msg = {"header": json.loads(parts[0]), "parent_header": json.loads(parts[1]),
                   "content": json.loads(parts[3])}
        else:
            msg = json.loads(raw)
        parent = msg["parent_header"].get("msg_id")
        if parent in got:
            got[parent].append({"msg_type": msg["header"]["msg_type"],
                                "content": msg["content"]})
    await asyncio.sleep(0.3)  # let the iopub tail (outputs, idle) arrive
    conn.close()
    return got


def _execute(code, cell_id):
    session = Session(key=b"", username="forged-bob")  # header.username is client-chosen
    msg = session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                          "user_expressions": {}, "allow_stdin": False},
                      metadata={"cellId": cell_id})
    msg["header"]["date"] = msg["header"]["date"].isoformat()
    return msg


@pytest.mark.parametrize("protocol", [V1, None], ids=["v1", "legacy-json"])
def test_websocket_cells_run_sealed_and_are_attributed_to_the_authenticated_user(
        server, session, protocol):
    code = ("import os, socket\nprint(os.getuid(), [n for _, n in socket.if_nameindex()])\n"
            "!bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432 && echo ESCAPED || echo BLOCKED' "
            "2>/dev/null")
    msg = _execute(code, cell_id=f"cell-{protocol or 'json'}")
    got = asyncio.run(_ws_run(server, session["kernel"]["id"], [("shell", msg)], protocol,
                              [msg["header"]["msg_id"]]))
    replies = got[msg["header"]["msg_id"]]
    out = "".join(m["content"].get("text", "") for m in replies if m["msg_type"] == "stream")
    kernel_uid = pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid
    assert out.split("\n")[0] == f"{kernel_uid} ['lo']", replies
    assert "BLOCKED" in out and "ESCAPED" not in out
    records = wait_for_records(server["space"], lambda r: r["kind"] == "cell-execution"
                               and r["fields"]["msg_id"] == msg["header"]["msg_id"]
                               and r["fields"]["status"] != "submitted")
    fields = records[0]["fields"]
    assert fields["user"] == USER and fields["source"] == "websocket"
    assert fields["notebook_path"] == "analysis.ipynb"
    assert fields["cell_id"] == f"cell-{protocol or 'json'}"
    assert fields["kernel_id"] == session["kernel"]["id"]
    assert "forged-bob" not in json.dumps([r["fields"] for r in read_records(server["space"])
                                           if r["fields"].get("msg_id")
                                           == msg["header"]["msg_id"]])


def test_debug_request_over_the_websocket_is_denied(server, session):
    debug = Session(key=b"").msg("debug_request", {"type": "request", "seq": 1,
                                                   "command": "evaluate",
                                                   "arguments": {"expression": "1"}})
    debug["header"]["date"] = debug["header"]["date"].isoformat()
    got = asyncio.run(_ws_run(server, session["kernel"]["id"], [("control", debug)], V1,
                              [debug["header"]["msg_id"]]))
    reply, = [m for m in got[debug["header"]["msg_id"]] if m["msg_type"] == "debug_reply"]
    assert reply["content"]["status"] == "error"
    denial = [r for r in read_records(server["space"]) if r["kind"] == "kernel-lifecycle"
              and r["fields"].get("msg_id") == debug["header"]["msg_id"]]
    assert denial and denial[0]["fields"]["user"] == USER


WEAKENED = {
    "StrictKernelSpecManager":
        'c.ServerApp.kernel_spec_manager_class = "jupyter_client.kernelspec.KernelSpecManager"',
    "AttributingWebsocketConnection":
        'c.ServerApp.kernel_websocket_connection_class = "jupyter_server.services.kernels.'
        'connection.channels.ZMQChannelsWebsocketConnection"',
    "StrictServerKernelManager":
        'c.MultiKernelManager.kernel_manager_class = '
        '"jupyter_server.services.kernels.kernelmanager.ServerKernelManager"',
}


@pytest.mark.parametrize("missing", sorted(WEAKENED))
def test_server_missing_a_hardening_setting_refuses_to_start(sandbox_space, missing):
    process, url, log_path = start_server(sandbox_space, extra=WEAKENED[missing])
    try:
        assert process.wait(60) != 0
        assert missing in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()


def test_idle_kernels_are_culled_and_the_culling_is_recorded(sandbox_space):
    fast_culling = ("c.MappingKernelManager.cull_idle_timeout = 2\n"
                    "c.MappingKernelManager.cull_interval = 1")
    process, url, log_path = start_server(sandbox_space, extra=fast_culling)
    try:
        assert wait_ready(process, url, log_path), log_path.read_text()[-3000:]
        kernel = httpx.post(f"{url}/api/kernels", headers=_auth(), json={}, timeout=60).json()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/api/kernels", headers=_auth()).json():
            assert time.monotonic() < deadline, "idle kernel was not culled"
            time.sleep(0.5)
        events = wait_for_records(sandbox_space["space"], lambda r: r["kind"] == "kernel-lifecycle"
                                  and r["fields"]["kernel_id"] == kernel["id"]
                                  and r["fields"]["event"] == "shutdown")
        assert events and events[0]["fields"]["user"]
    finally:
        process.terminate()
        process.wait(30)
