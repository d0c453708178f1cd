"""The sandbox launcher: the bubblewrap + setpriv command line a study kernel runs under.

SECURITY BOUNDARY. Everything the kernel can reach is listed here: nothing of the host file system
is visible unless bound below, the network namespace holds only ``lo``, and the kernel runs as the
study's kernel uid with no capabilities and no-new-privs, under the seccomp filter of
``seccomp.py``. Guarded by tests/sandbox/test_escape.py and tests/sandbox/test_launch.py.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import workbench
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.resources import EXTENSIONS_DIR

KERNEL_DIR_INSIDE = "/run/kernel"  # the kernel's private connection file and ZMQ sockets
GATEWAY_INSIDE = "/run/gateway.sock"
HOME_INSIDE = "/tmp/home"  # noqa: S108 - the sandbox's private tmpfs
EXTENSIONS_INSIDE = "/opt/workbench/extensions"

# Files of /etc a Python kernel needs, bound from the host; everything else of /etc stays
# invisible. The account database is not among them: the host's lists every study's accounts.
ETC_FILES = ("hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "mime.types")
# Generated per launch (account_files) and bound read-only in their place.
ACCOUNT_FILES = ("passwd", "group", "nsswitch.conf")
NOBODY = 65534  # the overflow uid/gid: owner of whatever is not mapped into a user namespace
NOLOGIN = "/usr/sbin/nologin"
# Parents that --dir must not (re)create: they are mounts of their own.
_MOUNTED = {"/", "/usr", "/tmp", "/proc", "/dev", "/run", "/etc"}  # noqa: S108


def python_environment() -> tuple[str, ...]:
    """Directories holding the interpreter and its packages, mounted read-only in the kernel."""
    paths = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent),
             str(Path(workbench.__file__).resolve().parent)}  # editable installs live elsewhere
    return tuple(sorted(p for p in paths if not p.startswith("/usr/")))


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandboxed kernel gets. ``kernel_uid=None`` means the launcher is not root: the
    kernel then runs in a user namespace as the launcher's own uid (development mode).
    ``workspace=None`` (a reviewer dashboard's kernel): no study directory is mounted and the
    kernel starts in ``/`` of the sandbox (root-owned, read-only for it), so nothing a study
    account wrote is on its import path."""

    study: str
    workspace: Path | None
    kernel_dir: Path  # host dir bound at KERNEL_DIR_INSIDE
    kernel_uid: int | None
    kernel_gid: int | None
    gateway_socket: Path | None
    read_only: tuple[str, ...] = field(default_factory=python_environment)
    extra_env: dict[str, str] = field(default_factory=dict)
    bwrap: str = "bwrap"
    setpriv: str = "setpriv"

    def environment(self) -> dict[str, str]:
        """The kernel's whole environment (bwrap --clearenv drops everything else, including
        server secrets and JPY_PARENT_PID, which ipykernel must not see in a pid namespace)."""
        env = {
            "PATH": f"{sys.prefix}/bin:/usr/bin:/bin",
            "HOME": HOME_INSIDE,
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": EXTENSIONS_INSIDE,
            "IPYTHONDIR": f"{HOME_INSIDE}/.ipython",
            "MPLCONFIGDIR": f"{HOME_INSIDE}/.matplotlib",
            "WORKBENCH_STUDY": self.study,
            "WORKBENCH_GATEWAY_SOCKET": GATEWAY_INSIDE,
        }
        env.update(self.extra_env)
        return env


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise WorkbenchError(f"uid {uid} has no account on this machine") from None


def _group_name(gid: int, fallback: str) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return fallback


