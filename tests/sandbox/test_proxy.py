"""The audit proxy on a real sealed kernel: fail closed, debugger denied, attribution, signatures,
output hashes, lifecycle records."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from jupyter_client.session import new_id
from sandbox_support import (
    STUDY,
    execute,
    kernel_manager,
    kernelspec_dir,
    make_space,
    read_records,
    wait_for_records,
)

from workbench.provenance.service import start_collector
from workbench.sandbox import seccomp
from workbench.sandbox.proxy import MAX_OUTPUTS, _Execution

pytestmark = pytest.mark.slow


def _shell_reply(kc, msg_id):
    reply = kc.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:  # skip replies of earlier tests
        reply = kc.get_shell_msg(timeout=30)
    return reply


def _records_for(space, msg_id, kind="cell-execution"):
    return [r for r in read_records(space)
            if r["kind"] == kind and r["fields"].get("msg_id") == msg_id]


def test_execution_is_recorded_before_and_after_with_output_hashes(kernel):
    code = "print('hello'); 6 * 7"
    result = execute(kernel["kc"], code)
    assert result["status"] == "ok" and "hello" in result["text"]
    done = wait_for_records(kernel["space"], lambda r: r["kind"] == "cell-execution"
                            and r["fields"]["msg_id"] == result["msg_id"]
                            and r["fields"]["status"] == "ok")
    submitted, = [r for r in _records_for(kernel["space"], result["msg_id"])
                  if r["fields"]["status"] == "submitted"]
    fields = done[0]["fields"]
    assert submitted["seq"] < done[0]["seq"]
    assert fields["ref"] == submitted["hash"]  # the completion points at its request
    assert fields["study"] == STUDY and fields["kernel_id"] == kernel["km"].kernel_id
    assert fields["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    assert "code" not in fields  # the code is in the submitted record only
    assert [o["output_type"] for o in fields["outputs"]] == ["stream", "execute-result"]
    assert all(len(o["sha256"]) == 64 and o["size"] > 0 for o in fields["outputs"])
    # hashes only: no output value reaches the log
    assert "hello" not in str(fields) and "42" not in str(fields["outputs"])
    assert fields["started"] <= fields["ended"]


def test_stream_digests_do_not_depend_on_how_output_is_flushed(kernel):
    """print() may reach the proxy in one message or several: the digest is of the text a
    notebook shows (consecutive writes to one stream are one output), so a re-run matches."""
    digests = []
    for code in ("import sys; sys.stdout.write('ab\\ncd\\n'); sys.stdout.flush()",
                 "import sys, time\nfor part in ('ab\\n', 'cd\\n'):\n"
                 "    sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.3)"):
        result = execute(kernel["kc"], code)
        done = wait_for_records(kernel["space"], lambda r, m=result["msg_id"]: r["kind"]
                                == "cell-execution" and r["fields"]["msg_id"] == m
                                and r["fields"]["status"] == "ok")
        digests.append(done[0]["fields"]["outputs"])
    expected = [{"output_type": "stream", "sha256": hashlib.sha256(b"ab\ncd\n").hexdigest(),
                 "size": 6}]
    assert digests == [expected, expected]


def test_interleaved_streams_and_malformed_stream_content_are_digested_apart():
    execution = _Execution(record={}, record_id=None)
    execution.add_stream("stdout", b"a")
    execution.add_stream("stderr", b"b")
    execution.add_stream("stdout", b"c")
    execution.add_output("stream", b"{not json")  # what the proxy does with a malformed one
    execution.add_stream("stdout", b"d")
    assert [o["sha256"] for o in execution.outputs] == [
        hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c", b"{not json", b"d")]


def test_unattributed_requests_are_the_servers_run_user(kernel):
    kc = kernel["kc"]
    msg = kc.session.msg("execute_request", {"code": "1", "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False})
    msg["header"]["username"] = "forged-bob"
    kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    kc.get_shell_msg(timeout=30)
    record, *_ = _records_for(kernel["space"], msg_id)
    assert record["fields"]["user"] == kernel["km"].provisioner.run_user != "forged-bob"
    assert record["fields"]["source"] == "server"


def test_websocket_attribution_wins_over_header_username(kernel):
    kc = kernel["kc"]
    msg = kc.session.msg("execute_request", {"code": "2", "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False})
    msg["header"]["username"] = "forged-bob"
    kernel["km"].provisioner.attribute(msg["header"]["msg_id"], "alice", "analysis.ipynb")
    kc.shell_channel.send(msg)
    kc.get_shell_msg(timeout=30)
    record, *_ = _records_for(kernel["space"], msg["header"]["msg_id"])
    assert record["fields"]["user"] == "alice"
    assert record["fields"]["source"] == "websocket"
    assert record["fields"]["notebook_path"] == "analysis.ipynb"


def test_debug_request_is_denied_and_recorded(kernel):
    kc = kernel["kc"]
    msg = kc.session.msg("debug_request", {"type": "request", "seq": 1, "command": "evaluate",
                                           "arguments": {"expression": "open('/etc/passwd')"}})
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["msg_type"] == "debug_reply"
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "denied"
    denial, = _records_for(kernel["space"], msg["header"]["msg_id"], kind="kernel-lifecycle")
    assert denial["fields"]["event"] == "denied" and denial["fields"]["reason"] == "debug-request"


def test_unknown_message_types_are_denied(kernel):
    kc = kernel["kc"]
    msg = kc.session.msg("apply_request", {})
    kc.shell_channel.send(msg)
    reply = kc.get_shell_msg(timeout=30)
    assert reply["msg_type"] == "apply_reply" and reply["content"]["status"] == "error"


def test_comm_messages_are_recorded_by_digest_only(kernel):
    kc = kernel["kc"]
    msg = kc.session.msg("comm_open", {"comm_id": "c1", "target_name": "nobody",
                                       "data": {"value": "patient-level-looking"}})
    kc.shell_channel.send(msg)
    record = wait_for_records(kernel["space"], lambda r: r["fields"].get("msg_id")
                              == msg["header"]["msg_id"])
    assert record and record[0]["fields"]["reason"] == "comm-open"
    assert "patient-level-looking" not in str(record[0])


def _second_client(km):
    """Another client of ``km``'s kernel. ``km.client()`` clones the manager's session, id
    included, and a client's sockets take that id as their ZMQ identity: the proxy's ROUTER
    would refuse the second connection under the first one's identity, so nothing it sent
    would reach the proxy at all. A fresh session id makes it a client of its own."""
    client = km.client()
    client.session.session = new_id()
    return client


def test_badly_signed_requests_never_reach_the_kernel(kernel, tmp_path):
    marker = kernel["space"].workspace(STUDY) / "forged-signature.txt"
    forger = _second_client(kernel["km"])
    key = forger.session.key
    forger.session.key = b"not-the-kernel-key"
    forger.start_channels()
    try:
        msg_id = forger.execute(f"open({str(marker)!r}, 'w').write('x')")
        # Then a well-signed cell on the same connection: the proxy takes one connection's
        # requests in order and the kernel runs them in order, so once this one has its reply
        # the forged one has been dropped or would have run.
        forger.session.key = key
        after = forger.execute(f"import os; print(os.path.exists({str(marker)!r}))")
        assert _shell_reply(forger, after)["content"]["status"] == "ok"
    finally:
        forger.stop_channels()
    assert not marker.exists()
    assert not _records_for(kernel["space"], msg_id)
    assert _records_for(kernel["space"], after)  # the proxy took the good one


def test_interrupt_is_a_recorded_lifecycle_event(kernel):
    kernel["km"].interrupt_kernel()
    events = wait_for_records(kernel["space"], lambda r: r["kind"] == "kernel-lifecycle"
                              and r["fields"]["event"] == "interrupt"
                              and r["fields"]["kernel_id"] == kernel["km"].kernel_id)
    assert events


@pytest.fixture
def own_space():
    root = Path(tempfile.mkdtemp(prefix="wb-sbx-fc-", dir="/tmp"))
    space = make_space(root)
    yield space, kernelspec_dir(root)
    shutil.rmtree(root, ignore_errors=True)


def test_collector_stopped_means_no_cell_runs(own_space):
    space, jupyter = own_space
    collector = start_collector(space)
    km = kernel_manager(space, jupyter)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        assert execute(kc, "1 + 1")["status"] == "ok"
        collector.stop()
        marker = space.workspace(STUDY) / "ran-without-record.txt"
        result = execute(kc, f"open({str(marker)!r}, 'w').write('x')")
        assert result["status"] == "error"
        assert result["reply"]["ename"] == "ProvenanceUnavailable"
        assert "ProvenanceUnavailable" in result["errors"]  # the notebook shows why
        assert not marker.exists()
        collector = start_collector(space)  # back up: cells run again, and are recorded
        again = execute(kc, f"open({str(marker)!r}, 'w').write('x')")
        assert again["status"] == "ok" and marker.exists()
        assert _records_for(space, again["msg_id"])
        assert not _records_for(space, result["msg_id"])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        collector.stop()


def test_kernel_start_is_refused_without_collector(own_space):
    space, jupyter = own_space
    km = kernel_manager(space, jupyter)
    with pytest.raises(Exception, match="provenance collector"):
        km.start_kernel()
    assert not km.has_kernel


def test_lifecycle_start_and_shutdown_are_recorded(own_space):
    space, jupyter = own_space
    with start_collector(space):
        km = kernel_manager(space, jupyter)
        km.start_kernel()
        kernel_id = km.kernel_id
        socket_dirs = Path(km.connection_file).parent.parent
        assert socket_dirs.is_dir()
        km.shutdown_kernel(now=False)
        events = [r["fields"] for r in read_records(space) if r["kind"] == "kernel-lifecycle"
                  and r["fields"]["kernel_id"] == kernel_id]
    assert [e["event"] for e in events][0] == "start"
    assert events[0]["sandbox"] == "bwrap-setpriv" and events[0]["uid"] != 0
    assert events[0]["seccomp_sha256"] == seccomp.sha256()  # which filter sealed the kernel
    assert "shutdown" in [e["event"] for e in events]
    assert not socket_dirs.exists()


def test_outputs_beyond_the_record_limit_share_one_digest():
    execution = _Execution({}, None)
    bodies = [f"output {i}".encode() for i in range(MAX_OUTPUTS + 5)]
    for body in bodies:
        execution.add_output("display-data", body)
    assert len(execution.outputs) == MAX_OUTPUTS
    assert execution.outputs[-2]["sha256"] == hashlib.sha256(bodies[MAX_OUTPUTS - 2]).hexdigest()
    rest = b"".join(bodies[MAX_OUTPUTS - 1:])
    assert execution.outputs[-1] == {"output_type": "overflow", "size": len(rest),
                                     "sha256": hashlib.sha256(rest).hexdigest()}


def test_output_hashes_cover_a_burst(kernel):
    result = execute(kernel["kc"], "for i in range(3000): display(i)")
    done = wait_for_records(kernel["space"], lambda r: r["kind"] == "cell-execution"
                            and r["fields"]["msg_id"] == result["msg_id"]
                            and r["fields"]["status"] == "ok", timeout=30)
    assert len(done[0]["fields"]["outputs"]) == 3000


def _wait_running(kc, msg_id):
    """Until the kernel has started running ``msg_id`` (its execute_input on iopub)."""
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if (msg["msg_type"] == "execute_input"
                and msg["parent_header"].get("msg_id") == msg_id):
            return


def test_a_cell_cut_short_by_a_restart_is_recorded_as_aborted(kernel):
    kc = kernel["kc"]
    msg_id = kc.execute("import time; time.sleep(60)")
    _wait_running(kc, msg_id)
    # A restart first sends the kernel an interrupt_request, then kills it; the interrupt, still
    # being recorded when the kernel died, used to reach the NEW kernel (SIGINT at any point of
    # its start, even half-way through a reply, which the client then refused for its HMAC).
    kernel["km"].restart_kernel(now=True)
    kc.wait_for_ready(timeout=60)
    aborted = wait_for_records(kernel["space"], lambda r: r["kind"] == "cell-execution"
                               and r["fields"]["msg_id"] == msg_id
                               and r["fields"]["status"] == "aborted")
    assert aborted


def test_a_request_sent_to_a_dead_kernel_never_reaches_its_successor(own_space):
    """A restart in its two halves (as KernelManager.restart_kernel does it), with a cell sent
    in between: the proxy records it and passes it on towards the kernel, which is gone. It is
    recorded as aborted, so it must not run in the new kernel either."""
    space, jupyter = own_space
    with start_collector(space):
        km = kernel_manager(space, jupyter)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            marker = space.workspace(STUDY) / "sent-to-the-old-kernel.txt"
            km.shutdown_kernel(now=True, restart=True)  # the first half: the kernel is gone
            stale = kc.execute(f"open({str(marker)!r}, 'w').write('x')")
            assert wait_for_records(space, lambda r: r["fields"].get("msg_id") == stale)
            km.start_kernel(**km._launch_args)  # the second half, with the same arguments
            kc.wait_for_ready(timeout=60)
            # the stale cell would run first: it was queued before anything sent from now on
            after = execute(kc, f"import os; print(os.path.exists({str(marker)!r}))")
            assert after["status"] == "ok" and after["text"].strip() == "False"
            assert not marker.exists()
            assert [r["fields"]["status"] for r in _records_for(space, stale)] == \
                ["submitted", "aborted"]
            # and a client connecting after the restart reaches the new kernel
            late = _second_client(km)
            late.start_channels()
            try:
                late.wait_for_ready(timeout=30)
            finally:
                late.stop_channels()
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def test_subshell_requests_are_recorded(kernel):
    kc = kernel["kc"]
    msg = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=30)
    assert reply["content"]["status"] == "ok"
    record, = _records_for(kernel["space"], msg["header"]["msg_id"])
    assert record["fields"]["reason"] == "create-subshell-request"
    subshell = reply["content"]["subshell_id"]
    run = kc.session.msg("execute_request", {"code": "3", "silent": False, "store_history": False,
                                             "user_expressions": {}, "allow_stdin": False})
    run["header"]["subshell_id"] = subshell
    kc.shell_channel.send(run)
    assert wait_for_records(kernel["space"], lambda r: r["fields"].get("msg_id")
                            == run["header"]["msg_id"] and r["fields"]["status"] == "ok")


def test_user_expressions_are_refused(kernel):
    marker = kernel["space"].workspace(STUDY) / "user-expression.txt"
    kc = kernel["kc"]
    msg_id = kc.execute("1", user_expressions={"x": f"open({str(marker)!r}, 'w').write('x')"})
    reply = _shell_reply(kc, msg_id)
    assert reply["content"]["status"] == "error" and "user_expressions" in \
        reply["content"]["evalue"]
    # had the request reached the kernel, it would have run before this next cell
    assert execute(kc, "1")["status"] == "ok"
    assert not marker.exists()
    denial, = _records_for(kernel["space"], msg_id, kind="kernel-lifecycle")
    assert denial["fields"]["event"] == "denied"


def test_typed_input_is_recorded_by_digest(kernel):
    kc = kernel["kc"]
    msg_id = kc.execute("typed = input('value? ')", allow_stdin=True)
    request = kc.get_stdin_msg(timeout=30)
    assert request["msg_type"] == "input_request"
    kc.input("print('from-input')")
    assert _shell_reply(kc, msg_id)["content"]["status"] == "ok"
    typed = [r for r in read_records(kernel["space"]) if r["kind"] == "cell-execution"
             and r["fields"].get("reason") == "input-reply"]
    assert typed and "from-input" not in json.dumps(typed)
