"""The linkage service as it runs: its own process and account, a real socket, real node
accounts calling it (no mocks)."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
from pathlib import Path

import pytest

from tests.linkage.conftest import (
    RecordingRelay,
    needs_root,
    node_pseudonyms,
    open_space,
    run_as,
)
from workbench import linkage
from workbench.errors import WorkbenchUserError
from workbench.linkage import oprf
from workbench.linkage.client import pseudonyms
from workbench.linkage.process import key_path, start_linkage
from workbench.space.linkage import new_key, study_pseudonyms


def national_ids(n: int) -> list[str]:
    return [f"{secrets.randbelow(10**9):09d}-{secrets.token_hex(3)}" for _ in range(n)]


def post(socket, body: bytes) -> tuple[int, dict | None, str | None]:
    from workbench.unixhttp import UnixHTTPConnection

    conn = UnixHTTPConnection(socket, 10)
    try:
        conn.request("POST", linkage.EVALUATE, body=body,
                     headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        data = response.read()
        error = json.loads(data)["error"] if response.status != 200 else None
        return response.status, error, response.getheader("Retry-After")
    finally:
        conn.close()


@needs_root
def test_two_holders_get_the_same_pseudonym_for_the_same_id_and_others_differ(service):
    shared, own_a, own_b = national_ids(40), national_ids(30), national_ids(30)
    a_ids = shared + own_a
    b_ids = own_b + shared[::-1] + shared[:5]  # another order, and repeated rows
    a = dict(zip(a_ids, node_pseudonyms("lt-hospital", service.space, a_ids), strict=True))
    b = dict(zip(b_ids, node_pseudonyms("lt-insurer", service.space, b_ids), strict=True))
    assert all(a[i] == b[i] for i in shared)
    assert len({a[i] for i in a_ids} | {b[i] for i in b_ids}) == 100  # every person its own
    assert all(len(p) == 24 and int(p, 16) >= 0 for p in a.values())
    # the same holder asking again (new blinding) gets the same pseudonyms
    assert node_pseudonyms("lt-hospital", service.space, own_a) == [a[i] for i in own_a]


@needs_root
def test_the_service_never_sees_an_identifier(service):
    ids = national_ids(60)
    relay = RecordingRelay(service.space.run / "linkage-relay.sock", service.socket)
    try:
        made = node_pseudonyms("lt-hospital", service.space, ids, socket=relay.path)
    finally:
        relay.close()
    assert made == pseudonyms(service.space, ids)  # the relay changed nothing
    received, sent = bytes(relay.to_service), bytes(relay.from_service)
    assert received.count(b"POST " + linkage.EVALUATE.encode()) == 1
    assert len(received) > 60 * oprf.ELEMENT and len(sent) > 60 * oprf.ELEMENT
    state = b"".join(p.read_bytes() for p in linkage.state_dir(service.space).rglob("*")
                     if p.is_file())
    log = service.output().encode()
    assert b'"elements": 60' in log  # the batch was logged, by its size
    for value, pseudonym in zip(ids, made, strict=True):
        hashed = oprf.hash_to_group(value.encode())  # H(id): what an unblinded query would be
        secrets_of_a_person = (value.encode(), value.encode().hex().encode(), hashed,
                               hashed.hex().encode(), pseudonym.encode())
        for seen in (received, sent, state, log):
            assert not any(s in seen for s in secrets_of_a_person)


@needs_root
def test_a_node_account_cannot_read_the_linkage_key(service):
    path = key_path(service.space)
    assert pwd.getpwuid(path.stat().st_uid).pw_name == linkage.ACCOUNT
    assert path.stat().st_mode & 0o777 == 0o600
    assert linkage.state_dir(service.space).stat().st_mode & 0o777 == 0o700
    tried = run_as("wbh-lt-hospital", f"""
        import json
        out = {{}}
        for name, call in (("key", lambda: open({str(path)!r}, "rb").read()),
                           ("dir", lambda: __import__("os").listdir({str(path.parent)!r}))):
            try:
                call()
                out[name] = "read"
            except PermissionError:
                out[name] = "refused"
        print(json.dumps(out))
    """)
    assert tried == {"key": "refused", "dir": "refused"}


@needs_root
@pytest.mark.parametrize("account", ["nobody", "wbh-lt-stranger"])
def test_an_account_that_is_not_one_of_the_spaces_nodes_is_refused(service, account):
    said = run_as(account, f"""
        import json
        from workbench.errors import WorkbenchUserError
        from workbench.linkage.client import pseudonyms
        try:
            pseudonyms({str(service.space.root)!r}, ["123"])
            print(json.dumps("evaluated"))
        except WorkbenchUserError as exc:
            print(json.dumps(exc.reason))
    """)
    assert said == "access-denied"
    assert '"refused"' in service.output() and '"access-denied"' in service.output()


def test_invalid_elements_and_batches_are_refused_whole(service):
    valid = oprf.blind(b"NID1")[1]
    alias = valid[:31] + bytes([valid[31] | 0x80])
    cases = {
        "identity": (bytes(32), 400, "invalid-element"),
        "alias in a batch": (valid * 3 + alias, 400, "invalid-element"),
        "not a whole element": (valid + b"\x01", 400, "bad-batch"),
        "too many": (valid * (linkage.MAX_BATCH + 1), 413, "batch-too-large"),
    }
    for name, (body, status, reason) in cases.items():
        got, error, _ = post(service.socket, body)
        assert (got, error["reason"]) == (status, reason), name
    _, error, _ = post(service.socket, valid * 3 + alias)
    assert "element 3 of the batch" in error["message"]
    assert post(service.socket, valid * 4)[0] == 200  # the service is still serving


def test_the_rate_limit_refuses_a_burst_with_a_retry_after():
    space = open_space()
    try:
        element = oprf.blind(b"NID1")[1]
        with start_linkage(space, max_batch=4, per_minute=8, per_day=1000) as limited:
            assert post(limited.socket, element * 4)[0] == 200
            assert post(limited.socket, element * 4)[0] == 200
            status, error, retry = post(limited.socket, element * 4)
            assert (status, error["reason"]) == (429, "rate-limited") and int(retry) >= 1
    finally:
        shutil.rmtree(space.root, ignore_errors=True)


def test_the_daily_quota_refuses_and_survives_a_restart():
    space = open_space()
    try:
        element = oprf.blind(b"NID1")[1]
        with start_linkage(space, max_batch=4, per_minute=1000, per_day=10) as quota:
            assert [post(quota.socket, element * 4)[0] for _ in range(2)] == [200, 200]
            status, error, _ = post(quota.socket, element * 4)
            assert (status, error["reason"]) == (429, "quota-exhausted")
        with start_linkage(space, max_batch=4, per_minute=1000, per_day=10) as quota:
            assert post(quota.socket, element * 4)[0] == 429  # the count is state, kept
            assert post(quota.socket, element * 2)[0] == 200  # exactly up to the quota
            with pytest.raises(WorkbenchUserError) as refused:
                pseudonyms(space, ["123"])
            assert refused.value.reason == "quota-exhausted"
        state = json.loads((linkage.state_dir(space) / "state.json").read_text())
        (_day, peers), = state["days"].items()
        me = pwd.getpwuid(os.getuid()).pw_name
        assert peers == {me: {"elements": 10, "batches": 3}}  # counts, nothing else
        from click.testing import CliRunner

        from workbench.cli import cli

        shown = CliRunner().invoke(cli, ["linkage", "usage", "--data-dir", str(space.root)])
        assert shown.exit_code == 0
        assert shown.output.splitlines()[1].split() == [_day, me, "10", "3"]
        (linkage.state_dir(space) / "state.json").write_text("{not json")
        with pytest.raises(WorkbenchUserError, match="is not the linkage service's state"):
            start_linkage(space, ready_timeout=20).stop()
    finally:
        shutil.rmtree(space.root, ignore_errors=True)


def test_pseudonyms_stay_unlinkable_across_studies_with_the_existing_rekeying(service):
    ids = national_ids(50)
    space_wide = pseudonyms(service.space, ids + ids[:10])
    key = new_key()
    first = study_pseudonyms(key, "study-one", space_wide)
    second = study_pseudonyms(key, "study-two", space_wide)
    assert list(first[50:]) == list(first[:10])  # stable within a study
    assert not set(first) & set(second)  # no id in common between two studies
    assert not (set(first) | set(second)) & set(space_wide)  # none is the space-wide one


def test_missing_ids_stay_missing_and_bad_ids_are_named_by_row(service):
    got = pseudonyms(service.space, ["123", None, float("nan"), "", 123])
    assert got[1:4] == [None, None, None] and got[0] == got[4]
    with pytest.raises(WorkbenchUserError, match="row 1 ") as bad:
        pseudonyms(service.space, ["123", "12\x003"])
    assert "12" not in str(bad.value).replace("row 1", "")


def test_a_stopped_service_is_one_line_naming_its_socket():
    space = open_space()
    try:
        with pytest.raises(WorkbenchUserError, match="linkage service is not answering"):
            pseudonyms(space, ["123"])
    finally:
        shutil.rmtree(space.root, ignore_errors=True)


def test_the_supervisor_runs_it_once_the_space_has_one():
    from workbench.runtime import socket_answers
    from workbench.services import SERVICES, space_services

    entry = next(s for s in SERVICES if s.label == "linkage service")
    space = open_space()
    try:
        assert not entry.applies(space)  # a space without OPRF linkage starts nothing more
        linkage.state_dir(space).mkdir()
        policy = Path(__file__).resolve().parents[2] / "workbench/hub_config/policy.yaml"
        with space_services(space, policy, echo=lambda _line: None,
                            services=(entry,)) as started:
            assert started == ["linkage service"]
            assert pseudonyms(space, ["123"])[0] is not None
        assert not socket_answers(linkage.socket_path(space))
    finally:
        shutil.rmtree(space.root, ignore_errors=True)


@pytest.mark.parametrize("content", [b"short", bytes(32), b"\xff" * 32],
                         ids=["short", "zero", "over-the-order"])
def test_a_damaged_key_stops_the_start_with_one_line(content):
    space = open_space()
    try:
        state = linkage.state_dir(space)
        state.mkdir()
        (state / "oprf.key").write_bytes(content)
        with pytest.raises(WorkbenchUserError, match="is not a linkage key"):
            start_linkage(space, ready_timeout=20).stop()
    finally:
        shutil.rmtree(space.root, ignore_errors=True)


@needs_root
def _clk_upload(space, socket):
    from workbench.linkage import clk

    clk.upload_reference(space, ["a1" * 12], [clk._clk(bytes(range(1, 129)))], socket=socket)


@pytest.mark.parametrize("call", [lambda space, socket: pseudonyms(space, ["123"], socket=socket),
                                  _clk_upload], ids=["oprf", "clk"])
def test_the_node_sends_nothing_to_a_socket_another_account_serves(call):
    import subprocess
    import sys
    import textwrap

    space = open_space()
    uid = pwd.getpwnam("nobody").pw_uid
    (space.root / "fake").mkdir()
    os.chown(space.root / "fake", uid, -1)
    fake = space.root / "fake" / "linkage.sock"
    server = subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c",
         textwrap.dedent(f"""
            import os, socket, sys
            s = socket.socket(socket.AF_UNIX); s.bind({str(fake)!r}); os.chmod({str(fake)!r}, 0o666)
            s.listen(1); print("ready", flush=True)
            conn, _ = s.accept(); conn.settimeout(5)
            try:
                got = conn.recv(65536)
            except OSError:
                got = b""
            print(len(got), flush=True)
         """)], cwd="/", stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        with pytest.raises(Exception, match="not by the linkage service's account"):
            call(space, fake)
        assert server.stdout.readline().strip() == "0"  # not a byte was sent to it
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(space.root, ignore_errors=True)


def test_a_rate_limited_node_waits_and_gets_every_pseudonym():
    space = open_space()
    try:
        ids = national_ids(244)  # 4 more than a minute's burst of 240
        with start_linkage(space, max_batch=4, per_minute=240, per_day=1000) as limited:
            got = pseudonyms(space, ids, batch=4)
            log = limited.output()
        assert '"reason": "rate-limited"' in log  # it was refused once, then served
        assert log.count('"event": "evaluate"') == 61
        with start_linkage(space) as unlimited:
            assert pseudonyms(space, ids) == got
            assert unlimited.output().count('"event": "evaluate"') == 1
    finally:
        shutil.rmtree(space.root, ignore_errors=True)


def test_a_directory_that_is_no_space_is_one_line_and_nothing_is_made():
    import subprocess

    from workbench.runtime import workbench_command

    space = open_space()
    try:
        done = subprocess.run(workbench_command("linkage", "serve", "--data-dir",
                                                str(space.root)),
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"error: {space.root} is not a data space (no space.json): build one with "
            f"'workbench init --data-dir {space.root}'."]
        assert list(space.root.iterdir()) == []  # no key, no socket
    finally:
        shutil.rmtree(space.root, ignore_errors=True)
