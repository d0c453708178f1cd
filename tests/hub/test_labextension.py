"""The researcher's JupyterLab extension (labextension/, prebuilt in workbench/labextension/) and
its server side (workbench/hub/lab_api.py, the airlock's study-server routes).

- the prebuilt output is in the package, is what the study server loads, and was built from the
  source as it is now (a digest recorded at build time);
- the airlock takes a study server as its study's kernel account whatever it asserts: its own
  study's requests only, the author's view (no evidence cells), no create, no decision; withdraw
  and resubmit as the requester, approvals starting again after a resubmission;
- in headless Chromium through the real hub: the banner, the catalog panel (views, columns,
  certificates), "Request release" on an output, and "My release requests" (list, a reviewer's
  comment, withdraw, resubmit). Screenshots go to test-artifacts/hub/labextension-*.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from workbench import accounts
from workbench.accounts import study_server_user
from workbench.labextension import BUILD_RECORD, LABEXTENSIONS, NAME, PREBUILT, source_digest
from workbench.paths import Space
from workbench.policy import load_policy
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP
from workbench.release.serialize import to_payload
from workbench.review.snapshot import provenance_view, study_snapshot

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "hub"
POLICY = """
users:
  alice: {roles: [researcher]}
  bob: {roles: [researcher]}
  rita: {roles: [reviewer]}
  remy: {roles: [reviewer]}
studies:
  cml-tki:
    title: CML
    purpose: test
    sponsor: test
    members: [alice]
    reviewers: [rita, remy]
    views: [cml_cohort]
    expires: 2099-12-31
  other:
    title: Other
    purpose: test
    sponsor: test
    members: [bob]
    reviewers: [remy]
    views: [cml_cohort]
    expires: 2099-12-31
