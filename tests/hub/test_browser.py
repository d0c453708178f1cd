"""Headless Chromium against the real hub: the researcher logs in with her password, opens her
study, runs a cell that reads a granted view through the gateway and sees the table.
Screenshots go to test-artifacts/hub/."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "hub"


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


def _log_in(page, hub, user: str, password: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_load_state()


def test_researcher_reads_a_granted_view_in_jupyterlab(demo_hub, browser, records):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        _log_in(page, demo_hub, "alice", demo_hub.passwords["alice"])
        assert page.url.endswith("/hub/home")
        page.wait_for_selector("#workbench-studies")
        page.screenshot(path=ARTIFACTS / "1-home.png")
        assert page.query_selector("#open-lung-validation") is not None
        page.click("#open-cml-tki")
        page.wait_for_url("**/user/alice/cml-tki/lab**", timeout=180_000)
        page.wait_for_selector(".jp-Launcher", timeout=120_000)
        page.screenshot(path=ARTIFACTS / "2-jupyterlab.png")
        page.click("div.jp-LauncherCard[data-category='Notebook']")
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
        page.click(".jp-Notebook .jp-Cell .cm-content")
        page.keyboard.type('wb.view("cml_cohort").head()')
        page.keyboard.press("Shift+Enter")
        table = page.wait_for_selector(".jp-OutputArea-output table", timeout=120_000)
        page.screenshot(path=ARTIFACTS / "3-view-table.png")
        header = table.inner_text()
        assert "person_id" in header and "tki" in header
        assert len(table.query_selector_all("tbody tr")) == 5
    finally:
        page.close()
    kinds = {(r.get("kind"), r["fields"].get("user")) for r in records(demo_hub.space)}
    assert ("login", "alice") in kinds and ("server-spawn", "alice") in kinds
    assert ("cell-execution", "alice") in kinds
    assert any(r.get("kind") == "view-read" and r["fields"].get("view") == "cml_cohort"
               for r in records(demo_hub.space))


def test_reviewer_sees_no_server_of_the_researcher(demo_hub, browser):
    page = browser.new_page()
    try:
        _log_in(page, demo_hub, "rita", demo_hub.passwords["rita"])
        response = page.goto(f"{demo_hub.url}/user/alice/cml-tki/lab")
        page.screenshot(path=ARTIFACTS / "4-reviewer-refused.png")
        assert "/user/alice/cml-tki/lab" not in page.url or response.status == 403
        assert page.query_selector(".jp-Launcher") is None
    finally:
        page.close()


def test_wrong_password_is_refused(demo_hub, browser):
    page = browser.new_page()
    try:
        _log_in(page, demo_hub, "alice", "wrong-password-123")
        assert "/hub/login" in page.url
        assert page.query_selector("#username_input") is not None
    finally:
        page.close()
