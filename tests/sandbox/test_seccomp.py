"""The kernel's seccomp filter, loaded by the real bwrap: every listed call is refused, namespace
clones are refused, and what a kernel needs (threads, fork, subprocesses) still works.

The probe runs as nobody under the filter; a control run without the filter shows the probe can
tell a refusal from the kernel's own answer (so these tests fail if the filter is not loaded)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from sandbox_support import syscall_numbers

from workbench.sandbox import seccomp
from workbench.sandbox.launch import tool_path

PYTHON = "/usr/bin/python3.11"  # Debian's: reachable by nobody wherever the checkout lives
NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"]

PROBE = r"""
import ctypes, errno, json, os, socket, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
numbers, clone_nr, ns_flags = json.loads(sys.argv[1])
out = {"calls": {}, "clones": {}}
def call(nr, *args):
    ctypes.set_errno(0)
    result = libc.syscall(nr, *args)
    return "ok" if result != -1 else errno.errorcode.get(ctypes.get_errno(), "?")
for name, nr in numbers.items():  # harmless arguments: zeros and null pointers, but
    # ptrace(0) would be PTRACE_TRACEME and hand this process to bwrap's init: an invalid request
    out["calls"][name] = call(nr, 0xFFFF if name == "ptrace" else 0, 0, 0, 0, 0, 0)
if len(sys.argv) > 2:  # under the filter only: a namespace clone must fail, never fork
    for name, flag in ns_flags.items():
        ctypes.set_errno(0)
        pid = libc.syscall(clone_nr, flag | 17, 0, 0, 0, 0)  # 17 = SIGCHLD
        if pid == 0:
            os._exit(0)  # the filter failed and this is the child: leave at once
        if pid > 0:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # a child in a new pid namespace may be reaped elsewhere
                pass
        out["clones"][name] = "ok" if pid != -1 else errno.errorcode.get(ctypes.get_errno())
out["sockets"], out["socketpairs"] = {}, {}
for family in range(1, 46):  # AF_UNIX .. AF_MCTP
    for key, make in (("sockets", socket.socket), ("socketpairs", socket.socketpair)):
        try:
            made = make(family, socket.SOCK_DGRAM)
            for one in made if isinstance(made, tuple) else (made,):
                one.close()
            out[key][family] = "ok"
        except OSError as exc:
            out[key][family] = errno.errorcode.get(exc.errno, "?")
box = []
worker = threading.Thread(target=box.append, args=(1,))
worker.start(); worker.join()
out["thread"] = box == [1]
out["subprocess"] = subprocess.run(["/bin/true"]).returncode == 0
child = os.fork()
if child == 0:
    os._exit(7)
out["fork"] = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 7
print(json.dumps(out))
"""


def _probe(with_filter: bool) -> dict:
    payload = json.dumps([syscall_numbers(seccomp.DENIED), syscall_numbers(["clone"])["clone"],
                          seccomp.NAMESPACE_FLAGS])
    argv = [tool_path("bwrap"), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--unshare-pid", "--unshare-net", "--die-with-parent"]
    fds: tuple[int, ...] = ()
    if with_filter:
        fd = seccomp.program_fd()
        fds = (fd,)
        argv += ["--seccomp", str(fd)]
    argv += ["--", tool_path("setpriv"), *NOBODY, "--", PYTHON, "-c", PROBE, payload]
    if with_filter:
        argv.append("filtered")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def filtered():
    return _probe(with_filter=True)


@pytest.fixture(scope="module")
def unfiltered():
    return _probe(with_filter=False)


def test_every_listed_call_is_refused_with_eperm(filtered):
    assert filtered["calls"] == {name: "EPERM" for name in seccomp.DENIED}


def test_namespace_clones_are_refused(filtered):
    assert filtered["clones"] == {name: "EPERM" for name in seccomp.NAMESPACE_FLAGS}


# socket() opens every allowed family; socketpair() exists for AF_UNIX only
@pytest.mark.parametrize("call, opens", [("sockets", ("1", "2", "10", "16")),
                                         ("socketpairs", ("1",))])
def test_only_unix_inet_and_netlink_sockets_can_be_opened(filtered, unfiltered, call, opens):
    allowed = {str(f) for f in seccomp.SOCKET_FAMILIES.values()}
    refused = {f for f, answer in filtered[call].items() if answer == "EPERM"}
    assert refused == set(filtered[call]) - allowed
    assert all(filtered[call][f] == "ok" for f in opens)
    # unfiltered, nobody gets other answers (EAFNOSUPPORT, ENODEV...), except where a missing
    # capability refuses on its own (AF_PACKET 17, AF_XDP 44): the refusals above are the filter's
    assert {f for f in refused if unfiltered[call][f] == "EPERM"} <= {"17", "44"}


def test_a_kernel_still_gets_threads_fork_and_subprocesses(filtered):
    assert filtered["thread"] and filtered["fork"] and filtered["subprocess"]


def test_without_the_filter_the_probe_sees_the_kernels_own_answers(unfiltered):
    # the control: these calls do not answer EPERM to nobody on their own, so the EPERMs above
    # come from the filter (e.g. unshare(0) succeeds, io_uring_setup(0, NULL) is EFAULT/EINVAL)
    own = {name: unfiltered["calls"][name] for name in
           ("unshare", "setns", "io_uring_setup", "perf_event_open", "keyctl", "kcmp",
            "process_vm_readv", "ptrace")}
    assert all(answer != "EPERM" for answer in own.values()), own


def test_the_program_is_read_from_its_start_and_closed_on_exec():
    fd = seccomp.program_fd()
    try:
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0 and not os.get_inheritable(fd)
        loaded = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    # what bwrap reads is what the kernel's start record names
    assert loaded and hashlib.sha256(loaded).hexdigest() == seccomp.sha256()
