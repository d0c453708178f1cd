"""Visibility 'aggregates' through the real gateway, as the study's kernel uid: wb.view gets the
labelled synthetic twin (never a real row), the read is recorded as synthetic, the ledger counts
no row, wb.secure still works, and the view's other grants keep their own level."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.gateway.test_gateway import STUDY, refused

GRANT = "views: [visits, visits_monthly, elderly, not_in_catalog, reads_files]"


@contextlib.contextmanager
def aggregates(gateway, visibility="{visits: aggregates, elderly: aggregates}"):
    original = gateway.policy_path.read_text()
    try:
        gateway.policy_path.write_text(original.replace(
            GRANT, f"{GRANT}\n    visibility: {visibility}", 1))
        yield
    finally:
        gateway.policy_path.write_text(original)


KERNEL = """
    import contextlib, io
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        twin = wb.view("visits")
        again = wb.view("visits")
        other = wb.view("visits", seed=3, limit=50)
        real = wb.view("visits_monthly")
        info = wb.describe("visits")
        listing = wb.views()
        count = wb.secure.count("visits")
    print(json.dumps({
        "said": said.getvalue(), "rows": len(twin), "columns": list(twin.columns),
        "dtypes": [str(t) for t in twin.dtypes], "real_dtypes": [str(t) for t in real.dtypes],
        "attrs": twin.attrs, "real_attrs": real.attrs, "same": twin.equals(again),
        "seeded": len(other), "differs": not other.equals(twin.head(50)),
        "twin_ids": sorted(set(twin["person_id"])), "real_ids": sorted(set(real["person_id"])),
        "visibility": info["visibility"], "total": int(count)}))
"""


def test_a_kernel_gets_the_labelled_twin_and_real_numbers_from_wb_secure(gateway):
    before = len(gateway.ledger())
    with aggregates(gateway):
        out = gateway.run_as(STUDY, KERNEL, env={"WORKBENCH_MSG_ID": "msg-twin"})
    assert out["attrs"] == {"workbench_synthetic": True}
    assert out["real_attrs"] == {"workbench_synthetic": False}
    assert out["said"].count("SYNTHETIC TWIN of 'visits'") == 3
    assert "wb.secure" in out["said"] and "airlock" in out["said"]
    # the same columns and types as a real read, none of its people
    assert out["columns"] == ["person_id", "visit_date", "age", "diagnosis", "holder"]
    assert out["dtypes"] == out["real_dtypes"]
    assert out["real_ids"] and not set(out["twin_ids"]) & set(out["real_ids"])
    assert all(i.startswith("synthetic-") for i in out["twin_ids"])
    assert out["rows"] == 1000 and out["seeded"] == 50
    assert out["same"] and out["differs"]
    assert out["visibility"] == "aggregates"
    assert out["total"] == gateway.rows  # the real number, through wb.secure
    # recorded as synthetic reads; no row of any holder was counted for them
    reads = [r["fields"] for r in gateway.records() if r.get("kind") == "view-read"
             and r["fields"].get("msg_id") == "msg-twin" and r["fields"].get("format") == "arrow"]
    assert [(r["view"], r.get("synthetic", False)) for r in reads] == [
        ("visits", True), ("visits", True), ("visits", True), ("visits_monthly", False)]
    assert [r["rows"] for r in reads[:3]] == [1000, 1000, 50]
    kinds = [(e["kind"], e["view"]) for e in gateway.ledger()[before:]]
    assert ("view-read", "visits") not in kinds and ("view-read", "visits_monthly") in kinds


def test_the_twin_keeps_the_reads_rules(gateway):
    """Sensitive and unknown columns are refused on the twin as on rows; a view the study sees
    as aggregates is still refused to another study, and an empty view's twin is still a twin."""
    with aggregates(gateway, "aggregates"):
        out = refused(gateway, STUDY, 'wb.view("visits", columns=["cost"])')
        assert out["refused"] and out["reason"] == "sensitive-column"
        out = refused(gateway, STUDY, 'wb.view("visits", columns=["nope"])')
        assert out["refused"] and out["reason"] == "unknown-column"
        out = refused(gateway, STUDY, 'wb.view("visits", seed=-1)')
        assert out["refused"]
        out = refused(gateway, "gw-two", 'wb.view("visits")')
        assert out["refused"] and out["reason"] == "access-denied"
        out = gateway.run_as(STUDY, """
            frame = wb.view("elderly")
            print(json.dumps({"rows": len(frame), "synthetic": frame.attrs["workbench_synthetic"]}))
        """)
        assert out == {"rows": 1000, "synthetic": True}


@pytest.mark.parametrize("query", ["", "?seed=abc", "?seed=1234567890"])
def test_the_http_response_says_synthetic(gateway, query):
    code = f"""
        from workbench.unixhttp import UnixHTTPConnection
        import os
        c = UnixHTTPConnection(os.environ["WORKBENCH_GATEWAY_SOCKET"], 30, host="gateway")
        c.request("GET", "/views/visits/arrow{query}")
        r = c.getresponse()
        print(json.dumps({{"status": r.status, "synthetic": r.getheader("X-Workbench-Synthetic"),
                          "body": r.read()[:400].decode("latin-1")}}))
    """
    with aggregates(gateway):
        out = gateway.run_as(STUDY, code)
    if query:
        assert out["status"] == 400 and "seed" in json.loads(out["body"])["error"]["message"]
    else:
        assert out["status"] == 200 and out["synthetic"] == "twin"
        assert "workbench_synthetic" in out["body"]  # the Arrow schema's own label
