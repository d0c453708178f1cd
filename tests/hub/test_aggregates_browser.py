"""A release from an 'aggregates' study end to end, in headless Chromium through the real hub:
the demo policy's cml-tki sees its views as aggregates, so alice's wb.view shows a labelled
synthetic twin (no real person), the real counts come from wb.secure, "Request release" on that
output submits it (the signed secure result passes the airlock's checks), two reviewers approve
it and her panel shows it released. The provenance shows only synthetic row reads of the study's
views. Screenshots: test-artifacts/hub/aggregates-*.png."""

from __future__ import annotations

import pytest

from tests.hub.test_labextension import (
    ARGS,
    ARTIFACTS,
    CHROMIUM,
    _card,
    _request_release,
    _reviewer,
    _run_in_last_cell,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def hub(demo_hub):
    """The demo hub with the airlock, the key holder and the aggregator: releases and wb.secure
    answer."""
    from workbench.release.service import start_airlock
    from workbench.secure.process import start_aggregator, start_keyholder

    services = [start_airlock(demo_hub.space, demo_hub.policy)]
    try:
        services.append(start_keyholder(demo_hub.space, min_cell_floor=5))
        services.append(start_aggregator(demo_hub.space))
        yield demo_hub
    finally:
        for service in reversed(services):
            service.stop()


def _open_lab(page, hub) -> None:
    """alice logs in and opens cml-tki's JupyterLab on a fresh workspace (a test before may
    have left a notebook open, which JupyterLab would restore instead of the launcher)."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", "alice")
    page.fill("#password_input", hub.passwords["alice"])
    page.click("#login_submit")
    page.click("#open-cml-tki")
    page.wait_for_url("**/user/alice/cml-tki/lab**", timeout=180_000)
    page.goto(f"{hub.url}/user/alice/cml-tki/lab?reset")
    page.wait_for_selector(".jp-Launcher", timeout=120_000)


def _shot(page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"aggregates-{name}.png")


def test_a_release_from_an_aggregates_study_end_to_end(hub, records):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _open_lab(page, hub)
        page.wait_for_selector("#workbench-banner .wb-Banner-expiry", timeout=60_000)
        assert "visibility: aggregates" in page.inner_text("#workbench-banner")

        page.click("div.jp-LauncherCard[data-category='Notebook']")
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
        _run_in_last_cell(page, 'wb.view("cml_cohort").head()')
        page.wait_for_selector(".jp-OutputArea-output table", timeout=120_000)
        shown = page.inner_text(".jp-Notebook .jp-Cell:first-child .jp-OutputArea")
        _shot(page, "1-twin")
        assert "SYNTHETIC TWIN of 'cml_cohort'" in shown and "wb.secure" in shown
        assert "synthetic-000001" in shown

        # the whole cohort: this small space has too few patients per TKI for a grouped count
        _run_in_last_cell(page, 'patients = wb.secure.count("cml_cohort"); patients')
        output = page.wait_for_selector(".jp-Notebook .jp-Cell:nth-child(2) .jp-OutputArea-output",
                                        timeout=300_000)
        assert output.inner_text().strip().isdigit(), output.inner_text()
        submitted = _request_release(page, output, "cml_patients", "patients in the cohort")
        assert "submitted" in submitted, submitted
        page.click("li[data-id='workbench-requests']")
        request_id = _card(page, "submitted").get_attribute("data-request")
        _shot(page, "2-submitted")

        _reviewer(hub.space, request_id, "approve", "rita")
        assert _reviewer(hub.space, request_id, "approve", "remy")["state"] == "released"
        card = _card(page, "released", request_id)
        _shot(page, "3-released")
        assert "cml_patients" in card.inner_text()
        assert not errors, errors
        browser.close()

    reads = [r["fields"] for r in records(hub.space) if r.get("kind") == "view-read"
             and r["fields"].get("study") == "cml-tki" and r["fields"].get("format") == "arrow"]
    assert reads and all(r.get("synthetic") is True for r in reads)


def test_a_km_figure_whose_numbers_fail_is_refused_in_the_browser(hub):
    """A fine-grained KM (lifelines on a public table in the kernel) drawn as a figure, sent
    with the numbers it draws: the airlock refuses it for those numbers (survival-step), and the
    researcher sees the rule and the fix in the notebook."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        _open_lab(page, hub)
        page.click("div.jp-LauncherCard[data-category='Notebook']")
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
        _run_in_last_cell(page, "; ".join([
            "from lifelines import KaplanMeierFitter",
            "from lifelines.datasets import load_rossi",
            "r = load_rossi()",
            "kmf = KaplanMeierFitter().fit(r['week'], r['arrest'])",
            "fig = kmf.plot().get_figure()",
            "print(wb.release.request(fig, 'km_fig', 'KM of re-arrest', data=kmf))"]))
        output = page.wait_for_selector(
            ".jp-Notebook .jp-Cell:first-child .jp-OutputArea-output >> text=survival-step",
            timeout=300_000)
        _shot(page, "4-figure-refused")
        text = output.inner_text()
        assert "survival-step" in text and "coarsen_survival" in text, text
        browser.close()
