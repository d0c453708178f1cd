"""Each thing a node must refuse, tried against a real node over real TLS.

The requests are made directly (http.client over ssl) with the certificates the space CA issued,
so each check is reached on its own: no client certificate, another role's certificate, a revoked
one, a study or view the policy does not grant, an unsigned, altered or rolled-back policy, a
replayed or re-targeted round, a round past the holder's budget or below its floors.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import socket
import ssl
import subprocess

import pytest

from tests.node.conftest import POLICY, STUDY, run_as_kernel
from workbench.node import pki
from workbench.node.coordinator import policy_document
from workbench.secure.signing import new_nonce

KM_SPEC = {"duration_col": "days", "resolution": 1.0, "n_bins": 1501, "event_col": "event",
           "by": [], "thresholds": {"min_cell_count": 10}}


def tls(made, role: str) -> ssl.SSLContext:
    folder = made.space.role_tls(role)
    return pki.client_context(made.space.pki / "ca.pem", folder / "cert.pem",
                              folder / "key.pem", made.space.pki / "crl.pem")


def address(made, holder: str) -> tuple[str, int]:
    registry = json.loads(made.space.node_registry.read_text())["nodes"]
    host, port = registry[holder]["address"].rsplit(":", 1)
    return host, int(port)


def call(made, holder: str, path: str, body: dict | None = None, role: str = "coordinator",
         context: ssl.SSLContext | None = None) -> tuple[int, dict]:
    """One HTTPS request to ``holder``'s node, checked under the node's name (not its address)."""
    host, port = address(made, holder)
    raw = socket.create_connection((host, port), timeout=60)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.sock = (context or tls(made, role)).wrap_socket(
            raw, server_hostname=pki.host_name("node", holder))
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, body=json.dumps(body),
                         headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
        raw.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, {"bytes": len(data)}


def request(made, holder: str = "hospital-a", **extra) -> dict:
    return {"holder": holder, "study": STUDY, "view": "visit_survival", "columns": None,
            "nonce": new_nonce(), "policy": policy_document(made.policy)} | extra


def reason(reply) -> str:
    return reply[1]["error"]["reason"]


def test_a_client_without_a_certificate_is_refused_by_tls(node_space):
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.load_verify_locations(cafile=str(node_space.space.pki / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        call(node_space, "hospital-a", "/v1/rules", context=bare)


def test_another_roles_certificate_is_refused(node_space):
    status, body = call(node_space, "hospital-a", "/v1/view", request(node_space),
                        role="aggregator")
    assert (status, body["error"]["reason"]) == (403, "wrong-peer")
    assert "coordinator only" in body["error"]["message"]


def test_the_collector_only_witnesses_and_the_coordinator_does_not(node_space):
    status, body = call(node_space, "hospital-a", "/v1/view", request(node_space),
                        role="collector")
    assert (status, body["error"]["reason"]) == (403, "wrong-peer")
    status, body = call(node_space, "hospital-a", "/v1/witness", {"head": {}, "proof": []})
    assert (status, body["error"]["reason"]) == (403, "wrong-peer")
    assert "collector only" in body["error"]["message"]


def test_a_view_or_study_the_policy_does_not_grant_is_refused(node_space):
    reply = call(node_space, "hospital-a", "/v1/view", request(node_space, view="visits"))
    assert reason(reply) == "access-denied"
    reply = call(node_space, "hospital-a", "/v1/view", request(node_space, study="other"))
    assert reason(reply) == "access-denied"


def test_unsigned_altered_and_foreign_policies_are_refused(node_space):
    doc = policy_document(node_space.policy)
    unsigned = request(node_space, policy={"text": doc["text"], "signature": None})
    assert reason(call(node_space, "hospital-a", "/v1/view", unsigned)) == "unsigned-policy"
    widened = doc["text"].replace("views: [visit_survival]", "views: [visit_survival, visits]")
    assert widened != doc["text"]
    altered = request(node_space, view="visits",
                      policy={"text": widened, "signature": doc["signature"]})
    assert reason(call(node_space, "hospital-a", "/v1/view", altered)) == \
        "bad-policy-signature"


def test_a_rolled_back_policy_is_refused(node_space):
    old = policy_document(node_space.policy)
    node_space.sign(POLICY + "# serial 2\n", 2)
    try:
        status, _ = call(node_space, "hospital-a", "/v1/view", request(node_space))
        assert status == 200  # the node has now seen serial 2
        replay = request(node_space, policy=old)
        reply = call(node_space, "hospital-a", "/v1/view", replay)
        assert reason(reply) == "stale-policy"
    finally:
        node_space.sign(POLICY + "# serial 3\n", 3)


def test_a_replayed_or_retargeted_round_is_refused(node_space):
    body = request(node_space, kind="survival", spec=KM_SPEC, request_id="r1")
    first = call(node_space, "hospital-a", "/v1/round", body)
    assert first[0] == 200
    assert reason(call(node_space, "hospital-a", "/v1/round", body)) == "replayed-round"
    retarget = body | {"nonce": new_nonce()}
    assert reason(call(node_space, "insurer-b", "/v1/round", retarget)) == "wrong-holder"


def test_the_holders_rules_floor_and_budget(node_space):
    rules = node_space.space.node_dir("insurer-b") / "rules.yaml"
    original = rules.read_text()
    owner = rules.stat()
    try:
        rules.write_text("thresholds: {min_cell_count: 25}\nrounds_per_day: 1\n")
        os.chown(rules, owner.st_uid, owner.st_gid)
        loose = request(node_space, "insurer-b", kind="survival", request_id="r2",
                        spec=KM_SPEC | {"thresholds": {"min_cell_count": 10}})
        reply = call(node_space, "insurer-b", "/v1/round", loose)
        assert reason(reply) == "holder-rule"
        assert reply[1]["error"]["message"] == \
            "holder insurer-b refused: it insists on min_cell_count 25."
        # the gateway tightens to every node's floors, so the researcher's call passes once
        # and the signed checks say 25 ... then the day's budget of one round is spent
        out = run_as_kernel(node_space.space, """
            from workbench.errors import WorkbenchUserError
            n = wb.secure.count("visit_survival")
            try:
                wb.secure.count("visit_survival")
                second = None
            except WorkbenchUserError as exc:
                second = str(exc)
            print(json.dumps({"n": int(n), "second": second}))
        """)
        assert out["second"] == ("holder insurer-b refused: study node-e2e used its 1 secure "
                                 "rounds for today at this holder.")
    finally:
        rules.write_text(original)
        os.chown(rules, owner.st_uid, owner.st_gid)


def test_a_bad_rules_file_is_one_line_naming_file_line_and_field(node_space):
    from workbench.node.rules import load_rules

    path = node_space.space.root.parent / "bad-rules.yaml"
    path.write_text("studies: ['*']\nthresholds:\n  min_cell_count: zero\n")
    with pytest.raises(Exception) as info:
        load_rules(path)
    assert str(info.value).startswith(f"{path}, line 3, field thresholds.min_cell_count:")


def test_a_revoked_coordinator_is_refused_and_a_revoked_node_is_not_asked(node_space):
    from workbench.node.enroll import enroll_role
    from workbench.node.pki import Authority

    space = node_space.space
    authority = Authority(space.pki)
    serials = [int(e["serial"]) for e in authority.ledger()["issued"]
               if e["role"] == "coordinator" and not e["revoked"]]
    enroll_role(space, "coordinator", "wb-gateway")  # rotation: a new certificate first...
    gateway_cert = space.role_tls("coordinator") / "cert.pem"
    new_serial = pki.Identity.of(ssl.PEM_cert_to_DER_cert(gateway_cert.read_text())).serial
    old = authority.revoke("coordinator", "coordinator", serials[0])  # ...then revoke the old
    assert old == serials[0:1] and new_serial not in old
    status, _ = call(node_space, "hospital-a", "/v1/rules")
    assert status == 200  # the rotated certificate is accepted
    authority.revoke("coordinator", "coordinator", new_serial)
    reply = call(node_space, "hospital-a", "/v1/rules")
    assert reason(reply) == "revoked-certificate"
    enroll_role(space, "coordinator", "wb-gateway")  # a fresh one for the tests that follow

    authority.revoke("node", "insurer-b")
    out = run_as_kernel(space, """
        from workbench.errors import WorkbenchUserError
        try:
            wb.view("visit_survival", columns=["age"])
            said = None
        except WorkbenchUserError as exc:
            said = str(exc)
        print(json.dumps({"said": said}))
    """)
    assert out["said"].startswith("holder insurer-b: its certificate is not a valid, unrevoked")


def test_no_service_or_kernel_account_reads_a_node(node_space):
    space = node_space.space
    targets = [space.node_dir(h) / name for h in ("hospital-a", "insurer-b")
               for name in ("keys/signing.key", "keys/mac.key", "tls/node.key",
                            "holders/.study-rekey.key", "node.json")]
    targets += list((space.node_dir("hospital-a") / "holders" / "hospital-a").glob("*.parquet"))
    for account in ("wb-gateway", "wb-aggregator", "wb-keyholder", "wb-collector",
                    f"wbk-{STUDY}", "wbh-insurer-b"):
        uid = pwd.getpwnam(account).pw_uid
        for target in targets:
            if account == "wbh-insurer-b" and "insurer-b" in str(target):
                continue
            result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                     "--clear-groups", "cat", str(target)],
                                    capture_output=True, text=True)
            assert result.returncode != 0 and "Permission denied" in result.stderr, \
                (account, target)
    assert not list(space.holder_keys.glob("*.key"))  # no holder signing key is left centrally
    assert not any(p.suffix == ".parquet" for p in space.holders.rglob("*"))