def account_files(spec: SandboxSpec) -> dict[str, bytes]:
    """The kernel's account database: root, the kernel's own account and group, and nobody.
    Enough for getpass.getuser(), pwd.getpwuid(os.getuid()), `id` and `ls -l`; it names no
    other study and no service account (the host's /etc/passwd names them all). nsswitch.conf
    says "files" only, so no NSS module (systemd, sss, ldap) is asked for more."""
    uid = os.getuid() if spec.kernel_uid is None else spec.kernel_uid
    gid = os.getgid() if spec.kernel_gid is None else spec.kernel_gid
    user = _user_name(uid)
    group = _group_name(gid, user)
    nobody = _group_name(NOBODY, "nogroup")
    users = {0: f"root:x:0:0:root:/root:{NOLOGIN}",
             NOBODY: f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:{NOLOGIN}"}
    users[uid] = f"{user}:x:{uid}:{gid}:{spec.study} kernel:{HOME_INSIDE}:/bin/sh"
    groups = {0: "root:x:0:", NOBODY: f"{nobody}:x:{NOBODY}:", gid: f"{group}:x:{gid}:"}
    nsswitch = "".join(f"{db}: files\n" for db in ("passwd", "group", "shadow", "gshadow",
                                                   "hosts", "networks"))
    return {"passwd": "".join(f"{users[k]}\n" for k in sorted(users)).encode(),
            "group": "".join(f"{groups[k]}\n" for k in sorted(groups)).encode(),
            "nsswitch.conf": nsswitch.encode()}


def memory_file(name: str, data: bytes) -> int:
    """A memory file holding ``data``, positioned at its start, for bwrap to read from a passed
    descriptor. The caller closes it once bwrap has started."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write of {name}")
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def account_fds(spec: SandboxSpec) -> dict[str, int]:
    """``account_files`` as memory files for ``bwrap_argv`` (pass them to bwrap, then close)."""
    fds: dict[str, int] = {}
    try:
        for name, data in account_files(spec).items():
            fds[name] = memory_file(f"workbench-kernel-{name}", data)
    except BaseException:
        close_fds(fds.values())
        raise
    return fds


def close_fds(fds) -> None:
    for fd in fds:
        os.close(fd)


def tool_path(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if not found:
        raise WorkbenchUserError(f"{name} is not installed: the kernel sandbox needs it "
                                 "(Debian packages bubblewrap and util-linux; see the Makefile)",
                                 reason="sandbox-tool-missing")
    return found


def _parents(path: str, made: set[str]) -> list[str]:
    """--dir entries so bwrap does not create the parents of a mount point 0700 (it would, and
    the kernel uid could then not traverse them)."""
    args: list[str] = []
    parts = Path(path).parts[1:-1]
    for i in range(1, len(parts) + 1):
        parent = "/" + "/".join(parts[:i])
        if parent not in made and parent not in _MOUNTED:
            args += ["--perms", "0755", "--dir", parent]
            made.add(parent)
    return args


def bwrap_argv(spec: SandboxSpec, kernel_cmd: list[str], seccomp_fd: int,
               accounts: Mapping[str, int]) -> list[str]:
    """bwrap [mounts, namespaces, seccomp] -- setpriv [drop to the kernel uid] -- the kernel
    command. ``seccomp_fd``: the filter program (``seccomp.program_fd``); ``accounts``: the
    account database (``account_fds(spec)``); all passed to bwrap open."""
    if set(accounts) != set(ACCOUNT_FILES):
        raise WorkbenchError(f"the sandbox needs its own {', '.join(ACCOUNT_FILES)}")
    argv = [tool_path(spec.bwrap)]
    privileged = spec.kernel_uid is not None
    if not privileged:
        argv += ["--unshare-user", "--cap-drop", "ALL"]
    # Namespaces listed one by one: --unshare-all as root adds a user namespace and setpriv then
    # fails with "setresuid: Invalid argument".
    argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--new-session",
             "--hostname", "workbench-kernel", "--seccomp", str(int(seccomp_fd))]
    argv += ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for name in ACCOUNT_FILES:  # copied by bwrap into its root-owned tmpfs, bound read-only
        argv += ["--perms", "0444", "--ro-bind-data", str(int(accounts[name])), f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--tmpfs", "/tmp",  # noqa: S108 - a fresh tmpfs per kernel
             "--perms", "1777", "--dir", HOME_INSIDE, "--perms", "0755", "--dir", "/run"]
    made: set[str] = set()
    for path in spec.read_only:
        argv += _parents(path, made) + ["--ro-bind", path, path]
    if EXTENSIONS_DIR.is_dir():
        argv += _parents(EXTENSIONS_INSIDE, made) + ["--ro-bind", str(EXTENSIONS_DIR),
                                                     EXTENSIONS_INSIDE]
    argv += ["--bind", str(spec.kernel_dir), KERNEL_DIR_INSIDE]
    if spec.gateway_socket is not None:
        argv += ["--bind", str(spec.gateway_socket), GATEWAY_INSIDE]
    if spec.workspace is None:
        argv += ["--chdir", "/"]
    else:
        workspace = str(spec.workspace)
        argv += _parents(workspace, made) + ["--bind", workspace, workspace,
                                             "--chdir", workspace]
    argv += ["--clearenv"]
    for key, value in spec.environment().items():
        argv += ["--setenv", key, value]
    argv += ["--"]
    if privileged:
        argv += [tool_path(spec.setpriv), f"--reuid={spec.kernel_uid}",
                 f"--regid={spec.kernel_gid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    return argv + list(kernel_cmd)
