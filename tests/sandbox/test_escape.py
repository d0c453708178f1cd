"""The escape suite: attempts from inside a real sealed study kernel to leave the sandbox.

Each attempt prints BLOCKED only when the operating system refused it and ESCAPED when it worked,
so a broken sandbox fails the test; each attempt cell must also have left its cell-execution
records (submitted before it ran, then completed with output hashes). All traffic stays on this
machine: network attempts target 127.0.0.1, and the one off-machine address (TEST-NET-1) is only
used in a UDP connect(), which sends no packet.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import socket
import sys
from pathlib import Path

import pytest
from sandbox_support import (
    OTHER,
    STUDY,
    SocketListener,
    execute,
    read_records,
    syscall_numbers,
    wait_for_records,
)

import workbench
from workbench import accounts
from workbench.paths import Space
from workbench.provenance.store import SQLITE_FILE
from workbench.review.broker import broker_socket
from workbench.sandbox.launcher import dashboard_kernel_user, dashboard_server_user

pytestmark = pytest.mark.slow

PRELUDE = '''
import ctypes, os, socket, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def attempt(action, *blocked):
    try:
        result = action()
    except blocked as exc:
        print("BLOCKED", type(exc).__name__)
    else:
        print("ESCAPED", repr(result)[:200])
def expect(refused, detail=""):
    print("BLOCKED" if refused else f"ESCAPED {detail}")
def tcp(port):
    return socket.create_connection(("127.0.0.1", port), timeout=3)
def unix(path):
    s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(path); return s.recv(100)
def write(path):
    with open(path, "w") as f:
        f.write("planted")
'''

HOST_SERVICES = {"postgresql": 5432, "redis": 6379, "mariadb": 3306, "rabbitmq": 5672,
                 "mosquitto": 1883, "nats": 4222, "hub-api": 8081, "hub-proxy": 8000}
MISSING = "FileNotFoundError, PermissionError"
ABSTRACT = f"\0wb-sandbox-test-{os.getpid()}"


def study_accounts(study: str) -> tuple[str, ...]:
    return (accounts.study_kernel_user(study), accounts.study_server_user(study),
            dashboard_kernel_user(study), dashboard_server_user(study))


SERVICE_ACCOUNTS = (accounts.GATEWAY, accounts.COLLECTOR, accounts.KEYHOLDER, accounts.AGGREGATOR,
                    accounts.AIRLOCK)


def foreign_accounts() -> tuple[list[str], list[str]]:
    """Host users and groups a study kernel must not see: everyone but root, nobody and its
    own study's accounts (another study's names, the services', the admins')."""
    own = {"root", "nobody", "nogroup", *study_accounts(STUDY)}
    return (sorted({p.pw_name for p in pwd.getpwall()} - own),
            sorted({g.gr_name for g in grp.getgrall()} - own))


def attempts(space, host_port: int, server_pid: int, outer_dir: str) -> dict[str, str]:
    users, groups = foreign_accounts()
    venv_file = os.path.join(sys.prefix, "lib", "planted.py")
    package_file = os.path.join(os.path.dirname(workbench.__file__), "planted.py")
    raw = space.holder_dir("hospital_a") / "person.parquet"
    table = {f"tcp-{name}": f"attempt(lambda: tcp({port}), ConnectionRefusedError)"
             for name, port in HOST_SERVICES.items()}
    table.update({
        "tcp-host-listener": f"attempt(lambda: tcp({host_port}), ConnectionRefusedError)",
        # abstract Unix sockets belong to the network namespace: the host's are out of reach
        "abstract-unix-socket": f"attempt(lambda: unix({ABSTRACT!r}), ConnectionRefusedError)",
        "interfaces-only-lo": "expect([n for _, n in socket.if_nameindex()] == ['lo'], "
                              "socket.if_nameindex())",
        "no-route-out": "expect(len(open('/proc/net/route').read().splitlines()) <= 1 and "
                        "all(l.split()[-1] == 'lo' for l in open('/proc/net/ipv6_route')))",
        "udp-off-machine": "attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                           ".connect(('192.0.2.1', 9)), OSError)",
        "read-raw-data": f"attempt(lambda: open({str(raw)!r}, 'rb').read(), {MISSING})",
        "read-signing-key": f"attempt(lambda: open({str(space.signing_key)!r}).read(), {MISSING})",
        "read-shadow": f"attempt(lambda: open('/etc/shadow').read(), {MISSING})",
        # the account database names no other study and no service (issue 19 item 9)
        "passwd-names-others": "seen = {l.split(':')[0] for l in open('/etc/passwd')}\n"
                               f"expect(not seen & set({users!r}), seen)",
        "group-names-others": "seen = {l.split(':')[0] for l in open('/etc/group')}\n"
                              f"expect(not seen & set({groups!r}), seen)",
        "getpwnam-other-study": "import pwd\n"
                                f"attempt(lambda: pwd.getpwnam({study_accounts(OTHER)[0]!r}), "
                                "KeyError)",
        "bang-getent-other-study": f"!getent passwd {study_accounts(OTHER)[1]} "
                                   f"{accounts.KEYHOLDER} | grep -q . && echo ESCAPED "
                                   "|| echo BLOCKED",
        "write-passwd": "attempt(lambda: write('/etc/passwd'), OSError)",
        "other-study-workspace": f"attempt(lambda: os.listdir({str(space.workspace(OTHER))!r}), "
                                 f"{MISSING})",
        "other-study-socket": f"attempt(lambda: unix({str(space.gateway_socket(OTHER))!r}), "
                              f"{MISSING}, ConnectionRefusedError)",
        "collector-store": f"attempt(lambda: open({str(space.provenance / SQLITE_FILE)!r}, 'rb')"
                           f".read(16), {MISSING})",
        "collector-socket": f"attempt(lambda: unix({str(space.collector_socket)!r}), {MISSING}, "
                            "ConnectionRefusedError)",
        # the reviewer's side (issue 22 item 7): the broker that gathers dashboards and carries
        # decisions, and the dashboards' own files, are out of a study kernel's reach
        "review-broker-socket": f"attempt(lambda: unix({str(broker_socket(space))!r}), "
                                f"{MISSING}, ConnectionRefusedError)",
        "plant-in-review-dir": "attempt(lambda: write("
                               f"{str(review_dir(space) / 'ipywidgets.py')!r}), OSError)",
        "proxy-client-sockets": f"attempt(lambda: os.listdir({outer_dir!r}), {MISSING})",
        "server-proc": f"attempt(lambda: open('/proc/{server_pid}/environ', 'rb').read(), "
                       f"{MISSING})",
        "signal-server": f"attempt(lambda: os.kill({server_pid}, 0), ProcessLookupError)",
        "ptrace-init": "expect(libc.ptrace(16, 1, 0, 0) == -1, 'PTRACE_ATTACH pid 1')",
        "write-venv": f"attempt(lambda: write({venv_file!r}), OSError)",
        "write-package": f"attempt(lambda: write({package_file!r}), OSError)",
        "write-usr": "attempt(lambda: write('/usr/lib/planted'), OSError)",
        "ctypes-setuid-root": "expect(libc.setuid(0) == -1 and os.getuid() != 0)",
        "ctypes-mount": "expect(libc.mount(b'none', b'/usr', b'tmpfs', 0, None) == -1)",
        "bang-tcp-postgresql": "!bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432 && echo ESCAPED "
                               "|| echo BLOCKED' 2>/dev/null",
        "bang-read-key": f"!cat {space.signing_key} 2>/dev/null && echo ESCAPED || echo BLOCKED",
        "bash-magic-write-venv": f"%%bash\ntouch {sys.prefix}/planted 2>/dev/null "
                                 "&& echo ESCAPED || echo BLOCKED",
        "bash-magic-raw-data": f"%%bash\ncat {raw} 2>/dev/null && echo ESCAPED || echo BLOCKED",
        "subprocess-tcp": "expect(subprocess.run([sys.executable, '-c', 'import socket; "
                          "socket.create_connection((\"127.0.0.1\", 5432), 3)'], "
                          "capture_output=True).returncode != 0)",
        # refused by the seccomp filter (seccomp.py), not by permissions: unfiltered, each of
        # these succeeds or fails otherwise for the kernel uid (tests/sandbox/test_seccomp.py)
        "seccomp-user-namespace": "expect(libc.unshare(0x10000000) == -1 "
                                  "and ctypes.get_errno() == 1)",
        "seccomp-ptrace-own-child": "child = subprocess.Popen(['sleep', '30'])\n"
                                    "expect(libc.ptrace(16, child.pid, 0, 0) == -1 "
                                    "and ctypes.get_errno() == 1)\nchild.kill()",
        "seccomp-socket-af-alg": "attempt(lambda: socket.socket(38, 5), PermissionError)",
        "seccomp-socket-af-vsock": "attempt(lambda: socket.socket(40, 1), PermissionError)",
        "bang-unshare-user": "!unshare --user --map-root-user id 2>/dev/null "
                             "&& echo ESCAPED || echo BLOCKED",
        **{f"seccomp-{name}": f"expect(libc.syscall({nr}, 0, 0, 0, 0, 0) == -1 "
                              "and ctypes.get_errno() == 1)"
           for name, nr in syscall_numbers(("io_uring_setup", "keyctl", "perf_event_open", "bpf",
                                     "process_vm_readv")).items()},
        "subprocess-setuid-su": "expect(subprocess.run(['setpriv', '--reuid=0', 'id'], "
                                "capture_output=True).returncode != 0)",
    })
    return table


@pytest.fixture(scope="module")
def host_listener():
    """Real listeners on the host (loopback TCP and an abstract Unix socket): reachable from
    here, never from the kernel."""
    listener, abstract = socket.socket(), socket.socket(socket.AF_UNIX)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    abstract.bind(ABSTRACT)
    abstract.listen(4)
    yield listener.getsockname()[1]
    listener.close()
    abstract.close()


def review_dir(space) -> Path:
    return space.root / "review"


@pytest.fixture(scope="module")
def reviewer_side(sandbox_space):
    """The reviewer's side as the host has it: a broker socket that answers anyone who reaches
    it and a dashboard directory anyone could write, so only the sandbox keeps the kernel out."""
    space = sandbox_space["space"]
    review_dir(space).mkdir(exist_ok=True)
    os.chmod(review_dir(space), 0o777)  # noqa: S103 - the point: permissions do not stop it
    listener = SocketListener(broker_socket(space), b"review-broker\n")
    yield
    listener.close()
    broker_socket(space).unlink(missing_ok=True)
    (review_dir(space) / "ipywidgets.py").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def other_accounts():
    """Another study's accounts and the services' exist on the host, as on a shared machine, so
    the account-database attempts have names to leak."""
    for name in (*study_accounts(OTHER), *SERVICE_ACCOUNTS):
        accounts.ensure_user(name)


@pytest.fixture(scope="module")
def escape_kernel(kernel, reviewer_side, other_accounts):
    assert execute(kernel["kc"], PRELUDE)["status"] == "ok"
    return kernel


def _table(kernel, port):
    return attempts(kernel["space"], port, os.getpid(),
                    os.path.dirname(kernel["km"].connection_file))


def test_suite_has_at_least_25_attempts(escape_kernel, host_listener):
    assert len(_table(escape_kernel, host_listener)) >= 25


ATTEMPTS = sorted(attempts(Space(Path("/nonexistent")), 1, 1, "/nonexistent"))


@pytest.mark.parametrize("name", ATTEMPTS)
def test_escape_attempt_fails_and_is_recorded(escape_kernel, host_listener, name):
    code = _table(escape_kernel, host_listener)[name]
    result = execute(escape_kernel["kc"], code)
    print(name, result["text"].strip())
    assert "ESCAPED" not in result["text"], result
    assert "BLOCKED" in result["text"], result
    digest = hashlib.sha256(code.encode()).hexdigest()
    mine = wait_for_records(escape_kernel["space"], lambda r: r["kind"] == "cell-execution"
                            and r["fields"]["msg_id"] == result["msg_id"]
                            and r["fields"]["status"] != "submitted")
    assert mine, f"no completion record for {name}"
    records = [r for r in _all_cells(escape_kernel) if r["fields"]["msg_id"] == result["msg_id"]]
    submitted = [r for r in records if r["fields"]["status"] == "submitted"]
    assert len(submitted) == 1 and submitted[0]["fields"]["code"] == code
    assert all(r["fields"]["code_sha256"] == digest for r in records)
    assert records[0]["fields"]["status"] == "submitted"  # written before the cell ran
    assert mine[0]["fields"]["outputs"], "the attempt's output was not hashed"


def _all_cells(kernel):
    return [r for r in read_records(kernel["space"]) if r["kind"] == "cell-execution"]


def test_kernel_identity_and_privileges(kernel):
    code = ("import os, socket\n"
            "lines = open('/proc/self/status').read().splitlines()\n"
            "status = dict(line.split(':', 1) for line in lines)\n"
            "print(os.getuid(), os.geteuid(), os.getgid(), status['CapEff'].strip(), "
            "status['CapBnd'].strip(), status['NoNewPrivs'].strip(), "
            "status['Seccomp'].strip(), "
            "[n for _, n in socket.if_nameindex()], os.getgroups())")
    result = execute(kernel["kc"], code)
    uid, euid, gid, cap_eff, cap_bnd, nnp, mode, *rest = result["text"].split(" ", 7)
    expected_uid = pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid
    assert int(uid) == int(euid) == expected_uid != 0
    assert int(gid) != 0
    assert int(cap_eff, 16) == 0 and int(cap_bnd, 16) == 0
    assert nnp == "1"
    assert mode == "2"  # SECCOMP_MODE_FILTER: bwrap loaded the filter of seccomp.py
    assert rest[0].startswith("['lo']")
    info = kernel["km"].get_connection_info()
    assert info["transport"] == "ipc" and info["ip"].startswith("/")  # Unix sockets, no TCP
    inside = json.loads(execute(kernel["kc"], "print(open('/run/kernel/kernel.json').read())")
                        ["text"])
    assert inside["transport"] == "ipc" and inside["ip"] == "/run/kernel/k"


def test_kernel_environment_is_scrubbed(kernel):
    os.environ["WB_TEST_SERVER_SECRET"] = "do-not-leak"  # noqa: S105 - a canary, not a secret
    result = execute(kernel["kc"], "import os, json; print(json.dumps(dict(os.environ)))")
    env = json.loads(result["text"])
    assert env["WORKBENCH_STUDY"] == STUDY
    assert env["WORKBENCH_GATEWAY_SOCKET"] == "/run/gateway.sock"
    assert "WB_TEST_SERVER_SECRET" not in env and "JPY_PARENT_PID" not in env
    assert not any(k.startswith("WORKBENCH_DATA") for k in env)


def test_gateway_socket_is_the_way_out_and_workspace_is_writable(kernel):
    code = ("import socket, os\n"
            "s = socket.socket(socket.AF_UNIX); s.connect('/run/gateway.sock'); "
            "print(s.recv(100).decode().strip())\n"
            "open('made-in-kernel.txt', 'w').write('x'); print(os.getcwd())")
    result = execute(kernel["kc"], code)
    assert result["text"].split() == [f"gateway:{STUDY}",
                                      str(kernel["space"].workspace(STUDY))]
    made = kernel["space"].workspace(STUDY) / "made-in-kernel.txt"
    assert made.stat().st_uid == pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid


def test_harness_reports_an_escape(escape_kernel):
    """The attempt harness itself can fail: an action the sandbox allows prints ESCAPED."""
    result = execute(escape_kernel["kc"], "attempt(lambda: unix('/run/gateway.sock'), OSError)\n"
                                          "expect(False, 'forced')")
    assert result["text"].count("ESCAPED") == 2, result


def test_kernel_knows_itself_from_its_own_account_database(kernel, other_accounts):
    """What Python asks of the account database still works; the files are root's, read-only."""
    code = ("import getpass, os, pwd, grp, json\n"
            "me = pwd.getpwuid(os.getuid())\n"
            "print(json.dumps({'user': getpass.getuser(), 'home': me.pw_dir, "
            "'expand': os.path.expanduser('~'), 'group': grp.getgrgid(os.getgid()).gr_name, "
            "'files': {n: [os.stat(f'/etc/{n}').st_uid, oct(os.stat(f'/etc/{n}').st_mode), "
            "os.access(f'/etc/{n}', os.W_OK)] for n in ('passwd', 'group', 'nsswitch.conf')}, "
            "'passwd': open('/etc/passwd').read().splitlines()}))")
    seen = json.loads(execute(kernel["kc"], code)["text"])
    own = accounts.study_kernel_user(STUDY)
    assert seen["user"] == own and seen["home"] == seen["expand"] == "/tmp/home"
    assert seen["group"] == grp.getgrgid(pwd.getpwnam(own).pw_gid).gr_name
    assert [line.split(":")[0] for line in seen["passwd"]] == ["root", own, "nobody"]
    for uid, mode, writable in seen["files"].values():
        assert uid == 0 and mode == "0o100444" and not writable
    users, _ = foreign_accounts()
    assert {accounts.study_kernel_user(OTHER), accounts.KEYHOLDER} <= set(users)  # can fail