"""


# -- the prebuilt extension ---------------------------------------------------------------------
def test_prebuilt_extension_is_built_from_the_source_as_it_is():
    record = json.loads(BUILD_RECORD.read_text())
    assert record["source_sha256"] == source_digest(REPO / "labextension"), \
        "labextension/ changed since the prebuilt output was made: run 'make labextension'"
    built = json.loads((PREBUILT / "package.json").read_text())
    assert built["name"] == NAME and built["jupyterlab"]["_build"]["load"] == record["load"]
    assert (PREBUILT / record["load"]).is_file()
    from jupyterlab import __version__

    assert record["jupyterlab"].split(".")[:2] == __version__.split(".")[:2]


def test_prebuilt_extension_ships_in_the_package_and_the_study_server_loads_it():
    from importlib.resources import files

    installed = files("workbench.labextension") / NAME
    assert (installed / "package.json").is_file()
    packaged = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["workbench.labextension"]
    shipped = {p for pattern in packaged for p in LABEXTENSIONS.glob(pattern) if p.is_file()}
    built = {p for p in PREBUILT.rglob("*") if p.is_file()} | {BUILD_RECORD}
    assert shipped == built, "pyproject's package-data misses files of the prebuilt extension"

    from workbench.hub.singleuser import server_settings
    from workbench.policy.model import Study

    study = Study(title="t", purpose="p", sponsor="s", expires="2099-01-01")
    settings = server_settings(Path("/w"), study, Path("/s"), 60, 60)
    assert settings["LabApp"]["extra_labextensions_path"] == [str(LABEXTENSIONS)]
    assert settings["ServerApp"]["jpserver_extensions"]["workbench.hub.lab_api"] is True



@pytest.fixture
def open_dir():
    """A directory every account can traverse (the collector runs as its own uid)."""
    path = Path(tempfile.mkdtemp(prefix="wb-labext-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_catalog_snapshot_is_recorded_before_it_is_written_or_not_written_at_all(open_dir):
    """The hub's snapshot for the catalog panel: each view's description is a recorded read
    (fail closed: no collector, no facts), with certificate status checked against the data."""
    from workbench.hub.lab_api import SNAPSHOT, write_catalog_snapshot
    from workbench.policy.model import Study
    from workbench.provenance.service import start_collector
    from workbench.provenance.store import open_store
    from workbench.space.build import init_space

    space = init_space(open_dir / "space", patients=0, echo=lambda _line: None)
    study = Study(title="t", purpose="p", sponsor="s", expires="2099-01-01",
                  views=["lung_survival"])
    config = open_dir / "config"
    config.mkdir()
    write_catalog_snapshot(space, "lung-validation", study, "alice", config)  # no collector
    refused = json.loads((config / SNAPSHOT).read_text())
    assert refused["views"] == [] and "could not be read and recorded" in refused["unavailable"]

    with start_collector(space):
        write_catalog_snapshot(space, "lung-validation", study, "alice", config)
    snapshot = json.loads((config / SNAPSHOT).read_text())
    (view,) = snapshot["views"]
    assert view["id"] == "lung_survival" and {"name", "sensitivity", "plaintext"} <= set(
        view["columns"][0])
    assert all(h["certificates"] == {"valid": len(h["tables"])} for h in view["holders"])
    store = open_store(space, readonly=True)
    try:
        reads = [json.loads(body) for *_rest, body in store.rows()]
    finally:
        store.close()
    assert [(r["kind"], r["fields"]["view"], r["fields"]["operation"]) for r in reads
            if r["kind"] == "view-read"] == [("view-read", "lung_survival", "catalog-panel")]
    # a certificate that no longer matches its data is shown as invalid
    certificate = next((space.catalog / "certificates").glob("*.json"))
    certificate.write_text(certificate.read_text().replace('"holder"', '"holder" ', 1))
    with start_collector(space):
        write_catalog_snapshot(space, "lung-validation", study, "alice", config)
    statuses = [h["certificates"] for h in json.loads(
        (config / SNAPSHOT).read_text())["views"][0]["holders"]]
    assert any("invalid" in s for s in statuses)

# -- the airlock and a study server -------------------------------------------------------------
@pytest.fixture(scope="module")
def airlock_space():
    if not accounts.is_root():
        pytest.fail("the airlock tests run as root: they act as the study server's account")
    from workbench.provenance.service import start_collector
    from workbench.release.service import start_airlock

    root = Path(tempfile.mkdtemp(prefix="wb-labext-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = Space(root / "space")
    space.root.mkdir(mode=0o755)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    policy.chmod(0o644)
    try:
        with start_collector(space), start_airlock(space, policy):
            yield space
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _kernel_request(space: Space, study: str = "cml-tki", n=(40, 35)) -> str:
    """A request as the gateway sends one for a study kernel."""
    payload = to_payload(pd.DataFrame({"tki": ["a", "b"], "n": list(n)}), view="cml_cohort")
    reply = UnixHTTP(airlock_socket(space)).json(
        "POST", "/requests", {"name": "by_tki", "description": "counts", "payload": payload},
        {"X-Workbench-Actor": f"wbk-{study}", "X-Workbench-Study": study,
         "X-Workbench-User": "alice"})
    return reply["id"]


def _reviewer(space: Space, request_id: str, decision: str, who: str, comment: str = "") -> dict:
    return UnixHTTP(airlock_socket(space)).json(
        "POST", f"/requests/{request_id}/decision", {"decision": decision, "comment": comment},
        {"X-Workbench-Actor": who})


_AS_SERVER = """
import json, sys
from workbench.release.http import UnixHTTP
ask = json.load(sys.stdin)
status, data, _ = UnixHTTP(ask["socket"], timeout=60).request(
    ask["method"], ask["path"], ask["body"], ask["headers"])
