"""The airlock service over its Unix socket, as root and dropping to its own uid (security
boundary: server.py peer-uid check, tokens.py)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from workbench.paths import Space
from workbench.provenance.service import start_collector
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP
from workbench.release.serialize import to_payload
from workbench.release.service import AIRLOCK_ACCOUNT, start_airlock, token_key_path
from workbench.release.tokens import mint_token

from .conftest import POLICY


@pytest.fixture(scope="module")
def started():
    """One space, collector and airlock for the module: the service takes seconds to start."""
    root = Path(tempfile.mkdtemp(prefix="wb-test-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = Space(root / "space")
    space.root.mkdir(mode=0o755)
    policy_file = root / "policy.yaml"
    policy_file.write_text(POLICY)
    policy_file.chmod(0o644)
    try:
        with start_collector(space), start_airlock(space, policy_file) as handle:
            yield space, handle, policy_file
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def space(started):
    return started[0]


@pytest.fixture
def service(started):
    return started[1]


def _as(actor, study=None, **extra):
    headers = {"X-Workbench-Actor": actor, **extra}
    if study:
        headers["X-Workbench-Study"] = study
    return headers


def _payload(n=(40, 35)):
    return to_payload(pd.DataFrame({"tki": ["a", "b"], "n": list(n)}), view="cml_cohort")


def test_request_review_release_download_over_the_socket(space, service):
    http = UnixHTTP(airlock_socket(space))
    status, body, _ = http.request("POST", "/requests", {
        "name": "by_tki", "description": "d", "payload": _payload()},
        _as("wbk-cml-tki", "cml-tki", **{"X-Workbench-Kernel": "k1", "X-Workbench-Msg-Id": "m1"}))
    assert status == 201, body
    rid = json.loads(body)["id"]
    assert http.json("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                     _as("rita"))["state"] == "reviewed"
    status, body, _ = http.request("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                                   _as("rita"))
    assert status == 409 and json.loads(body)["error"]["reason"] == "same-reviewer"
    assert http.json("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                     _as("remy"))["state"] == "released"
    status, data, _ = http.request("GET", f"/requests/{rid}/files/by_tki.csv", None,
                                   _as("alice", "cml-tki"))
    assert status == 200 and data.startswith(b"tki,n")
    status, body, _ = http.request("GET", f"/requests/{rid}/files/by_tki.csv", None, _as("olga"))
    assert status == 403 and json.loads(body)["error"]["reason"] == "access-denied"


def test_the_service_runs_as_its_own_uid_and_owns_the_outbox(space, service):
    uid = pwd.getpwnam(AIRLOCK_ACCOUNT).pw_uid
    status = open(f"/proc/{service.process.pid}/status").read()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(map(int, uids)) == {uid}
    for study in ("cml-tki", "other"):
        st = os.stat(space.outbox(study))
        assert st.st_uid == uid and st.st_mode & 0o777 == 0o700
    key = os.stat(token_key_path(space))
    assert key.st_uid == uid and key.st_mode & 0o777 == 0o600


def _request_as_uid(path, uid, raw: bytes) -> bytes:
    """Fork, drop to ``uid`` and talk to the socket: what an untrusted local account gets."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(30)
            conn.connect(str(path))
            conn.sendall(raw)
            while data := conn.recv(65536):  # headers and body may come in separate writes
                os.write(write_fd, data)
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return b"".join(chunks)


