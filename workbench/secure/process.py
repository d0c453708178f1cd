"""``workbench keyholder`` and ``workbench aggregator``: HE roles as their own processes and uids.

The key holder, as root, binds ``Space.keyholder_socket`` (owner wb-keyholder, group
wb-aggregator, mode 0660: only the aggregator and root may ask for a decryption; study kernels
cannot even see the socket from inside their sandbox), drops to the ``wb-keyholder`` account, and
only then reads ``he/checker-box.key`` (0600 wb-keyholder), which opens the key parties' sealed
partial decryptions; it holds no HE secret key (the space's key is a joint key, ``keys.py``). It
trusts the holders' public keys in ``he/holders.json``. Every decryption is recorded in
provenance through the collector socket; if the collector is down, decryptions are refused.

The aggregator binds ``Space.aggregator_socket`` (owner wb-aggregator, group wb-gateway, 0660: the
gateway, which coordinates rounds and plays the holders, may connect), drops to ``wb-aggregator``
and reads only ``he/public.ctx``.
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.runtime import ServiceProcess, drop_privileges, start_service, workbench_command
from workbench.secure import attest
from workbench.secure.signing import RegistryFile, create_holder_keys

DEFAULT_MIN_CELL_FLOOR = 5  # the key holder never releases cells below this, whatever the request


def _bind(path: Path, account: str, client_account: str):
    """Bind ``path`` for ``account``, connectable by ``client_account``'s group; returns the
    server and the (uid, gid) to drop to (None without root)."""
    from workbench.secure.keyholder import FrameServer

    path.parent.mkdir(parents=True, exist_ok=True)
    server = FrameServer(path)
    if accounts.is_root():
        uid, gid = accounts.ensure_user(account)
        _, client_gid = accounts.ensure_user(client_account)
        os.chown(path, uid, client_gid)
        os.chmod(path, 0o660)
        return server, (uid, gid)
    os.chmod(path, 0o600)
    return server, None


def _serve(server, label: str, path: Path) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{label} ready on {path} (uid {os.getuid()})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def run_keyholder(space: Space, min_cell_floor: int = DEFAULT_MIN_CELL_FLOOR) -> None:
    import tenseal  # noqa: F401 - loaded before dropping privileges

    from workbench.provenance.client import ProvenanceClient
    from workbench.secure.keyholder import KeyHolder
    from workbench.secure.keys import PUBLIC_FILE, load_public

    if not (space.he / PUBLIC_FILE).exists():
        raise WorkbenchUserError(f"{space.he / PUBLIC_FILE} is missing: build the space with "
                                 "'workbench init' first.", reason="no-he-keys")
    server, ids = _bind(space.keyholder_socket, accounts.KEYHOLDER, accounts.AGGREGATOR)
    state = space.keyholder_state  # its ledgers: nobody else reads or writes them
    state.mkdir(mode=0o700, exist_ok=True)
    if ids:
        os.chown(state, *ids)
    os.chmod(state, 0o700)
    drop_privileges(ids)
    keys = load_public(space)  # the joint key's public context and record: no secret key
    keys.bfv  # noqa: B018 - parse once at start, fail early on a broken file
    server.service = KeyHolder(keys, ProvenanceClient(space.collector_socket),
                               min_cell_floor=min_cell_floor, require_provenance=True,
                               registry=RegistryFile(space.holder_registry),
                               release_key=attest.load_signing_key(space),
                               state_dir=state, keys_file=space.he / PUBLIC_FILE)
    _serve(server, "key holder", space.keyholder_socket)


def run_aggregator(space: Space) -> None:
    import tenseal  # noqa: F401 - loaded before dropping privileges

    from workbench.secure.aggregator import AggregatorService
    from workbench.secure.keyholder import KeyHolderClient
    from workbench.secure.keys import PUBLIC_FILE, load_public

    if not (space.he / PUBLIC_FILE).exists():
        raise WorkbenchUserError(f"{space.he / PUBLIC_FILE} is missing: build the space with "
                                 "'workbench init' first.", reason="no-he-keys")
    server, ids = _bind(space.aggregator_socket, accounts.AGGREGATOR, accounts.GATEWAY)
    server.reveal_errors = True  # it never decrypts: its faults hold no patient value
    drop_privileges(ids)
    keys = load_public(space)  # as wb-aggregator: he/public.ctx is all it can read
    keys.bfv  # noqa: B018 - parse once at start, fail early on a broken file
    server.service = AggregatorService(keys, KeyHolderClient(space.keyholder_socket),
                                       keys_file=space.he / PUBLIC_FILE)
    _serve(server, "aggregator", space.aggregator_socket)


class KeyHolderHandle(ServiceProcess):
    """A key holder (or aggregator) running as a child process (tests, benchmarks, services)."""

    def __init__(self, space: Space, *args):
        super().__init__(*args)
        self.space, self.socket = space, self.sockets[0]

    def client(self):
        from workbench.secure.keyholder import KeyHolderClient

        return KeyHolderClient(self.socket)


class AggregatorHandle(KeyHolderHandle):
    def client(self):
        from workbench.secure.aggregator import AggregatorClient

        return AggregatorClient(self.socket)


def _answers(handle: KeyHolderHandle) -> bool:
    handle.client().request({"type": "ping"})
    return True


def start_keyholder(space: Space, min_cell_floor: int = DEFAULT_MIN_CELL_FLOOR,
                    ready_timeout: float = 30.0) -> KeyHolderHandle:
    """Start ``workbench keyholder`` for ``space`` as a subprocess; return once it answers.
    Holders of the space without a signing key get one first (spaces built before holder
    signatures existed)."""
    create_holder_keys(space)
    if not (space.he / attest.KEY_FILE).exists():  # spaces built before release attestations
        attest.create_release_key(space)
    command = workbench_command("keyholder", "--data-dir", str(space.root),
                                "--min-cell-floor", str(min_cell_floor))
    return start_service("key holder", command, _answers, (space.keyholder_socket,),
                         ready_timeout, partial(KeyHolderHandle, space))


def start_aggregator(space: Space, ready_timeout: float = 30.0) -> AggregatorHandle:
    """Start ``workbench aggregator`` for ``space`` as a subprocess; return once it answers."""
    command = workbench_command("aggregator", "--data-dir", str(space.root))
    return start_service("aggregator", command, _answers, (space.aggregator_socket,),
                         ready_timeout, partial(AggregatorHandle, space))
