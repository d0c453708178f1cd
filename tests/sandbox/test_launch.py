"""The bubblewrap command line: explicit namespaces, setpriv drop, nothing mounted by accident."""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.sandbox.launch import (
    ACCOUNT_FILES,
    SandboxSpec,
    account_fds,
    account_files,
    bwrap_argv,
    close_fds,
)
from workbench.sandbox.provisioner import check_study_id


def _spec(**kw):
    base = dict(study="s1", workspace=Path("/srv/space/studies/s1/workspace"),
                kernel_dir=Path("/tmp/wbk-x/i"), kernel_uid=990, kernel_gid=990,
                gateway_socket=Path("/srv/space/run/gateway/s1.sock"))
    base.update(kw)
    return SandboxSpec(**base)


FDS = {"passwd": 8, "group": 9, "nsswitch.conf": 10}  # the account files' descriptors


def _split(argv):
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


def test_root_launch_lists_namespaces_and_drops_to_the_kernel_uid():
    bwrap, rest = _split(bwrap_argv(_spec(), ["python", "-m", "ipykernel_launcher"], 7, FDS))
    for flag in ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                 "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in bwrap
    assert "--unshare-all" not in bwrap and "--unshare-user" not in bwrap
    assert bwrap[bwrap.index("--seccomp") + 1] == "7"  # the filter program's descriptor
    assert rest[0].endswith("setpriv")
    for flag in ("--reuid=990", "--regid=990", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs"):
        assert flag in rest
    assert rest[-3:] == ["python", "-m", "ipykernel_launcher"]


def test_unprivileged_launch_uses_a_user_namespace_without_caps():
    bwrap, rest = _split(bwrap_argv(_spec(kernel_uid=None, kernel_gid=None), ["python"], 7, FDS))
    assert "--unshare-user" in bwrap and bwrap[bwrap.index("--cap-drop") + 1] == "ALL"
    assert bwrap[bwrap.index("--seccomp") + 1] == "7"
    assert rest == ["python"]


def _mounts(argv, kind):
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == kind]


def test_only_listed_paths_are_mounted_and_only_the_workspace_is_writable():
    argv = bwrap_argv(_spec(), ["python"], 7, FDS)
    writable = _mounts(argv, "--bind")
    assert writable == [("/tmp/wbk-x/i", "/run/kernel"),
                        ("/srv/space/run/gateway/s1.sock", "/run/gateway.sock"),
                        ("/srv/space/studies/s1/workspace", "/srv/space/studies/s1/workspace")]
    readonly = {src for src, _ in _mounts(argv, "--ro-bind")}
    assert "/usr" in readonly and sys.prefix in readonly
    assert not any(p.startswith("/srv/space") for p in readonly)
    assert not any(p in ("/", "/root", "/home", "/var", "/etc") for p in readonly)


def test_account_database_is_generated_not_the_hosts():
    argv = bwrap_argv(_spec(), ["python"], 7, FDS)
    for name in ("passwd", "group", "nsswitch.conf", "shadow", "gshadow", "subuid"):
        assert (f"/etc/{name}", f"/etc/{name}") not in _mounts(argv, "--ro-bind")
    data = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "--ro-bind-data"]
    assert data == [("8", "/etc/passwd"), ("9", "/etc/group"), ("10", "/etc/nsswitch.conf")]
    for i, a in enumerate(argv):
        if a == "--ro-bind-data":
            assert argv[i - 2:i] == ["--perms", "0444"]  # read-only for everyone, owned by root
    with pytest.raises(WorkbenchError, match="passwd"):
        bwrap_argv(_spec(), ["python"], 7, {"group": 9})


