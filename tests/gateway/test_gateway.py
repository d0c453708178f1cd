"""Through the real gateway process and socket, as the study's kernel uid (setpriv)."""

from __future__ import annotations

import json
import os
import pwd

import httpx
import pytest

from workbench.accounts import study_kernel_user

STUDY, OTHER, EXPIRED, ROWS = "gw-one", "gw-two", "gw-old", 300  # as in conftest.py

REFUSE = """
    try:
        {call}
        print(json.dumps({{"refused": False}}))
    except WorkbenchUserError as exc:
        print(json.dumps({{"refused": True, "reason": exc.reason, "message": str(exc)}}))
"""


def refused(gateway, study, call):
    return gateway.run_as(study, REFUSE.format(call=call))


def denials(gateway, view, reason):
    return [r for r in gateway.records() if r.get("kind") == "view-read"
            and r["fields"].get("view") == view and r["fields"].get("status") == "denied"
            and r["fields"].get("reason") == reason]


def test_granted_view_is_returned(gateway):
    out = gateway.run_as(STUDY, """
        frame = wb.view("visits")
        listing = wb.views()
        info = wb.describe("visits")
        print(json.dumps({"rows": len(frame), "columns": list(frame.columns),
                          "views": sorted(listing["id"]), "version": info["version"],
                          "plaintext": {c["name"]: c["plaintext"] for c in info["columns"]}}))
    """)
    assert out["rows"] == ROWS
    assert out["columns"] == ["person_id", "visit_date", "age", "diagnosis", "holder"]
    # not_in_catalog and the invalid reads_files are granted but not listed as readable
    assert out["views"] == ["elderly", "visits", "visits_monthly"]
    assert "view reads_files is not served" in gateway.log()
    assert out["plaintext"]["cost"] is False and out["plaintext"]["age"] is True


def test_reads_are_provenance_records_with_claims_and_version(gateway):
    out = gateway.run_as(STUDY, """
        frame = wb.view("visits_monthly", columns=["age", "diagnosis"], limit=17)
        print(json.dumps({"rows": len(frame)}))
    """, env={"WORKBENCH_MSG_ID": "msg-42"})
    assert out["rows"] == 17
    reads = [r for r in gateway.records() if r.get("kind") == "view-read"
             and r["fields"].get("msg_id") == "msg-42"]
    assert len(reads) == 1
    fields = reads[0]["fields"]
    assert fields["study"] == STUDY and fields["view"] == "visits_monthly"
    assert fields["rows"] == 17 and fields["columns"] == ["age", "diagnosis"]
    assert fields["user"] == "alice" and fields["kernel_id"] == "k-123"  # claims, as sent
    assert len(fields["view_version"]) == 16 and fields["status"] == "ok"
    assert reads[0]["writer"]["user"] == "wb-gateway"  # the collector saw the gateway's uid


def test_descriptions_and_listings_are_recorded_like_reads(gateway):
    """Versions, quality scores and holders are derived from the data: they leave only on the
    record, with the digest of the exact body sent."""
    out = gateway.run_as(STUDY, """
        import hashlib
        from workbench.client import _request
        body = _request("GET", "/views/visits").body
        info = wb.describe("visits")
        listed = sorted(wb.views()["id"])
        print(json.dumps({"sha": hashlib.sha256(body).hexdigest(), "size": len(body),
                          "version": info["version"], "listed": listed}))
    """, env={"WORKBENCH_MSG_ID": "msg-describe"})
    reads = [r["fields"] for r in gateway.records() if r.get("kind") == "view-read"
             and r["fields"].get("msg_id") == "msg-describe"]
    described = [f for f in reads if f.get("operation") == "describe"]
    listed = [f for f in reads if f.get("operation") == "list"]
    assert len(described) == 2 and len(reads) == 2 + len(out["listed"])
    assert all(f["view"] == "visits" and f["view_version"] == out["version"]
               and f["status"] == "ok" and f["user"] == "alice" for f in described)
    assert described[0]["result_sha256"] == out["sha"]
    assert described[0]["result_size"] == out["size"]
    assert sorted(f["view"] for f in listed) == out["listed"]
    assert len({f["result_sha256"] for f in listed}) == 1  # one listing, one body
    assert all("rows" not in f for f in reads)


def test_malformed_identity_claims_are_dropped(gateway):
    out = gateway.run_as(STUDY, """
        frame = wb.view("visits", columns=["age"], limit=11)
        print(json.dumps({"rows": len(frame)}))
    """, env={"WORKBENCH_USER": "robert'); drop table--", "WORKBENCH_MSG_ID": "msg-claims"})
    assert out["rows"] == 11
    (read,) = [r for r in gateway.records() if r["fields"].get("msg_id") == "msg-claims"]
    assert "user" not in read["fields"] and read["fields"]["kernel_id"] == "k-123"