print(json.dumps({"status": status, "body": json.loads(data)}))
"""


def _as_server(space: Space, study: str, method: str, path: str, body: dict | None = None,
               headers: dict | None = None) -> tuple[int, dict]:
    """One airlock call from the study server's account: a new process started as it (a fork of
    this threaded test process could inherit a lock another thread held, and hang or die)."""
    uid, gid = accounts.ensure_user(study_server_user(study))
    ask = {"socket": str(airlock_socket(space)), "method": method, "path": path, "body": body,
           "headers": {"X-Workbench-User": "alice", **(headers or {})}}
    done = subprocess.run([sys.executable, "-c", _AS_SERVER], input=json.dumps(ask), text=True,
                          capture_output=True, user=uid, group=gid, extra_groups=[],
                          cwd="/", timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    reply = json.loads(done.stdout)
    return reply["status"], reply["body"]


def test_a_study_server_sees_its_own_study_as_its_kernels_do(airlock_space):
    mine, theirs = _kernel_request(airlock_space), _kernel_request(airlock_space, "other")
    # whatever it asserts (a reviewer, another study), it is the study's kernel account
    status, listing = _as_server(airlock_space, "cml-tki", "GET", "/requests?study=other",
                                 headers={"X-Workbench-Actor": "rita",
                                          "X-Workbench-Study": "other"})
    assert status == 200
    ids = {r["id"] for r in listing}
    assert mine in ids and theirs not in ids
    assert all(r["study"] == "cml-tki" for r in listing)
    status, detail = _as_server(airlock_space, "cml-tki", "GET", f"/requests/{mine}",
                                headers={"X-Workbench-Actor": "rita"})
    assert status == 200 and "evidence" not in detail and "payload" not in detail
    status, _ = _as_server(airlock_space, "cml-tki", "GET", f"/requests/{theirs}")
    assert status == 403


def test_a_study_server_cannot_create_decide_or_download(airlock_space):
    rid = _kernel_request(airlock_space)
    payload = to_payload(pd.DataFrame({"tki": ["a", "b"], "n": [40, 35]}), view="cml_cohort")
    for method, path, body in [
            ("POST", "/requests", {"name": "x", "description": "d", "payload": payload}),
            ("POST", f"/requests/{rid}/decision", {"decision": "approve"}),
            ("GET", f"/requests/{rid}/files/by_tki.csv", None)]:
        status, reply = _as_server(airlock_space, "cml-tki", method, path, body,
                                   {"X-Workbench-Actor": "rita"})
        assert status == 403 and reply["error"]["reason"] == "access-denied", (path, reply)
    # another study's server cannot withdraw this study's request
    status, reply = _as_server(airlock_space, "other", "POST", f"/requests/{rid}/withdraw",
                               {"comment": "not mine"})
    assert status == 403, reply


def test_withdraw_and_resubmit_as_the_requester(airlock_space):
    rid = _kernel_request(airlock_space)
    assert _reviewer(airlock_space, rid, "approve", "rita")["state"] == "reviewed"
    returned = _reviewer(airlock_space, rid, "return", "remy", "say which protocol asks for it")
    assert returned["state"] == "returned"
    status, reply = _as_server(airlock_space, "cml-tki", "POST", f"/requests/{rid}/resubmit",
                               {"comment": "protocol section 4.2"})
    assert status == 200 and reply["state"] == "submitted"
    assert reply["approvals"] == []  # rita's approval was of the request before it was returned
    status, reply = _as_server(airlock_space, "cml-tki", "POST", f"/requests/{rid}/withdraw",
                               {"comment": "superseded"})
    assert status == 200 and reply["state"] == "withdrawn"
    status, reply = _as_server(airlock_space, "cml-tki", "POST", f"/requests/{rid}/withdraw")
    assert status == 409 and reply["error"]["reason"] == "bad-state"
    # a reviewer cannot decide a withdrawn request
    with pytest.raises(Exception, match="only submitted or reviewed"):
        _reviewer(airlock_space, rid, "approve", "remy")
    status, detail = _as_server(airlock_space, "cml-tki", "GET", f"/requests/{rid}")
    actions = [(t["action"], t["comment"]) for t in detail["transitions"]]
    assert ("return", "say which protocol asks for it") in actions
    assert ("resubmit", "protocol section 4.2") in actions and ("withdraw", "superseded") in actions


def test_a_released_request_cannot_be_withdrawn_and_a_failing_one_not_resubmitted(airlock_space):
    rid = _kernel_request(airlock_space, n=(41, 36))
    _reviewer(airlock_space, rid, "approve", "rita")
    assert _reviewer(airlock_space, rid, "approve", "remy")["state"] == "released"
    status, reply = _as_server(airlock_space, "cml-tki", "POST", f"/requests/{rid}/withdraw")
    assert status == 409 and "released" in reply["error"]["message"]
    failing = _kernel_request(airlock_space, n=(3, 36))  # a cell under 10: stays a draft
    status, reply = _as_server(airlock_space, "cml-tki", "POST", f"/requests/{failing}/resubmit")
    assert status == 409 and "draft" in reply["error"]["message"]


# -- in the browser -----------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def lab_hub(demo_hub):
    """The demo hub (policy, small space, gateway) with the airlock the panels talk to."""
    from workbench.release.service import start_airlock

    handle = start_airlock(demo_hub.space, demo_hub.policy)
    try:
        yield demo_hub
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def page(lab_hub):
    """alice, signed in through the hub, in her cml-tki study server's JupyterLab."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run 'make system-deps'")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1500, "height": 950})
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(f"{lab_hub.url}/hub/login")
        tab.fill("#username_input", "alice")
        tab.fill("#password_input", lab_hub.passwords["alice"])
        tab.click("#login_submit")
        tab.wait_for_selector("#open-cml-tki")
        tab.click("#open-cml-tki")
        tab.wait_for_url("**/user/alice/cml-tki/lab**", timeout=180_000)
        tab.wait_for_selector(".jp-Launcher", timeout=120_000)
        tab.errors = errors
        yield tab
        browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"labextension-{name}.png")



