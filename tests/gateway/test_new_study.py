"""A study added by `workbench policy apply` is served by the running gateway and airlock (real
collector, gateway and airlock processes, the kernel's code run as the new study's kernel uid),
and a removed study's sockets are closed and removed; the gateway's root socket binder binds only
for a study in the verified policy in force."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from workbench.accounts import AIRLOCK, study_kernel_user
from workbench.errors import WorkbenchError
from workbench.gateway.binder import Binder
from workbench.gateway.server import start_gateway
from workbench.policy import signed
from workbench.provenance.service import start_collector
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP
from workbench.release.service import start_airlock
from workbench.runtime import socket_answers
from workbench.views.sample import build_sample_space

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "ns-old", "ns-new"
USERS = """\
users:
  alice: {roles: [researcher]}
  rita: {roles: [reviewer]}
  remy: {roles: [reviewer]}
  ada: {roles: [admin]}
studies:
"""


def study(name: str, view: str) -> str:
    return textwrap.indent(textwrap.dedent(f"""\
        {name}:
          title: {name}
          purpose: a study added or removed while the services run
          sponsor: tests
          members: [alice]
          reviewers: [rita, remy]
          views: [{view}]
          expires: 2099-12-31
        """), "  ")


KERNEL = """
import json
import pandas as pd
import workbench as wb
from workbench.errors import WorkbenchUserError
try:
    frame = wb.view("visits_monthly", columns=["age"], limit=40)
    made = wb.release.request(pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]}), "arms",
                              "patients per arm", view="visits_monthly")
    print(json.dumps({"rows": len(frame), "request": made.id, "state": made.state}))
except Exception as exc:
    print(json.dumps({"refused": type(exc).__name__,
                      "reason": getattr(exc, "reason", None)}))
"""


def until(predicate, what: str, timeout: float = 30.0):
    """Poll (no fixed sleep); the timeout only bounds a failing run."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)
    return result


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.space = build_sample_space(root / "space", rows=300)
        os.chmod(self.space.root, 0o755)
        self.key_file = root / "ada.key"
        signed.register_admin_key(self.space, "ada",
                                  signed.create_admin_key(self.key_file).public_key())

    def apply(self, text: str) -> None:
        source = self.root / "policy.yaml"
        source.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "policy", "apply", str(source), "--yes",
             "--data-dir", str(self.space.root), "--key", str(self.key_file)],
            capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr

    def kernel(self, name: str, code: str = KERNEL) -> dict:
        """``code`` as the study's kernel uid, through its gateway socket (as a sandbox would)."""
        uid = pwd.getpwnam(study_kernel_user(name)).pw_uid
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent",
               "WORKBENCH_GATEWAY_SOCKET": str(self.space.gateway_socket(name)),
               "WORKBENCH_STUDY": name, "WORKBENCH_USER": "alice", "WORKBENCH_KERNEL_ID": "k-1",
               "MPLCONFIGDIR": "/tmp"}
        result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={pwd.getpwuid(uid).pw_gid}",
                                 "--clear-groups", sys.executable, "-c", code], env=env,
                                capture_output=True, text=True, timeout=120, cwd="/", check=False)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def records(self) -> list[dict]:
        from workbench.provenance.store import open_store

        store = open_store(self.space, readonly=True)
        try:
            return [json.loads(body) for _seq, _prev, _hash, body in store.rows()]
        finally:
            store.close()

    def airlock(self, method: str, path: str, actor: str, body: dict | None = None) -> dict:
        status, data, _ = UnixHTTP(airlock_socket(self.space)).request(
            method, path, body, {"X-Workbench-Actor": actor})
        assert status < 300, data
        return json.loads(data)


