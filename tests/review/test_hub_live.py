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
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "review"
QUEUE = "/services/review/voila/render/release_queue.ipynb"  # the shared service, ?study=<s>


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
    live = airlock = None
    try:
        live = harness.LiveHub(root, POLICY, review_services=True)
        HubLayout(live.space).ensure()
        extra = create_users(HubLayout(live.space).default_db_url, EXTRA_USERS)
        airlock = start_airlock(live.space, live.policy)
        _start(live)
        live.passwords.update(extra)
        yield live
    finally:
        try:
            if live is not None:
                live.stop()  # the hub, everything it started, its collector and launcher
        finally:
            if airlock is not None:
                harness.stop_service(airlock)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for log in ("hub.log",):
                if (root / log).exists():
                    shutil.copyfile(root / log, ARTIFACTS / log)
            shutil.rmtree(root, ignore_errors=True)


def _start(live, patience: float = 240) -> None:
    """The harness gives the hub 60 s; with the review services to start one after another
    (about 12 s each on a loaded machine) it may need longer: keep waiting while it runs."""
    try:
        live.start()
        return
    except RuntimeError as exc:
        if "did not come up" not in str(exc):
            raise
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and live.process.poll() is None:
        try:
            if httpx.get(f"{live.url}/hub/api/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"hub did not come up:\n{live.output()}")


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
        # not a redirect to /hub/services/...: that is the hub saying no route exists
        reply = httpx.get(f"{hub.url}/services/{name}/", timeout=10)
        if reply.status_code == 200 or (reply.status_code == 302 and not reply.headers.get(
                "location", "").startswith("/hub/services/")):
            return
        time.sleep(0.5)
    raise AssertionError(f"service {name} never answered:\n{hub.output()}")


def test_anonymous_visitors_are_sent_to_log_in(hub):
    _wait_service(hub, "review")
    reply = httpx.get(f"{hub.url}{QUEUE}?study=cml-tki",
                      follow_redirects=True, timeout=60)
    assert "/hub/login" in str(reply.url)


def test_non_reviewers_get_403_and_reviewers_the_dashboard(hub):
    _wait_service(hub, "review")
    page = f"{QUEUE}?study=cml-tki"
    for user in ("alice", "olga", "bob"):  # member, other study's reviewer, other member
        with closing(login(hub, user)) as client:
            reply = client.get(page, follow_redirects=True)
            assert reply.status_code == 403, (user, reply.status_code)
    with closing(login(hub, "rita")) as client:
        reply = client.get(page, follow_redirects=True)
        assert reply.status_code == 200, hub.output()
        assert "load_snapshot" not in reply.text and "dashboards.release_queue" not in reply.text
        assert "Traceback" not in reply.text
        other = client.get("/services/review/voila/render/admin_overview.ipynb?study=cml-tki",
                           follow_redirects=True)
        assert other.status_code == 404


def _kernel_id(html: str) -> str:
    """The kernel Voila started for this page (its id is in the page's configuration)."""
    import re

    found = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', html) or re.search(
        r"kernel[_-]?[iI]d[\"']?\s*[:=]\s*[\"']([0-9a-f-]{36})", html)
    assert found, html[-2000:]
    return found[1]


def _service_xsrf(client: httpx.Client) -> str:
    """The service's own XSRF cookie (the hub sets one of its own on /hub/)."""
    return next((c.value for c in client.cookies.jar if c.name == "_xsrf"
                 and c.path.startswith("/services/review")), "")


WEBSOCKET = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def _websocket_status(client: httpx.Client, path: str) -> int:
    """Try to open a websocket as this client, on a connection of its own: the proxy closes
    the socket after answering an upgrade, and a client that reused that connection for its
    next request would, now and then, find it closed under it."""
    with httpx.Client(base_url=client.base_url, cookies=client.cookies,
                      timeout=client.timeout) as once:
        return once.get(path, headers=WEBSOCKET).status_code


