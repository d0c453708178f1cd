"""Each dashboard notebook executed headless (nbclient) against a real space, collector and
airlock, with the snapshot injected exactly as the review service's Voila hook does."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from workbench.review.inject import inject
from workbench.review.relay import DecisionRelay
from workbench.review.snapshot import admin_snapshot, study_snapshot

DASHBOARDS = Path(__file__).parents[2] / "workbench" / "notebooks" / "dashboards"
pytestmark = pytest.mark.slow


def _run(env, name, snapshot, reviewer=None, extra_cells=()):
    """Run a dashboard with the snapshot injected; decisions go through a decision relay acting
    for ``reviewer`` (as the review service's provisioner starts one per visit)."""
    nb = nbformat.read(DASHBOARDS / f"{name}.ipynb", as_version=4)
    nb = inject(nb, snapshot)
    for source in extra_cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    folder = Path(tempfile.mkdtemp(prefix="wb-relay-", dir="/tmp"))
    relay = DecisionRelay(folder / "relay.sock", "cml-tki", reviewer or snapshot["viewer"], None,
                          space=env.space)
    environ = {**os.environ, "WORKBENCH_GATEWAY_SOCKET": str(folder / "relay.sock"),
               "MPLBACKEND": "Agg"}
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True)
    old = dict(os.environ)
    os.environ.update(environ)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
        relay.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return nb


def _widget_text(nb) -> str:
    state = nb.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return "\n".join(str(m.get("state", {}).get("value", "")) for m in state.values())


def _outputs(nb) -> str:
    return "\n".join(json.dumps(o) for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))


def test_release_queue_shows_evidence_code_and_takes_a_decision(review_env):
    env = review_env
    snap = study_snapshot(env.space, env.policy, "cml-tki", "rita")
    click = """
import ipywidgets as widgets
def walk(x):
    yield x
    for child in getattr(x, "children", ()):
        yield from walk(child)
queue = dashboards.release_queue(ctx)
approve = [b for b in walk(queue)
           if isinstance(b, widgets.Button) and "wb-approve" in b._dom_classes]
approve[0].click()
approve[0].click()
print("STATES", [r["state"] for r in ctx.snapshot["requests"]])
print("LOG", ctx.log)
"""
    nb = _run(env, "release_queue", snap, extra_cells=[click])
    text = _widget_text(nb)
    assert "by_tki" in text and "minimum-threshold" in text and "MinimumThresholdCheck" in text
    assert "wb.secure.kaplan_meier" in text  # the producing cell's code from provenance
    assert "&lt;b&gt;nilotinib&lt;/b&gt;" in text and "<b>nilotinib</b>" not in text
    assert "refused:" in text and "already approved" in text  # the second click, same reviewer
    out = _outputs(nb)
    assert f"approve {env.pending['id']}: now reviewed" in out
    assert "Traceback" not in out


def test_reviewer_of_another_study_sees_nothing(review_env):
    env = review_env
    snap = study_snapshot(env.space, env.policy, "cml-tki", "olga")
    nb = _run(env, "release_queue", snap)
    text = _widget_text(nb)
    assert "Access denied" in text and "by_tki" not in text


def test_a_relay_for_another_reviewer_cannot_decide(review_env):
    """The relay acts for the visit's reviewer, whatever snapshot the kernel shows."""
    env = review_env
    snap = study_snapshot(env.space, env.policy, "cml-tki", "remy")
    cell = (f"try:\n    ctx.decide({env.model['id']!r}, 'approve')\n"
            "except Exception as exc:\n    print('REFUSED', type(exc).__name__, exc)\n")
    out = _outputs(_run(env, "release_queue", snap, "olga", [cell]))
    assert "REFUSED WorkbenchUserError" in out and "may not review-release" in out


def test_provenance_dashboard_verifies_the_log(review_env):
    env = review_env
    nb = _run(env, "provenance", study_snapshot(env.space, env.policy, "cml-tki", "rita"))
    text = _widget_text(nb)
    assert "verified" in text and "release-decision" in text and "VERIFICATION FAILED" not in text


def test_results_dashboard_shows_released_outputs_only(review_env):
    env = review_env
    nb = _run(env, "results", study_snapshot(env.space, env.policy, "cml-tki", "rita"))
    text = _widget_text(nb)
    assert "km_all" in text and "data:image/png;base64" in text
    assert "by_tki" not in text and "small" not in text


def test_admin_overview(review_env):
    env = review_env
    nb = _run(env, "admin_overview", admin_snapshot(env.space, env.policy_file, "ada"))
    text = _widget_text(nb)
    assert "policy valid" in text and "cml-tki" in text and "lonely" in text
    assert "released: 1" in text
    assert "<h3>HE key</h3><p>not readable: no readable key record" in text  # no key made here
    denied = _widget_text(_run(env, "admin_overview",
                               admin_snapshot(env.space, env.policy_file, "rita")))
    assert "Access denied" in denied and "lonely" not in denied