@pytest.mark.slow
@pytest.mark.browser
def test_banner_names_the_study_its_visibility_and_expiry(page):
    banner = page.wait_for_selector("#workbench-banner .wb-Banner-expiry", timeout=60_000)
    text = page.inner_text("#workbench-banner")
    _shot(page, "1-banner")
    # the demo policy's cml-tki sees its views as aggregates (wb.view returns synthetic twins)
    assert "cml-tki" in text and "visibility: aggregates" in text and "signed in as alice" in text
    assert "expires 2027-12-31" in banner.inner_text()
    assert not page.errors, page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_catalog_panel_lists_granted_views_columns_and_certificates(page, lab_hub, records):
    page.click("li[data-id='workbench-catalog']")
    view = page.wait_for_selector("#workbench-catalog details[data-view='cml_cohort']",
                                  timeout=60_000)
    view.click()  # opens it
    page.wait_for_selector("#workbench-catalog details[data-view='cml_cohort'] "
                           ".wb-Catalog-columns li[data-column='tki']")
    _shot(page, "2-catalog")
    assert page.query_selector("#workbench-catalog details[data-view='cml_costs']") is not None
    assert page.query_selector("#workbench-catalog details[data-view='lung_survival']") is None
    columns = view.inner_text()
    assert "person_id" in columns and "tki" in columns and "quasi_identifier" in columns
    days = view.query_selector("li[data-column='days']").inner_text()
    assert "sensitive" in days and "wb.secure only" in days  # never returned in plaintext
    assert "plaintext" in view.query_selector("li[data-column='tki']").inner_text()
    holders = view.query_selector_all(".wb-Catalog-facts li")
    assert len(holders) >= 2  # a view pools several holders
    for holder in holders:  # every table's ownership certificate verifies
        assert [c.get_attribute("class") for c in holder.query_selector_all(".wb-Cert")] == [
            "wb-Cert wb-Cert-valid"], holder.inner_text()
    # the descriptions the panel shows were recorded as reads before the server started
    panel_reads = {r["fields"]["view"] for r in records(lab_hub.space)
                   if r.get("kind") == "view-read"
                   and r["fields"].get("operation") == "catalog-panel"
                   and r["fields"].get("user") == "alice"}
    assert panel_reads == {"cml_cohort", "cml_costs"}
    page.click("li[data-id='workbench-catalog']")  # closes the panel again


def _card(page, state: str, request_id: str | None = None):
    """The request's card once the panel shows it in ``state`` (a locator: the panel re-renders
    whenever a cell runs or a button is pressed)."""
    page.click("#workbench-requests .wb-Refresh")
    which = f"[data-request='{request_id}']" if request_id else ""
    card = page.locator(f"#workbench-requests .wb-Request{which}[data-state='{state}']").first
    card.wait_for(timeout=60_000)
    return card


def _request_release(page, output, name: str, description: str) -> str:
    """Right-click an output, "Request release", fill the dialog: the text the request's cell
    printed."""
    output.click(button="right")
    page.click(".lm-Menu-item:has-text('Request release of this output')")
    dialog = page.wait_for_selector(".jp-Dialog .wb-RequestForm")
    dialog.query_selector("input[name=name]").fill(name)
    dialog.query_selector("input[name=description]").fill(description)
    dialog.query_selector("input[name=justification]").fill("table 1 of the paper")
    dialog.query_selector("select[name=view]").select_option("cml_cohort")
    _shot(page, f"3-request-dialog-{name}")
    page.click(".jp-Dialog button.jp-mod-accept")
    # the request is made by a cell the user can read, run in the kernel that holds the output
    try:
        reply = page.wait_for_selector(f".jp-OutputArea-output:has-text(\"'{name}'\")",
                                       timeout=120_000)
    except PlaywrightTimeout:
        _shot(page, f"failed-request-{name}")
        raise AssertionError("no reply naming the request; the notebook reads:\n"
                             + page.inner_text(".jp-Notebook")) from None
    return reply.inner_text()