@pytest.fixture(scope="module")
def env():
    root = Path(tempfile.mkdtemp(prefix="wb-newstudy-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        env = Env(root)
        with start_collector(env.space):
            env.apply(USERS + study(OLD, "visits_monthly"))
            with start_gateway(env.space, env.space.policy) as gateway, \
                    start_airlock(env.space, env.space.policy):
                env.gateway = gateway
                yield env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_study_added_while_running_reads_and_requests_releases(env):
    space = env.space
    assert not space.gateway_socket(NEW).exists() and not space.outbox(NEW).exists()
    env.apply(USERS + study(OLD, "visits_monthly") + study(NEW, "visits_monthly"))
    until(lambda: socket_answers(space.gateway_socket(NEW)), "the new study's socket served")
    kernel_uid = pwd.getpwnam(study_kernel_user(NEW)).pw_uid
    for path in (space.gateway_socket(NEW), space.rerun_socket(NEW)):
        st = os.stat(path)  # the same first layer as a study present at start
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (kernel_uid, 0o600), path

    out = env.kernel(NEW)
    assert out.get("rows") == 40 and out["state"] == "submitted", out
    reads = [r for r in env.records() if r["kind"] == "view-read"
             and r["fields"].get("study") == NEW and r["fields"].get("status") == "ok"]
    assert reads, "the new study's read was not recorded"

    # two reviewers release it: the outbox is made on first use, by the airlock's own account
    env.airlock("POST", f"/requests/{out['request']}/decision", "rita", {"decision": "approve"})
    done = env.airlock("POST", f"/requests/{out['request']}/decision", "remy",
                       {"decision": "approve"})
    assert done["state"] == "released"
    airlock_uid = pwd.getpwnam(AIRLOCK).pw_uid
    st = os.stat(space.outbox(NEW))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (airlock_uid, 0o700)
    released = space.outbox(NEW) / out["request"]
    assert sorted(p.name for p in released.iterdir()) == ["arms.csv", "arms.evidence.json"]
    assert all(p.stat().st_uid == airlock_uid for p in released.iterdir())


def test_a_removed_study_is_no_longer_served(env):
    space = env.space
    assert "rows" in env.kernel(OLD)  # served while in the policy
    held = env.root / "held.sock"  # what a running sandbox keeps bind-mounted: the same inode
    os.link(space.gateway_socket(OLD), held)
    env.apply(USERS + study(NEW, "visits_monthly"))
    until(lambda: not space.gateway_socket(OLD).exists(), "the removed study's socket removed")
    assert not space.rerun_socket(OLD).exists()
    until(lambda: not socket_answers(held), "the removed study's listener closed")
    out = env.kernel(OLD)
    assert "refused" in out and "rows" not in out, out
    assert "rows" in env.kernel(NEW)  # the others are untouched
    # added back, it is served again (a fresh socket in place of the removed one)
    env.apply(USERS + study(OLD, "visits_monthly") + study(NEW, "visits_monthly"))
    until(lambda: socket_answers(space.gateway_socket(OLD)), "the study added back served")
    assert "rows" in env.kernel(OLD)


def test_the_binder_binds_only_for_studies_in_the_verified_policy(env):
    """What a subverted gateway could ask its root binder: nothing beyond the policy in force."""
    binder = Binder(env.space, env.space.policy)
    try:
        for study_id in ("not-in-policy", "../../etc", "x y"):
            with pytest.raises(WorkbenchError, match="refused"):
                binder.bind(study_id)
        with pytest.raises(WorkbenchError, match="in-force"):
            binder.unbind(NEW)  # a study in force keeps its sockets
        with pytest.raises(WorkbenchError, match="bad-request"):
            binder.unbind(f"{NEW}\n")  # not a study id, though `$` would let it through
        assert socket_answers(env.space.gateway_socket(NEW))
        with pytest.raises(WorkbenchError, match="refused"):
            binder._ask("chown /etc/shadow")
    finally:
        binder.close()
    assert binder.process.returncode == 0  # it stopped when its channel closed


def test_an_old_spaces_outboxes_move_into_the_airlocks_directory(env, tmp_path):
    """Outboxes used to be studies/<s>/outbox; the airlock moves them at start (as root), so
    earlier releases stay downloadable, and owns them."""
    from workbench.paths import Space
    from workbench.policy.loader import parse_policy
    from workbench.release.service import prepare_dirs

    space = Space.at(tmp_path / "space")
    old = space.study_dir(NEW) / "outbox" / "req-1"
    old.mkdir(parents=True)
    (old / "arms.csv").write_text("arm,n\na,120\n")
    ids = prepare_dirs(space, parse_policy(USERS + study(NEW, "visits"), "policy.yaml"))
    moved = space.outbox(NEW) / "req-1" / "arms.csv"
    assert moved.read_text() == "arm,n\na,120\n" and not old.exists()
    assert ids == (pwd.getpwnam(AIRLOCK).pw_uid, pwd.getpwnam(AIRLOCK).pw_gid)
    for path in (space.airlock, space.outbox(NEW), moved.parent, moved):
        assert path.stat().st_uid == ids[0], path
    assert stat.S_IMODE(space.airlock.stat().st_mode) == 0o700
    assert stat.S_IMODE(space.outbox(NEW).stat().st_mode) == 0o700
