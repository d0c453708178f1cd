"""A real linkage service (its own process and account, a real Unix socket) and two holder node
accounts to call it from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from workbench import accounts
from workbench.linkage.process import start_linkage
from workbench.paths import Space

ROOT = Path(__file__).resolve().parents[2]
HOLDERS = ("lt-hospital", "lt-insurer")

needs_root = pytest.mark.skipif(not accounts.is_root(),
                                reason="other accounts need root (setpriv, useradd)")


def open_space() -> Space:
    """A space directory other uids can traverse (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="wb-linkage-", dir="/tmp"))
    os.chmod(path, 0o755)
    return Space(path)


def enrol(space: Space, holder: str) -> None:
    """What ``workbench node enroll`` leaves that the service looks at: ``nodes/<holder>``,
    0700, owned by the holder's node account."""
    space.nodes.mkdir(mode=0o755, exist_ok=True)
    folder = space.node_dir(holder)
    folder.mkdir(mode=0o700)
    if accounts.is_root():
        os.chown(folder, *accounts.ensure_user(accounts.holder_node_user(holder)))


@pytest.fixture(scope="module")
def service():
    space = open_space()
    for holder in HOLDERS:
        enrol(space, holder)
    handle = start_linkage(space)
    try:
        yield handle
    finally:
        handle.stop()
        shutil.rmtree(space.root, ignore_errors=True)


def run_as(account: str, code: str) -> dict:
    """``code`` in a fresh interpreter as ``account`` (it prints one JSON line)."""
    uid, gid = accounts.ensure_user(account)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
    done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           sys.executable, "-c", textwrap.dedent(code)], env=env, cwd="/",
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def node_pseudonyms(holder: str, space: Space, ids: list, socket: Path | None = None) -> list:
    """``pseudonyms(space, ids)`` called by the holder's node account, in its own process."""
    return run_as(accounts.holder_node_user(holder), f"""
        import json
        from workbench.linkage.client import pseudonyms
        print(json.dumps(pseudonyms({str(space.root)!r}, {ids!r},
                                    socket={None if socket is None else str(socket)!r})))
    """)


class RecordingRelay:
    """A real Unix-socket relay between the nodes and the service that keeps every byte the
    service receives and sends: what a curious service (or its network) could see."""

    def __init__(self, path: Path, upstream: Path):
        import socket
        import threading

        self.path, self.upstream = path, upstream
        self.to_service, self.from_service = bytearray(), bytearray()
        self._lock = threading.Lock()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        os.chmod(path, 0o666)
        self.listener.listen(8)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(str(self.upstream))
            for src, dst, sink in ((client, server, self.to_service),
                                   (server, client, self.from_service)):
                threading.Thread(target=self._pump, args=(src, dst, sink), daemon=True).start()

    def _pump(self, src, dst, sink: bytearray) -> None:
        import socket

        try:
            while data := src.recv(65536):
                with self._lock:
                    sink.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        self.path.unlink(missing_ok=True)
