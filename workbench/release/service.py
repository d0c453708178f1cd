"""``workbench airlock``: run the airlock service (own uid, own socket).

As root it creates the airlock account, gives it the airlock directory (0700) with every study's
outbox in it (``airlock/outbox/<study>``), binds the socket, loads everything it will need and
then drops to that uid. A study added later by ``workbench policy apply`` gets its outbox on first
use, made by the airlock's own account in its own directory: no root, no restart. For tests and
other components ``start_airlock(space, policy_file)`` runs it as a subprocess, through the same
click command (``workbench airlock``) an admin runs.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

from workbench import accounts
from workbench.paths import Space
from workbench.release.airlock import Airlock, airlock_dir, airlock_socket
from workbench.runtime import ServiceProcess, drop_privileges, start_service, workbench_command
from workbench.unixhttp import UnixHTTP

log = logging.getLogger("workbench.airlock")
AIRLOCK_ACCOUNT = accounts.AIRLOCK
TOKEN_KEY_FILE = "review-token.key"  # noqa: S105 - a file name, not a secret


def token_key_path(space: Space) -> Path:
    return airlock_dir(space) / TOKEN_KEY_FILE


def prepare_dirs(space: Space, policy) -> tuple[int, int] | None:
    """The airlock dir and its outboxes, owned by the airlock uid when root. Returns (uid, gid)
    or None."""
    from workbench.release.tokens import load_or_create_key

    directory = airlock_dir(space)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    load_or_create_key(token_key_path(space))
    (directory / "outbox").mkdir(mode=0o700, exist_ok=True)
    for study in policy.studies:
        _move_old_outbox(space, study)
        space.outbox(study).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(space.outbox(study), 0o700)  # a moved one keeps its old mode
    if not accounts.is_root():
        return None
    uid, gid = accounts.ensure_user(AIRLOCK_ACCOUNT)
    os.chown(directory, uid, gid)
    for path in directory.rglob("*"):
        os.chown(path, uid, gid, follow_symlinks=False)
    return uid, gid


def _move_old_outbox(space: Space, study: str) -> None:
    """Spaces made before the outboxes moved into the airlock's directory kept them at
    ``studies/<study>/outbox``: moved once, as root, so earlier releases stay downloadable."""
    old = space.study_dir(study) / "outbox"
    if old.is_dir() and not old.is_symlink() and not space.outbox(study).exists():
        space.outbox(study).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.rename(old, space.outbox(study))
        log.info("moved the outbox of study %s into %s", study, airlock_dir(space))


def trusted_uids(own_uid: int) -> set[int]:
    uids = {0, own_uid}
    if accounts.is_root():
        uids.add(accounts.ensure_user(accounts.GATEWAY)[0])
    return uids


def _prime_imports() -> None:
    """After dropping privileges the interpreter's files may be unreadable: import now."""
    import concurrent.futures.thread  # noqa: F401 - the server's executor, imported lazily

    import acro.sdcchecks  # noqa: F401
    import acro.version  # noqa: F401
    import defusedxml.ElementTree  # noqa: F401
    import nacl.signing  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    from PIL import Image, PngImagePlugin  # noqa: F401

    import workbench.release.attested  # noqa: F401
    import workbench.release.rules  # noqa: F401
    import workbench.release.svg  # noqa: F401
    import workbench.secure.attest  # noqa: F401 - verifies signed results (reads he/release.pub)


def run_airlock(space: Space, policy_file: str) -> None:
    from workbench.provenance.client import ProvenanceClient
    from workbench.release.airlock import PolicyFile
    from workbench.release.server import bind, make_app, serve
    from workbench.release.tokens import load_or_create_key

    policy_source = PolicyFile(policy_file, space)
    policy = policy_source.current()  # a bad file stops the start with file, line and field
    ids = prepare_dirs(space, policy)
    key = load_or_create_key(token_key_path(space))
    _prime_imports()
    airlock = Airlock(space, policy_source, ProvenanceClient(space.collector_socket))
    if ids:
        os.chown(airlock.store.path, *ids)
        for suffix in ("-wal", "-shm"):
            sidecar = Path(f"{airlock.store.path}{suffix}")
            if sidecar.exists():
                os.chown(sidecar, *ids)
    listener = bind(airlock_socket(space))  # as root: the socket's directory may be root's
    app = make_app(airlock, trusted_uids(ids[0] if ids else os.getuid()), key)
    drop_privileges(ids)
    log.info("airlock on %s", airlock_socket(space))
    serve(app, listener)


class AirlockHandle(ServiceProcess):
    def __init__(self, space: Space, *args):
        super().__init__(*args)
        self.space, self.socket = space, space.airlock_socket


def _answers(handle: AirlockHandle) -> bool:
    UnixHTTP(handle.socket, timeout=2).request("GET", "/health")
    return True


def start_airlock(space: Space, policy_file: str | os.PathLike,
                  ready_timeout: float = 60.0) -> AirlockHandle:
    """Start ``workbench airlock`` as a subprocess; return once /health answers."""
    command = workbench_command("airlock", "--data-dir", str(space.root),
                                "--policy", str(policy_file))
    return start_service("airlock", command, _answers, (space.airlock_socket,), ready_timeout,
                         partial(AirlockHandle, space))
