"""The collector service and the writers' client: acks, refusals, fail-closed, uids."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.provenance.client import ProvenanceClient, ProvenanceRefused, ProvenanceUnavailable

LOGIN = {"user": "alice", "event": "login"}


def test_append_returns_the_record_hash_once_durable(collector, space):
    client = collector.client()
    record_id = client.append("login", LOGIN)
    assert len(record_id) == 64 and int(record_id, 16) >= 0
    assert client.append("login", LOGIN) != record_id


def test_append_async(collector):
    ids = asyncio.run(_append_many(collector.client(), 20))
    assert len(set(ids)) == 20


async def _append_many(client, count):
    return await asyncio.gather(*(client.append_async("login", LOGIN) for _ in range(count)))


def test_client_is_thread_safe(collector):
    client = collector.client()
    ids, errors = [], []

    def work():
        try:
            for _ in range(25):
                ids.append(client.append("login", LOGIN))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(ids)) == 100


def test_invalid_record_is_refused_naming_the_field_not_the_value(collector):
    client = collector.client()
    with pytest.raises(ProvenanceRefused) as caught:
        client.append("view-read", {"study": "cml-tki", "view": "v", "rows": "PATIENT-4711"})
    assert "rows" in str(caught.value) and "PATIENT-4711" not in str(caught.value)
    with pytest.raises(ProvenanceRefused) as caught:
        client.append("login", {**LOGIN, "diagnosis": "C92.1 of patient 4711"})
    assert "diagnosis" in str(caught.value) and "C92.1" not in str(caught.value)
    with pytest.raises(ProvenanceRefused, match="unknown record kind"):
        client.append("made-up", {})
    assert isinstance(caught.value, ProvenanceUnavailable)  # callers fail closed on both


def test_writers_cannot_read_back(collector):
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(collector.socket))
        conn.sendall(b'{"op": "read", "seq": 1}\n')
        reply = json.loads(conn.makefile("rb").readline())
    assert reply["ok"] is False and "only accepts 'append'" in reply["message"]


def test_stopped_collector_makes_writers_refuse(collector):
    client = collector.client(timeout=2)
    client.append("login", LOGIN)
    collector.stop()
    with pytest.raises(ProvenanceUnavailable):
        client.append("login", LOGIN)
    with pytest.raises(ProvenanceUnavailable):
        asyncio.run(client.append_async("login", LOGIN))


def test_unresponsive_collector_times_out(collector):
    os.kill(collector.pid, 19)  # SIGSTOP: the socket accepts but nobody answers
    try:
        with pytest.raises(ProvenanceUnavailable, match="no acknowledgement"):
            collector.client(timeout=1).append("login", LOGIN)
    finally:
        os.kill(collector.pid, 18)  # SIGCONT


def test_collector_restart_is_transparent_to_a_client(space, collector):
    client = collector.client()
    client.append("login", LOGIN)
    collector.stop()
    from workbench.provenance.service import start_collector

    with start_collector(space):
        client.append("login", LOGIN)  # the stale connection is noticed before sending


def test_store_and_key_belong_to_the_collector_account(collector, space):
    uid = accounts.ensure_user(accounts.COLLECTOR)[0]
    info = space.provenance.stat()
    assert info.st_uid == uid and stat.S_IMODE(info.st_mode) == 0o700
    key = (space.provenance / "tree-head.key").stat()
    assert key.st_uid == uid and stat.S_IMODE(key.st_mode) == 0o600
    assert os.stat(f"/proc/{collector.pid}/status") and _process_uid(collector.pid) == uid


def _process_uid(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError


def _append_as(uid, gid, socket_path):
    """Fork, become uid, send one append; return the collector's reply."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(str(socket_path))
                try:
                    conn.sendall(json.dumps({"op": "append", "kind": "login",
                                             "fields": LOGIN}).encode() + b"\n")
                except BrokenPipeError:
                    pass  # a refused peer is answered and hung up on at once
                os.write(write_end, conn.makefile("rb").readline())
        except BaseException as exc:
            os.write(write_end, json.dumps({"child-error": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        return json.loads(pipe.read())


def test_kernel_accounts_are_refused_even_with_a_path_to_the_socket(collector):
    uid, gid = accounts.ensure_user(accounts.study_kernel_user("provtest"))
    reply = _append_as(uid, gid, collector.socket)
    assert reply == {"ok": False, "reason": "writer-refused",
                     "message": "kernels may not write provenance"}


def test_service_accounts_can_write(collector):
    uid, gid = accounts.ensure_user(accounts.GATEWAY)
    reply = _append_as(uid, gid, collector.socket)
    assert reply["ok"] is True and len(reply["id"]) == 64


def test_start_collector_reports_a_collector_that_cannot_start(space):
    from workbench.provenance.service import start_collector

    space.run.mkdir(parents=True)
    space.collector_socket.mkdir()  # the socket path is taken by a directory
    with pytest.raises(WorkbenchUserError) as info:
        start_collector(space, ready_timeout=10)
    message = str(info.value)  # one line: the service, the collector's own words, its log
    assert "\n" not in message and message.startswith("the provenance collector did not start")
    assert "exists and is not a socket" in message
    log = Path(message.rsplit("its log is ", 1)[1])
    assert "exists and is not a socket" in log.read_text()
    log.unlink()


def test_socket_and_run_dir_modes(collector, space):
    assert stat.S_IMODE(space.collector_socket.stat().st_mode) == 0o666
    assert space.collector_socket.stat().st_uid == 0  # bound by root: the collector cannot move it
    assert stat.S_IMODE(space.run.stat().st_mode) == 0o755


def test_heads_are_signed_after_the_interval(collector, space):
    from workbench.provenance.reader import ProvenanceReader

    record_id = collector.client().append("login", LOGIN)  # far fewer than sign_every
    deadline = time.monotonic() + 10
    with ProvenanceReader(space) as reader:
        while not reader.heads() and time.monotonic() < deadline:
            time.sleep(0.1)
        head = reader.heads()[-1]
        assert head["tree_size"] == 1 and head["root_hash"] == record_id  # a one-leaf tree
        assert reader.verify().last_signed_size == 1


def test_oversized_and_garbled_requests_are_refused(collector):
    from workbench.provenance.client import MAX_LINE

    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(collector.socket))
        conn.sendall(b"not json\n")
        reader = conn.makefile("rb")
        assert json.loads(reader.readline())["reason"] == "bad-request"
        conn.sendall(b"x" * (MAX_LINE + 10) + b"\n")
        assert json.loads(reader.readline())["reason"] == "too-large"
    with pytest.raises(ProvenanceRefused, match="larger than"):
        collector.client().append("cell-execution", {"code": "x" * MAX_LINE})
    collector.client().append("login", LOGIN)  # the collector is still serving


def test_a_data_dir_the_collector_cannot_reach_is_reported(tmp_path):
    from workbench.paths import Space
    from workbench.provenance.service import start_collector

    hidden = tmp_path / "space"  # pytest's tmp_path is 0700 root
    hidden.mkdir()
    with pytest.raises(WorkbenchError, match="must be traversable"):
        start_collector(Space(hidden), ready_timeout=20)


def test_a_forked_writer_gets_its_own_connection(collector):
    client = collector.client()
    parent_id = client.append("login", LOGIN)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the inherited connection must not be reused
        try:
            os.write(write_end, client.append("login", {"user": "child", "event": "login"})
                     .encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        child_id = pipe.read().decode()
    assert len(child_id) == 64 and child_id != parent_id
    assert client.append("login", LOGIN) not in (parent_id, child_id)


def test_workbench_collector_command(space):
    import signal
    import subprocess
    import sys

    space.root.mkdir(parents=True, exist_ok=True)
    space.manifest.write_text('{"space_id": "test"}')  # what `workbench init` leaves
    command = [sys.executable, "-c", "from workbench.cli import main; main()", "collector",
               "--data-dir", str(space.root), "--sign-every", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = ProvenanceClient(space.collector_socket, timeout=2)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except ProvenanceUnavailable:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        for _ in range(3):
            client.append("login", LOGIN)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "collector stopped at 3 records" in output
    from workbench.provenance.reader import ProvenanceReader

    with ProvenanceReader(space) as reader:
        report = reader.verify()
    assert report.ok and report.last_signed_size == 3  # the final head was signed at SIGTERM


def test_collector_refuses_a_signing_key_others_can_read(space):
    from workbench.provenance.service import start_collector

    with start_collector(space):
        pass
    os.chmod(space.provenance / "tree-head.key", 0o644)
    with pytest.raises(WorkbenchError, match="mode 0600"):
        start_collector(space, ready_timeout=20)
