"""The release queue as a reviewer sees it, drawn in-process from a real airlock's snapshot: each
request on its own (a malformed one falls back to escaped text, the rest still draw), a label
that is broken matplotlib mathtext drawn as written, the requester's context, the person and
the producing code, the comment thread, and the queue drawn again after a decision."""

from __future__ import annotations

import copy

import ipywidgets as widgets
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_rossi

from workbench.release.airlock import airlock_socket
from workbench.release.helpers import coarsen_survival
from workbench.release.http import UnixHTTP
from workbench.release.serialize import to_payload
from workbench.review import dashboards
from workbench.review.context import DirectActions, ReviewContext
from workbench.review.snapshot import study_snapshot

pytestmark = pytest.mark.slow
BROKEN_LABEL = "$x^{$"  # matplotlib's mathtext cannot parse it


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def _html(widget) -> str:
    return "\n".join(str(w.value) for w in _walk(widget) if isinstance(w, widgets.HTML))


def _buttons(widget, name: str) -> list[widgets.Button]:
    return [b for b in _walk(widget)
            if isinstance(b, widgets.Button) and f"wb-{name}" in b._dom_classes]


@pytest.fixture(scope="module")
def requests(review_env):
    kernel = UnixHTTP(airlock_socket(review_env.space), headers={
        "X-Workbench-Actor": "wbk-cml-tki", "X-Workbench-Study": "cml-tki",
        "X-Workbench-User": "alice"})
    rossi = load_rossi()
    groups = ((BROKEN_LABEL, rossi[rossi.fin == 0]), ("paid", rossi[rossi.fin == 1]))
    fits = {label: KaplanMeierFitter().fit(part.week, part.arrest) for label, part in groups}
    km = kernel.json("POST", "/requests", {
        "name": "km_by_fin", "description": "re-arrest by financial aid",
        "justification": "figure 1 of the report", "controls": ["coarsened to k=10"],
        "payload": to_payload(coarsen_survival(fits, 10), view="cml_cohort")})
    table = kernel.json("POST", "/requests", {
        "name": "by_prio", "description": "people by prior convictions",
        "payload": to_payload(pd.DataFrame({"prio": ["none", "some"], "n": [200, 232]}),
                              view="cml_cohort")})
    return km, table


def _context(review_env, monkeypatch, viewer="rita") -> ReviewContext:
    monkeypatch.setenv("WORKBENCH_POLICY", str(review_env.policy_file))
    monkeypatch.setenv("WORKBENCH_STUDY", "cml-tki")
    snap = study_snapshot(review_env.space, review_env.policy, "cml-tki", viewer)
    return ReviewContext(snap, DirectActions(review_env.space, viewer))


def test_a_broken_mathtext_label_is_drawn_as_written(review_env, requests, monkeypatch):
    km, _ = requests
    queue = dashboards.release_queue(_context(review_env, monkeypatch))
    text = _html(queue)
    panel = text.split("km_by_fin", 1)[1]
    assert "data:image/png;base64" in panel  # the curve drew, with its label as text
    assert BROKEN_LABEL in panel and "could not be drawn" not in panel


def test_one_malformed_request_falls_back_to_text_and_the_rest_still_draw(
        review_env, requests, monkeypatch):
    km, table = requests
    ctx = _context(review_env, monkeypatch)
    broken = next(r for r in ctx.snapshot["requests"] if r["id"] == km["id"])
    broken["verdict"] = "<script>alert(1)</script>"  # e.g. an airlock newer than this page
    broken["evidence"]["rules"] = None
    queue = dashboards.release_queue(ctx)
    text = _html(queue)
    assert "could not be drawn (KeyError)" in text
    assert "&lt;script&gt;" in text and "<script>" not in text
    assert "people by prior convictions" in text and "MinimumThresholdCheck" in text
    fallback = next(c for c in queue.children[2].children if "could not be drawn" in _html(c))
    assert _buttons(fallback, "approve") == []  # never approved unseen
    assert len(_buttons(fallback, "return")) == 1


def test_the_reviewer_sees_the_person_context_code_and_comments(review_env, requests,
                                                                monkeypatch):
    km, _ = requests
    ctx = _context(review_env, monkeypatch)
    queue = dashboards.release_queue(ctx)
    panel = next(c for c in queue.children[2].children if "km_by_fin" in _html(c))
    text = _html(panel)
    assert "figure 1 of the report" in text and "coarsened to k=10" in text
    # made while no audited cell ran (the fixture's cell ended): the kernel's claim, labelled
    assert "<b>alice</b>" in text and "claimed by the study kernel" in text
    send = _buttons(panel, "comment-send")[0]
    box = next(w for w in _walk(panel) if isinstance(w, widgets.Textarea)
               and "requester" in w.placeholder)
    box.value = "why 30-day bins?"
    send.click()
    assert "why 30-day bins?" in _html(panel) and "reviewer" in _html(panel)
    detail = UnixHTTP(airlock_socket(review_env.space), headers={
        "X-Workbench-Actor": "wbk-cml-tki", "X-Workbench-Study": "cml-tki"}).json(
        "GET", f"/requests/{km['id']}")
    assert [c["body"] for c in detail["comments"]] == ["why 30-day bins?"]


def test_the_queue_is_drawn_again_after_a_decision(review_env, requests, monkeypatch):
    _, table = requests
    ctx = _context(review_env, monkeypatch, "remy")
    queue = dashboards.release_queue(ctx)
    summary = queue.children[1]
    before = int(summary.value.split("<b class='wb-pending'>", 1)[1].split(" ", 1)[0])
    panel = next(c for c in queue.children[2].children if "by_prio" in _html(c))
    old = copy.deepcopy(ctx.snapshot)
    reason = next(w for w in _walk(panel) if isinstance(w, widgets.Textarea)
                  and "needed to reject" in w.placeholder)
    reason.value = "merge the two groups"
    _buttons(panel, "return")[0].click()
    assert "queue refreshed" in summary.value, summary.value
    assert ctx.snapshot["generated_at"] >= old["generated_at"]
    state = next(r["state"] for r in ctx.snapshot["requests"] if r["id"] == table["id"])
    assert state == "returned"
    after = int(summary.value.split("<b class='wb-pending'>", 1)[1].split(" ", 1)[0])
    assert after == before - 1
    redrawn = next(c for c in queue.children[2].children if "by_prio" in _html(c))
    assert redrawn is not panel and _buttons(redrawn, "approve") == []
    assert "merge the two groups" in _html(redrawn)  # in its history
