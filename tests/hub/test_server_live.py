"""Inside a real study server spawned by the hub: the contents API against symlinks, the
attribution of websocket cells, the kernel limit and the memory limit, with real kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import accounts
from workbench.hub.limits import ServerCgroup

pytestmark = pytest.mark.slow


def _as_kernel_uid(study: str, code: str) -> None:
    """Run Python as the study's kernel account (what a cell in the sandbox runs as)."""
    uid, gid = accounts.ensure_user(accounts.study_kernel_user(study))

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    subprocess.run([sys.executable, "-I", "-c", code], check=True, preexec_fn=drop)


def test_contents_api_refuses_to_write_through_a_planted_symlink(live_hub, alice_server):
    space = live_hub.space
    # a file the server uid can write, outside the workspace: the prize of the attack
    target = space.root / "hub" / "servers" / "cml-tki" / "alice" / "victim.txt"
    target.write_text("original")
    uid, gid = accounts.ensure_user(accounts.study_server_user("cml-tki"))
    os.chown(target, uid, gid)
    outside_dir = space.root / "hub" / "servers" / "cml-tki" / "alice" / "lab-settings"
    workspace = space.workspace("cml-tki")
    _as_kernel_uid("cml-tki", f"import os; os.symlink({str(target)!r}, "
                              f"{str(workspace / 'notes.txt')!r}); "
                              f"os.symlink({str(outside_dir)!r}, {str(workspace / 'dir')!r})")
    model = {"type": "file", "format": "text", "content": "log wiped"}
    put = alice_server.request("PUT", "api/contents/notes.txt", json=model)
    assert put.status_code == 403, put.text
    assert target.read_text() == "original"
    assert alice_server.request("GET", "api/contents/notes.txt").status_code == 403
    nested = alice_server.request("PUT", "api/contents/dir/new.txt", json=model)
    assert nested.status_code == 403
    assert not (outside_dir / "new.txt").exists()
    # a plain file in the workspace still works
    ok = alice_server.request("PUT", "api/contents/fine.txt", json=model)
    assert ok.status_code in (200, 201), ok.text


def test_websocket_cell_is_recorded_with_the_authenticated_user(live_hub, alice_server,
                                                                 records):
    kernel = alice_server.start_kernel()
    try:
        result = alice_server.execute(kernel, "print(6 * 7)")
        assert result["status"] == "ok", result
        assert any("42" in out.get("text", "") for out in result["outputs"])
        cells = [r["fields"] for r in records(live_hub.space) if r.get("kind") == "cell-execution"]
        mine = [f for f in cells if f["msg_id"] == result["msg_id"]]
        assert mine, cells
        assert {f["user"] for f in mine} == {"alice"}  # not the forged header.username
        assert all(f["study"] == "cml-tki" for f in mine)
    finally:
        alice_server.request("DELETE", f"api/kernels/{kernel}")


def test_kernel_count_is_limited_by_the_policy(alice_server):
    first = alice_server.start_kernel()  # the test policy allows one kernel
    try:
        second = alice_server.request("POST", "api/kernels", json={"name": "workbench-python"})
        assert second.status_code == 403
        assert "at most 1 kernel" in second.json()["message"]
    finally:
        alice_server.request("DELETE", f"api/kernels/{first}")


def test_python3_kernel_by_name_is_refused(alice_server):
    response = alice_server.request("POST", "api/kernels", json={"name": "python3"})
    assert response.status_code in (400, 403, 404, 500)
    assert not [k for k in alice_server.request("GET", "api/kernels").json()
                if k["name"] == "python3"]


def test_memory_limit_bites_in_a_kernel(live_hub, alice_server):
    """The test policy gives the study 1G: a cell allocating and touching 2G cannot finish.
    The kernel is started by the root kernel launcher, which puts it under its server's limits
    (workbench.hub.limits.inherit_limits)."""
    cgroup = ServerCgroup("alice-cml-tki")
    if cgroup.mode is not None:
        assert cgroup.memory_limit() == 2**30
        kills_before = cgroup.oom_kills()
    kernel = alice_server.start_kernel()
    try:
        result = alice_server.execute(
            kernel, "x = bytearray(2 * 1024**3); x[::4096] = b'1' * len(x[::4096]); print('done')",
            timeout=120)
        printed = "".join(out.get("text", "") for out in result["outputs"])
        assert "done" not in printed
        # killed by the cgroup's OOM killer (or MemoryError under the rlimit fallback)
        assert result["status"] in ("kernel-died", "error"), result
    finally:
        alice_server.request("DELETE", f"api/kernels/{kernel}")
    if cgroup.mode is not None:
        assert cgroup.oom_kills() > kills_before
    server_pid = live_hub.server_pid("alice", "cml-tki")
    assert Path(f"/proc/{server_pid}").exists()  # the server survived its kernel's excess