def test_the_shared_service_keeps_each_studys_queue_and_kernels_to_its_reviewers(hub):
    """One service for every study, through the real hub and its OAuth: each reviewer opens
    only their own study's queue (another study's, a missing study or none is refused), and a
    kernel started for one reviewer's visit (its relay decides as that reviewer, in that study)
    answers nobody else, even one who knows its id."""
    _wait_service(hub, "review")
    with closing(login(hub, "rita")) as rita, closing(login(hub, "olga")) as olga:
        rita.follow_redirects = olga.follow_redirects = True  # through the OAuth dance
        for client, own, other in ((rita, "cml-tki", "other"), (olga, "other", "cml-tki")):
            assert client.get(f"{QUEUE}?study={own}").status_code == 200
            assert client.get(f"{QUEUE}?study={other}").status_code == 403
            assert client.get(f"{QUEUE}?study=no-such-study").status_code == 404
            assert client.get(QUEUE).status_code == 404
            # a second study= does not smuggle one in: the hook reads the last, like Voila
            assert client.get(f"{QUEUE}?study={own}&study={other}").status_code == 403
        page = rita.get(f"{QUEUE}?study=cml-tki")
        kernel = _kernel_id(page.text)
        api = f"/services/review/api/kernels/{kernel}"
        assert rita.get(api).status_code == 200  # its own visitor
        assert olga.get(api).status_code == 403
        assert _websocket_status(olga, f"{api}/channels") == 403
        xsrf = {"X-XSRFToken": _service_xsrf(olga)}
        assert olga.post(f"/services/review/voila/api/shutdown/{kernel}",
                         headers=xsrf).status_code == 403
        assert rita.get(api).status_code == 200  # still running: olga could not stop it
        mine = {"X-XSRFToken": _service_xsrf(rita)}
        assert rita.post(f"/services/review/voila/api/shutdown/{kernel}",
                         headers=mine).status_code == 204  # as Voila's page does on leaving
    with closing(login(hub, "alice")) as alice:  # a member: no scope for the service at all
        alice.follow_redirects = True
        assert alice.get(f"{QUEUE}?study=cml-tki").status_code == 403


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


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def study_gateway(hub):
    """The study's gateway socket, served by the /release/* forwarder the gateway mounts (the
    sandboxed dashboard kernel reaches the airlock through it)."""
    import asyncio
    import threading

    from aiohttp import web

    from workbench.release.forward import release_forwarder

    sock = hub.space.gateway_socket("cml-tki")
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.parent.chmod(0o755)
    if sock.exists():
        pytest.skip("a real study gateway is already serving this socket")
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/release/{tail:.*}", release_forwarder(hub.space, "cml-tki"))
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, str(sock)).start())
        sock.chmod(0o666)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield sock
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _browser_login(page, hub, user):
    page.context.clear_cookies()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.passwords[user])
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state("networkidle")


