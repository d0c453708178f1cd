"""`workbench policy apply` through the real hub and headless Chromium: a study added to the
signed policy is listed and opens for its member at once (no restart), the change is in
provenance, the admin's home page shows the policy history, and a tampered policy stops every
server start (fail closed). Screenshots go to test-artifacts/policy/."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from policy_support import register_admin, sign_test_policy

from workbench.policy import signed

pytestmark = [pytest.mark.slow, pytest.mark.browser]

HUB_TESTS = Path(__file__).resolve().parents[1] / "hub"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "policy"
NEW_STUDY = """\
  new-study:
    title: A study added while the hub runs
    purpose: policy apply tests
    sponsor: tests
    members: [alice]
    views: []
    expires: 2099-12-31
"""


def _hub_support():
    """The live hub of tests/hub (its conftest), loaded under a name of its own."""
    spec = importlib.util.spec_from_file_location("hub_live_support", HUB_TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hub_support = _hub_support()


class SignedHub(hub_support.LiveHub):
    """The live hub, with an admin key registered in its space and the hub, spawner and home
    page acting on the space's signed policy."""

    def _start_services(self, with_data: bool) -> None:
        super()._start_services(with_data)
        self.key_file = self.root / "ada.key"
        self.key = register_admin(self.space, "ada", self.key_file)
        sign_test_policy(self.space, self.policy.read_text(), self.key)
        self.policy = self.space.policy

    def apply(self, text: str) -> subprocess.CompletedProcess:
        source = self.root / "next-policy.yaml"
        source.write_text(text)
        return subprocess.run(
            [sys.executable, "-m", "workbench.cli", "policy", "apply", str(source),
             "--data-dir", str(self.space.root), "--key", str(self.key_file), "--yes"],
            capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def hub():
    hub_support.LiveHub = SignedHub  # this module's own copy: _running_hub builds a SignedHub
    yield from hub_support._running_hub()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run 'make system-deps'")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _log_in(page, hub, user: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords[user])
    page.click("#login_submit")
    page.wait_for_load_state()


def test_apply_adds_a_study_its_member_opens_at_once(hub, browser):
    page = browser.new_page(viewport={"width": 1300, "height": 800})
    try:
        _log_in(page, hub, "alice")
        page.wait_for_selector("#workbench-studies")
        assert page.query_selector("#open-cml-tki") is not None
        assert page.query_selector("#open-new-study") is None

        result = hub.apply(hub.policy.read_text() + NEW_STUDY)
        assert result.returncode == 0, result.stderr
        assert "serial 2 in force" in result.stdout

        page.reload()
        page.wait_for_selector("#open-new-study")
        page.screenshot(path=ARTIFACTS / "1-new-study-listed.png")
        page.click("#open-new-study")
        page.wait_for_url("**/user/alice/new-study/lab**", timeout=180_000)
        page.wait_for_selector(".jp-Launcher", timeout=120_000)
        page.screenshot(path=ARTIFACTS / "2-new-study-open.png")
    finally:
        page.close()
    records = hub_support.provenance_records(hub.space)
    change = [r for r in records if r["kind"] == "policy-change"][-1]["fields"]
    assert change["serial"] == 2 and change["studies_added"] == ["new-study"]
    assert change["members_added"] == ["new-study/alice"]
    assert any(r["kind"] == "server-spawn" and r["fields"].get("study") == "new-study"
               and r["fields"].get("event") == "spawn" for r in records)
    hub.stop_server("alice", "new-study")


def test_the_admin_home_page_shows_the_policy_history(hub, browser):
    page = browser.new_page(viewport={"width": 1300, "height": 800})
    try:
        _log_in(page, hub, "ada")
        table = page.wait_for_selector("#policy-history")
        page.screenshot(path=ARTIFACTS / "3-admin-policy-history.png", full_page=True)
        rows = [row.inner_text() for row in table.query_selector_all("tbody tr")]
        in_force = page.inner_text("#policy-in-force")
    finally:
        page.close()
    key_id = signed.key_id_of(hub.space, hub.key)
    assert rows[0].startswith("2") and "+study new-study" in rows[0] and key_id in rows[0]
    assert rows[-1].startswith("1") and "+study cml-tki" in rows[-1]
    assert "serial 2" in in_force and key_id in in_force

    page = browser.new_page()
    try:  # a researcher sees no policy history
        _log_in(page, hub, "alice")
        page.wait_for_selector("#workbench-studies")
        assert page.query_selector("#policy-history") is None
    finally:
        page.close()


def test_a_tampered_policy_stops_every_server_start(hub):
    sig = signed.signature_path(hub.policy)
    original = hub.policy.read_bytes()
    hub.policy.write_bytes(original.replace(b"members: [alice]", b"members: [alice, bob]", 1))
    try:
        response = hub.spawn("bob", "cml-tki")
        assert response.status_code in (500, 503), response.text
        assert "policy cannot be read" in response.text
        assert hub.spawn("alice", "cml-tki").status_code in (500, 503)
    finally:
        hub.policy.write_bytes(original)
    assert json.loads(sig.read_text())["serial"] == 2
    response = hub.spawn("alice", "cml-tki")
    assert response.status_code in (201, 202), hub.output()
    hub.wait_ready("alice", "cml-tki")
    hub.stop_server("alice", "cml-tki")
