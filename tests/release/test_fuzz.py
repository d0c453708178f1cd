"""Fuzz the real airlock socket (schemathesis from its OpenAPI document plus hostile requests):
never a 500, always the one error shape, the peer check before any body is read, and a request
aiohttp cannot parse (a bad Content-Length) answered 400 in the same shape."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.paths import Space
from workbench.provenance.service import start_collector
from workbench.release.airlock import airlock_socket
from workbench.release.openapi import MAX_BODY, SPEC
from workbench.release.service import start_airlock, token_key_path
from workbench.release.tokens import mint_token

from .conftest import POLICY
from .test_service import _request_as_uid

SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def airlock():
    root = Path(tempfile.mkdtemp(prefix="wb-test-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = Space(root / "space")
    space.root.mkdir(mode=0o755)
    policy_file = root / "policy.yaml"
    policy_file.write_text(POLICY)
    policy_file.chmod(0o644)
    try:
        with start_collector(space), start_airlock(space, policy_file) as handle:
            yield space, handle
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(airlock):
    transport = httpx.HTTPTransport(uds=str(airlock_socket(airlock[0])))
    with httpx.Client(transport=transport, base_url="http://airlock", timeout=60) as http:
        yield http


def _shape_problem(response: httpx.Response) -> str | None:
    if response.status_code >= 500 and response.status_code != 503:
        return "server error"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
        ok = (set(body) == {"error"} and set(body["error"]) == {"reason", "message"}
              and all(isinstance(v, str) for v in body["error"].values()))
    except ValueError:
        ok = False
    return None if ok else "error shape"


class Cases:
    def __init__(self, http: httpx.Client):
        self.http, self.failures, self.statuses = http, [], {}

    def send(self, method: str, url: str, **kwargs) -> None:
        try:
            response = self.http.request(method, url, **kwargs)
        except (httpx.InvalidURL, httpx.LocalProtocolError):
            return  # the client itself refuses it; it never reaches the airlock
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if problem := _shape_problem(response):
            self.failures.append({"method": method, "url": url[:200], "problem": problem,
                                  "status": response.status_code, "body": response.text[:300]})


ACTORS = st.sampled_from(["alice", "rita", "remy", "ada", "wbk-cml-tki", "nobody", "", "a" * 300,
                          "rita ", "../rita"])
HEADERS = st.fixed_dictionaries({}, optional={
    "X-Workbench-Actor": ACTORS,
    "X-Workbench-Study": st.sampled_from(["cml-tki", "other", "nope", "", "cml-tki/../other"]),
    "X-Workbench-Dry-Run": st.sampled_from(["0", "1", "yes", ""]),
    "X-Workbench-Reviewer-Token": st.sampled_from(["", "x", "a.b.c", "e30.e30"]),
})
PAYLOADS = st.one_of(
    st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3),
    st.fixed_dictionaries({}, optional={
        "kind": st.sampled_from(["table", "survival", "model", "figure", "pickle", None, 3]),
        "table": st.one_of(st.none(), st.integers(), st.text(max_size=30),
                           st.sampled_from(["", "%%", "QUJD"])),
        "view": st.one_of(st.none(), st.integers(), st.sampled_from(["cml_cohort", "x"])),
        "count_columns": st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers())),
        "curves": st.one_of(st.none(), st.integers(), st.lists(st.dictionaries(
            st.sampled_from(["group", "table"]), st.one_of(st.none(), st.text(max_size=9))))),
        "model": st.one_of(st.none(), st.integers(), st.dictionaries(
            st.sampled_from(["family", "params", "n_obs", "n_params", "n_events"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=9)))),
        "figure": st.one_of(st.none(), st.integers(), st.text(max_size=30)),
        "figure_format": st.sampled_from(["png", "svg", "gif", None]),
        "attestation": st.one_of(st.none(), st.integers(), st.dictionaries(
            st.text(max_size=5), st.text(max_size=5), max_size=3)),
    }))
BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'{"decision": 1}', b"{" * 5000, b"\xff\xfe",
                     b'{"decision": "approve", "comment": null}']),
    st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.none(), st.integers(), st.sampled_from(["t", "../x", "a" * 100]),
                          st.text(max_size=10)),
        "description": st.one_of(st.none(), st.integers(), st.text(max_size=10)),
        "payload": PAYLOADS,
        "decision": st.one_of(st.none(), st.sampled_from(["approve", "reject", "return", "x"])),
        "comment": st.one_of(st.none(), st.integers(), st.text(max_size=10))})
    .map(lambda d: json.dumps(d).encode()))
PATHS = st.sampled_from([
    "/requests", "/requests/rq-1", "/requests/rq-1/decision", "/requests/rq-1/files/x.csv",
    "/requests/rq-1/files/../../airlock.sqlite", "/requests/" + "a" * 100, "/requests/%2e%2e",
    "/requests/rq-1/files/%2e%2e%2fkey", "/health", "/openapi.json", "/", "/requests/é",
    "/requests/rq-1/decision/x"]) | st.text(max_size=30).map(lambda t: "/" + quote(t))


@pytest.mark.slow
def test_fuzz_airlock_as_a_trusted_caller(airlock, client):
    space, handle = airlock
    cases = Cases(client)
    schema = schemathesis.openapi.from_dict(SPEC)
    for result in schema.get_all_operations():
        operation = result.ok()

        @SETTINGS
        @given(case=operation.as_strategy(), headers=HEADERS)
        def spec_case(case, headers):
            kwargs = case.as_transport_kwargs(base_url="http://airlock")
            kwargs.pop("cookies", None)
            kwargs["headers"] = {**(kwargs.get("headers") or {}), **headers}
            cases.send(kwargs.pop("method"), kwargs.pop("url"), **kwargs)

        spec_case()

    @SETTINGS
    @given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=PATHS,
           body=BODIES, headers=HEADERS, state=st.sampled_from([None, "released", "x" * 300]))
    def hostile(method, path, body, headers, state):
        cases.send(method, path, content=body, params={"state": state} if state else None,
                   headers={"Content-Type": "application/json", **headers})

    @SETTINGS
    @given(payload=PAYLOADS, dry_run=st.sampled_from(["0", "1"]))
    def hostile_payload(payload, dry_run):
        """A valid caller, name and description: the payload itself reaches the decoder."""
        body = {"name": "fuzz", "description": "d", "payload": payload}
        cases.send("POST", "/requests", json=body, headers={
            "X-Workbench-Actor": "alice", "X-Workbench-Study": "cml-tki",
            "X-Workbench-Dry-Run": dry_run})

    hostile()
    hostile_payload()
    assert cases.failures == [], json.dumps(cases.failures[:10], indent=1)
    assert sum(cases.statuses.values()) > 300
    assert {200, 201} & set(cases.statuses), cases.statuses  # the fuzzer reached real work
    log = handle.output()
    assert "Traceback" not in log and "airlock bug" not in log


def test_openapi_spec_is_valid_and_served(client):
    schema = schemathesis.openapi.from_dict(SPEC)
    assert {op.ok().label for op in schema.get_all_operations()} >= {
        "POST /requests", "GET /requests", "GET /requests/{request_id}",
        "POST /requests/{request_id}/decision", "GET /requests/{request_id}/files/{name}"}
    assert client.get("/openapi.json").json() == json.loads(json.dumps(SPEC))


def _raw(path: Path, raw: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        conn.sendall(raw)
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def _reply(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1e3", b"5, 6", b"9" * 30, b""])
def test_a_bad_content_length_is_a_400_in_the_one_shape(airlock, length):
    space, handle = airlock
    raw = _raw(airlock_socket(space), b"POST /requests HTTP/1.1\r\nHost: x\r\n"
               b"X-Workbench-Actor: SECRET-VALUE\r\nContent-Length: " + length +
               b"\r\nConnection: close\r\n\r\n{}")
    status, body = _reply(raw)
    assert status == 400 and body["error"]["reason"] == "bad-request", raw[:300]
    log = handle.output()  # aiohttp's own log line would quote the request's header lines
    assert "Content-Length" not in log and "SECRET-VALUE" not in log and "Traceback" not in log


def test_broken_header_lines_are_a_400_in_the_one_shape(airlock):
    status, body = _reply(_raw(airlock_socket(airlock[0]),
                               b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"))
    assert status == 400 and set(body["error"]) == {"reason", "message"}


def test_an_untrusted_peer_is_refused_before_its_body_is_read(airlock):
    """The caller announces 30 MiB and sends none of it: the refusal comes at once (a server that
    read the body first would wait for it until the timeout)."""
    raw = (b"POST /requests HTTP/1.1\r\nHost: x\r\nX-Workbench-Actor: ada\r\n"
           b"Content-Type: application/json\r\nContent-Length: " + str(30 << 20).encode() +
           b"\r\n\r\n")
    started = time.monotonic()
    reply = _request_as_uid(airlock_socket(airlock[0]), 65534, raw)
    assert time.monotonic() - started < 5  # answered and closed, not waiting for the body
    assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
    assert b'"access-denied"' in reply


def test_a_body_over_the_limit_is_refused_before_it_is_read(airlock):
    raw = _raw(airlock_socket(airlock[0]), b"POST /requests HTTP/1.1\r\nHost: x\r\n"
               b"X-Workbench-Actor: alice\r\nX-Workbench-Study: cml-tki\r\nContent-Length: " +
               str(MAX_BODY + 1).encode() + b"\r\nConnection: close\r\n\r\n")
    status, body = _reply(raw)
    assert status == 413 and body["error"]["reason"] == "release-too-large"


def test_a_reviewer_token_for_another_study_is_refused(airlock, client):
    token = mint_token(token_key_path(airlock[0]).read_bytes(), "rita", "cml-tki")
    reply = client.get("/requests", headers={"X-Workbench-Reviewer-Token": token,
                                             "X-Workbench-Study": "other"})
    assert reply.status_code == 403 and reply.json()["error"]["reason"] == "access-denied"



def test_a_trusted_caller_refused_before_its_body_is_used_keeps_its_connection(airlock):
    """A trusted caller's request refused before its body is needed (no acting user) whose body
    is still arriving: the airlock reads the body, answers, and keeps the connection for the
    next request. Left unread, the body made aiohttp close the connection right after the
    answer, and a client that had already sent its next request on it got a reset (the fuzzer
    above once did)."""
    body = b'{"payload": {"table": "' + b"x" * 100_000 + b'"}}'
    head = (b"POST /requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(airlock_socket(airlock[0])))
        conn.sendall(head + body[:1000])
        time.sleep(0.5)  # the rest comes later, as over a slow link
        with contextlib.suppress(OSError):  # a closed connection is what the test looks for
            conn.sendall(body[1000:] + b"GET /health HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
        chunks = []
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                chunks.append(data)
    replies = b"".join(chunks)
    assert replies.startswith(b"HTTP/1.1 401"), replies[:300]
    assert b'"unauthenticated"' in replies
    assert replies.count(b"HTTP/1.1 ") == 2 and replies.endswith(b'{"ok": true}'), replies[-300:]
