"""``workbench linkage serve``: the linkage service as its own account.

As root it makes ``linkage/`` (0700, owned by ``wb-linkage``), binds ``run/linkage.sock`` (0666:
the peer's uid decides, per request), drops to ``wb-linkage`` and only then reads its key, or
makes one (``linkage/oprf.key``, 0600): the key is never in a root process and no other account,
a holder node's least of all, can read it. Without root everything runs as the caller
(development).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from workbench import accounts, linkage
from workbench.errors import WorkbenchUserError
from workbench.linkage.limits import PER_DAY, PER_MINUTE, Limits
from workbench.paths import Space
from workbench.runtime import (
    ServiceProcess,
    bind_socket,
    drop_privileges,
    start_service,
    workbench_command,
)
from workbench.unixhttp import UnixHTTP

KEY_FILE = "oprf.key"
STATE_FILE = "state.json"
CLK_DIR = "clk"  # the reference index: <account>.ref (pseudonyms and CLKs)
CLK_STATE_FILE = "clk-state.json"  # CLKs matched per node and day


def key_path(space: Space) -> Path:
    return linkage.state_dir(space) / KEY_FILE


def load_or_create_key(path: Path) -> bytes:
    """The service's OPRF key: made once (a random non-zero scalar), then only read."""
    import pysodium  # here, not at import: the supervisor imports this module to start it

    from workbench.linkage import oprf

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != oprf.ELEMENT or not any(key) or \
                pysodium.crypto_core_ristretto255_scalar_reduce(key + bytes(32)) != key:
            raise WorkbenchUserError(f"{path} is not a linkage key (32 bytes, a non-zero scalar "
                                     "mod the group order): restore it from its backup",
                                     reason="bad-linkage-key") from None
        return key
    key = oprf.new_key()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def run_linkage(space: Space, max_batch: int = linkage.MAX_BATCH, per_minute: int = PER_MINUTE,
                per_day: int = PER_DAY, clk_threshold: float | None = None) -> None:
    from workbench.linkage.service import log, make_app, serve

    # a space built by `workbench init`, or one whose services are being started (start_service
    # makes run/ first); never a mistyped path, where it would make a new key
    if not (space.manifest.is_file() or space.run.is_dir()):
        raise WorkbenchUserError(f"{space.root} is not a data space (no space.json): build one "
                                 f"with 'workbench init --data-dir {space.root}'.",
                                 reason="no-data-space")
    ids = accounts.ensure_user(linkage.ACCOUNT) if accounts.is_root() else None
    state = linkage.state_dir(space)
    state.mkdir(mode=0o700, exist_ok=True)
    if ids:
        os.chown(state, *ids)
    os.chmod(state, 0o700)
    listener = bind_socket(linkage.socket_path(space), 0o666)
    listener.setblocking(False)
    drop_privileges(ids)
    key = load_or_create_key(state / KEY_FILE)  # only now: as wb-linkage
    limits = Limits(state / STATE_FILE, per_minute, per_day)
    # fuzzy linkage: the reference CLKs and pseudonyms, and each node's CLK matches per day
    from workbench.linkage.clk import ReferenceIndex
    from workbench.linkage.fuzzy import THRESHOLD

    index = ReferenceIndex(state / CLK_DIR)
    clk_limits = Limits(state / CLK_STATE_FILE, per_minute, per_day)
    threshold = THRESHOLD if clk_threshold is None else clk_threshold
    from workbench.linkage.service import key_id

    log("start", uid=os.getuid(), key_id=key_id(key), max_batch=max_batch,
        per_minute=per_minute, per_day=per_day, clk_threshold=threshold,
        clk_reference_persons=index.size())
    serve(make_app(key, limits, max_batch, os.getuid(), space, index, clk_limits, threshold),
          listener)


class LinkageHandle(ServiceProcess):
    def __init__(self, space: Space, *args):
        super().__init__(*args)
        self.space, self.socket = space, self.sockets[0]

    def info(self) -> dict:
        return UnixHTTP(self.socket, timeout=5).json("GET", linkage.INFO)


def _answers(handle: LinkageHandle) -> bool:
    UnixHTTP(handle.socket, timeout=2).json("GET", "/health")
    return True


def start_linkage(space: Space, max_batch: int = linkage.MAX_BATCH,
                  per_minute: int = PER_MINUTE, per_day: int = PER_DAY,
                  ready_timeout: float = 30.0,
                  clk_threshold: float | None = None) -> LinkageHandle:
    """Start ``workbench linkage serve`` as a subprocess; return once it answers."""
    command = workbench_command("linkage", "serve", "--data-dir", str(space.root),
                                "--max-batch", str(max_batch), "--per-minute", str(per_minute),
                                "--per-day", str(per_day))
    if clk_threshold is not None:
        command += ["--clk-threshold", repr(clk_threshold)]
    return start_service("linkage service", command, _answers, (linkage.socket_path(space),),
                         ready_timeout, partial(LinkageHandle, space))
