"""The bubblewrap command line: explicit namespaces, setpriv drop, nothing mounted by accident."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.errors import WorkbenchUserError
from workbench.sandbox.launch import SandboxSpec, bwrap_argv
from workbench.sandbox.provisioner import check_study_id


def _spec(**kw):
    base = dict(study="s1", workspace=Path("/srv/space/studies/s1/workspace"),
                kernel_dir=Path("/tmp/wbk-x/i"), kernel_uid=990, kernel_gid=990,
                gateway_socket=Path("/srv/space/run/gateway/s1.sock"))
    base.update(kw)
    return SandboxSpec(**base)


def _split(argv):
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


def test_root_launch_lists_namespaces_and_drops_to_the_kernel_uid():
    bwrap, rest = _split(bwrap_argv(_spec(), ["python", "-m", "ipykernel_launcher"], 7))
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
    bwrap, rest = _split(bwrap_argv(_spec(kernel_uid=None, kernel_gid=None), ["python"], 7))
    assert "--unshare-user" in bwrap and bwrap[bwrap.index("--cap-drop") + 1] == "ALL"
    assert bwrap[bwrap.index("--seccomp") + 1] == "7"
    assert rest == ["python"]


def _mounts(argv, kind):
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == kind]


def test_only_listed_paths_are_mounted_and_only_the_workspace_is_writable():
    argv = bwrap_argv(_spec(), ["python"], 7)
    writable = _mounts(argv, "--bind")
    assert writable == [("/tmp/wbk-x/i", "/run/kernel"),
                        ("/srv/space/run/gateway/s1.sock", "/run/gateway.sock"),
                        ("/srv/space/studies/s1/workspace", "/srv/space/studies/s1/workspace")]
    readonly = {src for src, _ in _mounts(argv, "--ro-bind")}
    assert "/usr" in readonly and sys.prefix in readonly
    assert not any(p.startswith("/srv/space") for p in readonly)
    assert not any(p in ("/", "/root", "/home", "/var", "/etc") for p in readonly)


def test_parents_of_mount_points_are_made_traversable():
    argv = bwrap_argv(_spec(), ["python"], 7)
    dirs = [argv[i + 1] for i, a in enumerate(argv) if a == "--dir"]
    assert "/srv" in dirs and "/srv/space/studies/s1" in dirs
    for i, a in enumerate(argv):
        if a == "--dir" and argv[i + 1].startswith("/srv"):
            assert argv[i - 2:i] == ["--perms", "0755"]


def test_environment_is_built_not_inherited():
    argv = bwrap_argv(_spec(extra_env={}), ["python"], 7)
    env = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert env["WORKBENCH_STUDY"] == "s1"
    assert env["WORKBENCH_GATEWAY_SOCKET"] == "/run/gateway.sock"
    assert "JPY_PARENT_PID" not in env and "WORKBENCH_DATA_DIR" not in env


def test_without_a_gateway_socket_nothing_is_bound_at_its_place():
    argv = bwrap_argv(_spec(gateway_socket=None), ["python"], 7)
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
