"""A real JupyterHub (with configurable-http-proxy) on free 127.0.0.1 ports, configured by
workbench.hub.config from a test policy, with a real provenance collector. Shared by the live
hub tests of this folder (module-scoped: one hub per test module).

The hub keeps its database in SQLite, except for test_hub_live.py, which runs whole once on
SQLite and once on PostgreSQL (a database of its own, ``workbench_hub_<random>``, dropped after):
every test there reads or writes what the hub stores (users, passwords, servers, tokens), and
the module takes about 20 s, so all of it is the representative set."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from textwrap import dedent

import httpx
import pytest

from workbench import accounts
from workbench.hub import processes
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
SLOW_STOP = 15.0  # seconds: a hub fixture's stop step slower than this is noted in SLOW_STOP_LOG
SLOW_STOP_LOG = Path(tempfile.gettempdir()) / "wb-slow-hub-stops.log"


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
                 review_services: bool = False, db: str = "sqlite"):
        self.review_services = review_services
        self.db_url = self._database(db, root)
        self.root = root
        self.space = Space(root / "space")
        self.policy = root / "policy.yaml"
        self.policy.write_text(policy_text)
        os.chmod(self.policy, 0o644)
        self.collector = self.launcher = self.gateway = None
        self.process: subprocess.Popen | None = None
        self.log = None
        self.service_token = secrets.token_hex(32)
        self.passwords: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.port, self.hub_port, self.proxy_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self._start_services(with_data)
        except BaseException:
            self.stop()  # no collector or launcher left running by a half-made hub
            raise

    def _database(self, db: str, root: Path) -> str:
        from workbench.hub.database import ensure_database, sqlalchemy_url

        if db == "sqlite":
            return f"sqlite:///{root / 'space' / 'hub' / 'state' / 'jupyterhub.sqlite'}"
        url = f"postgresql://postgres@127.0.0.1:5432/workbench_hub_{secrets.token_hex(4)}"
        ensure_database(url)
        return sqlalchemy_url(url)

    def database_bytes(self) -> bytes:
        """Everything the hub stored, as bytes: the SQLite file, or every row of every table."""
        if self.db_url.startswith("sqlite"):
            return Path(self.db_url.removeprefix("sqlite:///")).read_bytes()
        import psycopg

        out = []
        with psycopg.connect(self.db_url.replace("+psycopg", "")) as db:
            tables = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            for (table,) in tables.fetchall():
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    out += [v if isinstance(v, bytes) else str(v).encode() for v in row]
        return b"\n".join(out)

    def _start_services(self, with_data: bool) -> None:
        from workbench.provenance.service import start_collector

        if with_data:  # a real (small) space and the gateway serving its views
            from workbench.space.build import init_space

            init_space(self.space.root, patients=300, echo=lambda _line: None)
        else:
            self.space.root.mkdir(mode=0o755)
        self.collector = start_collector(self.space)
        self.launcher = start_kernel_launcher(self.space)
        if with_data:
            from workbench.gateway.server import start_gateway

            self.gateway = start_gateway(self.space, self.policy)

    def write_config(self) -> Path:
        config = self.root / "jupyterhub_config.py"
        config.write_text(dedent(f"""
            from workbench.hub.config import configure
            c = get_config()
            configure(c, {str(self.policy)!r}, {str(self.space.root)!r},
                      review_services={self.review_services!r}, db_url={self.db_url!r})
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
        self.passwords = create_users(self.db_url, ["alice", "bob", "rita", "ada"])
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   WORKBENCH_HUB_BIND_URL=self.url, WORKBENCH_HUB_PORT=str(self.hub_port),
                   WORKBENCH_PROXY_API_PORT=str(self.proxy_port),
                   CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16))
        self.log = open(self.root / "hub.log", "wb")  # noqa: SIM115
        # stdin: not the terminal pytest may run in. Jupyter servers whose stdin is a terminal
        # answer SIGINT (how the hub stops its services and servers) with a shutdown prompt
        # instead of stopping, and the hub's cleanup then waits out its timeouts for each.
        self.process = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(self.write_config())], cwd=self.root,
            env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_ignore_sigint)
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
        """The single-user server process of ``user``/``server``: the pid its spawner reports
        (the server's ``state``, which the test-driver's ``admin:servers`` scope may read),
        checked to be a ``jupyterhub-singleuser`` started by this hub. Not a search by
        account or environment: a server left running by another hub (an earlier module or
        run) has the same study account and the same JUPYTERHUB_USER."""
        entry = self.api("GET", f"/users/{user}").json().get("servers", {}).get(server)
        assert entry and entry.get("ready"), f"{user}/{server} is not running: {entry}"
        pid = int(entry["state"]["pid"])
        child = processes.proc(pid)
        assert child is not None and child.stat()[1] == self.process.pid, \
            f"pid {pid} of {user}/{server} is not a process of this hub"
        assert "jupyterhub-singleuser" in child.cmdline(), child.cmdline()
        return pid

    def children(self, marker: str) -> list[int]:
        """Running processes this hub started whose command line contains ``marker``."""
        return [p.pid for p in processes.descendants(self.process.pid)
                if p.running() and marker in p.cmdline()]

    def stop(self) -> None:
        """Stop the hub, then whatever it started and did not stop itself (its proxy, managed
        services, study servers: each in a session of its own), then the services started for
        it (their children too: the launcher's kernels). Every step runs even if one fails."""
        services = [h for h in (self.launcher, self.gateway, self.collector) if h is not None]
        steps = [self._stop_hub] + [lambda h=h: stop_service(h) for h in services]
        if not self.db_url.startswith("sqlite"):
            from workbench.hub.database import drop_database

            steps.append(lambda: drop_database(self.db_url))
        errors = []
        for number, step in enumerate(steps):
            began = time.monotonic()
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the next step must still run
                errors.append(exc)
            if time.monotonic() - began > SLOW_STOP:
                self._note_slow_stop(number, time.monotonic() - began)
        if self.log is not None:
            self.log.close()
        if errors:
            raise errors[0]

    def _note_slow_stop(self, step: int, seconds: float) -> None:
        """Why a stop was slow, kept for whoever reads the run (the hub's log is deleted with
        its directory): which step, how long, the end of the hub's log."""
        tail = b""
        with contextlib.suppress(OSError):
            tail = (self.root / "hub.log").read_bytes()[-6000:]
        with open(SLOW_STOP_LOG, "ab") as out:
            out.write(f"== step {step} took {seconds:.1f} s ({self.root})\n".encode() + tail
                      + b"\n")

    def _stop_hub(self) -> None:
        if self.process is None:
            return
        # JupyterHub's own cleanup stops its managed services one after the other, then the
        # study servers and the proxy (2-6 s here); a child that ignores SIGINT costs it
        # 10 + 5 + 5 s (SIGINT, SIGTERM, SIGKILL): after 45 s its children are stopped for it.
        left: list[str] = []
        status = processes.stop_tree(self.process, timeout=45, left=left)
        if left:  # stopped now; shown in the warnings summary
            warnings.warn(f"the hub (exit status {status}) left {len(left)} process(es) "
                          f"running: {[line[:100] for line in left]}", stacklevel=1)


def _ignore_sigint() -> None:
    """The hub starts as it does under ``nohup ... &`` or a shell's background job (and so under
    some CI runners): with SIGINT ignored, which it must not pass on to what it starts."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_service(handle) -> None:
    """ServiceProcess.stop, then anything the service started that is still running."""
    tree = processes.descendants(handle.pid)
    handle.stop()
    processes.terminate(tree)


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
    hub = None
    try:
        hub = LiveHub(root, **kwargs)
        hub.start()
        yield hub
    finally:
        if hub is not None:
            hub.stop()
        shutil.rmtree(root, ignore_errors=True)


HUB_DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_generate_tests(metafunc):
    """test_hub_live.py runs on each hub database (see the module docstring)."""
    if Path(metafunc.module.__file__) == Path(__file__).parent / "test_hub_live.py" and \
            "hub_db" in metafunc.fixturenames:
        metafunc.parametrize("hub_db", HUB_DATABASES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def hub_db(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="module")
def live_hub(hub_db):
    yield from _running_hub(db=hub_db)


DEMO_POLICY = Path(__file__).resolve().parents[2] / "workbench" / "hub_config" / "policy.yaml"


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
