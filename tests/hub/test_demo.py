"""`workbench demo` end to end: builds a space, starts every service, prints the demo passwords
once, serves the hub on the given port, and stops everything on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from workbench.hub import processes

pytestmark = pytest.mark.slow
POLICY = Path(__file__).resolve().parents[2] / "workbench" / "hub_config" / "policy.yaml"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture
def demo_dir():
    root = Path(tempfile.mkdtemp(prefix="wb-demo-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_demo_runs_and_stops_cleanly(demo_dir):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(demo_dir / "demo.log", "wb")  # noqa: SIM115
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "workbench"), "demo", "--data-dir",
         str(demo_dir / "space"), "--policy", str(POLICY), "--port", str(port),
         "--patients", "200"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started: list[processes.Proc] = []
    try:
        # a liveness bound, not a speed check: the demo builds its space, starts 25 nodes and
        # the hub (about a minute alone, three under a parallel suite's load)
        deadline = time.monotonic() + 420
        while True:
            assert demo.poll() is None, (demo_dir / "demo.log").read_text(errors="replace")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/hub/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no login page after 420 s:\n" + (
                demo_dir / "demo.log").read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        output = (demo_dir / "demo.log").read_text(errors="replace")
        passwords = dict(re.findall(r"^  (alice|rita|remy|ada) +\w+ +(\S+)$", output, re.M))
        assert set(passwords) == {"alice", "rita", "remy", "ada"}, output[-3000:]
        for name in ("provenance collector", "data gateway", "key holder", "airlock",
                     "kernel launcher"):
            assert f"{name}: started" in output
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            client.get("/hub/login")
            login = client.post("/hub/login", data={"username": "alice",
                                                    "password": passwords["alice"],
                                                    "_xsrf": client.cookies.get("_xsrf")})
            assert login.status_code == 302 and login.headers["location"].endswith("/hub/home")
            home = client.get("/hub/home").text
            assert 'href="/hub/spawn/alice/cml-tki"' in home
            assert 'href="/hub/spawn/alice/lung-validation"' in home
        # everything the demo started: its services, the hub, and what the hub started in
        # sessions of their own (proxy, culler); the session is their subreaper, so they stay
        # findable even once their parent is gone
        started = processes.descendants(demo.pid)
        assert any("configurable-http-proxy" in p.cmdline() for p in started)
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(90)
        finally:
            log.close()
            left = processes.wait_gone(processes.descendants(demo.pid) + started, timeout=30)
            processes.terminate(left)  # not left to the next test, whatever happens here
    assert demo.returncode is not None
    assert [p.cmdline() for p in left] == []
    assert _processes_mentioning(str(demo_dir)) == []