@pytest.mark.browser
def test_two_reviewers_approve_in_the_browser_and_the_researcher_downloads(hub, study_gateway):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kernel = UnixHTTP(airlock_socket(hub.space), headers={
        "X-Workbench-Actor": "wbk-cml-tki", "X-Workbench-Study": "cml-tki"})
    created = kernel.json("POST", "/requests", {
        "name": "browser_table", "description": "patients per arm, for the browser test",
        "payload": to_payload(pd.DataFrame({"arm": ["x", "y"], "n": [300, 310]}),
                              view="cml_cohort")})
    queue = f"{hub.url}{QUEUE}?study=cml-tki"
    _wait_service(hub, "review")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(120_000)

        page.goto(queue)  # anonymous: sent to log in
        assert "/hub/login" in page.url
        page.screenshot(path=str(ARTIFACTS / "anonymous-login.png"))

        for step, reviewer in enumerate(("rita", "remy"), start=1):
            _browser_login(page, hub, reviewer)
            page.goto(queue)
            page.wait_for_selector("button.wb-approve")
            page.screenshot(path=str(ARTIFACTS / f"queue-{reviewer}.png"), full_page=True)
            page.locator("button.wb-approve").first.click()
            expected = "reviewed" if step == 1 else "released"
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / f"queue-{reviewer}-clicked.png"))
            # the queue is drawn again from the airlock's state after the decision
            page.wait_for_selector("text=queue refreshed", timeout=90_000)
            page.screenshot(path=str(ARTIFACTS / f"queue-{reviewer}-approved.png"),
                            full_page=True)
            assert page.get_by_text(f"browser_table [{expected}]").count() == 1, hub.output()
        detail = UnixHTTP(airlock_socket(hub.space), headers={"X-Workbench-Actor": "rita"}).json(
            "GET", f"/requests/{created['id']}")
        assert detail["state"] == "released" and detail["approvals"] == ["rita", "remy"]

        _browser_login(page, hub, "alice")  # the author's side: no dashboard, only downloads
        reply = page.goto(queue)
        assert reply.status == 403
        page.screenshot(path=str(ARTIFACTS / "author-403.png"))
        page.goto(f"{hub.url}/services/review-files/")
        page.screenshot(path=str(ARTIFACTS / "files-alice.png"), full_page=True)
        with page.expect_download() as download:
            page.click(f"a[href$='{created['id']}/browser_table.csv']")
        assert Path(download.value.path()).read_text().startswith("arm,n")

        _browser_login(page, hub, "olga")
        assert page.goto(queue).status == 403
        page.screenshot(path=str(ARTIFACTS / "non-reviewer-403.png"))

        _browser_login(page, hub, "rita")
        for name in ("provenance", "results"):
            page.goto(f"{hub.url}/services/review/voila/render/{name}.ipynb?study=cml-tki")
            page.wait_for_selector("text=signed in as")
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        _browser_login(page, hub, "ada")
        _wait_service(hub, "review-admin")
        page.goto(f"{hub.url}/services/review-admin/voila/render/admin_overview.ipynb")
        page.wait_for_selector("td:text-is('other')")  # rendered by the widget, not markdown
        assert page.locator("text=policy valid").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "admin-overview.png"), full_page=True)
        browser.close()


def _pending(page, study: str) -> int:
    return int(page.locator(f"tr[data-study='{study}'] td.pending").inner_text().strip())


def _producing_cell(hub, code: str):
    """A study kernel's start, one running cell and a view read, as the provisioner, the audit
    proxy and the gateway record them; returns the cell's completion, to record afterwards."""
    import hashlib
    from datetime import UTC, datetime

    from workbench.provenance.client import ProvenanceClient

    provenance = ProvenanceClient(hub.space.collector_socket)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    kernel_uid = accounts.ensure_user(accounts.study_kernel_user("cml-tki"))[0]
    provenance.append("kernel-lifecycle", {"study": "cml-tki", "kernel_id": "k-live",
                                           "user": "alice", "event": "start", "status": "ok",
                                           "uid": kernel_uid})
    cell = {"study": "cml-tki", "user": "alice", "kernel_id": "k-live", "msg_id": "m-live",
            "code_sha256": hashlib.sha256(code.encode()).hexdigest(), "started": now}
    provenance.append("cell-execution", {**cell, "code": code, "status": "submitted"})
    provenance.append("view-read", {"study": "cml-tki", "view": "cml_cohort", "rows": 480,
                                    "user": "alice"})
    return lambda: provenance.append("cell-execution", {**cell, "status": "ok", "ended": now})


