"""A real hub, real spawns as the study server uid, through the REST API with tokens."""

from __future__ import annotations

import json
import os
import pwd
import signal
from pathlib import Path

import httpx
import pytest

from workbench import accounts
from workbench.hub import processes

pytestmark = pytest.mark.slow


def test_non_member_spawn_is_forbidden(live_hub, records):
    response = live_hub.spawn("bob", "cml-tki")
    assert response.status_code == 403, response.text
    assert "may not spawn-server" in response.json()["message"]
    denied = [r for r in records(live_hub.space)
              if r.get("kind") == "server-spawn" and r["fields"]["event"] == "denied"]
    assert any(r["fields"]["user"] == "bob" for r in denied)


def test_expired_study_refuses_to_start(live_hub):
    response = live_hub.spawn("alice", "old-study")
    assert response.status_code == 403
    assert "expired" in response.json()["message"]


def test_unknown_study_and_default_server_refused(live_hub):
    assert live_hub.spawn("alice", "no-such-study").status_code == 403
    assert live_hub.api("POST", "/users/alice/server",
                        token=live_hub.token_for("alice")).status_code == 403


def test_member_server_runs_as_study_account_with_limits(live_hub, records):
    response = live_hub.spawn("alice", "cml-tki")
    assert response.status_code in (201, 202), live_hub.output()
    live_hub.wait_ready("alice", "cml-tki")
    pid = live_hub.server_pid("alice", "cml-tki")  # this hub's server, by its spawner's pid
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert pwd.getpwuid(uid).pw_name == accounts.study_server_user("cml-tki")
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert "Max processes" in limits and "512" in limits
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"PYTHONNOUSERSITE=1" in environ
    config_dir = next(e for e in environ if e.startswith(b"JUPYTER_CONFIG_DIR=")).split(b"=")[1]
    assert config_dir.startswith(bytes(live_hub.space.root) + b"/")  # this hub's, not another's
    info = os.stat(config_dir)
    assert info.st_uid == 0 and not info.st_mode & 0o022
    spawns = [r["fields"] for r in records(live_hub.space)
              if r.get("kind") == "server-spawn" and r["fields"]["event"] == "spawn"]
    assert any(f["user"] == "alice" and f["study"] == "cml-tki" for f in spawns)


def _server_url(live_hub, path: str) -> str:
    return f"{live_hub.url}/user/alice/cml-tki/{path}"


def test_terminals_are_off(live_hub):
    live_hub.wait_ready("alice", "cml-tki")
    headers = {"Authorization": f"token {live_hub.token_for('alice')}"}
    response = httpx.post(_server_url(live_hub, "api/terminals"), headers=headers, timeout=30)
    assert response.status_code in (403, 404), response.text
    # the server is reachable with the same token: the refusal is about terminals
    assert httpx.get(_server_url(live_hub, "api/status"), headers=headers,
                     timeout=30).status_code == 200


