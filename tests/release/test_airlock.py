"""The two-person airlock's state machine, with a real provenance collector (security boundary:
workbench/release/airlock.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.policy.model import Policy
from workbench.provenance.client import ProvenanceClient
from workbench.release.airlock import Airlock, Context
from workbench.release.serialize import to_payload

ALICE = Context("alice", "cml-tki", kernel_id="k-1", msg_id="m-1")
RITA = Context("rita")
REMY = Context("remy")


def _table(n=(40, 35), view="cml_cohort"):
    df = pd.DataFrame({"tki": ["imatinib", "nilotinib"], "n": list(n)})
    return to_payload(df, view=view)


def test_two_distinct_reviewers_release_and_every_transition_is_recorded(airlock, space,
                                                                         read_records):
    req = airlock.create(ALICE, _table(), "by_tki", "patients per TKI")
    # a table typed in the kernel is unverified: submitted, for the reviewers to judge
    assert req["state"] == "submitted" and req["verdict"] == "review"
    assert req["review_rules"] == ["unverified-output"]
    assert airlock.decide(RITA, req["id"], "approve")["state"] == "reviewed"
    with pytest.raises(WorkbenchUserError) as again:
        airlock.decide(RITA, req["id"], "approve")
    assert again.value.reason == "same-reviewer"
    done = airlock.decide(REMY, req["id"], "approve")
    assert done["state"] == "released" and done["approvals"] == ["rita", "remy"]

    history = airlock.detail(RITA, req["id"])["transitions"]
    assert [t["to_state"] for t in history] == ["draft", "submitted", "reviewed", "approved",
                                                 "released"]
    stored = {r["id"]: r for r in read_records()}
    for transition in history:  # each transition points at a durable provenance record
        rec = stored[transition["provenance_id"]]
        assert rec["fields"]["request_id"] == req["id"]
    decisions = [r["fields"] for r in read_records("release-decision")]
    assert [(d["reviewer"], d["decision"]) for d in decisions] == [
        ("rita", "approved"), ("remy", "approved"), ("airlock", "released")]
    outbox = space.outbox("cml-tki") / req["id"]
    assert (outbox / "by_tki.csv").read_text().splitlines() == ["tki,n", "imatinib,40",
                                                                "nilotinib,35"]
    assert airlock.download(ALICE, req["id"], "by_tki.csv") == (outbox / "by_tki.csv").read_bytes()
    assert airlock.download(RITA, req["id"], "by_tki.evidence.json")


def test_author_can_never_review_own_request(space, collector):
    # The policy loader forbids member+reviewer; build such a policy directly to test the
    # airlock's own check, which must hold even if the policy were wrong.
    policy = Policy.model_validate({
        "users": {"alice": {"roles": ["researcher", "reviewer"]}, "rita": {"roles": ["reviewer"]}},
        "studies": {"s1": {"title": "t", "purpose": "p", "sponsor": "s", "members": ["alice"],
                           "reviewers": ["alice", "rita"], "views": ["v"],
                           "expires": "2099-01-01"}}})
    lock = Airlock(space, policy, ProvenanceClient(space.collector_socket))
    req = lock.create(Context("alice", "s1"), _table(view="v"), "t1", "d")
    with pytest.raises(WorkbenchUserError) as own:
        lock.decide(Context("alice"), req["id"], "approve")
    assert own.value.reason == "own-request"
    assert lock.summary(req["id"])["state"] == "submitted"


def test_member_and_non_reviewers_cannot_decide(airlock):
    req = airlock.create(ALICE, _table(), "t", "d")
    for actor in ("alice", "olga", "ada", "mallory", "wbk-cml-tki"):
        with pytest.raises(WorkbenchUserError) as denied:
            airlock.decide(Context(actor), req["id"], "approve")
        assert denied.value.reason == "access-denied"
    assert airlock.summary(req["id"])["approvals"] == []


def test_failing_checks_keep_a_draft_that_cannot_be_approved(airlock, read_records):
    req = airlock.create(ALICE, _table(n=(40, 3)), "small", "has a small cell")
    assert req["state"] == "draft" and "minimum-threshold" in req["failed_rules"]
    with pytest.raises(WorkbenchUserError) as state:
        airlock.decide(RITA, req["id"], "approve")
    assert state.value.reason == "bad-state"
    rec = read_records("release-request")[-1]["fields"]
    assert rec["status"] == "denied" and rec["reason"] == "disclosure-check-failed"
    assert "3" not in json.dumps(rec["checks"])  # no counts in provenance


def test_reject_and_return_need_a_comment_and_end_the_request(airlock):
    a = airlock.create(ALICE, _table(), "a", "d")
    with pytest.raises(WorkbenchUserError):
        airlock.decide(RITA, a["id"], "reject", "")
    assert airlock.decide(RITA, a["id"], "reject", "not needed")["state"] == "rejected"
    b = airlock.create(ALICE, _table(), "b", "d")
    airlock.decide(RITA, b["id"], "approve")
    assert airlock.decide(REMY, b["id"], "return", "round to 5")["state"] == "returned"
    with pytest.raises(WorkbenchUserError):
        airlock.decide(RITA, b["id"], "approve")


def test_study_members_and_reviewers_only_download(airlock):
    req = airlock.create(ALICE, _table(), "dl", "d")
    airlock.decide(RITA, req["id"], "approve")
    airlock.decide(REMY, req["id"], "approve")
    for actor in ("bob", "olga", "ada", "mallory"):
        with pytest.raises(WorkbenchUserError) as denied:
            airlock.download(Context(actor), req["id"], "dl.csv")
        assert denied.value.reason == "access-denied"
    with pytest.raises(WorkbenchUserError):  # a study's kernel cannot fetch another's files
        airlock.download(Context("alice", "other"), req["id"], "dl.csv")
    with pytest.raises(WorkbenchUserError):  # not a released file name
        airlock.download(ALICE, req["id"], "../../../etc/passwd")


def test_unreleased_files_cannot_be_downloaded(airlock):
    req = airlock.create(ALICE, _table(), "pending", "d")
    with pytest.raises(WorkbenchUserError) as missing:
        airlock.download(ALICE, req["id"], "pending.csv")
    assert missing.value.reason == "not-found"


def test_differencing_against_released_outputs_is_caught(airlock):
    first = airlock.create(ALICE, _table(n=(40, 35)), "all", "all patients")
    airlock.decide(RITA, first["id"], "approve")
    airlock.decide(REMY, first["id"], "approve")
    # same groups after excluding 3 people: the difference describes 3 patients
    second = airlock.create(ALICE, _table(n=(40, 32)), "excl", "after exclusion")
    assert second["state"] == "draft" and "differencing" in second["failed_rules"]
    cells = next(r for r in airlock.detail(RITA, second["id"])["evidence"]["rules"]
                 if r["rule"] == "differencing")["cells"]
    assert {c["label"] for c in cells} == {"tki=nilotinib::n", "TOTAL::n"}
    assert all(c["released_request"] == first["id"] for c in cells)


def test_differencing_is_rechecked_at_release(airlock):
    # Both pass when checked (nothing released yet); releasing one makes the other disclosive.
    a = airlock.create(ALICE, _table(n=(40, 35)), "a", "d")
    b = airlock.create(ALICE, _table(n=(40, 30)), "b", "d")
    assert a["state"] == b["state"] == "submitted"
    for r in (a, b):
        airlock.decide(RITA, r["id"], "approve")
    assert airlock.decide(REMY, a["id"], "approve")["state"] == "released"
    assert airlock.decide(REMY, b["id"], "approve")["state"] == "rejected"
    last = airlock.detail(RITA, b["id"])["transitions"][-1]
    assert last["actor"] == "airlock" and last["action"] == "recheck"


def test_other_views_are_not_differenced_but_unknown_views_are(airlock):
    first = airlock.create(ALICE, _table(n=(40, 35), view="cml_cohort"), "x", "d")
    airlock.decide(RITA, first["id"], "approve")
    airlock.decide(REMY, first["id"], "approve")
    other_view = airlock.create(ALICE, _table(n=(40, 32), view="cml_costs"), "y", "d")
    assert other_view["state"] == "submitted"
    unknown = airlock.create(ALICE, _table(n=(40, 32), view=None), "z", "d")
    assert "differencing" in unknown["failed_rules"]


def test_requests_only_for_granted_views_and_studies(airlock):
    with pytest.raises(WorkbenchUserError):
        airlock.create(ALICE, _table(view="not_granted"), "t", "d")
    with pytest.raises(WorkbenchUserError) as denied:
        airlock.create(Context("bob", "cml-tki"), _table(), "t", "d")
    assert denied.value.reason == "access-denied"
    with pytest.raises(WorkbenchUserError):
        airlock.create(ALICE, _table(), "../evil", "d")


def test_reviewers_see_only_their_studies(airlock):
    airlock.create(ALICE, _table(), "t", "d")
    assert len(airlock.list(RITA)) == 1
    assert airlock.list(Context("olga")) == []
    with pytest.raises(WorkbenchUserError):
        airlock.list(Context("olga"), "cml-tki")
    assert len(airlock.list(Context("ada"))) == 1  # admins see every study's queue


def test_no_transition_without_the_collector(airlock, collector):
    req = airlock.create(ALICE, _table(), "t", "d")
    collector.stop()
    with pytest.raises(WorkbenchError):
        airlock.decide(RITA, req["id"], "approve")
    assert airlock.summary(req["id"])["state"] == "submitted"
    assert airlock.summary(req["id"])["approvals"] == []
    with pytest.raises(WorkbenchError):
        airlock.create(ALICE, _table(), "t2", "d")
    assert [r["name"] for r in airlock.list(RITA)] == ["t"]


RERUN = Context("alice", "cml-tki", kernel_id="k-2", msg_id="m-2", dry_run=True)


def test_a_dry_run_checks_like_a_request_but_stores_and_decides_nothing(airlock, read_records):
    first = airlock.create(ALICE, _table(n=(40, 35)), "all", "all patients")
    airlock.decide(RITA, first["id"], "approve")
    airlock.decide(REMY, first["id"], "approve")
    # the same output again, and one that differences the release by 3 people
    same = airlock.create(RERUN, _table(n=(40, 35)), "all", "all patients")
    small = airlock.create(RERUN, _table(n=(40, 32)), "excl", "after exclusion")
    assert same["dry_run"] and same["id"] is None and same["state"] == "not-submitted"
    assert same["verdict"] == "review" and small["failed_rules"] == ["differencing"]
    assert [r["id"] for r in airlock.list(RITA)] == [first["id"]]  # nothing new to review
    records = [r["fields"] for r in read_records("release-request")]
    original, checks = records[0], [f for f in records if f.get("msg_id") == "m-2"]
    assert [c["request_id"] for c in checks] == [same["check_id"], small["check_id"]]
    assert all(c["status"] == "denied" and c["reason"] == "rerun-not-submitted" for c in checks)
    assert checks[0]["files"][0]["sha256"] == original["files"][0]["sha256"] \
        == same["payload_sha256"]
    assert checks[0]["checks"] == original["checks"]
    assert original["files"][1]["output_type"] == "rounded-values"
    assert checks[0]["files"][1] == original["files"][1]  # the rounded fingerprint
    with pytest.raises(WorkbenchUserError) as refused:  # even a reviewer's dry-run context
        airlock.decide(Context("rita", dry_run=True), first["id"], "reject", "no")
    assert refused.value.reason == "access-denied"
    assert airlock.summary(first["id"])["state"] == "released"
    with pytest.raises(WorkbenchUserError) as bad:  # the same validation as a real request
        airlock.create(RERUN, _table(view="not_granted"), "t", "d")
    assert bad.value.reason == "access-denied"


def test_a_dry_run_is_refused_without_the_collector(airlock, collector):
    collector.stop()
    with pytest.raises(WorkbenchError):
        airlock.create(RERUN, _table(), "t", "d")
