"""Fuzz the real gateway socket as the study kernel (schemathesis from the OpenAPI spec plus
hostile requests): never a 500, always the one error shape, never data that is not granted."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis

from workbench.gateway.openapi import SPEC

STUDY = "gw-one"
FUZZ = Path(__file__).with_name("fuzz_kernel.py")


@pytest.mark.slow
def test_fuzz_gateway_as_kernel(gateway):
    out = gateway.run_as(STUDY, FUZZ.read_text(),
                         env={"FUZZ_EXAMPLES": "80"})
    assert out["failures"] == [], json.dumps(out, indent=1)
    assert out["cases"] > 200
    assert 200 in {int(k) for k in out["statuses"]}  # the fuzzer also reached real data
    # Judge the log by its level field and line starts: the fuzzer's paths are logged too (JSON,
    # one line each) and schemathesis draws strings from the spec, e.g. "/views/gateway fault".
    lines = gateway.log().splitlines()
    assert not [line for line in lines if line.split(" ")[2:3] == ["ERROR"]]
    assert not [line for line in lines if line.startswith("Traceback")]


def test_openapi_spec_is_valid_and_served(gateway):
    schema = schemathesis.openapi.from_dict(SPEC)
    assert {op.ok().label for op in schema.get_all_operations()} >= {
        "GET /views", "GET /views/{view_id}", "GET /views/{view_id}/arrow",
        "POST /secure/{op}"}
    out = gateway.run_as(STUDY, """
        import httpx, os
        t = httpx.HTTPTransport(uds=os.environ["WORKBENCH_GATEWAY_SOCKET"])
        print(json.dumps(httpx.Client(transport=t, base_url="http://gw").get("/openapi.json").json()))
    """)
    assert out == json.loads(json.dumps(SPEC))


ERROR_CASES = [
    ("GET", "/nowhere", {}, None, 404, "not-found"),
    ("DELETE", "/views", {}, None, 405, "method-not-allowed"),
    ("GET", "/views/visits/arrow", {"limit": "-3"}, None, 400, "bad-request"),
    ("GET", "/views/visits/arrow", {"limit": "99999999"}, None, 413, "too-large"),
    ("GET", "/views/visits/arrow", {"columns": "age;drop"}, None, 400, "bad-request"),
    ("GET", "/views/visits/arrow", {"columns": "nope"}, None, 400, "unknown-column"),
    ("GET", "/views/visits/arrow", {"columns": "cost"}, None, 403, "sensitive-column"),
    ("GET", "/views/Visits", {}, None, 404, "unknown-view"),
    ("GET", "/views/not_in_catalog", {}, None, 404, "unknown-view"),
    ("GET", "/views/elderly/arrow", {}, None, 403, "too-few-rows"),
    ("GET", "/views/reads_files/arrow", {}, None, 409, "invalid-view"),
    ("GET", "/views/reads_files", {}, None, 409, "invalid-view"),
    ("POST", "/secure/count", {}, b"not json", 400, "bad-request"),
    ("POST", "/secure/count", {}, b'{"view": "visits", "evil": 1}', 400, "bad-request"),
    ("POST", "/secure/count", {}, b"BIG", 413, "too-large"),
    ("POST", "/secure/nope", {}, b'{"view": "visits"}', 404, "not-found"),
]


def test_every_error_has_the_one_shape(gateway):
    cases = json.dumps([[m, p, q, b.decode() if b else None] for m, p, q, b, _, _ in ERROR_CASES])
    out = gateway.run_as(STUDY, f"""
        import httpx, os
        t = httpx.HTTPTransport(uds=os.environ["WORKBENCH_GATEWAY_SOCKET"])
        c = httpx.Client(transport=t, base_url="http://gw")
        results = []
        for method, path, query, body in json.loads({cases!r}):
            if body == "BIG":
                body = "x" * 400_000  # over the gateway's body limit
            r = c.request(method, path, params=query, content=body.encode() if body else None)
            results.append([r.status_code, r.json()])
        print(json.dumps(results))
    """)
    for (method, path, _, _, status, reason), (got, body) in zip(ERROR_CASES, out, strict=True):
        assert got == status, (method, path, body)
        assert set(body) == {"error"} and set(body["error"]) == {"reason", "message"}
        assert body["error"]["reason"] == reason, (method, path, body)


def test_root_gets_the_error_shape_too(gateway):
    transport = httpx.HTTPTransport(uds=str(gateway.space.gateway_socket(STUDY)))
    with httpx.Client(transport=transport, base_url="http://gw") as client:
        body = client.get("/openapi.json").json()
    assert body["error"]["reason"] == "wrong-peer"
