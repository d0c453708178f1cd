"""The real gateway forwards a kernel's release requests to the real airlock: the study is the
socket's, never the kernel's claim; with the airlock down the kernel gets a clear refusal."""

from __future__ import annotations

from workbench.release.service import start_airlock

REQUEST = """
import pandas as pd
table = pd.DataFrame({"diagnosis": ["a", "b"], "n": [40, 55]})
try:
    made = wb.release.request(table, "diagnosis_counts", "visits by diagnosis", view="visits")
    print(json.dumps({"state": made.state, "id": made.id}))
except WorkbenchUserError as exc:
    print(json.dumps({"error": str(exc), "reason": exc.reason}))
"""


def test_release_request_reaches_the_airlock_through_the_gateway(gateway):
    airlock = start_airlock(gateway.space, gateway.policy_path)
    try:
        out = gateway.run_as(gateway.study, REQUEST,
                             env={"WORKBENCH_STUDY": gateway.other})  # a false claim, ignored
    finally:
        airlock.stop()
    assert "error" not in out, out
    assert out["state"] in ("draft", "submitted")
    requests = [r for r in gateway.records() if r.get("kind") == "release-request"]
    assert requests and requests[-1]["fields"]["study"] == gateway.study


def test_release_request_without_airlock_is_refused_clearly(gateway):
    out = gateway.run_as(gateway.study, REQUEST)
    assert "error" in out
    assert "airlock" in out["error"].lower()
