"""Unix accounts of the space's services and studies: the one place that names them.

Each trust domain of docs/architecture.md runs as its own uid. When the workbench runs as root the
accounts are created on demand (system users, no login shell, no home); otherwise everything runs
as the current user and file ownership is not changed (development without root).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import time

from workbench.errors import WorkbenchError

GATEWAY = "wb-gateway"  # owns the holders' stores and the catalog
COLLECTOR = "wb-collector"  # owns the provenance store and its tree-head signing key
KEYHOLDER = "wb-keyholder"  # the release checker: opens the key parties' partials, no HE key
AGGREGATOR = "wb-aggregator"  # adds HE ciphertexts under the public context; no key to decrypt
AIRLOCK = "wb-airlock"  # release requests, reviews and the study outboxes
HUB = "wb-hub"  # reserved for a non-root hub (production)

_MAX_NAME = 32  # useradd's limit
_USERADD_LOCKED = 10  # useradd's exit status when /etc/passwd is locked by another process
_USERADD_ATTEMPTS = 8


def _study_account(prefix: str, study: str) -> str:
    name = f"{prefix}{study}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(study.encode()).hexdigest()[:6]
    return f"{prefix}{study[: _MAX_NAME - len(prefix) - 7]}-{digest}"


def study_server_user(study: str) -> str:
    """The uid that runs a study's single-user Jupyter server and audit proxy (trusted)."""
    return _study_account("wbs-", study)


def study_kernel_user(study: str) -> str:
    """The uid that runs a study's sandboxed kernels (untrusted)."""
    return _study_account("wbk-", study)


def holder_node_user(holder: str) -> str:
    """The uid of a holder's node on a shared machine: the only reader of its store and keys."""
    return _study_account("wbh-", holder)


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_user(name: str) -> tuple[int, int]:
    """Return (uid, gid) of ``name``, creating a locked system account when root.

    Without root the current uid/gid is returned: ownership cannot be changed anyway.
    """
    try:
        entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    if not is_root():
        return os.getuid(), os.getgid()
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [useradd, "--system", "--no-create-home", "--user-group",
               "--shell", "/usr/sbin/nologin", "--home-dir", "/nonexistent", name]
    for attempt in range(_USERADD_ATTEMPTS):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode in (0, 9):  # 9: created meanwhile by another process
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        if result.returncode != _USERADD_LOCKED:
            break
        time.sleep(0.2 * (attempt + 1))  # another process holds /etc/passwd's lock
    raise WorkbenchError(f"could not create service account {name}: {result.stderr.strip()}")


def group_id(name: str) -> int:
    return grp.getgrnam(name).gr_gid