def test_account_database_names_only_root_the_kernel_and_nobody():
    daemon = pwd.getpwnam("daemon")  # stands in for the kernel account: any host account will do
    files = account_files(_spec(kernel_uid=daemon.pw_uid, kernel_gid=daemon.pw_gid))
    users = [line.split(":") for line in files["passwd"].decode().splitlines()]
    assert [(u[0], u[2], u[5]) for u in users] == [
        ("root", "0", "/root"), ("daemon", str(daemon.pw_uid), "/tmp/home"),
        ("nobody", "65534", "/nonexistent")]
    assert users[1][3] == str(daemon.pw_gid)
    groups = [line.split(":")[0] for line in files["group"].decode().splitlines()]
    assert groups == ["root", grp.getgrgid(daemon.pw_gid).gr_name, grp.getgrgid(65534).gr_name]
    assert all(line.endswith(":") for line in files["group"].decode().splitlines())  # no members
    assert len(pwd.getpwall()) > 3  # the host's database has more: the test can fail
    nss = dict(line.split(": ") for line in files["nsswitch.conf"].decode().splitlines())
    assert set(nss.values()) == {"files"} and {"passwd", "group", "shadow"} <= set(nss)
    own = account_files(_spec(kernel_uid=None, kernel_gid=None))["passwd"].decode()
    assert f"{pwd.getpwuid(os.getuid()).pw_name}:x:{os.getuid()}:" in own  # user-namespace mode


def test_account_files_are_handed_to_bwrap_as_memory_files():
    fds = account_fds(_spec(kernel_uid=1, kernel_gid=1))
    try:
        assert set(fds) == set(ACCOUNT_FILES)
        assert os.read(fds["passwd"], 4096).startswith(b"root:x:0:0:")  # read from its start
    finally:
        close_fds(fds.values())


def test_a_kernel_uid_without_an_account_is_refused():
    free = next(u for u in range(60000, 65000) if u not in {p.pw_uid for p in pwd.getpwall()})
    with pytest.raises(WorkbenchError, match=f"uid {free}"):
        account_files(_spec(kernel_uid=free, kernel_gid=free))


def test_parents_of_mount_points_are_made_traversable():
    argv = bwrap_argv(_spec(), ["python"], 7, FDS)
    dirs = [argv[i + 1] for i, a in enumerate(argv) if a == "--dir"]
    assert "/srv" in dirs and "/srv/space/studies/s1" in dirs
    for i, a in enumerate(argv):
        if a == "--dir" and argv[i + 1].startswith("/srv"):
            assert argv[i - 2:i] == ["--perms", "0755"]


def test_environment_is_built_not_inherited():
    argv = bwrap_argv(_spec(extra_env={}), ["python"], 7, FDS)
    env = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert env["WORKBENCH_STUDY"] == "s1"
    assert env["WORKBENCH_GATEWAY_SOCKET"] == "/run/gateway.sock"
    assert "JPY_PARENT_PID" not in env and "WORKBENCH_DATA_DIR" not in env


def test_without_a_gateway_socket_nothing_is_bound_at_its_place():
    argv = bwrap_argv(_spec(gateway_socket=None), ["python"], 7, FDS)
    assert all(dest != "/run/gateway.sock" for _, dest in _mounts(argv, "--bind"))


@given(st.text(max_size=40))
def test_study_ids_are_slugs_or_refused(study):
    slug = (1 <= len(study) <= 30 and study[0].isascii() and study[0].islower()
            and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in study)
            and not study.endswith("-"))
    if slug:
        assert check_study_id(study) == study
    else:
        with pytest.raises(WorkbenchUserError):
            check_study_id(study)


def _provisioner(**config):
    from traitlets.config import Config

    from workbench.sandbox.provisioner import SandboxProvisioner

    return SandboxProvisioner(kernel_id="k", kernel_spec=None,
                              config=Config({"SandboxProvisioner": config}))


def test_study_and_space_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("WORKBENCH_STUDY", "env-study")
    monkeypatch.setenv("WORKBENCH_DATA_DIR", "/srv/space")
    monkeypatch.setenv("WORKBENCH_RUN_USER", "runner")
    provisioner = _provisioner()
    assert (provisioner.study, provisioner.data_dir, provisioner.run_user) == (
        "env-study", "/srv/space", "runner")
    assert _provisioner(study="cfg-study").study == "cfg-study"


def test_modes_never_give_the_kernel_more_than_the_study_kernel_uid():
    from workbench.errors import WorkbenchError

    assert _provisioner()._choose_mode() == "direct"  # we are root in the tests
    with pytest.raises(WorkbenchError, match="allow_same_uid_kernel"):
        _provisioner(launch_mode="userns")._choose_mode()
    with pytest.raises(WorkbenchError, match="refused as root"):
        _provisioner(launch_mode="userns", allow_same_uid_kernel=True)._choose_mode()
    assert _provisioner(launch_mode="launcher")._choose_mode() == "launcher"
