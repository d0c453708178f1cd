"""``workbench keyholder``: the key holder as its own process and uid.

As root it binds ``Space.keyholder_socket`` (owner wb-keyholder, group wb-gateway, mode 0660: the
gateway and root may connect, study kernels may not, and they cannot see the socket from inside
their sandbox anyway), drops to the ``wb-keyholder`` account, and only then reads ``he/secret.ctx``
(0600 wb-keyholder), so the secret key is never in a root process. Every decryption is recorded in
provenance through the collector socket; if the collector is down, decryptions are refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.services import ServiceProcess

DEFAULT_MIN_CELL_FLOOR = 5  # the key holder never releases cells below this, whatever the request


def _bind(space: Space):
    from workbench.secure.keyholder import KeyHolderServer

    space.run.mkdir(parents=True, exist_ok=True)
    server = KeyHolderServer(space.keyholder_socket, None)
    if accounts.is_root():
        uid, gid = accounts.ensure_user(accounts.KEYHOLDER)
        _, gateway_gid = accounts.ensure_user(accounts.GATEWAY)
        os.chown(space.keyholder_socket, uid, gateway_gid)
        os.chmod(space.keyholder_socket, 0o660)
        return server, (uid, gid)
    os.chmod(space.keyholder_socket, 0o600)
    return server, None


def run_keyholder(space: Space, min_cell_floor: int = DEFAULT_MIN_CELL_FLOOR) -> None:
    import tenseal  # noqa: F401 - loaded before dropping privileges

    from workbench.provenance.client import ProvenanceClient
    from workbench.secure.keyholder import KeyHolder
    from workbench.secure.keys import SECRET_FILE, load_secret

    if not (space.he / SECRET_FILE).exists():
        raise WorkbenchUserError(f"{space.he / SECRET_FILE} is missing: build the space with "
                                 "'workbench init' first.", reason="no-he-keys")
    server, ids = _bind(space)
    if ids:
        os.setgroups([])
        os.setgid(ids[1])
        os.setuid(ids[0])
    keys = load_secret(space)  # only now: as wb-keyholder
    keys.bfv, keys.ckks  # noqa: B018 - parse once at start, fail early on a broken file
    server.keyholder = KeyHolder(keys, ProvenanceClient(space.collector_socket),
                                 min_cell_floor=min_cell_floor, require_provenance=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"key holder ready on {space.keyholder_socket} (uid {os.getuid()})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


class KeyHolderHandle(ServiceProcess):
    """A key holder running as a child process (for tests, benchmarks and the gateway)."""

    def __init__(self, space: Space, process: subprocess.Popen, log_path: Path):
        self.space, self.socket = space, space.keyholder_socket
        super().__init__(process, log_path, (self.socket,))

    def client(self):
        from workbench.secure.keyholder import KeyHolderClient

        return KeyHolderClient(self.socket)

    def stop(self, timeout: float = 10.0) -> int:
        status = super().stop(timeout)
        with contextlib.suppress(OSError):
            self.log_path.unlink()
        return status


def start_keyholder(space: Space, min_cell_floor: int = DEFAULT_MIN_CELL_FLOOR,
                    ready_timeout: float = 30.0) -> KeyHolderHandle:
    """Start ``workbench keyholder`` for ``space`` as a subprocess; return once it answers."""
    fd, name = tempfile.mkstemp(prefix="wb-keyholder-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    command = [sys.executable, "-m", "workbench.secure.cli", "--data-dir", str(space.root),
               "--min-cell-floor", str(min_cell_floor)]
    with contextlib.suppress(FileNotFoundError):
        if space.keyholder_socket.is_socket():
            space.keyholder_socket.unlink()
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    handle = KeyHolderHandle(space, process, log_path)
    deadline = time.monotonic() + ready_timeout
    while True:
        if process.poll() is not None:
            output = handle.output()
            handle.stop()
            raise WorkbenchError(f"key holder exited with {process.returncode}:\n{output}")
        try:
            handle.client().request({"type": "ping"})
            return handle
        except WorkbenchError:
            if time.monotonic() > deadline:
                output = handle.output()
                handle.stop()
                raise WorkbenchError(f"key holder did not answer within {ready_timeout}s:\n"
                                     f"{output}") from None
            time.sleep(0.05)