def test_ungranted_view_refused_and_logged(gateway):
    out = refused(gateway, OTHER, 'wb.view("visits")')
    assert out["refused"] and out["reason"] == "access-denied"
    assert f"study {OTHER}" in out["message"] and "'visits'" in out["message"]
    assert "ask an admin (ada)" in out["message"]
    assert denials(gateway, "visits", "access-denied")
    assert '"reason": "access-denied"' in gateway.log()


def test_raw_tables_are_not_views(gateway):
    for name in ("visit", "hospital_a.visit", "holders", "..%2F..%2Fetc%2Fpasswd"):
        out = refused(gateway, STUDY, f'wb.view("{name}")')
        assert out["refused"] and out["reason"] in ("access-denied", "unknown-view", "not-found")


def test_sensitive_and_identifying_columns_refused(gateway):
    for column in ("cost", "mrn"):
        out = refused(gateway, STUDY, f'wb.view("visits", columns=["age", "{column}"])')
        assert out["refused"] and out["reason"] == "sensitive-column"
        assert column in out["message"]
    assert denials(gateway, "visits", "sensitive-column")


def test_expired_study_refused(gateway):
    out = refused(gateway, EXPIRED, 'wb.view("visits")')
    assert out["refused"] and out["reason"] == "access-denied" and "expired" in out["message"]
    out = refused(gateway, EXPIRED, "wb.views()")
    assert out["refused"] and "expired" in out["message"]


def test_min_rows_rule_over_the_socket(gateway):
    out = refused(gateway, STUDY, 'wb.view("elderly", limit=1)')
    assert out["refused"] and out["reason"] == "too-few-rows"


def _root_get(gateway, study, path):
    transport = httpx.HTTPTransport(uds=str(gateway.space.gateway_socket(study)))
    with httpx.Client(transport=transport, base_url="http://gw") as client:
        return client.get(path)


def test_wrong_peer_uid_refused_and_logged(gateway):
    # root passes the file permission but not the peer check
    response = _root_get(gateway, STUDY, "/views/visits/arrow")
    assert response.status_code == 403
    assert response.json()["error"]["reason"] == "wrong-peer"
    # another study's kernel: the socket file (0600, owner wbk-gw-one) already stops it ...
    other_uid = pwd.getpwnam(study_kernel_user(OTHER)).pw_uid
    code = """
        import os
        import httpx
        t = httpx.HTTPTransport(uds=os.environ["TARGET"])
        try:
            r = httpx.Client(transport=t, base_url="http://gw").get("/views/visits/arrow")
            print(json.dumps({"status": r.status_code, "body": r.json()}))
        except httpx.TransportError as exc:
            print(json.dumps({"status": None, "error": type(exc).__name__}))
    """
    target = str(gateway.space.gateway_socket(STUDY))
    out = gateway.run_as(OTHER, code, uid=other_uid,
                         env={"TARGET": target})
    assert out["status"] is None  # connect() refused by the file mode
    # ... and if the file mode were wrong, SO_PEERCRED still refuses it
    os.chmod(target, 0o666)
    try:
        out = gateway.run_as(OTHER, code, uid=other_uid,
                             env={"TARGET": target})
    finally:
        os.chmod(target, 0o600)
    assert out["status"] == 403 and out["body"]["error"]["reason"] == "wrong-peer"
    assert gateway.log().count('"reason": "wrong-peer"') >= 2
    assert denials(gateway, "visits", "wrong-peer")


def test_gateway_runs_as_its_own_account_without_groups(gateway):
    status = open(f"/proc/{gateway.handle.process.pid}/status").read()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    groups = next(line for line in status.splitlines() if line.startswith("Groups:")).split()[1:]
    assert {int(u) for u in uids} == {pwd.getpwnam("wb-gateway").pw_uid}
    assert groups == []


def test_socket_files_belong_to_their_study_kernel(gateway):
    for study in (STUDY, OTHER, EXPIRED):
        stat = os.stat(gateway.space.gateway_socket(study))
        assert stat.st_uid == pwd.getpwnam(study_kernel_user(study)).pw_uid
        assert stat.st_mode & 0o777 == 0o600


def test_usage_ledger_adds_up_to_rows_served(gateway):
    before = gateway.ledger()
    out = gateway.run_as(STUDY, """
        served = {}
        for name, limit in (("visits", None), ("visits", 50), ("visits_monthly", 7)):
            frame = wb.view(name, columns=["age", "holder"], limit=limit)
            for holder, n in frame["holder"].value_counts().items():
                served[holder] = served.get(holder, 0) + int(n)
        print(json.dumps(served))
    """)
    after = gateway.ledger()[len(before):]
    reads = [e for e in after if e["kind"] == "view-read" and e["study"] == STUDY]
    assert len(reads) == 3
    ledger = {}
    for entry in reads:
        for holder, n in entry["rows_by_holder"].items():
            ledger[holder] = ledger.get(holder, 0) + n
        assert entry["rows"] == sum(entry["rows_by_holder"].values())
    assert ledger == out
    assert sum(ledger.values()) == ROWS + 50 + 7


