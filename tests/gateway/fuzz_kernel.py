"""Fuzzes the gateway from INSIDE a study kernel's uid (run by test_fuzz.py through setpriv):
schemathesis cases generated from the OpenAPI spec, plus hand-written hostile requests
(injection, traversal, oversized, malformed). Prints one JSON line with any broken invariant."""

import io
import json
import os
from urllib.parse import quote

import httpx
import pyarrow as pa
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.gateway.openapi import MAX_ROWS, SPEC

GRANTED = {"visits", "visits_monthly", "elderly"}  # (reads_files is granted but invalid)
NEVER_PLAIN = {"cost", "mrn"}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
client = httpx.Client(transport=httpx.HTTPTransport(uds=os.environ["WORKBENCH_GATEWAY_SOCKET"]),
                      base_url="http://gw", timeout=60)
failures: list[dict] = []
statuses: dict[int, int] = {}


def check(method: str, url: str, response: httpx.Response) -> None:
    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    where = {"method": method, "url": str(url)[:300], "status": response.status_code}
    if response.status_code >= 500 and response.status_code != 503:
        failures.append({**where, "problem": "server error", "body": response.text[:300]})
    if response.status_code >= 400:
        try:
            body = response.json()
            ok = (set(body) == {"error"} and set(body["error"]) == {"reason", "message"}
                  and all(isinstance(v, str) for v in body["error"].values()))
        except ValueError:
            ok = False
        if not ok:
            failures.append({**where, "problem": "error shape", "body": response.text[:300]})
        return
    path = response.request.url.path
    if path.endswith("/arrow"):
        view = path.split("/")[2]
        table = pa.ipc.open_stream(io.BytesIO(response.content)).read_all()
        if view not in GRANTED:
            failures.append({**where, "problem": f"served ungranted view {view}"})
        if NEVER_PLAIN & set(table.column_names):
            failures.append({**where, "problem": "served a sensitive column"})
    elif path.startswith("/views/") and path.split("/")[2] not in GRANTED:
        failures.append({**where, "problem": "described an ungranted view"})


def send(method: str, url: str, **kwargs) -> None:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.InvalidURL:
        return  # the client itself refuses it; it never reaches the gateway
    except httpx.HTTPError as exc:
        failures.append({"method": method, "url": url[:300], "problem": type(exc).__name__})
        return
    check(method, url, response)


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

schema = schemathesis.openapi.from_dict(SPEC)
for result in schema.get_all_operations():
    operation = result.ok()

    @SETTINGS
    @given(case=operation.as_strategy())
    def spec_case(case):
        kwargs = case.as_transport_kwargs(base_url="http://gw")
        kwargs.pop("cookies", None)
        method, url = kwargs.pop("method"), kwargs.pop("url")
        send(method, url, **kwargs)

    spec_case()

VIEW_IDS = st.sampled_from([
    "visits", "visits_monthly", "elderly", "not_in_catalog", "reads_files", "visit",
    "hospital_a.visit",
    "visits;DROP TABLE visit", "visits' OR '1'='1", "../../etc/passwd", "%2e%2e%2f", "é",
    "a" * 5000, "VISITS", "visits/arrow", ""]) | st.text(max_size=40)
COLUMNS = st.sampled_from([
    "age", "cost", "mrn", "holder", "person_id", "age,cost", "age) FROM visit; --", '"cost"',
    "1=1", "*", "", ",", " age", "age," * 300, "cost AS age", "age\x00cost"]) | st.text(max_size=40)
LIMITS = st.sampled_from(["", "-1", "0", "1", "1e9", "99999999999999", "abc", "10;DROP",
                          str(MAX_ROWS + 1), "0x10", " 5"]) | st.integers(-10, 10**13).map(str)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'{"view": 1}', b'{"view": "visits"}',
                     b'{"view": "visits", "params": []}', b'{"view": "visits", "extra": 1}',
                     b'{"view": "visit", "params": {}}', b"{" * 5000, b"x" * 300_000]),
    st.dictionaries(st.sampled_from(["view", "params", "columns"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=20), VIEW_IDS,
                              st.lists(COLUMNS, max_size=3)), max_size=3)
    .map(lambda d: json.dumps(d).encode()))


@SETTINGS
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), view=VIEW_IDS,
       columns=COLUMNS, limit=LIMITS,
       tail=st.sampled_from(["", "/arrow", "/arrow/x", "/../arrow"]))
def hostile_view(method, view, columns, limit, tail):
    params = {"columns": columns, "limit": limit}
    send(method, f"/views/{quote(view, safe='/.%')}{tail}", params=params)


@SETTINGS
@given(op=st.sampled_from(["count", "sum", "kaplan_meier", "drop", "../x", "COUNT", ""]),
       body=BODIES)
def hostile_secure(op, body):
    send("POST", f"/secure/{op}", content=body, headers={"Content-Type": "application/json"})


hostile_view()
hostile_secure()
print(json.dumps({"failures": failures[:20], "statuses": statuses,
                  "cases": sum(statuses.values())}))
