"""Helpers of the sandbox tests: a real space with raw data and keys the kernel must not reach,
stand-in gateway sockets, kernel managers with the sandbox provisioner, reading the provenance
store back."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pyseccomp
from jupyter_client.manager import KernelManager
from traitlets.config import Config

from workbench import accounts
from workbench.paths import Space
from workbench.provenance.store import open_store
from workbench.sandbox.kernelspec import KERNEL_NAME, StrictKernelSpecManager, install_kernelspec

STUDY, OTHER = "sbx-a", "sbx-b"


class SocketListener:
    """A Unix socket that answers one line to anyone who connects (the stand-in for a study's
    gateway socket: the kernel must reach its own and no other)."""

    def __init__(self, path: Path, answer: bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o666)
        self.sock.listen(8)
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.answer)

    def close(self):
        self.sock.close()


def make_space(root: Path) -> Space:
    os.chmod(root, 0o755)
    space = Space(root)
    # raw data and keys, owned like `workbench init` leaves them
    gateway_uid, gateway_gid = accounts.ensure_user(accounts.GATEWAY)
    holder = space.holder_dir("hospital_a")
    holder.mkdir(parents=True)
    (holder / "person.parquet").write_bytes(b"PAR1 raw rows PAR1")
    for path in (space.holders, holder, holder / "person.parquet"):
        os.chown(path, gateway_uid, gateway_gid)
        os.chmod(path, 0o700)
    space.keys.mkdir(mode=0o700)
    space.signing_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nsecret\n")
    os.chmod(space.signing_key, 0o600)
    other_ws = space.workspace(OTHER)
    other_ws.mkdir(parents=True)
    (other_ws / "notes.txt").write_text("other study's notes")
    return space


def kernelspec_dir(root: Path) -> Path:
    jupyter = root / "jupyter"
    install_kernelspec(jupyter)
    return jupyter


def kernel_manager(space: Space, jupyter: Path, study: str = STUDY, **extra) -> KernelManager:
    config = Config({"SandboxProvisioner": {"study": study, "data_dir": str(space.root), **extra}})
    ksm = StrictKernelSpecManager(kernel_dirs=[str(jupyter / "kernels")])
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, config=config)


def read_records(space: Space) -> list[dict]:
    store = open_store(space, readonly=True)
    try:
        return [{**json.loads(body), "hash": digest.hex()}
                for _seq, _prev, digest, body in store.rows()]
    finally:
        store.close()


def wait_for_records(space: Space, predicate, timeout: float = 10.0) -> list[dict]:
    """Records matching ``predicate`` (polls: completion records are written after the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in read_records(space) if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def execute(kc, code: str, timeout: float = 60) -> dict:
    """Run ``code``; return msg_id, reply status/content, stdout+stderr text and error text."""
    msg_id = kc.execute(code, allow_stdin=False)
    text, errors = [], []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            text.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return {"msg_id": msg_id, "status": reply["content"]["status"], "reply": reply["content"],
            "text": "".join(text), "errors": "\n".join(errors)}


def syscall_numbers(names) -> dict[str, int]:
    """This machine's system call numbers, for probes that call them through libc.syscall."""
    arch = pyseccomp.system_arch()
    return {name: pyseccomp.resolve_syscall(arch, name) for name in names}
