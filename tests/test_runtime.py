"""The one service runtime (workbench.runtime): a service that does not start is one line naming
it and its kept log, never a traceback or a leftover process; a started one is stopped with its
socket files and log removed; and the module stays a leaf that every component can import."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.runtime import ServiceProcess, socket_answers, start_service, workbench_command


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_service_that_exits_is_one_line_naming_it_and_its_log(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(WorkbenchUserError) as info:
        start_service("test service", workbench_command("catalog", "list", "--data-dir",
                                                         str(not_a_dir)),
                      ready=lambda _handle: False, ready_timeout=60)
    message = str(info.value)
    assert "\n" not in message and info.value.reason == "service-did-not-start"
    assert message.startswith("the test service did not start: it exited with status 2")
    assert "(error: " in message  # the command's own one-line error is quoted
    log = message.rsplit("its log is ", 1)[1]
    assert os.path.exists(log) and "error: " in open(log).read()  # kept for reading
    os.unlink(log)


def test_a_service_that_never_answers_is_stopped(tmp_path):
    socket_path = tmp_path / "never.sock"
    started = []

    def handle_type(*args):
        started.append(ServiceProcess(*args))
        return started[-1]

    with pytest.raises(WorkbenchUserError, match="did not answer within 0.5 s"):
        start_service("silent service", [sys.executable, "-c", "import time; time.sleep(60)"],
                      ready=lambda _handle: socket_answers(socket_path), sockets=(socket_path,),
                      ready_timeout=0.5, handle_type=handle_type)
    assert started[0].process.poll() is not None and _gone(started[0].pid)
    os.unlink(started[0].log_path)


def test_stop_removes_socket_files_and_log_but_keeps_the_output(tmp_path):
    socket_path = tmp_path / "svc.sock"
    script = ("import socket, sys, time\n"
              "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)\n"
              "print('listening', flush=True); time.sleep(60)\n")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path))  # a killed service's socket file: it must not pass for ready
    stale.close()
    handle = start_service("echo service", [sys.executable, "-c", script, str(socket_path)],
                           ready=lambda _handle: socket_answers(socket_path),
                           sockets=(socket_path,))
    assert socket_answers(socket_path)
    log = handle.log_path
    assert handle.stop() != 0  # SIGTERM
    assert not socket_path.exists() and not log.exists()
    assert "listening" in handle.output()


def test_the_runtime_is_a_leaf():
    """services.py imports the components; they import the runtime: no cycle, no strings."""
    code = ("import sys, workbench.runtime; "
            "print(sorted(m for m in sys.modules if m.startswith('workbench')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert loaded.strip() == "['workbench', 'workbench.errors', 'workbench.runtime']"


def test_every_socket_path_is_on_space(tmp_path):
    from workbench.gateway import rerun_socket
    from workbench.review.broker import broker_socket
    from workbench.sandbox.launcher import launcher_socket

    space = Space(tmp_path)
    sockets = {space.collector_socket, space.keyholder_socket, space.aggregator_socket,
               space.airlock_socket, space.kernel_launcher_socket, space.review_broker_socket,
               space.gateway_socket("s1"), space.rerun_socket("s1")}
    assert len(sockets) == 8 and all(path.is_relative_to(space.run) for path in sockets)
    assert launcher_socket(space) == space.kernel_launcher_socket
    assert broker_socket(space) == space.review_broker_socket
    assert rerun_socket(space, "s1") == space.rerun_socket("s1")


def test_bind_socket_replaces_a_stale_socket_and_refuses_anything_else(tmp_path):
    from workbench.runtime import bind_socket

    path = tmp_path / "run" / "svc.sock"
    first = bind_socket(path, 0o600)
    first.close()  # a killed service leaves its socket file
    listener = bind_socket(path, 0o660)
    try:
        assert oct(path.stat().st_mode & 0o777) == oct(0o660) and socket_answers(path)
    finally:
        listener.close()
    path.unlink()
    path.write_text("not a socket")
    with pytest.raises(WorkbenchUserError, match="exists and is not a socket"):
        bind_socket(path, 0o666)
    assert path.read_text() == "not a socket"  # left as it was


def test_drop_privileges_leaves_no_way_back():
    """In a child: after the drop it is the service account, with no groups, and cannot regain
    root (every service drops through this one function)."""
    import pwd

    from workbench.runtime import drop_privileges

    nobody = pwd.getpwnam("nobody")
    code = (f"import os\nfrom workbench.runtime import drop_privileges\n"
            f"drop_privileges(({nobody.pw_uid}, {nobody.pw_gid}))\n"
            "print(os.getuid(), os.getgid(), os.getgroups())\n"
            "try:\n    os.setuid(0)\nexcept PermissionError:\n    print('no way back')\n")
    if os.getuid() != 0:
        pytest.skip("needs root")  # the suite runs as root; without it there is nothing to drop
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == f"{nobody.pw_uid} {nobody.pw_gid} []" and out[1] == "no way back"
    drop_privileges(None)  # without root: nothing to do, nothing changes


def test_a_service_refusing_its_policy_file_says_so_in_its_one_line(tmp_path):
    """A multi-line user error (a policy's problems) is quoted by its first line (cut at 300
    characters)."""
    from workbench.release.service import start_airlock

    policy = tmp_path / "policy.yaml"
    policy.write_text("studies: [\n")
    with pytest.raises(WorkbenchUserError) as info:
        start_airlock(Space(tmp_path / "space"), policy, ready_timeout=60)
    message = str(info.value)
    assert "\n" not in message and message.startswith("the airlock did not start")
    assert "(error: " in message and f"policy file {policy}: line 2: field '(syntax)'" in message
    os.unlink(message.rsplit("its log is ", 1)[1])
