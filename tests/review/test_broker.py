"""The review broker: what each dashboard server's account may ask, decided by its uid, and the
real socket asked by those accounts (workbench.review.broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.review.broker import FILES_ACCOUNT, Broker, start_review_broker
from workbench.sandbox.launcher import (
    dashboard_kernel_user,
    dashboard_server_user,
    shared_dashboard_server_user,
)


def _uid(name: str) -> int:
    return accounts.ensure_user(name)[0]


@pytest.fixture(scope="module")
def broker(review_env):
    if not accounts.is_root():
        pytest.fail("the broker tests run as root (per-account uids)")
    return Broker(review_env.space, str(review_env.policy_file))


def test_a_study_review_service_gets_its_own_study_only(broker):
    mine = _uid(dashboard_server_user("cml-tki"))
    snap = broker.handle(mine, {"op": "snapshot", "user": "rita", "study": "lonely"})["snapshot"]
    assert snap["study"] == "cml-tki" and snap["allowed"]  # the uid decides, not the request
    assert "by_tki" in json.dumps(snap)
    other = broker.handle(_uid(dashboard_server_user("lonely")),
                          {"op": "snapshot", "user": "rita"})["snapshot"]
    assert other["study"] == "lonely" and not other["allowed"]  # rita reviews cml-tki only
    with pytest.raises(WorkbenchUserError, match="may ask"):
        broker.handle(mine, {"op": "airlock-get", "user": "rita", "path": "/requests"})


def test_decisions_stay_in_the_services_study_and_the_airlock_decides(broker, review_env):
    lonely = _uid(dashboard_server_user("lonely"))
    # rita reviews cml-tki: through lonely's service she still cannot decide a cml-tki request
    reply = broker.handle(lonely, {"op": "decide", "user": "rita", "decision": "approve",
                                   "request_id": review_env.failed["id"]})
    assert reply["status"] == 403 and "another study" in reply["body"]
    with pytest.raises(WorkbenchUserError):
        broker.handle(_uid(dashboard_server_user("review-admin")),
                      {"op": "decide", "user": "ada", "decision": "approve",
                       "request_id": review_env.failed["id"]})


def test_comments_stay_in_the_services_study_for_its_reviewers(broker, review_env):
    mine, lonely = _uid(dashboard_server_user("cml-tki")), _uid(dashboard_server_user("lonely"))
    rid = review_env.failed["id"]
    reply = broker.handle(lonely, {"op": "comment", "user": "rita", "request_id": rid,
                                   "comment": "through the wrong study"})
    assert reply["status"] == 403 and "another study" in reply["body"]
    reply = broker.handle(mine, {"op": "comment", "user": "olga", "request_id": rid,
                                 "comment": "not my study"})  # olga reviews lonely only
    assert reply["status"] == 403
    reply = broker.handle(mine, {"op": "comment", "user": "rita", "request_id": rid,
                                 "comment": "merge the small arm"})
    assert reply["status"] == 201 and "merge the small arm" in reply["body"]
    for account in (FILES_ACCOUNT, dashboard_server_user("review-admin")):
        with pytest.raises(WorkbenchUserError, match="may ask"):
            broker.handle(_uid(account), {"op": "comment", "user": "rita", "request_id": rid,
                                          "comment": "x"})


SHARED = shared_dashboard_server_user()


def test_the_shared_service_gets_a_study_only_for_that_studys_reviewers(broker):
    """The shared review service names the study: the broker re-checks the pair against the
    policy, so a fault in the service's own per-page check still shows no one another study."""
    shared = _uid(SHARED)
    snap = broker.handle(shared, {"op": "snapshot", "user": "rita", "study": "cml-tki"})
    assert snap["snapshot"]["study"] == "cml-tki" and "by_tki" in json.dumps(snap)
    lonely = broker.handle(shared, {"op": "snapshot", "user": "olga", "study": "lonely"})
    assert lonely["snapshot"]["study"] == "lonely" and lonely["snapshot"]["allowed"]
    assert broker.handle(shared, {"op": "snapshot", "user": "ada", "study": "lonely"})  # admin
    for user, study, reason in (("rita", "lonely", "does not review"),
                                ("olga", "cml-tki", "does not review"),
                                ("alice", "cml-tki", "does not review"),  # a member
                                ("rita", None, "no study"), ("rita", "nope", "no study"),
                                ("rita", ["cml-tki"], "no study")):
        with pytest.raises(WorkbenchUserError, match=reason):
            broker.handle(shared, {"op": "snapshot", "user": user, "study": study})


