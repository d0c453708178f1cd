"""The limits a study server and its kernels run under bite: a process allocating more than the
memory limit dies (cgroup) or gets MemoryError (rlimit fallback); a fork bomb hits the cap."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from workbench import accounts
from workbench.hub.limits import Limits, ServerCgroup, cgroup_mode, inherit_limits, make_preexec

GROW = "x = bytearray(768 * 1024**2); x[::4096] = b'1' * len(x[::4096]); print('survived')"
LIMITS = Limits(memory_bytes=256 * 1024**2, cpu=0.5, max_processes=64)


def _server_ids():
    return accounts.ensure_user(accounts.study_server_user("limits-test"))


def test_rlimit_fallback_refuses_the_allocation():
    uid, gid = _server_ids()
    preexec = make_preexec(LIMITS, [], use_rlimit_as=True, uid=uid, gid=gid)
    result = subprocess.run([sys.executable, "-I", "-c", GROW], preexec_fn=preexec,
                            capture_output=True, text=True, timeout=60)
    assert "survived" not in result.stdout
    assert "MemoryError" in result.stderr


@pytest.mark.skipif(cgroup_mode() is None, reason="no writable cgroup hierarchy on this machine")
def test_cgroup_memory_limit_kills_the_process_and_counts_it():
    uid, gid = _server_ids()
    group = ServerCgroup(f"test-{uuid.uuid4().hex[:8]}")
    assert group.create(LIMITS)
    try:
        assert group.memory_limit() == LIMITS.memory_bytes
        preexec = make_preexec(LIMITS, group.procs_files(), use_rlimit_as=False, uid=uid, gid=gid)
        result = subprocess.run([sys.executable, "-I", "-c", GROW], preexec_fn=preexec,
                                capture_output=True, text=True, timeout=60)
        assert "survived" not in result.stdout
        assert result.returncode == -9  # the OOM killer's SIGKILL
        assert group.oom_kills() >= 1
    finally:
        group.remove()


def test_process_cap_stops_a_fork_bomb():
    uid, gid = _server_ids()
    small = Limits(memory_bytes=2 * 1024**3, cpu=1, max_processes=8)
    preexec = make_preexec(small, [], use_rlimit_as=False, uid=uid, gid=gid)
    bomb = ("import os, time\nkids = 0\ntry:\n    for _ in range(50):\n"
            "        if os.fork() == 0:\n            time.sleep(2); os._exit(0)\n"
            "        kids += 1\nexcept OSError:\n    print('capped at', kids)\n")
    result = subprocess.run([sys.executable, "-I", "-c", bomb], preexec_fn=preexec,
                            capture_output=True, text=True, timeout=60)
    assert "capped at" in result.stdout
    assert int(result.stdout.split()[-1]) < 50


@pytest.mark.skipif(cgroup_mode() is None, reason="no writable cgroup hierarchy on this machine")
def test_a_process_started_for_a_server_inherits_its_cgroup_and_rlimits():
    """What the root kernel launcher uses: the kernel lands under its server's limits."""
    uid, gid = _server_ids()
    group = ServerCgroup(f"test-{uuid.uuid4().hex[:8]}")
    assert group.create(LIMITS)
    server = subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(60)"],
                              preexec_fn=make_preexec(LIMITS, group.procs_files(), False,
                                                      uid, gid))
    try:
        time.sleep(0.2)
        child = subprocess.run([sys.executable, "-I", "-c", GROW],
                               preexec_fn=inherit_limits(server.pid), capture_output=True,
                               text=True, timeout=60)
        assert "survived" not in child.stdout and child.returncode == -9
        assert group.oom_kills() >= 1
        peek = subprocess.run(
            [sys.executable, "-I", "-c", "import resource;"
             "print(resource.getrlimit(resource.RLIMIT_NPROC)[0])"],
            preexec_fn=inherit_limits(server.pid), capture_output=True, text=True)
        assert peek.stdout.strip() == str(LIMITS.max_processes)
    finally:
        server.kill()
        server.wait()
        group.remove()
