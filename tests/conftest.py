"""Fixtures shared by every test category."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from space_support import BUILD_LOG, CHUNK, PATIENTS, SEED

from workbench.hub import processes
from workbench.space.build import init_space

# What no test may leave running: the hub and what it starts (proxy, culler, dashboards, study
# servers), sandboxed kernels, the space's services, and anything running as a workbench account.
_PROGRAMS = ("configurable-http-proxy", "jupyterhub", "voila", "bwrap", "workbench")
_ACCOUNTS = ("wb-", "wbs-", "wbk-", "wbr-", "wbv-", "wbh-")

# `make test` runs two xdist workers (`--dist loadgroup`, Makefile): each group below runs whole
# on one worker, its tests one after another in their order (module fixtures and tests that
# build on the one before stay valid). Groups are what must never run at the same time:
# - "hub": every live hub. Study servers run as the studies' accounts in a cgroup named after
#   user and study, and the hub tests all use alice's cml-tki server.
# - "demo-studies": `workbench run` kernels of the demo studies (cml-tki, lung-validation,
#   t1d-registry) as their kernel accounts, whose process count is one RLIMIT_NPROC.
# - "nodes": the holder nodes, one account per holder name (wbh-hospital-a, ...), shared by the
#   node spaces of every module there.
# - every other folder of tests/ a group of its own: its modules share study names (a support
#   module's STUDY), other folders use other ones.
_GROUPS = {
    "hub": ("hub/", "review/", "policy/test_policy_hub.py"),
    "demo-studies": ("run/", "node/test_demo_examples.py", "node/test_demo_build.py",
                     "gateway/test_demo_space.py", "synth/test_space_integration.py",
                     "test_wheel.py", "test_cli_errors.py"),
    "nodes": ("node/",),
}
_TESTS = Path(__file__).parent


def _group(item) -> str:
    path = Path(item.fspath).relative_to(_TESTS).as_posix()
    named = next((name for name, paths in _GROUPS.items() if path.startswith(paths)), None)
    return named or "folder:" + path.split("/")[0].removesuffix(".py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
    """Each test in its group; the named groups first (the longest), in the order above. Only
    under xdist: a run without workers keeps pytest's own order."""
    if not config.getoption("loadgroup", False):  # set in the xdist workers, which collect
        return
    group = {item: _group(item) for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group[item]))
    order = list(_GROUPS)  # the folder groups after them, in pytest's order (a stable sort)
    items.sort(key=lambda item: order.index(group[item]) if group[item] in order else len(order))


def _ours(argv: list[str], account: str) -> bool:
    """A program or module of the list above (by name, not by a path that mentions it), or a
    workbench account."""
    names = [os.path.basename(a) for a in argv[:2]]
    names += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"]
    return account.startswith(_ACCOUNTS) or any(
        name.startswith(_PROGRAMS) for name in names)


def _left_running() -> list[tuple[processes.Proc, str, str]]:
    found = []
    for item in processes.descendants(os.getpid()):
        argv, uid = item.argv(), item.uid()
        try:
            account = pwd.getpwuid(uid).pw_name if uid is not None else ""
        except KeyError:
            account = str(uid)
        if item.running() and _ours(argv, account):
            found.append((item, account, " ".join(argv)))
    return found


def _reap_orphans() -> None:
    """Wait for the exited processes re-parented to this session (a sandbox's inner bwrap whose
    outer one was killed, a fork bomb's children): left as zombies, they would pass to init
    when the session ends, which does not always reap them."""
    me = os.getpid()
    for item in processes.descendants(me):
        found = item.stat()
        if found is not None and found == ("Z", me):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(item.pid, os.WNOHANG)


@pytest.fixture(scope="session", autouse=True)
def no_processes_left_running():
    """The session is the child subreaper of everything its tests start: a process whose parent
    exits (a study server of a hub that was killed, a kernel of a launcher that died) stays a
    descendant of this session instead of becoming init's, so none can slip away unseen. After
    every other fixture is torn down, none of them may still run: they are stopped, and the
    session fails with their list (left running, they hold ports and accounts, and a later test
    or run that looks a process up by account can find one of them)."""
    if not processes.become_subreaper():
        yield  # no prctl (not Linux): nothing can be watched reliably
        return
    yield
    _reap_orphans()
    left = _left_running()
    # one stopped by the very last teardown may still be exiting: wait for that (bounded)
    still = processes.wait_gone([item for item, _account, _cmd in left], timeout=15)
    left = [entry for entry in left if entry[0] in still]
    if left:
        processes.terminate(still)
        listing = "\n".join(f"  pid {item.pid} ({account}): {cmd[:200]}"
                             for item, account, cmd in left)
        pytest.fail(f"the tests left {len(left)} process(es) running (stopped now):\n{listing}",
                    pytrace=False)


@pytest.fixture
def open_tmp():
    """A temporary directory that other uids can traverse (pytest's tmp_path is 0700 under root,
    which would hide a space from the service accounts that must read it)."""
    path = Path(tempfile.mkdtemp(prefix="wb-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def built_space():
    """A small space built once per session (the synthetic part in several chunks)."""
    parent = Path(tempfile.mkdtemp(prefix="wb-space-", dir="/tmp"))
    os.chmod(parent, 0o755)  # other uids must reach the space to be refused by its own modes
    lines: list[str] = []
    space = init_space(parent / "space", patients=PATIENTS, seed=SEED, chunk_size=CHUNK,
                       echo=lines.append)
    BUILD_LOG[:] = lines
    yield space
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def public_only_space(open_tmp):
    """A fresh space with only the public datasets: cheap enough to build per test."""
    return init_space(open_tmp / "space", patients=0, echo=lambda _line: None)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Fail loudly if the groups did not reach pytest-xdist (it reads them from the node ids it
    rewrites; pytest 9 no longer uses what it rewrites): ungrouped, two tests sharing an account
    could run at the same time."""
    if session.config.getoption("loadgroup", False) and not all(
            "@" in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist did not group the tests (see tests/conftest.py)")