def _finished_output(page, cell: str):
    """The table ``cell`` shows once its run has finished: the result appears before the
    kernel's reply numbers the cell, and only a numbered cell's output can be named Out[n]."""
    page.locator(f"{cell} .jp-InputPrompt").filter(
        has_text=re.compile(r"\[\d+\]")).wait_for(timeout=120_000)
    return page.wait_for_selector(f"{cell} .jp-OutputArea-output table", timeout=120_000)


def _run_in_last_cell(page, code: str):
    page.click(".jp-Notebook .jp-Cell:last-child .cm-content")
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


@pytest.mark.slow
@pytest.mark.browser
def test_request_release_on_an_output_then_withdraw_and_resubmit(page, lab_hub):
    page.click("div.jp-LauncherCard[data-category='Notebook']")
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
    _run_in_last_cell(page, 'import pandas as pd; '
                            'pd.DataFrame({"tki": ["imatinib", "nilotinib"], "n": [4, 3]})')
    output = _finished_output(page, ".jp-Notebook .jp-Cell:first-child")
    # counts under 10: refused, naming the rule, the cells and the fix (the demo's cml-tki sees
    # aggregates only, so the counts are typed in: wb.view would give its synthetic twin)
    refused = _request_release(page, output, "patients_by_tki", "patients per TKI")
    assert "draft" in refused and "minimum-threshold" in refused and "cell(s)" in refused
    assert 'wb.release.request(Out[1], "patients_by_tki"' in page.inner_text(".jp-Notebook")
    page.click("li[data-id='workbench-requests']")
    draft = _card(page, "draft")
    assert "minimum-threshold" in draft.inner_text() and draft.locator("button").count() == 0
    _shot(page, "4-refused-in-my-requests")

    # a widget: JupyterLab's widget manager then sends the kernel comm messages, which the
    # audit proxy records without code; they must not hide the next request's producing cell
    _run_in_last_cell(page, "wb.catalog()")
    page.wait_for_selector(".jp-Notebook .jp-Cell:nth-last-child(2) "
                           ".jp-OutputArea-output:has-text('Views')", timeout=120_000)
    _run_in_last_cell(page, 'import pandas as pd; '
                            'pd.DataFrame({"tki": ["imatinib", "nilotinib"], "n": [40, 35]})')
    output = _finished_output(page, ".jp-Notebook .jp-Cell:nth-last-child(2)")
    _request_release(page, output, "pooled_counts", "pooled counts per TKI")
    card = _card(page, "submitted")
    request_id = card.get_attribute("data-request")
    _shot(page, "5-my-requests")
    assert "pooled_counts" in card.inner_text()

    _reviewer(lab_hub.space, request_id, "return", "rita", "round the counts to 5 first")
    card = _card(page, "returned", request_id)
    assert "round the counts to 5 first" in card.inner_text()
    _shot(page, "6-returned-with-comment")
    card.locator(".wb-Resubmit").click()
    page.fill(".jp-Dialog input", "they are multiples of 5 already")
    page.click(".jp-Dialog button.jp-mod-accept")
    card = _card(page, "submitted", request_id)
    card.locator(".wb-Withdraw").click()
    page.fill(".jp-Dialog input", "superseded by table 1b")
    page.click(".jp-Dialog button.jp-mod-accept")
    card = _card(page, "withdrawn", request_id)
    _shot(page, "7-withdrawn")
    assert card.locator(".wb-Resubmit").count() == 1 and card.locator(".wb-Withdraw").count() == 0
    detail = UnixHTTP(airlock_socket(lab_hub.space)).json(
        "GET", f"/requests/{request_id}", None, {"X-Workbench-Actor": "rita"})
    assert [t["action"] for t in detail["transitions"]][-3:] == ["return", "resubmit", "withdraw"]
    # what the reviewers are shown: the cell that made the request, and alice as the person
    producing = provenance_view(lab_hub.space, "cml-tki", [{"id": request_id}])["producing"]
    assert producing[request_id]["status"] == "resolved", producing[request_id]["note"]
    assert producing[request_id]["requester"] == "alice"
    assert "pooled_counts" in producing[request_id]["cells"][-1]["code"]
    assert not page.errors, page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_request_release_of_a_result_whose_cell_is_still_running_is_refused(page, lab_hub):
    """The result shows before the kernel's reply numbers its cell (here a post-run hook holds
    the reply back until the kernel is interrupted): a request made then cannot name Out[n], so
    the lab says to wait and writes no request cell."""
    _run_in_last_cell(page, "import time; hold = lambda result: result.info.raw_cell"
                            ".startswith('pd.') and time.sleep(300); "
                            "get_ipython().events.register('post_run_cell', hold)")
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
    cells = page.locator(".jp-Notebook .jp-Cell").count()
    _run_in_last_cell(page, 'pd.DataFrame({"tki": ["imatinib"], "n": [50]})')
    output = page.wait_for_selector(".jp-Notebook .jp-Cell:nth-last-child(2) "
                                    ".jp-OutputArea-output table", timeout=120_000)
    output.click(button="right")
    page.click(".lm-Menu-item:has-text('Request release of this output')")
    dialog = page.wait_for_selector(".jp-Dialog", timeout=30_000)
    text = dialog.inner_text()
    _shot(page, "8-still-running")
    assert "still running" in text and dialog.query_selector(".wb-RequestForm") is None, text
    page.click(".jp-Dialog button:has-text('Close')")
    page.wait_for_selector(".jp-Dialog", state="detached")
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells + 1  # no request cell
    page.click("[data-command='notebook:interrupt-kernel']")  # ends the hold
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
    _run_in_last_cell(page, "get_ipython().events.unregister('post_run_cell', hold)")
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
    assert not page.errors, page.errors