@pytest.mark.browser
def test_a_reviewer_sees_code_reads_justification_comments_and_the_queue_refreshes(hub):
    """From the hub's home page to a decision: the reviewer's queues with pending counts, the
    queue itself (not a file list), the producing code and view reads from provenance, the
    person, justification and controls, the comment thread; the queue and the home page's
    count refresh after the decision. Every reviewer page refuses to be framed."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    code = "arms = cohort.groupby('arm').size().rename('n').reset_index()\nwb.release.request(arms)"
    done = _producing_cell(hub, code)
    kernel = UnixHTTP(airlock_socket(hub.space), headers={
        "X-Workbench-Actor": "wbk-cml-tki", "X-Workbench-Study": "cml-tki",
        "X-Workbench-User": "alice", "X-Workbench-Msg-Id": "m-live"})
    created = kernel.json("POST", "/requests", {
        "name": "arms_live", "description": "patients per arm",
        "justification": "table 1 of the CML TKI manuscript",
        "controls": ["arms under 10 merged", "no dates"],
        "payload": to_payload(pd.DataFrame({"arm": ["p", "q"], "n": [240, 240]}),
                              view="cml_cohort")})
    done()
    kernel.json("POST", f"/requests/{created['id']}/comments",
                {"comment": "the two arms are balanced by design"})
    _wait_service(hub, "review")
    _wait_service(hub, "review-files")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(120_000)
        _browser_login(page, hub, "rita")
        page.goto(f"{hub.url}/hub/home")
        page.wait_for_selector("#workbench-review-queues")
        page.screenshot(path=str(ARTIFACTS / "home-reviewer.png"), full_page=True)
        assert "not a member of any study" not in page.content()
        before = _pending(page, "cml-tki")
        assert before >= 1
        page.click("#review-cml-tki")
        page.wait_for_selector(".wb-request-head")
        assert "release_queue.ipynb" in page.url
        panel = page.locator(".wb-request-head", has_text="arms_live")
        assert "table 1 of the CML TKI manuscript" in panel.inner_text()
        assert "arms under 10 merged" in panel.inner_text()
        assert "alice" in panel.inner_text() and "audit proxy" in panel.inner_text()
        page.locator(".lm-TabBar-tab", has_text="Code and reads").first.click()
        page.wait_for_selector("text=cohort.groupby")
        assert page.locator("text=cml_cohort (480 rows)").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "queue-code-and-reads.png"), full_page=True)
        page.locator(".lm-TabBar-tab", has_text="Comments").first.click()
        page.wait_for_selector("text=the two arms are balanced by design")
        page.locator("textarea[placeholder^='a comment for the requester']").first.fill(
            "fine: 240 each is expected")
        page.locator("button.wb-comment-send").first.click()
        page.wait_for_selector(".wb-thread >> text=fine: 240 each is expected")
        page.screenshot(path=str(ARTIFACTS / "queue-comments.png"), full_page=True)
        summary = page.locator(".wb-queue-summary")
        pending_before = summary.inner_text()
        page.locator("textarea[placeholder^='comment (needed']").first.fill(
            "merge the arms: the design is not released yet")
        page.locator("button.wb-return").first.click()
        page.wait_for_selector("text=queue refreshed")
        assert summary.inner_text() != pending_before
        page.screenshot(path=str(ARTIFACTS / "queue-refreshed.png"), full_page=True)
        page.goto(f"{hub.url}/hub/home")
        page.wait_for_selector("#workbench-review-queues")
        assert _pending(page, "cml-tki") == before - 1
        page.screenshot(path=str(ARTIFACTS / "home-reviewer-after.png"), full_page=True)

        # every reviewer page refuses to be framed; the service's root is the queue
        for path in ("/services/review/", "/services/review/voila/tree",
                     f"{QUEUE}?study=cml-tki", "/services/review-files/"):
            reply = page.request.get(f"{hub.url}{path}", max_redirects=0)
            assert reply.headers.get("x-frame-options") == "DENY", path
            assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], path
        root = page.request.get(f"{hub.url}/services/review/", max_redirects=0)
        assert root.status == 302  # to the home page, which lists the reviewer's queues
        assert root.headers["location"] == "/hub/home"
        page.set_content(f"<iframe id=f src='{hub.url}{QUEUE}?study=cml-tki' width=800 "
                         "height=400></iframe>")
        page.wait_for_timeout(2000)
        framed = next(f for f in page.frames if f != page.main_frame)
        assert framed.url.startswith("chrome-error://")  # the browser refused to frame it
        assert page.frame_locator("#f").locator(".wb-request-head").count() == 0
        page.screenshot(path=str(ARTIFACTS / "framed-refused.png"))
        browser.close()
    thread = UnixHTTP(airlock_socket(hub.space), headers={"X-Workbench-Actor": "rita"}).json(
        "GET", f"/requests/{created['id']}")["comments"]
    assert [(c["role"], c["body"]) for c in thread] == [
        ("requester", "the two arms are balanced by design"),
        ("reviewer", "fine: 240 each is expected")]