def test_usage_report_command(gateway):
    from click.testing import CliRunner

    from workbench.cli import cli
    from workbench.gateway.ledger import usage_report

    result = CliRunner().invoke(cli, ["usage", "report", "--data-dir", str(gateway.space.root),
                                      "--study", STUDY, "--holder", "hospital-a", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["holder"] for r in rows} == {"hospital-a"} and {r["study"] for r in rows} == {STUDY}
    expected = sum(e["rows_by_holder"].get("hospital-a", 0) for e in gateway.ledger()
                   if e["study"] == STUDY)
    assert sum(r["rows"] for r in rows) == expected > 0
    assert usage_report(gateway.ledger(), study="nobody") == []


def test_secure_op_through_the_gateway_is_metered(gateway):
    before = len(gateway.ledger())
    out = gateway.run_as(STUDY, """
        result = wb.secure.count("visits", by="diagnosis")
        print(json.dumps({"total": int(sum(result.values)) if hasattr(result, "values")
                          else int(result)}))
    """)
    assert out["total"] == ROWS
    entries = [e for e in gateway.ledger()[before:] if e["kind"] == "secure-op"]
    assert len(entries) == 1 and entries[0]["op"] == "count"
    assert entries[0]["rows_by_holder"] == {"hospital-a": 100, "insurer-b": 200}


def test_secure_op_on_ungranted_view_refused(gateway):
    out = refused(gateway, OTHER, 'wb.secure.count("visits")')
    assert out["refused"] and out["reason"] == "access-denied"


def test_policy_changes_take_effect_and_a_broken_policy_fails_closed(gateway):
    original = gateway.policy_path.read_text()
    try:
        gateway.policy_path.write_text(original.replace(
            "views: [visits, visits_monthly, elderly, not_in_catalog, reads_files]",
            "views: [visits_monthly]"))
        out = refused(gateway, STUDY, 'wb.view("visits")')
        assert out["refused"] and out["reason"] == "access-denied"
        gateway.policy_path.write_text(original + "\n  broken: [\n")
        out = refused(gateway, STUDY, 'wb.view("visits_monthly")')
        assert out["refused"] and out["reason"] == "policy-unavailable"
    finally:
        gateway.policy_path.write_text(original)
    assert not refused(gateway, STUDY, 'wb.view("visits")')["refused"]


@pytest.mark.slow
def test_no_provenance_no_data(gateway):
    from workbench.provenance.service import start_collector

    gateway.collector.stop()
    try:
        for call in ('wb.view("visits")', 'wb.describe("visits")', "wb.views()",
                     "wb.catalog()"):
            out = refused(gateway, STUDY, call)
            assert out["refused"] and out["reason"] == "provenance-unavailable", call
    finally:
        gateway.collector = start_collector(gateway.space)
    assert not refused(gateway, STUDY, 'wb.view("visits")')["refused"]


def test_catalog_widget_searches_and_shows_sensitivity(gateway):
    out = gateway.run_as(STUDY, """
        box = wb.catalog()
        search, (choice, detail) = box.children[0], box.children[1].children
        everything = [value for _, value in choice.options]
        first = (choice.value, detail.value)  # a view is shown before anything is clicked
        search.value = "month"
        found = [value for _, value in choice.options]
        narrowed = choice.value
        search.value = ""
        kept = choice.value  # the view shown stays shown when the search widens again
        choice.value = "visits"
        print(json.dumps({"all": everything, "found": found, "html": detail.value,
                          "first": first, "narrowed": narrowed, "kept": kept}))
    """)
    assert sorted(out["all"]) == ["elderly", "visits", "visits_monthly"]
    assert out["found"] == ["visits_monthly"]
    assert out["first"][0] == out["all"][0] and out["first"][0] in out["first"][1]
    assert out["narrowed"] == out["kept"] == "visits_monthly"
    assert "sensitive (wb.secure only)" in out["html"] and "cost" in out["html"]
    assert "version" in out["html"]


def test_a_mistyped_view_or_column_is_answered_with_the_likely_one(gateway):
    """A typo gets the name the user probably meant, from what the study may already see (its
    own views, the view's columns), with the refusal's usual reason."""
    out = refused(gateway, STUDY, 'wb.view("visit")')
    assert out["reason"] == "access-denied" and "(did you mean 'visits'?)" in out["message"]
    out = refused(gateway, STUDY, 'wb.view("visits", columns=["diagnoses"])')
    assert out["reason"] == "unknown-column" and "(did you mean 'diagnosis'?)" in out["message"]
    out = refused(gateway, STUDY, 'wb.secure.mean("visits", "costs")')
    assert out["reason"] == "unknown-column" and "(did you mean 'cost'?)" in out["message"]
    assert "wb.describe('visits')" in out["message"] and "\n" not in out["message"]
