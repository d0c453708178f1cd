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


def _stored_requests(space) -> list[dict]:
    from workbench.release.store import AirlockStore

    store = AirlockStore(space.airlock / "airlock.sqlite")
    try:
        return store.list()
    finally:
        store.close()


RERUN_REQUEST = """
import pandas as pd
from workbench.client import _request
from workbench.release.serialize import to_payload
table = pd.DataFrame({"diagnosis": ["a", "b"], "n": [40, 55]})
made = wb.release.request(table, "diagnosis_counts", "visits by diagnosis", view="visits")
# the kernel tries to switch the dry run off, and to decide a request
payload = {"name": "diagnosis_counts", "description": "again",
           "payload": to_payload(table, view="visits")}
forced = _request("POST", "/release/requests", body=json.dumps(payload).encode(),
                  headers={"Content-Type": "application/json", "X-Workbench-Dry-Run": "0"}).json()
try:  # with a valid reviewer token, as a dashboard kernel sends it
    _request("POST", "/release/requests/REQUEST_ID/decision",
             body=json.dumps({"decision": "approve"}).encode(),
             headers={"Content-Type": "application/json", "X-Workbench-Reviewer-Token": "TOKEN"})
    decided = None
except WorkbenchUserError as exc:
    decided = exc.reason
try:
    wb.release.status(made.id)
    status = None
except WorkbenchUserError as exc:
    status = str(exc)
print(json.dumps({"made": dict(made), "repr": repr(made), "forced": forced, "decided": decided,
                  "status": status}))
"""


def test_the_rerun_socket_only_checks_release_requests(gateway):
    """A re-run kernel's socket: the airlock runs the rules and records the check, but stores no
    request; the kernel can neither switch that off nor decide anything."""
    from workbench.gateway import rerun_socket
    from workbench.release.service import token_key_path
    from workbench.release.tokens import mint_token

    airlock = start_airlock(gateway.space, gateway.policy_path)
    try:
        real = gateway.run_as(gateway.study, REQUEST, env={"WORKBENCH_MSG_ID": "msg-real"})
        token = mint_token(token_key_path(gateway.space).read_bytes(), "rita", gateway.study)
        code = RERUN_REQUEST.replace("REQUEST_ID", real["id"]).replace("TOKEN", token)
        before = _stored_requests(gateway.space)
        out = gateway.run_as(gateway.study, code, env={
            "WORKBENCH_GATEWAY_SOCKET": str(rerun_socket(gateway.space, gateway.study)),
            "WORKBENCH_MSG_ID": "msg-rerun"})
        after = _stored_requests(gateway.space)
        # the same token through the study's own socket does decide: the refusal was the re-run's
        control = gateway.run_as(gateway.study, code)
        decided_after = {r["id"]: r["state"] for r in _stored_requests(gateway.space)}
    finally:
        airlock.stop()
    assert real["state"] == "submitted"
    assert [r["id"] for r in after] == [r["id"] for r in before]  # nothing new in the queue
    assert [r["state"] for r in after] == [r["state"] for r in before]  # nothing decided
    made, forced = out["made"], out["forced"]
    assert made["dry_run"] and made["id"] is None and made["state"] == "not-submitted"
    # a table typed in the kernel is unverified: never an automatic pass (two reviewers)
    assert made["verdict"] == "review" and "not submitted" in out["repr"]
    assert forced["dry_run"] and forced["id"] is None
    assert "no request was made" in out["status"]
    assert out["decided"] == "access-denied"
    assert control["decided"] is None and decided_after[real["id"]] == "reviewed"
    assert control["made"]["state"] == "submitted" and not control["made"].get("dry_run")
    records = [r["fields"] for r in gateway.records() if r.get("kind") == "release-request"]
    original = next(f for f in records if f.get("msg_id") == "msg-real")
    checks = [f for f in records if f.get("msg_id") == "msg-rerun"]
    assert len(checks) == 2 and all(f["reason"] == "rerun-not-submitted"
                                    and f["status"] == "denied"
                                    and f["request_id"].startswith("rerun-") for f in checks)
    # the same output gives the same digest and the same verdicts as the real request
    assert checks[0]["files"][0]["sha256"] == original["files"][0]["sha256"]
    assert checks[0]["checks"] == original["checks"]
