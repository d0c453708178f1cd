"""The root kernel launcher: a study server running as its own (non-root) uid gets a sealed kernel
running as the study's kernel uid; any other uid is refused; the kernel dies with the connection.

The non-root callers are real processes under the study server uids. The interpreter lives under
/root (0700) on the build machines, so each runs in a mount namespace where only that interpreter
is added under /root (everything else is the host's file system).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sandbox_support import OTHER, STUDY, read_records

from workbench import accounts
from workbench.runtime import workbench_command
from workbench.sandbox.launcher import launcher_socket

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def launcher(sandbox_space):
    space = sandbox_space["space"]
    # the admin's command (the module has no main of its own: one CLI per service)
    process = subprocess.Popen(workbench_command("sandbox", "launcher", "--data-dir",
                                                 str(space.root)), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not launcher_socket(space).is_socket():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    yield sandbox_space
    process.terminate()
    process.wait(10)


def run_as(user: str, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run Python ``code`` as ``user`` (created if needed), without any privilege."""
    uid, gid = accounts.ensure_user(user)
    base = sys.base_prefix
    parents = []
    for i in range(2, len(base.split("/"))):
        parents += ["--perms", "0755", "--dir", "/".join(base.split("/")[:i])]
    argv = ["bwrap", "--dev-bind", "/", "/", "--perms", "0755", "--tmpfs", "/root", *parents,
            "--ro-bind", base, base, "--setenv", "HOME", "/tmp",
            "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp", "--",
            "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/work/main")


def test_non_root_server_gets_a_kernel_as_the_study_kernel_uid(launcher):
    space, jupyter = launcher["space"], launcher["jupyter"]
    code = f"""
        import json, os, resource
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # the server's limit
        from jupyter_client.manager import KernelManager
        from traitlets.config import Config
        from workbench.sandbox.kernelspec import KERNEL_NAME, StrictKernelSpecManager
        km = KernelManager(kernel_name=KERNEL_NAME, config=Config({{"SandboxProvisioner": {{
            "study": {STUDY!r}, "data_dir": {str(space.root)!r}}}}}),
            kernel_spec_manager=StrictKernelSpecManager(kernel_dirs=[{str(jupyter / "kernels")!r}]))
        km.start_kernel()
        kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
        def run(code):
            out = []
            kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(
                m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
            return "".join(out).split()
        first = run("import getpass, grp, os, resource; print(os.getuid(), os.getgid(), "
                    "resource.getrlimit(resource.RLIMIT_AS)[0], getpass.getuser(), "
                    "grp.getgrgid(os.getgid()).gr_name, "
                    "','.join(l.split(':')[0] for l in open('/etc/passwd')))")
        km.restart_kernel(now=True); kc.wait_for_ready(timeout=60)
        second = run("import os; print(os.getuid(), os.getgid(), os.getpid())")
        kernel_id = km.kernel_id
        kc.stop_channels(); km.shutdown_kernel(now=False)
        print(json.dumps({{"server": os.getuid(), "first": first, "second": second,
                          "kernel_id": kernel_id, "alive": km.is_alive()}}))
    """
    result = run_as(accounts.study_server_user(STUDY), code)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    kernel_uid = pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid
    server_uid, server_gid = accounts.ensure_user(accounts.study_server_user(STUDY))
    assert report["server"] == server_uid != 0
    for run in ("first", "second"):
        assert [int(x) for x in report[run][:2]] == [kernel_uid, server_gid]
    assert int(report["first"][2]) == 6 << 30  # the kernel took its server's rlimit
    # the launcher's kernels get the sandbox's own account database too: its account, its
    # server's group (its gid here), root and nobody, and no other account of the host
    assert report["first"][3:] == [accounts.study_kernel_user(STUDY),
                                   grp.getgrgid(server_gid).gr_name,
                                   f"root,{accounts.study_kernel_user(STUDY)},nobody"]
    assert report["alive"] is False
    events = [r["fields"] for r in read_records(space) if r["kind"] == "kernel-lifecycle"
              and r["fields"]["kernel_id"] == report["kernel_id"]]
    assert {e["event"] for e in events} >= {"start", "restart", "shutdown"}
    assert events[0]["sandbox"] == "bwrap-setpriv-launcher" and events[0]["uid"] == kernel_uid
    cells = [r for r in read_records(space) if r["kind"] == "cell-execution"
             and r["fields"]["kernel_id"] == report["kernel_id"]]
    assert cells and all(r["writer"]["uid"] == server_uid for r in cells)


LAUNCH = """
    import json, os, tempfile
    from pathlib import Path
    from workbench.errors import WorkbenchError
    from workbench.sandbox.launcher import LaunchedKernel
    kernel_dir = Path(tempfile.mkdtemp(prefix="wbk-t-", dir="/tmp"))
    (kernel_dir / "kernel.json").write_text("{{}}")
    target = {target}
    try:
        kernel = LaunchedKernel(Path({socket!r}), {study!r}, target(kernel_dir))
    except WorkbenchError as exc:
        print(json.dumps({{"refused": str(exc), "dir": str(kernel_dir)}}))
    else:
        kernel.kill()
        print(json.dumps({{"pid": kernel.pid, "exit": kernel.wait(30), "dir": str(kernel_dir)}}))
"""


def _launch(launcher, user, study=STUDY, target="lambda d: d"):
    socket = str(launcher_socket(launcher["space"]))
    result = run_as(user, LAUNCH.format(socket=socket, study=study, target=target))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    shutil.rmtree(report["dir"], ignore_errors=True)
    Path(report["dir"] + "-link").unlink(missing_ok=True)
    return report


def test_the_study_server_uid_may_launch_and_the_kernel_dies_with_it(launcher):
    report = _launch(launcher, accounts.study_server_user(STUDY))
    assert report["exit"] is not None and report["exit"] != 0
    assert not os.path.exists(f"/proc/{report['pid']}/status") or \
        "zombie" in open(f"/proc/{report['pid']}/status").read()


def test_another_studys_server_uid_is_refused(launcher):
    report = _launch(launcher, accounts.study_server_user(OTHER))
    assert "not the server of study" in report["refused"]


def test_an_unrelated_uid_is_refused(launcher):
    report = _launch(launcher, "nobody")
    assert "refused" in report


def test_a_symlinked_kernel_dir_is_refused(launcher):
    link = ("lambda d: (Path(str(d) + '-link').symlink_to(d), Path(str(d) + '-link'))[1]")
    report = _launch(launcher, accounts.study_server_user(STUDY), target=link)
    assert "without symlinks" in report["refused"]
