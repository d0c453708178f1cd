"""`workbench policy apply` on a real space with its collector, and the gateway and airlock acting
on the signed policy: a change is picked up without a restart and recorded; an edited, foreign-key
or rolled-back policy file is refused by both services (fail closed) with one line."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from policy_support import NEW_STUDY, POLICY, register_admin, sign_test_policy

from workbench.accounts import study_kernel_user
from workbench.gateway.server import start_gateway
from workbench.paths import Space
from workbench.policy import signed
from workbench.provenance.service import start_collector
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP
from workbench.release.service import start_airlock
from workbench.views.sample import build_sample_space

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STUDY = "pol-one"
REFUSE = """
    try:
        wb.view("visits")
        print(json.dumps({"refused": False}))
    except WorkbenchUserError as exc:
        print(json.dumps({"refused": True, "reason": exc.reason, "message": str(exc)}))
"""


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.space = build_sample_space(root / "space", rows=300)
        os.chmod(self.space.root, 0o755)
        self.key_file = root / "ada.key"
        self.key = register_admin(self.space, "ada", self.key_file)
        self.policy = self.space.policy

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "workbench.cli", *args], input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)

    def apply(self, text: str, *extra: str, stdin: str = "") -> subprocess.CompletedProcess:
        source = self.root / "new-policy.yaml"
        source.write_text(text)
        return self.cli("policy", "apply", str(source), "--data-dir", str(self.space.root),
                        "--key", str(self.key_file), *extra, stdin=stdin)

    def read_view(self) -> dict:
        """wb.view("visits") as the study's kernel uid, through the gateway socket."""
        uid = pwd.getpwnam(study_kernel_user(STUDY)).pw_uid
        gid = pwd.getpwuid(uid).pw_gid
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent",
               "WORKBENCH_GATEWAY_SOCKET": str(self.space.gateway_socket(STUDY)),
               "WORKBENCH_STUDY": STUDY, "WORKBENCH_USER": "alice", "WORKBENCH_KERNEL_ID": "k-1"}
        code = ("import json, workbench as wb\nfrom workbench.errors import WorkbenchUserError\n"
                + textwrap.dedent(REFUSE))
        result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                                 sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=120, cwd="/", check=False)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def airlock_status(self) -> tuple[int, dict]:
        status, body, _ = UnixHTTP(airlock_socket(self.space)).request(
            "GET", "/requests", None, {"X-Workbench-Actor": "rita"})
        return status, json.loads(body)

    def records(self, kind: str) -> list[dict]:
        from workbench.provenance.store import open_store

        store = open_store(self.space, readonly=True)
        try:
            bodies = [json.loads(body) for _seq, _prev, _hash, body in store.rows()]
        finally:
            store.close()
        return [b for b in bodies if b["kind"] == kind]