# -- the README's example, as written -----------------------------------------------------------
def readme_example() -> str:
    """The python block under "What a researcher does" in README.md."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## What a researcher does"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


@pytest.fixture(scope="module")
def demo_space():
    """The demo space (10 000 synthetic patients, as `workbench demo` builds it) and its
    services, started as `workbench demo` starts them."""
    from workbench.services import space_services
    from workbench.space.build import init_space

    root = Path(tempfile.mkdtemp(prefix="wb-labext-readme-", dir="/tmp"))
    os.chmod(root, 0o755)
    policy = REPO / "workbench" / "hub_config" / "policy.yaml"
    try:
        space = init_space(root / "space", patients=10_000, echo=lambda _line: None)
        with space_services(space, policy, echo=lambda _line: None):
            yield space, policy, root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_the_readme_researcher_example_is_submitted_as_written(demo_space):
    import subprocess
    import sys

    import nbformat

    space, policy, root = demo_space
    notebook = root / "readme.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(readme_example())]), notebook)
    os.chmod(notebook, 0o644)
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(notebook), "--study", "cml-tki",
         "--user", "alice", "--data-dir", str(space.root), "--policy", str(policy)],
        capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    executed = nbformat.read(result.stdout.split("executed notebook: ")[1].split()[0],
                             as_version=4)
    shown = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                    for o in executed.cells[0].outputs)
    assert "release request rq-" in shown and "'km_by_tki': submitted" in shown, shown
    assert "failed" not in shown
    # the reviewers' figure of it labels time as the researcher's does: the catalog's words
    # for the signed result's duration column, not "time"
    snapshot = study_snapshot(space, load_policy(policy), "cml-tki", "rita")
    (request,) = [r for r in snapshot["requests"] if r["name"] == "km_by_tki"]
    assert request["evidence"]["verified"]
    assert request["time_label"] == "Days from TKI start to progression, death or end of " \
                                    "follow-up"


@pytest.mark.slow
@pytest.mark.browser
def test_the_panels_api_answers_the_servers_user_only(page, lab_hub):
    """The routes sit behind the study server's own Jupyter auth (the page fixture started
    alice's server): no credentials and another user's token are refused, alice's answers."""
    import httpx

    base = f"{lab_hub.url}/user/alice/cml-tki/workbench/api"
    for path in ("study", "catalog", "requests"):
        anonymous = httpx.get(f"{base}/{path}", follow_redirects=False, timeout=60)
        assert anonymous.status_code in (302, 403), (path, anonymous.status_code)
        assert "cml_cohort" not in anonymous.text
        other = httpx.get(f"{base}/{path}", timeout=60, follow_redirects=False,
                          headers={"Authorization": f"token {lab_hub.token_for('rita')}"})
        assert other.status_code in (302, 403, 404), (path, other.status_code)
        assert "cml_cohort" not in other.text
    mine = httpx.get(f"{base}/study", timeout=60,
                     headers={"Authorization": f"token {lab_hub.token_for('alice')}"})
    assert mine.status_code == 200 and mine.json()["study"] == "cml-tki"
    withdraw = httpx.post(f"{base}/requests/rq-x/withdraw", json={}, timeout=60,
                          follow_redirects=False)
    assert withdraw.status_code in (302, 403)
