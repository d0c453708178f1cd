"""A real JupyterHub (with configurable-http-proxy) on free 127.0.0.1 ports, configured by
workbench.hub.config from a test policy, with a real provenance collector. Shared by the live
hub tests of this folder (module-scoped: one hub per test module)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from textwrap import dedent

import httpx
import pytest

from workbench import accounts
from workbench.hub.layout import ensure_interpreter_reachable
from workbench.hub.services import start_kernel_launcher
from workbench.hub.users import create_users
from workbench.paths import Space

POLICY = """
users:
  alice: {roles: [researcher]}
  bob: {roles: [researcher]}
  rita: {roles: [reviewer]}
  ada: {roles: [admin]}
studies:
  cml-tki:
    title: CML TKI
    purpose: hub tests
    sponsor: tests
    members: [alice]
    reviewers: [rita]
    views: [cml_cohort]
    expires: 2099-12-31
    resources: {cpu: 1, memory: 1G, max_kernels: 1}
  old-study:
    title: An expired study
    purpose: hub tests
    sponsor: tests
    members: [alice, bob]
    views: []
    expires: 2020-01-01
"""
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def provenance_records(space: Space) -> list[dict]:
    """Every stored record's body, read from the collector's store as root (tests only)."""
    from workbench.provenance.store import open_store

    store = open_store(space, readonly=True)
    try:
        return [json.loads(body) for _seq, _prev, _hash, body in store.rows()]
    finally:
        store.close()


class LiveHub:
    def __init__(self, root: Path, policy_text: str = POLICY, with_data: bool = False,
                 review_services: bool = False):
        from workbench.provenance.service import start_collector

        self.review_services = review_services
        self.root = root
        self.space = Space(root / "space")
        self.policy = root / "policy.yaml"
        self.policy.write_text(policy_text)
        os.chmod(self.policy, 0o644)
        self.gateway = None
        if with_data:  # a real (small) space and the gateway serving its views
            from workbench.space.build import init_space

            init_space(self.space.root, patients=300, echo=lambda _line: None)
        else:
            self.space.root.mkdir(mode=0o755)
        self.port, self.hub_port, self.proxy_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.collector = start_collector(self.space)
        self.launcher = start_kernel_launcher(self.space)
        if with_data:
            from workbench.gateway.server import start_gateway

            self.gateway = start_gateway(self.space, self.policy)
        self.service_token = secrets.token_hex(32)
        self.passwords: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}

    def write_config(self) -> Path:
        config = self.root / "jupyterhub_config.py"
        config.write_text(dedent(f"""
            from workbench.hub.config import configure
            c = get_config()
            configure(c, {str(self.policy)!r}, {str(self.space.root)!r},
                      review_services={self.review_services!r})
            c.JupyterHub.services.append({{"name": "test-driver",
                                           "api_token": {self.service_token!r}}})
            c.JupyterHub.load_roles.append({{
                "name": "test-driver", "services": ["test-driver"],
                "scopes": ["admin:users", "tokens", "admin:servers", "read:users"]}})
            c.StudySpawner.start_timeout = 90
            c.StudySpawner.http_timeout = 90
            c.JupyterHub.log_level = "INFO"
        """))
        return config

    def start(self) -> None:
        from workbench.hub.layout import HubLayout

        HubLayout(self.space).ensure()
        self.passwords = create_users(HubLayout(self.space).default_db_url,
                                      ["alice", "bob", "rita", "ada"])
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   WORKBENCH_HUB_BIND_URL=self.url, WORKBENCH_HUB_PORT=str(self.hub_port),
                   WORKBENCH_PROXY_API_PORT=str(self.proxy_port),
                   CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16))
        self.log = open(self.root / "hub.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(self.write_config())], cwd=self.root,
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hub exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"hub did not come up:\n{self.output()}")

    def output(self) -> str:
        return (self.root / "hub.log").read_text(errors="replace")[-6000:]

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"token {token or self.service_token}"}
        return httpx.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=120,
                             **kwargs)

    def token_for(self, user: str) -> str:
        if user not in self.tokens:
            response = self.api("POST", f"/users/{user}/tokens", json={"note": "tests"})
            assert response.status_code in (200, 201), response.text
            self.tokens[user] = response.json()["token"]
        return self.tokens[user]

    def spawn(self, user: str, server: str) -> httpx.Response:
        return self.api("POST", f"/users/{user}/servers/{server}", token=self.token_for(user))

    def wait_ready(self, user: str, server: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            entry = model.get("servers", {}).get(server)
            if entry and entry.get("ready"):
                return entry
            if entry is None or not entry.get("pending"):
                if entry is None and time.monotonic() > deadline - timeout + 5:
                    raise AssertionError(f"server {user}/{server} is gone:\n{self.output()}")
            time.sleep(0.5)
        raise AssertionError(f"server {user}/{server} not ready:\n{self.output()}")

    def stop_server(self, user: str, server: str) -> None:
        self.api("DELETE", f"/users/{user}/servers/{server}", token=self.token_for(user))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server not in self.api("GET", f"/users/{user}").json().get("servers", {}):
                return
            time.sleep(0.5)

    def server_pid(self, user: str, server: str) -> int:
        """The single-user server process, found by its hub environment (as root)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if (f"JUPYTERHUB_USER={user}".encode() in environ
                    and f"JUPYTERHUB_SERVER_NAME={server}".encode() in environ
                    and b"jupyterhub-singleuser" in (entry / "cmdline").read_bytes()):
                return int(entry.name)
        raise AssertionError(f"no server process for {user}/{server}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()
        self.launcher.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self.collector.stop()


@pytest.fixture
def records():
    """records(space) -> every provenance record stored so far."""
    return provenance_records


def _running_hub(**kwargs):
    if not accounts.is_root():
        pytest.fail("the hub tests run as root: they spawn servers as the study accounts")
    if shutil.which("configurable-http-proxy") is None:
        pytest.fail("configurable-http-proxy is missing: run 'make system-deps'")
    ensure_interpreter_reachable(fix=True)  # as `workbench demo` does
    root = Path(tempfile.mkdtemp(prefix="wb-hub-", dir="/tmp"))
    os.chmod(root, 0o755)
    hub = LiveHub(root, **kwargs)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def live_hub():
    yield from _running_hub()


DEMO_POLICY = Path(__file__).resolve().parents[2] / "hub_config" / "policy.yaml"


@pytest.fixture(scope="module")
def demo_hub():
    """The demo policy over a real small space with its gateway: views can be read."""
    yield from _running_hub(policy_text=DEMO_POLICY.read_text(), with_data=True)


class ServerClient:
    """Talks to alice's study server through the proxy with her hub token (REST + websocket)."""

    def __init__(self, hub: LiveHub, user: str, study: str):
        self.hub, self.user, self.study = hub, user, study
        self.base = f"{hub.url}/user/{user}/{study}"
        self.headers = {"Authorization": f"token {hub.token_for(user)}"}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.base}/{path}", headers=self.headers, timeout=120,
                             **kwargs)

    def start_kernel(self) -> str:
        response = self.request("POST", "api/kernels", json={"name": "workbench-python"})
        assert response.status_code == 201, f"{response.text}\n{self.hub.output()}"
        return response.json()["id"]

    def execute(self, kernel_id: str, code: str, username: str = "forged-bob",
                timeout: float = 120) -> dict:
        """Send one execute_request over the JupyterLab kernel websocket (legacy JSON protocol)
        with a forged header.username; return {"msg_id", "status", "outputs"}."""
        import asyncio
        import uuid

        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        async def run() -> dict:
            url = (f"{self.base.replace('http://', 'ws://')}/api/kernels/{kernel_id}/channels"
                   f"?session_id={uuid.uuid4().hex}")
            conn = await websocket_connect(HTTPRequest(url, headers=self.headers))
            # A freshly started kernel may not answer yet: wait for its kernel_info_reply (what
            # JupyterLab does) so the cell is not sent into a kernel that is still starting.
            info_id = uuid.uuid4().hex
            conn.write_message(json.dumps({
                "header": {"msg_id": info_id, "username": username, "session": uuid.uuid4().hex,
                           "msg_type": "kernel_info_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {}}))
            while True:
                raw = await asyncio.wait_for(conn.read_message(), timeout)
                if raw is None:
                    break
                reply = json.loads(raw)
                if reply.get("parent_header", {}).get("msg_id") == info_id and \
                        reply["header"]["msg_type"] == "kernel_info_reply":
                    break
            msg_id = uuid.uuid4().hex
            conn.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": username, "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False}}))
            # The websocket merges the channels: iopub's idle can come before or after the
            # shell's execute_reply, so the cell is done once both have arrived, in either order.
            outputs, status, idle = [], None, False
            while True:
                raw = await asyncio.wait_for(conn.read_message(), timeout)
                if raw is None:
                    break
                msg = json.loads(raw)
                state = msg.get("content", {}).get("execution_state")
                if msg["header"]["msg_type"] == "status" and state in ("restarting", "dead"):
                    status = "kernel-died"  # the server noticed the kernel process is gone
                    break
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind in ("stream", "execute_result", "error", "display_data"):
                    outputs.append(msg["content"])
                if kind == "execute_reply":
                    status = msg["content"]["status"]
                if kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
                if idle and status:
                    break
            conn.close()
            return {"msg_id": msg_id, "status": status, "outputs": outputs}

        return asyncio.run(run())


@pytest.fixture(scope="module")
def alice_server(live_hub):
    response = live_hub.spawn("alice", "cml-tki")
    assert response.status_code in (200, 201, 202, 400), f"{response.text}\n{live_hub.output()}"
    live_hub.wait_ready("alice", "cml-tki")
    return ServerClient(live_hub, "alice", "cml-tki")