@pytest.fixture(scope="module")
def env():
    root = Path(tempfile.mkdtemp(prefix="wb-policy-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        env = Env(root)
        with start_collector(env.space):
            first = env.apply(POLICY, "--yes")
            assert first.returncode == 0, first.stderr
            with start_gateway(env.space, env.policy) as gateway, \
                    start_airlock(env.space, env.policy):
                env.gateway = gateway
                yield env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_first_apply_is_serial_one_signed_and_recorded(env):
    record = json.loads(signed.signature_path(env.policy).read_text())
    assert record["serial"] == 1 and record["key_id"] == signed.key_id_of(env.space, env.key)
    change = env.records("policy-change")[0]
    assert change["v"] == 2
    fields = change["fields"]
    assert fields["serial"] == 1 and fields["studies_added"] == ["pol-one"]
    assert fields["members_added"] == ["pol-one/alice"] and fields["actor"] == "ada"
    assert not env.read_view()["refused"]
    assert env.airlock_status()[0] == 200


def test_apply_shows_the_diff_asks_and_puts_the_change_in_force_without_a_restart(env):
    changed = POLICY.replace("members: [alice]", "members: [alice, bob]") + NEW_STUDY
    declined = env.apply(changed, stdin="n\n")
    assert "+    members: [alice, bob]" in declined.stdout
    assert "+  pol-two:" in declined.stdout and "--- serial 1 (in force)" in declined.stdout
    assert "not applied" in declined.stdout
    assert json.loads(signed.signature_path(env.policy).read_text())["serial"] == 1

    accepted = env.apply(changed, stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "serial 2 in force" in accepted.stdout
    assert signed.newest_serial(env.space) == 2
    fields = env.records("policy-change")[-1]["fields"]
    assert fields["serial"] == 2 and fields["previous_serial"] == 1
    assert fields["studies_added"] == ["pol-two"] and fields["studies_removed"] == []
    assert fields["members_added"] == ["pol-one/bob", "pol-two/alice", "pol-two/bob"]
    assert fields["previous_sha256"] != fields["policy_sha256"]
    # names only: no value from the policy file's text beyond ids goes into the record
    assert "a study added" not in json.dumps(fields)

    history = env.cli("policy", "history", "--data-dir", str(env.space.root))
    assert history.returncode == 0 and history.stdout.splitlines()[0].startswith("serial 2")
    assert "+study pol-two" in history.stdout

    same = env.apply(changed, "--yes")
    assert same.returncode == 0 and "no change" in same.stdout
    assert signed.newest_serial(env.space) == 2
    assert not env.read_view()["refused"]


def _refused_by_both(env, why: str) -> None:
    out = env.read_view()
    assert out["refused"] and out["reason"] == "policy-unavailable", out
    assert why in out["message"] and "\n" not in out["message"]
    status, body = env.airlock_status()
    assert status == 503 and body["error"]["reason"] == "policy-unavailable"
    assert why in body["error"]["message"]


def _restore(env) -> None:
    """The way back is the admin's: apply signs a new serial."""
    text = env.policy.read_text().replace("title: One", "title: One (restored)")
    if "title: One (restored)" in env.policy.read_text():
        text = env.policy.read_text().replace("(restored)", "(restored again)")
    result = env.apply(text, "--yes")
    assert result.returncode == 0, result.stderr
    assert not env.read_view()["refused"]
    assert env.airlock_status()[0] == 200


def test_a_policy_edited_after_signing_is_refused_by_gateway_and_airlock(env):
    text = env.policy.read_text()
    env.policy.write_text(text.replace("views: [visits]", "views: [visits, elderly]"))
    _refused_by_both(env, "changed after it was signed")
    assert "bad-policy-signature" in env.gateway.output()
    _restore(env)


def test_a_policy_without_its_signature_is_refused(env):
    sig = signed.signature_path(env.policy)
    saved = sig.read_bytes()
    sig.unlink()
    try:
        _refused_by_both(env, "unsigned-policy")
    finally:
        sig.write_bytes(saved)
    assert not env.read_view()["refused"]


def test_a_policy_signed_by_an_unregistered_key_is_refused(env):
    data = env.policy.read_bytes().replace(b"views: [visits]", b"views: [visits, elderly]")
    serial = signed.newest_serial(env.space) + 1
    for key_id in (signed.key_id_of(env.space, env.key), "mallory-0123456789ab"):
        record = signed.sign_policy(data, Ed25519PrivateKey.generate(), key_id, serial)
        env.policy.write_bytes(data)
        signed.signature_path(env.policy).write_text(json.dumps(record))
        _refused_by_both(env, "bad-policy-signature")
    _restore(env)

    source = env.root / "by-mallory.yaml"
    source.write_text(POLICY)
    mallory = env.root / "mallory.key"
    signed.create_admin_key(mallory)
    result = env.cli("policy", "apply", str(source), "--data-dir", str(env.space.root),
                     "--key", str(mallory), "--yes")
    assert result.returncode != 0 and "not a registered admin key" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_older_signed_policy_put_back_is_refused(env):
    history = env.space.policy_dir / "history"
    oldest = history / "v000001.yaml"
    env.policy.write_bytes(oldest.read_bytes())
    signed.signature_path(env.policy).write_bytes(signed.signature_path(oldest).read_bytes())
    _refused_by_both(env, "policy-rollback")
    _restore(env)


def test_an_invalid_policy_is_not_applied_and_names_line_and_field(env):
    before = env.policy.read_bytes()
    result = env.apply(POLICY.replace("expires: 2099-12-31", "expires: someday"), "--yes")
    assert result.returncode != 0 and "field 'studies.pol-one.expires'" in result.stderr
    result = env.apply(POLICY.replace("views: [visits]", "views: [no_such_view]"), "--yes")
    assert result.returncode != 0 and "'no_such_view' is not in the space's catalog" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert env.policy.read_bytes() == before


def test_without_the_collector_nothing_changes(open_tmp):
    space = Space(open_tmp / "space")
    space.root.mkdir()
    key = register_admin(space, "ada", open_tmp / "ada.key")
    with pytest.raises(Exception, match="could not be recorded"):
        sign_test_policy(space, POLICY, key)
    assert not space.policy.exists()


def test_the_demo_signs_its_first_policy_once_and_keeps_the_one_in_force(open_tmp):
    from workbench.policy.cli import install_demo_policy

    space = Space(open_tmp / "space")
    space.keys.mkdir(parents=True, mode=0o700)
    first = open_tmp / "demo-policy.yaml"
    first.write_text(POLICY)
    lines: list[str] = []
    path = install_demo_policy(space, str(first), echo=lines.append)  # starts its own collector
    assert path == space.policy and path.read_text() == POLICY
    (key_id,) = signed.load_admin_keys(space)
    assert key_id.startswith("ada-")  # the policy's first admin
    assert os.stat(space.keys / "admin.key").st_mode & 0o777 == 0o600
    assert json.loads(signed.signature_path(path).read_text())["key_id"] == key_id
    first.write_text(POLICY + NEW_STUDY)  # a later run: the signed policy in force stays
    assert install_demo_policy(space, str(first), echo=lines.append) == path
    assert path.read_text() == POLICY and signed.newest_serial(space) == 1
    assert any("change it with 'workbench policy apply" in line for line in lines)


def test_the_admin_overview_dashboard_lists_the_policy_history(env):
    from types import SimpleNamespace

    from workbench.review.dashboards import admin_overview
    from workbench.review.snapshot import admin_snapshot

    snap = admin_snapshot(env.space, str(env.policy), "ada")
    rows = snap["policy_history"]["rows"]
    assert [row["serial"] for row in rows] == sorted((r["serial"] for r in rows), reverse=True)
    assert rows[-1]["serial"] == 1 and "+study pol-one" in rows[-1]["what"]
    page = "".join(child.value for child in admin_overview(SimpleNamespace(snapshot=snap)).children
                   if hasattr(child, "value"))
    assert "<h3>Policy history</h3>" in page and "+study pol-one" in page
    assert rows[0]["key_id"] in page
    assert "policy_history" not in admin_snapshot(env.space, str(env.policy), "rita")
    assert snap["policy_status"]["signed"]["serial"] == rows[0]["serial"]

    original = env.policy.read_bytes()  # an edited policy: the admin sees why it is refused
    env.policy.write_bytes(original.replace(b"views: [visits]", b"views: [visits, elderly]"))
    try:
        status = admin_snapshot(env.space, str(env.policy), "ada")["policy_status"]
    finally:
        env.policy.write_bytes(original)
    assert not status["ok"] and "bad-policy-signature" in status["problems"][0]