def test_untrusted_accounts_are_refused_whatever_headers_they_send(space, service):
    raw = (b"GET /requests HTTP/1.1\r\nHost: x\r\nX-Workbench-Actor: ada\r\n"
           b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    reply = _request_as_uid(airlock_socket(space), 65534, raw)
    assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
    assert b"access-denied" in reply


def test_reviewer_tokens_are_verified(space, service):
    http = UnixHTTP(airlock_socket(space))
    rid = http.json("POST", "/requests", {"name": "t", "description": "d",
                                          "payload": _payload()}, _as("alice", "cml-tki"))["id"]
    key = token_key_path(space).read_bytes()
    good = mint_token(key, "rita", "cml-tki")
    assert http.json("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                     {"X-Workbench-Reviewer-Token": good})["approvals"] == ["rita"]
    forged = mint_token(b"x" * 32, "remy", "cml-tki")
    status, body, _ = http.request("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                                   {"X-Workbench-Reviewer-Token": forged})
    assert status == 401
    expired = mint_token(key, "remy", "cml-tki", ttl=-10)
    status, _, _ = http.request("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                                {"X-Workbench-Reviewer-Token": expired})
    assert status == 401
    other = mint_token(key, "remy", "other")
    status, body, _ = http.request("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                                   {"X-Workbench-Reviewer-Token": other})
    assert status == 403, body
    assert http.json("GET", f"/requests/{rid}", None, _as("rita"))["state"] == "reviewed"


def test_errors_have_one_shape_and_no_traceback(space, service):
    http = UnixHTTP(airlock_socket(space))
    for method, url, body in (("GET", "/nope", None), ("GET", "/requests/rq-x", None),
                              ("POST", "/requests", {"payload": {"kind": "table", "table": "%%"}})):
        status, data, _ = http.request(method, url, body, _as("alice", "cml-tki"))
        reply = json.loads(data)
        assert status >= 400 and set(reply) == {"error"}
        assert set(reply["error"]) == {"reason", "message"}
        assert "Traceback" not in data.decode()


def test_gateway_route_sets_study_and_actor_whatever_the_kernel_claims(space, service):
    """The forwarder the gateway mounts at /release/*: kernel headers cannot pick a study or act as
    a reviewer."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from workbench.release.forward import release_forwarder

    async def scenario():
        app = web.Application()
        app.router.add_route("*", "/release/{tail:.*}", release_forwarder(space, "cml-tki"))
        runner = web.AppRunner(app)
        await runner.setup()
        sock = space.run / "test-gateway.sock"
        site = web.UnixSite(runner, str(sock))
        await site.start()
        spoof = {"X-Workbench-Actor": "rita", "X-Workbench-Study": "other",
                 "X-Workbench-Msg-Id": "msg-7", "X-Workbench-User": "alice"}
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s:
                async with s.post("http://gw/release/requests", headers=spoof, json={
                        "name": "via_gw", "description": "d", "payload": _payload()}) as r:
                    created = await r.json()
                    assert r.status == 201, created
                async with s.post(f"http://gw/release/requests/{created['id']}/decision",
                                  headers=spoof, json={"decision": "approve"}) as r:
                    denied = await r.json()
                    assert r.status == 403, denied
                async with s.get(f"http://gw/release/requests/{created['id']}",
                                 headers=spoof) as r:
                    return created, await r.json()
        finally:
            await runner.cleanup()

    created, detail = asyncio.run(scenario())
    assert created["study"] == "cml-tki" and created["author"] == "wbk-cml-tki"
    assert detail["approvals"] == [] and "evidence" not in detail  # the author sees no evidence
    evidence = UnixHTTP(airlock_socket(space)).json("GET", f"/requests/{created['id']}", None,
                                                    _as("rita"))["evidence"]
    assert evidence["provenance"]["msg_id"] == "msg-7"
    assert evidence["claimed_user"] == "alice"


def test_gateway_route_fails_closed_without_the_airlock(open_tmp):
    import asyncio

    from aiohttp.test_utils import make_mocked_request

    from workbench.release.forward import release_forwarder

    handler = release_forwarder(Space(open_tmp), "cml-tki")
    request = make_mocked_request("GET", "/release/requests", match_info={"tail": "requests"})
    reply = asyncio.run(handler(request))
    assert reply.status == 503 and b"airlock-unavailable" in reply.body


def test_wb_release_request_from_a_kernel_through_the_gateway_route(space, service, monkeypatch):
    """The notebook API end to end: workbench.release.request -> workbench.client -> the gateway's
    /release/* forwarder -> the airlock, which re-runs the checks."""
    import asyncio
    import threading

    from aiohttp import web

    import workbench
    from workbench.errors import WorkbenchUserError
    from workbench.release.forward import release_forwarder

    sock = space.run / "kernel-gateway.sock"
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/release/{tail:.*}", release_forwarder(space, "cml-tki"))
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, str(sock)).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    monkeypatch.setenv("WORKBENCH_GATEWAY_SOCKET", str(sock))
    try:
        ok = workbench.release.request(
            pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]}), "arms", "patients per arm",
            view="cml_cohort")
        assert ok.state == "submitted" and "approvals: 0 of 2" in repr(ok)
        bad = workbench.release.request(pd.DataFrame({"arm": ["a"], "n": [4]}), "tiny", "d",
                                        view="cml_cohort")
        assert bad.state == "draft" and "minimum-threshold" in repr(bad)
        assert workbench.release.status(ok.id)["state"] == "submitted"
        assert {r.id for r in workbench.release.requests()} >= {ok.id, bad.id}
        with pytest.raises(WorkbenchUserError):
            workbench.release.request(pd.DataFrame({"n": [50]}), "x", "d", view="not_granted")
        # the requester's context and the comment thread, through the same route
        monkeypatch.setenv("WORKBENCH_USER", "alice")
        told = workbench.release.request(
            pd.DataFrame({"arm": ["c", "d"], "n": [150, 160]}), "arms2", "patients per arm",
            view="cml_cohort", justification="table 2 of the report",
            controls="arms under 10 merged")
        workbench.release.comment(told.id, "the arms follow the protocol")
        status = workbench.release.status(told.id)
        assert status["justification"] == "table 2 of the report"
        assert status["controls"] == ["arms under 10 merged"]
        assert status["claimed_user"] == "alice" and status["author"] == "wbk-cml-tki"
        assert "alice (requester" in repr(status) and "the arms follow the protocol" in repr(status)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_release_works_when_the_study_directory_is_closed_to_the_airlock(space, service):
    """The sandbox makes studies/<s> 0750 for the study's accounts; the airlock (another uid)
    does not depend on it: its outboxes are in its own directory (docs/review.md)."""
    study_dir = space.study_dir("cml-tki")
    study_dir.mkdir(parents=True, exist_ok=True)
    mode = study_dir.stat().st_mode & 0o777
    study_dir.chmod(0o700)
    try:
        http = UnixHTTP(airlock_socket(space))
        rid = http.json("POST", "/requests", {"name": "closed", "description": "d",
                                              "payload": _payload((200, 210))},
                        _as("alice", "cml-tki"))["id"]
        http.json("POST", f"/requests/{rid}/decision", {"decision": "approve"}, _as("rita"))
        assert http.json("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                         _as("remy"))["state"] == "released"
        status, data, _ = http.request("GET", f"/requests/{rid}/files/closed.csv", None,
                                       _as("alice", "cml-tki"))
        assert status == 200 and data.startswith(b"tki,n")
    finally:
        study_dir.chmod(mode)


def test_policy_changes_apply_at_once_and_a_broken_policy_refuses_everything(started):
    space, _, policy_file = started
    original = policy_file.read_text()
    http = UnixHTTP(airlock_socket(space))
    rid = http.json("POST", "/requests", {"name": "revoke", "description": "d",
                                          "payload": _payload((500, 510))},
                    _as("alice", "cml-tki"))["id"]
    try:
        policy_file.write_text(original.replace("reviewers: [rita, remy]", "reviewers: [remy]"))
        status, body, _ = http.request("POST", f"/requests/{rid}/decision",
                                       {"decision": "approve"}, _as("rita"))
        assert status == 403, body
        policy_file.write_text("users: [not a mapping\n")
        status, body, _ = http.request("GET", "/requests", None, _as("remy"))
        assert status == 503 and b"policy-unavailable" in body
    finally:
        policy_file.write_text(original)
    assert http.json("POST", f"/requests/{rid}/decision", {"decision": "approve"},
                     _as("rita"))["state"] == "reviewed"


def _numbers_and_texts(obj):
    """Every number and string in a JSON reply."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from _numbers_and_texts(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _numbers_and_texts(value)
    else:
        yield obj


def test_what_the_kernel_receives_names_rules_and_cell_counts_never_values(space, service):
    """A refused request's replies to the study kernel (create, status, list, detail) say which
    rules failed, how many cells and what to do; no flagged label, no count below threshold."""
    from workbench.release import ReleaseRequest

    http = UnixHTTP(airlock_socket(space))
    kernel = _as("wbk-cml-tki", "cml-tki")
    table = pd.DataFrame({"tki": ["secret-label-imatinib", "secret-label-nilotinib"],
                          "n": [7, 4]})
    status, body, _ = http.request("POST", "/requests", {
        "name": "small", "description": "d", "payload": to_payload(table, view="cml_cohort")},
        kernel)
    created = json.loads(body)
    assert status == 201 and created["state"] == "draft"
    finding = next(f for f in created["findings"] if f["rule"] == "minimum-threshold")
    assert finding["cells"] == 2 and "at least 10" in finding["message"]
    replies = [created, http.json("GET", f"/requests/{created['id']}", None, kernel),
               http.json("GET", "/requests", None, kernel)]
    for reply in replies:
        seen = list(_numbers_and_texts(reply))
        assert not any(isinstance(v, str) and "secret-label" in v for v in seen), reply
        assert not any(isinstance(v, int | float) and not isinstance(v, bool) and v in (4, 7)
                       for v in seen), reply
    assert "evidence" not in replies[1] and "payload" not in replies[1]
    shown = repr(ReleaseRequest(created))
    assert "minimum-threshold (2 cell(s))" in shown and "secret-label" not in shown
    reviewer = http.json("GET", f"/requests/{created['id']}", None, _as("rita"))
    assert any(c["label"].startswith("tki=secret-label") for r in reviewer["evidence"]["rules"]
               for c in r["cells"])  # reviewers do see the evidence


def test_the_service_verifies_signed_results_as_its_own_uid(space, service):
    """After dropping privileges the airlock still reads he/release.pub (0644) and verifies."""
    from nacl.signing import SigningKey

    from workbench.secure.attest import sign

    key = SigningKey.generate()
    space.he.mkdir(mode=0o755, exist_ok=True)
    (space.he / "release.pub").write_bytes(bytes(key.verify_key))
    (space.he / "release.pub").chmod(0o644)
    body = {"study": "cml-tki", "request_id": "sr-9", "op": "count", "kind": "counts",
            "spec_sha256": "0" * 64, "checks": {},
            "result": {"counts": [140, 160], "labels": ["sex=F", "sex=M"], "by": "sex"}}
    series = pd.Series([1, 1], index=pd.Index(["F", "M"], name="sex"), name="count")
    http = UnixHTTP(airlock_socket(space))
    kernel = _as("wbk-cml-tki", "cml-tki")
    series.attrs["attestation"] = sign(key, body)
    made = http.json("POST", "/requests", {"name": "by_sex", "description": "d",
                                           "payload": to_payload(series, view="cml_cohort")},
                     kernel)
    assert made["verified"] is True and made["verdict"] == "pass", made
    series.attrs["attestation"] = sign(SigningKey.generate(), body)
    status, reply, _ = http.request("POST", "/requests", {
        "name": "forged", "description": "d", "payload": to_payload(series, view="cml_cohort")},
        kernel)
    error = json.loads(reply)["error"]
    assert status == 400 and error["reason"] == "unverified-result" and "\n" not in error["message"]


def test_the_service_is_started_through_its_click_command(service):
    """One CLI per service: start_airlock runs ``workbench airlock`` (no argparse twin)."""
    from click.testing import CliRunner

    import workbench.release.service as service_module
    from workbench.release.cli import airlock

    cmdline = open(f"/proc/{service.process.pid}/cmdline", "rb").read().split(b"\0")
    assert cmdline[1:4] == [b"-m", b"workbench.cli", b"airlock"]
    assert not hasattr(service_module, "main")
    missing = CliRunner().invoke(airlock, ["--data-dir", "/nonexistent"])
    assert missing.exit_code == 2 and "--policy" in missing.output
