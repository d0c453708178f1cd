"""The dashboards through a real JupyterHub (configurable-http-proxy, hub OAuth, managed
services), a real collector and the airlock service: who gets what."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from contextlib import closing
from pathlib import Path

import httpx
import pandas as pd
import pytest

from workbench import accounts
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP
from workbench.release.serialize import to_payload
from workbench.release.service import start_airlock

pytestmark = [pytest.mark.slow]

POLICY = """
users:
  alice: {roles: [researcher]}
  bob: {roles: [researcher]}
  rita: {roles: [reviewer]}
  remy: {roles: [reviewer]}
  olga: {roles: [reviewer]}
  ada: {roles: [admin]}
studies:
  cml-tki:
    title: CML TKI
    purpose: review tests
    sponsor: tests
    members: [alice]
    reviewers: [rita, remy]
    views: [cml_cohort]
    expires: 2099-12-31
  other:
    title: Other
    purpose: review tests
    sponsor: tests
    members: [bob]
    reviewers: [olga]
    views: [cml_cohort]
    expires: 2099-12-31
"""
EXTRA_USERS = ["remy", "olga"]


def _hub_harness():
    """The hub engineer's live-hub harness (tests/hub/conftest.py), loaded by path."""
    path = Path(__file__).parents[1] / "hub" / "conftest.py"
    spec = importlib.util.spec_from_file_location("wb_hub_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hub():
    if not accounts.is_root():
        pytest.fail("the live dashboard tests run as root")
    if shutil.which("configurable-http-proxy") is None:
        pytest.fail("configurable-http-proxy is missing: run 'make system-deps'")
    harness = _hub_harness()
    from workbench.hub.layout import HubLayout, ensure_interpreter_reachable
    from workbench.hub.users import create_users

    ensure_interpreter_reachable(fix=True)
    root = Path(tempfile.mkdtemp(prefix="wb-review-hub-", dir="/tmp"))
    os.chmod(root, 0o755)
    live = harness.LiveHub(root, POLICY)
    airlock = None
    try:
        HubLayout(live.space).ensure()
        extra = create_users(HubLayout(live.space).default_db_url, EXTRA_USERS)
        airlock = start_airlock(live.space, live.policy)
        live.start()
        live.passwords.update(extra)
        yield live
    finally:
        live.stop()
        if airlock is not None:
            airlock.stop()
        shutil.rmtree(root, ignore_errors=True)


def login(hub, user: str) -> httpx.Client:
    client = httpx.Client(base_url=hub.url, timeout=120)
    client.get("/hub/login")
    reply = client.post("/hub/login", data={"username": user, "password": hub.passwords[user],
                                            "_xsrf": client.cookies.get("_xsrf")})
    assert reply.status_code in (200, 302), reply.text[:300]
    return client


def _wait_service(hub, name: str, timeout: float = 90) -> None:
    """Managed services start with the hub; wait until the proxy reaches this one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = httpx.get(f"{hub.url}/services/{name}/", timeout=10)
        if reply.status_code in (200, 302):
            return
        time.sleep(0.5)
    raise AssertionError(f"service {name} never answered:\n{hub.output()}")


def test_anonymous_visitors_are_sent_to_log_in(hub):
    _wait_service(hub, "review-cml-tki")
    reply = httpx.get(f"{hub.url}/services/review-cml-tki/voila/render/release_queue.ipynb",
                      follow_redirects=True, timeout=60)
    assert "/hub/login" in str(reply.url)


def test_non_reviewers_get_403_and_reviewers_the_dashboard(hub):
    _wait_service(hub, "review-cml-tki")
    page = "/services/review-cml-tki/voila/render/release_queue.ipynb"
    for user in ("alice", "olga", "bob"):  # member, other study's reviewer, other member
        with closing(login(hub, user)) as client:
            reply = client.get(page, follow_redirects=True)
            assert reply.status_code == 403, (user, reply.status_code)
    with closing(login(hub, "rita")) as client:
        reply = client.get(page, follow_redirects=True)
        assert reply.status_code == 200, hub.output()
        assert "load_snapshot" not in reply.text and "dashboards.release_queue" not in reply.text
        assert "Traceback" not in reply.text
        other = client.get("/services/review-cml-tki/voila/render/admin_overview.ipynb",
                           follow_redirects=True)
        assert other.status_code == 404


def test_released_files_reach_members_and_reviewers_only(hub):
    kernel = UnixHTTP(airlock_socket(hub.space), headers={
        "X-Workbench-Actor": "wbk-cml-tki", "X-Workbench-Study": "cml-tki"})
    created = kernel.json("POST", "/requests", {
        "name": "by_arm", "description": "d", "payload": to_payload(
            pd.DataFrame({"arm": ["a", "b"], "n": [60, 70]}), view="cml_cohort")})
    for reviewer in ("rita", "remy"):
        UnixHTTP(airlock_socket(hub.space), headers={"X-Workbench-Actor": reviewer}).json(
            "POST", f"/requests/{created['id']}/decision", {"decision": "approve"})
    _wait_service(hub, "review-files")
    url = f"/services/review-files/files/{created['id']}/by_arm.csv"
    with closing(login(hub, "alice")) as client:
        listing = client.get("/services/review-files/", follow_redirects=True)
        assert listing.status_code == 200 and "by_arm.csv" in listing.text
        reply = client.get(url, follow_redirects=True)
        assert reply.status_code == 200 and reply.text.startswith("arm,n")
    with closing(login(hub, "remy")) as client:
        assert client.get(url, follow_redirects=True).status_code == 200
    with closing(login(hub, "bob")) as client:  # a member of another study
        assert client.get(url, follow_redirects=True).status_code == 403
    with closing(login(hub, "ada")) as client:  # admins are not in the files role
        assert client.get(url, follow_redirects=True).status_code == 403
