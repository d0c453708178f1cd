"""The space's file permissions, tried for real as other uids (security boundary:
workbench/space/permissions.py). Any uid but root and the gateway account must be unable to read
data, catalog or keys; the gateway must not read the linkage or signing keys."""

import os
import pwd
import stat
import subprocess
import sys

import pytest

from workbench import accounts
from workbench.space.linkage import study_rekey_key_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch uids")

OUTSIDER = "nobody"


def as_user(user, *argv):
    entry = pwd.getpwnam(user)
    return subprocess.run(
        ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
         "--inh-caps=-all", *argv],
        capture_output=True, text=True, errors="replace", timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def _data_file(space):
    return next(space.holders.glob("hospital-a/*.parquet"))


def test_modes_and_owners(built_space):
    gateway_uid, _ = accounts.ensure_user(accounts.GATEWAY)

    def check(path, uid, mode):
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, mode), path

    check(built_space.root, 0, 0o755)
    check(built_space.keys, 0, 0o700)
    check(built_space.signing_key, 0, 0o600)
    check(built_space.linkage_key, 0, 0o600)
    check(built_space.signing_pub, 0, 0o644)
    check(built_space.holders, gateway_uid, 0o700)
    check(_data_file(built_space), gateway_uid, 0o600)
    check(study_rekey_key_path(built_space), gateway_uid, 0o600)
    check(built_space.catalog, gateway_uid, 0o750)
    check(built_space.usage, gateway_uid, 0o700)
    for path in built_space.holders.rglob("*"):
        assert path.stat().st_uid == gateway_uid and not path.stat().st_mode & 0o077, path


@pytest.mark.parametrize("target", [
    lambda s: _data_file(s), lambda s: s.linkage_key, lambda s: s.signing_key,
    lambda s: s.catalog / "datasets" / "hospital_a.person.json",
    lambda s: s.catalog / "linkage.json", lambda s: study_rekey_key_path(s),
    lambda s: s.he / "key-shares" / "hospital-a.key", lambda s: s.he / "checker-box.key",
])
def test_another_uid_cannot_read(built_space, target):
    path = target(built_space)
    assert path.is_file()
    result = as_user(OUTSIDER, "cat", str(path))
    assert result.returncode != 0 and "Permission denied" in result.stderr
    assert result.stdout == ""


def test_another_uid_cannot_list_or_write_the_stores(built_space):
    for folder in (built_space.holders, built_space.holders / "hospital-a", built_space.catalog,
                   built_space.keys, built_space.usage):
        result = as_user(OUTSIDER, "ls", str(folder))
        assert result.returncode != 0 and "Permission denied" in result.stderr, folder
    result = as_user(OUTSIDER, "touch", str(built_space.holders / "planted.parquet"))
    assert result.returncode != 0
    assert not (built_space.holders / "planted.parquet").exists()


def test_another_uid_reads_only_the_public_parts(built_space):
    for path in (built_space.manifest, built_space.signing_pub, built_space.he / "public.ctx"):
        assert as_user(OUTSIDER, "cat", str(path)).returncode == 0, path


def test_the_gateway_reads_data_but_not_the_space_keys(built_space):
    gateway = accounts.GATEWAY
    assert as_user(gateway, "cat", str(_data_file(built_space))).returncode == 0
    assert as_user(gateway, "cat", str(study_rekey_key_path(built_space))).returncode == 0
    assert as_user(gateway, "ls", str(built_space.catalog / "datasets")).returncode == 0
    for secret in (built_space.linkage_key, built_space.signing_key):
        result = as_user(gateway, "cat", str(secret))
        assert result.returncode != 0 and "Permission denied" in result.stderr


def test_python_as_another_uid_is_refused_too(built_space):
    """The same check through the language a kernel would use (not only coreutils)."""
    code = ("import sys\ntry:\n    open(sys.argv[1], 'rb').read()\nexcept PermissionError:\n"
            "    sys.exit(13)\n")
    if as_user(OUTSIDER, sys.executable, "-c", "pass").returncode != 0:
        pytest.fail("the test's Python is not runnable by other uids: install it world-readable")
    result = as_user(OUTSIDER, sys.executable, "-c", code, str(_data_file(built_space)))
    assert result.returncode == 13