def test_what_the_hub_starts_can_be_interrupted(live_hub):
    """The hub runs with SIGINT ignored (the fixture starts it so); the study server and the
    managed services it starts must not inherit that, or each stop waits out JupyterHub's
    SIGINT timeout (30 s per hub in a run under ``nohup``)."""
    live_hub.wait_ready("alice", "cml-tki")

    def ignores_sigint(pid: int) -> bool:
        status = Path(f"/proc/{pid}/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("SigIgn:")), 16)
        return bool(mask & (1 << (signal.SIGINT - 1)))

    started = {p.pid: p.cmdline()[:160] for p in processes.descendants(live_hub.process.pid)
               if p.running()}
    assert any("singleuser" in c for c in started.values()), started
    assert any("idle_culler" in c or "idle-culler" in c for c in started.values()), started
    assert [c for pid, c in started.items() if ignores_sigint(pid)] == []


def test_reviewer_cannot_reach_researcher_server(live_hub):
    live_hub.wait_ready("alice", "cml-tki")
    headers = {"Authorization": f"token {live_hub.token_for('rita')}"}
    response = httpx.get(_server_url(live_hub, "api/status"), headers=headers, timeout=30,
                         follow_redirects=False)
    assert response.status_code in (302, 403)


def _login(live_hub, user: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=live_hub.url, timeout=60) as client:
        client.get("/hub/login")
        xsrf = client.cookies.get("_xsrf")
        return client.post("/hub/login", data={"username": user, "password": password,
                                               "_xsrf": xsrf}, follow_redirects=False)


def test_login_with_password_is_recorded(live_hub, records):
    assert "$2b$" not in live_hub.passwords["alice"]  # a password, not a hash
    ok = _login(live_hub, "alice", live_hub.passwords["alice"])
    assert ok.status_code == 302, live_hub.output()
    assert "jupyterhub-session-id" in ok.headers.get("set-cookie", "")
    bad = _login(live_hub, "alice", "not-her-password")
    assert bad.status_code != 302
    logins = [r["fields"] for r in records(live_hub.space) if r.get("kind") == "login"]
    assert {"user": "alice", "event": "login"}.items() <= logins[-2].items()
    assert {"user": "alice", "event": "failed"}.items() <= logins[-1].items()
    stored = json.dumps(logins)
    assert live_hub.passwords["alice"] not in stored and "not-her-password" not in stored


def test_passwords_are_stored_hashed_only(live_hub):
    database = live_hub.database_bytes()  # the SQLite file, or every PostgreSQL row
    for password in live_hub.passwords.values():
        assert password.encode() not in database
    assert database.count(b"$2b$") >= len(live_hub.passwords)


def test_idle_culler_runs_as_its_own_account_with_its_scoped_role(live_hub):
    # this hub's culler: a process it started (not one of any other hub on this machine)
    cullers = live_hub.children("jupyterhub_idle_culler")
    assert len(cullers) == 1, live_hub.output()
    culler = Path(f"/proc/{cullers[0]}")
    status = (culler / "status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert pwd.getpwuid(uid).pw_name == "wb-culler"
    # it lists users and servers with its scopes: no 403 in its requests
    log = (live_hub.root / "hub.log").read_text(errors="replace")
    assert "idle-culler" in log
    assert "403 GET /hub/api/users" not in log


def _session(live_hub, user: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=live_hub.url, timeout=60)
    client.get("/hub/login")
    response = client.post("/hub/login", data={"username": user, "password": password,
                                                "_xsrf": client.cookies.get("_xsrf")})
    assert response.status_code == 302, response.text
    return client


def test_sign_up_waits_for_the_admin_and_grants_no_study(live_hub):
    password = "a-long-enough-passphrase-42"
    with httpx.Client(base_url=live_hub.url, timeout=60) as client:
        client.get("/hub/signup")
        signup = client.post("/hub/signup", data={
            "username": "carol", "signup_password": password,
            "signup_password_confirmation": password, "_xsrf": client.cookies.get("_xsrf")})
        assert signup.status_code == 200 and "sent to the admin" in signup.text
    assert _login(live_hub, "carol", password).status_code != 302  # not approved yet

    alice = _session(live_hub, "alice", live_hub.passwords["alice"])
    assert alice.get("/hub/authorize").status_code == 403  # researchers approve nobody
    ada = _session(live_hub, "ada", live_hub.passwords["ada"])
    area = ada.get("/hub/authorize")
    assert area.status_code == 200 and "carol" in area.text
    # a link on another site must not approve anyone with the admin's cookie
    forged = ada.get("/hub/authorize/carol", headers={"Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403
    assert _login(live_hub, "carol", password).status_code != 302
    ada.get("/hub/authorize/carol", headers={"Sec-Fetch-Site": "same-origin"})
    carol = _session(live_hub, "carol", password)
    # approved, but the policy has no study for carol
    spawn = carol.post("/hub/api/users/carol/servers/cml-tki",
                       headers={"X-XSRFToken": carol.cookies.get("_xsrf") or ""})
    assert spawn.status_code == 403
    for client in (alice, ada, carol):
        client.close()


def test_admin_manages_but_cannot_enter_a_researchers_server(live_hub):
    live_hub.spawn("alice", "cml-tki")
    live_hub.wait_ready("alice", "cml-tki")
    ada = _session(live_hub, "ada", live_hub.passwords["ada"])
    try:
        assert ada.get("/hub/admin").status_code == 200
        users = ada.get("/hub/api/users", headers={"X-XSRFToken": ada.cookies.get("_xsrf")})
        assert users.status_code == 200 and "alice" in users.text
        inside = ada.get("/user/alice/cml-tki/api/status", follow_redirects=True)
        assert inside.status_code in (403, 404) or "/hub/login" in str(inside.url)
        assert '"kernels"' not in inside.text
    finally:
        ada.close()


def test_without_the_collector_no_login_and_no_server(live_hub, records):
    """Fail closed: runs last in this module, then brings the collector back."""
    from workbench.provenance.service import start_collector

    live_hub.stop_server("alice", "cml-tki")
    events = [r["fields"]["event"] for r in records(live_hub.space)
              if r.get("kind") == "server-spawn" and r["fields"]["user"] == "alice"]
    assert events[-1] == "stop"
    live_hub.collector.stop()
    try:
        refused = _login(live_hub, "alice", live_hub.passwords["alice"])
        assert refused.status_code != 302
        spawn = live_hub.spawn("alice", "cml-tki")
        assert spawn.status_code == 503, spawn.text
        assert "provenance collector" in spawn.json()["message"]
    finally:
        live_hub.collector = start_collector(live_hub.space)
