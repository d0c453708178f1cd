"""Signed policies (workbench/policy/signed.py): each way to get an unsigned, altered, foreign or
rolled-back policy acted on is tried and refused; a space without admin keys stays usable."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from policy_support import POLICY, register_admin

from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.policy import signed
from workbench.policy.signed import ActivePolicy, sign_policy, verify_policy

DATA = POLICY.encode()


@pytest.fixture
def space(tmp_path):
    root = tmp_path / "space"
    root.mkdir()
    return Space(root)


def _keys():
    key = Ed25519PrivateKey.generate()
    return key, {"ada-1": key.public_key()}


def _reason(call) -> str:
    with pytest.raises(WorkbenchUserError) as caught:
        call()
    assert "\n" not in str(caught.value)  # one line
    return caught.value.reason


def test_a_signed_policy_verifies_and_its_record_is_plain_json():
    key, keys = _keys()
    record = sign_policy(DATA, key, "ada-1", 3)
    assert json.loads(json.dumps(record)) == record
    assert set(record) == {"serial", "issued_at", "sha256", "key_id", "signature"}
    assert record["serial"] == 3 and record["issued_at"].endswith("+00:00")
    assert verify_policy(DATA, record, keys) is record


def test_no_signature_is_unsigned_policy():
    _key, keys = _keys()
    assert _reason(lambda: verify_policy(DATA, None, keys)) == "unsigned-policy"


@pytest.mark.parametrize("change", [
    lambda d, r: (d.replace(b"members: [alice]", b"members: [alice, bob]"), r),  # edited after
    lambda d, r: (d + b"\n", r),                                                  # one byte more
    lambda d, r: (d, {**r, "serial": r["serial"] + 1}),                          # serial bumped
    lambda d, r: (d, {**r, "key_id": "mallory-1"}),                               # unknown key id
    lambda d, r: (d, {**r, "signature": base64.b64encode(b"x" * 64).decode()}),  # garbage sig
    lambda d, r: (d, {**r, "signature": "not base64!"}),
    lambda d, r: (d, {k: v for k, v in r.items() if k != "sha256"}),              # malformed
    lambda d, r: (d, {**r, "serial": "7"}),
    lambda d, r: (d, ["not", "a", "record"]),
])
def test_every_alteration_is_bad_policy_signature(change):
    key, keys = _keys()
    data, record = change(DATA, sign_policy(DATA, key, "ada-1", 2))
    assert _reason(lambda: verify_policy(data, record, keys)) == "bad-policy-signature"


def test_a_key_that_is_not_registered_cannot_sign_under_a_registered_id():
    _key, keys = _keys()
    mallory = Ed25519PrivateKey.generate()
    record = sign_policy(DATA, mallory, "ada-1", 2)
    assert _reason(lambda: verify_policy(DATA, record, keys)) == "bad-policy-signature"


def test_the_signature_is_domain_separated():
    """The same key signing the bare record body (as another tool might) does not make a
    policy signature."""
    key, keys = _keys()
    record = sign_policy(DATA, key, "ada-1", 2)
    body = json.dumps({k: record[k] for k in signed.SIGNED_FIELDS}, sort_keys=True,
                      separators=(",", ":")).encode()
    forged = {**record, "signature": base64.b64encode(key.sign(body)).decode()}
    assert _reason(lambda: verify_policy(DATA, forged, keys)) == "bad-policy-signature"


def _put(path, data: bytes, record: dict | None) -> None:
    path.write_bytes(data)
    sig = signed.signature_path(path)
    if record is None:
        sig.unlink(missing_ok=True)
    else:
        sig.write_text(json.dumps(record))


def test_a_space_without_admin_keys_accepts_an_unsigned_policy(space, tmp_path):
    path = tmp_path / "policy.yaml"
    _put(path, DATA, None)
    policy = ActivePolicy(path, space, "the test").current()
    assert "pol-one" in policy.studies


def test_active_policy_fails_closed_on_unsigned_tampered_foreign_and_rolled_back(space,
                                                                                tmp_path):
    key = register_admin(space, "ada", tmp_path / "ada.key")
    key_id = signed.key_id_of(space, key)
    path = tmp_path / "policy.yaml"
    source = ActivePolicy(path, space, "the test")

    _put(path, DATA, None)
    with pytest.raises(WorkbenchUserError) as caught:
        source.current()
    assert caught.value.reason == "policy-unavailable" and "unsigned-policy" in str(caught.value)
    assert "\n" not in str(caught.value)

    v1 = sign_policy(DATA, key, key_id, 1)
    _put(path, DATA, v1)
    assert "pol-one" in source.current().studies and source.record["serial"] == 1

    tampered = DATA.replace(b"members: [alice]", b"members: [alice, bob]")
    _put(path, tampered, v1)
    with pytest.raises(WorkbenchUserError, match="bad-policy-signature"):
        source.current()

    _put(path, tampered, sign_policy(tampered, Ed25519PrivateKey.generate(), key_id, 2))
    with pytest.raises(WorkbenchUserError, match="bad-policy-signature"):
        source.current()

    v2 = sign_policy(tampered, key, key_id, 2)
    _put(path, tampered, v2)
    assert source.current().studies["pol-one"].members == ("alice", "bob")

    _put(path, DATA, v1)  # the older, validly signed policy put back
    with pytest.raises(WorkbenchUserError, match="policy-rollback"):
        source.current()
    other = DATA.replace(b"title: One", b"title: Another")  # a different policy, same serial
    _put(path, other, sign_policy(other, key, key_id, 2))
    with pytest.raises(WorkbenchUserError, match="policy-rollback"):
        source.current()

    _put(path, tampered, v2)
    assert source.current().studies["pol-one"].members == ("alice", "bob")


def test_removing_the_admin_keys_does_not_turn_verification_off(space, tmp_path):
    key = register_admin(space, "ada", tmp_path / "ada.key")
    path = tmp_path / "policy.yaml"
    _put(path, DATA, sign_policy(DATA, key, signed.key_id_of(space, key), 1))
    source = ActivePolicy(path, space, "the test")
    source.current()
    space.admin_keys.unlink()
    _put(path, DATA.replace(b"[alice]", b"[alice, bob]"), None)
    with pytest.raises(WorkbenchUserError, match="unsigned-policy"):
        source.current()


def test_a_broken_admin_registry_refuses_everything(space, tmp_path):
    path = tmp_path / "policy.yaml"
    _put(path, DATA, None)
    space.admin_keys.write_text("{not json")
    with pytest.raises(WorkbenchUserError, match="bad-admin-keys"):
        ActivePolicy(path, space, "the test").current()


def test_keygen_writes_a_0600_key_registers_it_and_never_overwrites(space, tmp_path):
    out = tmp_path / "ada.key"
    command = [sys.executable, "-m", "workbench.cli", "policy", "keygen", "--data-dir",
               str(space.root), "--name", "ada", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    registry = space.admin_keys
    assert stat.S_IMODE(os.stat(registry).st_mode) == 0o644
    entries = json.loads(registry.read_text())["keys"]
    assert [e["name"] for e in entries] == ["ada"] and entries[0]["id"].startswith("ada-")
    assert entries[0]["id"] in result.stdout
    key = signed.load_admin_private_key(out)
    assert signed.key_id_of(space, key) == entries[0]["id"]

    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode != 0 and "never overwritten" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert signed.load_admin_private_key(out).private_bytes_raw() == key.private_bytes_raw()


def test_registering_a_key_is_root_only(open_tmp):
    space = Space(open_tmp / "space")
    space.root.mkdir()
    os.chmod(space.root, 0o777)  # noqa: S103 - even a writable space: the check is the uid
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
         "-m", "workbench.cli", "policy", "keygen", "--data-dir", str(space.root), "--name",
         "mallory", "--out", "/tmp/never-written.key"],
        capture_output=True, text=True, check=False, cwd="/")
    assert result.returncode != 0 and "root action" in result.stderr
    assert not space.admin_keys.exists()
    assert not os.path.exists("/tmp/never-written.key")


def test_a_key_path_that_cannot_be_written_is_one_line_and_registers_nothing(space, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "policy", "keygen", "--data-dir",
         str(space.root), "--name", "ada", "--out", str(tmp_path / "missing" / "ada.key")],
        capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "cannot create the admin key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not space.admin_keys.exists()