def test_the_shared_service_cannot_decide_or_comment_across_studies(broker, review_env):
    shared, rid = _uid(SHARED), review_env.failed["id"]  # a request of cml-tki
    for op in ("decide", "comment"):
        with pytest.raises(WorkbenchUserError, match="does not review"):  # olga: lonely only
            broker.handle(shared, {"op": op, "user": "olga", "study": "cml-tki",
                                   "request_id": rid, "decision": "approve", "comment": "x"})
        # olga in her own study, naming cml-tki's request: the airlock refuses it
        reply = broker.handle(shared, {"op": op, "user": "olga", "study": "lonely",
                                       "request_id": rid, "decision": "approve", "comment": "x"})
        assert reply["status"] == 403 and "access-denied" in reply["body"], reply
    with pytest.raises(WorkbenchUserError, match="may ask"):
        broker.handle(shared, {"op": "airlock-get", "user": "rita", "study": "cml-tki",
                               "path": "/requests?state=released"})
    reply = broker.handle(shared, {"op": "comment", "user": "rita", "study": "cml-tki",
                                   "request_id": rid, "comment": "through the shared service"})
    assert reply["status"] == 201 and "through the shared service" in reply["body"]


def test_review_files_reads_released_things_only(broker, review_env):
    files = _uid(FILES_ACCOUNT)
    reply = broker.handle(files, {"op": "airlock-get", "user": "alice",
                                  "path": "/requests?state=released"})
    assert reply["status"] == 200
    for path in ("/requests", f"/requests/{review_env.pending['id']}/decision",
                 "/requests?study=cml-tki"):
        with pytest.raises(WorkbenchUserError, match="released-files"):
            broker.handle(files, {"op": "airlock-get", "user": "alice", "path": path})
    with pytest.raises(WorkbenchUserError, match="may ask"):
        broker.handle(files, {"op": "snapshot", "user": "alice"})


@pytest.mark.parametrize("account", [accounts.study_kernel_user("cml-tki"),
                                     dashboard_kernel_user("cml-tki"),
                                     accounts.study_server_user("cml-tki"), accounts.AIRLOCK])
def test_kernels_and_other_accounts_are_refused(broker, account):
    with pytest.raises(WorkbenchUserError, match="not a dashboard server"):
        broker.handle(_uid(account), {"op": "snapshot", "user": "rita"})


ASK = """
import json, sys
from workbench.paths import Space
from workbench.review.broker import ask
try:
    reply = ask(Space.at(sys.argv[1]), json.loads(sys.argv[2]))
    print("OK", json.dumps(reply)[:2000])
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
"""


def _ask_as(account: str, space, request: dict) -> str:
    uid, gid = accounts.ensure_user(account)
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
         sys.executable, "-c", ASK, str(space.root), json.dumps(request)],
        capture_output=True, text=True, timeout=120, check=False, cwd="/",
        env={"PATH": os.environ["PATH"]}).stdout


def test_the_socket_answers_by_peer_uid(review_env):
    handle = start_review_broker(review_env.space, review_env.policy_file)
    try:
        out = _ask_as(dashboard_server_user("cml-tki"), review_env.space,
                      {"op": "snapshot", "user": "remy"})
        assert out.startswith("OK") and '"study": "cml-tki"' in out, out + handle.output()
        out = _ask_as(SHARED, review_env.space, {"op": "snapshot", "user": "remy",
                                                 "study": "cml-tki"})
        assert out.startswith("OK") and '"study": "cml-tki"' in out, out + handle.output()
        out = _ask_as(SHARED, review_env.space, {"op": "snapshot", "user": "olga",
                                                 "study": "cml-tki"})
        assert out.startswith("REFUSED WorkbenchUserError") and "does not review" in out, out
        out = _ask_as(accounts.study_kernel_user("cml-tki"), review_env.space,
                      {"op": "snapshot", "user": "remy"})
        assert out.startswith("REFUSED WorkbenchUserError") and "not a dashboard server" in out
    finally:
        handle.stop()
