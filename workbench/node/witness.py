"""A witness of the space's provenance log, run by a holder's node (or any party the space lists).

SECURITY BOUNDARY. The witness cosigns a signed tree head only if (1) the collector's key, pinned
when the witness was enrolled, signed it; (2) it is for the log the witness follows; (3) it
extends the last head the witness cosigned: the size never shrinks, the same size has the same
root, and the RFC 9162 consistency proof from the old head to the new one verifies. An operator
with root on the central machine can rewrite records, recompute the chain and re-sign the heads
with the collector's key, but the rewritten heads are not consistent with what the witnesses
saw, so no witness cosigns them and ``workbench provenance verify`` finds no quorum.

Every refusal except a stale proof is an alarm (someone rewrote the log, or showed the witness
another log) and is appended to ``refusals.jsonl`` before the refusal is returned.

State, in the witness's own directory (0700; files 0600): ``witness.json`` (its id),
``witness.key`` (its Ed25519 key), ``log.pub`` (the collector's public key it pinned),
``head.json`` (the last head it cosigned and its cosignature, replaced atomically) and
``refusals.jsonl``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socketserver
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workbench.errors import WorkbenchUserError
from workbench.provenance import cosign, heads, merkle
from workbench.provenance.cosign import WitnessRefused

_ALARMS = {"wrong-key", "other-log", "shrunk", "fork", "inconsistent"}
MAX_REQUEST = 1 << 20  # a head plus ~64 hashes of proof is a few KB


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, 0600 (a crash leaves the old file or the new one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def enroll(state_dir: Path, witness_id: str, log_public_pem: bytes) -> Ed25519PrivateKey:
    """Create a witness's state: its key, its id and the pinned collector key. Returns the key
    (its public half goes into the space's witness list)."""
    state_dir = Path(state_dir)
    if (state_dir / "witness.key").exists():
        raise WorkbenchUserError(f"{state_dir} already holds a witness: use it, or choose another "
                                 "directory", reason="witness-exists")
    heads.load_public_key(log_public_pem)  # refuse anything but an Ed25519 key now
    cosign.check_id(witness_id)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    key = Ed25519PrivateKey.generate()
    _write_private(state_dir / "witness.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    _write_private(state_dir / "log.pub", log_public_pem)
    _write_private(state_dir / "witness.json", json.dumps({"id": witness_id}).encode() + b"\n")
    return key


def load_key(state_dir: Path) -> Ed25519PrivateKey:
    path = Path(state_dir) / "witness.key"
    if not path.exists():
        raise WorkbenchUserError(f"no witness in {state_dir}: create one with 'workbench "
                                 "provenance witness init'", reason="no-witness")
    if path.stat().st_mode & 0o077:
        raise WorkbenchUserError(f"{path} must be readable by the witness only (chmod 600)",
                                 reason="witness-key-exposed")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise WorkbenchUserError(f"{path} is not an Ed25519 key", reason="bad-witness-key")
    return key


class Witness:
    """``cosign(head, proof)`` checks and cosigns one head; see the module docstring."""

    def __init__(self, state_dir: Path, signing_key: Ed25519PrivateKey):
        self.state_dir = Path(state_dir)
        self.key = signing_key
        try:
            self.id = json.loads((self.state_dir / "witness.json").read_text())["id"]
            self.log_key = heads.load_public_key((self.state_dir / "log.pub").read_bytes())
        except (OSError, ValueError, KeyError):
            raise WorkbenchUserError(f"{self.state_dir} is not a witness's state: create one with "
                                     "'workbench provenance witness init'",
                                     reason="no-witness") from None
        self.head_path = self.state_dir / "head.json"
        self.refusals_path = self.state_dir / "refusals.jsonl"

    def last(self) -> dict | None:
        """``{"head": ..., "cosignature": ...}`` of the last head cosigned, or None."""
        if not self.head_path.exists():
            return None
        return json.loads(self.head_path.read_text())

    def refusals(self) -> list[dict]:
        return cosign.read_jsonl(self.refusals_path)

    def cosign(self, head: dict, proof: list[bytes], old_size: int | None = None) -> dict:
        # one decision at a time: two requests racing must not both extend the same old head
        with open(self.state_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            last = self.last()
            try:
                self._check(head, proof, old_size, last["head"] if last else None)
            except WitnessRefused as refusal:
                if refusal.reason in _ALARMS:
                    self._record_refusal(refusal, head)
                raise
            cosignature = cosign.sign(self.key, self.id, head)
            _write_private(self.head_path, json.dumps(
                {"head": head, "cosignature": cosignature}, sort_keys=True).encode() + b"\n")
            return cosignature

    def _check(self, head: dict, proof: list[bytes], old_size: int | None,
               last: dict | None) -> None:
        if not isinstance(head, dict) or type(head.get("tree_size")) is not int \
                or not isinstance(head.get("root_hash"), str) or head["tree_size"] < 1:
            raise WitnessRefused("bad-head", "the request holds no tree head")
        if not heads.head_signature_ok(self.log_key, head):
            raise WitnessRefused("wrong-key", f"the head at size {head['tree_size']} is not signed "
                                 "by the collector key this witness pinned")
        size, root = head["tree_size"], head["root_hash"]
        last_size = last["tree_size"] if last else 0
        if last is None:
            if old_size:
                raise WitnessRefused("stale-proof", "this witness has cosigned nothing yet",
                                     size=0)
            return  # the first head this witness sees: nothing to be consistent with
        if head["log_id"] != last["log_id"]:
            raise WitnessRefused("other-log", f"the head is for log {str(head['log_id'])[:32]}, "
                                 f"this witness follows log {last['log_id']}: the log was "
                                 "replaced")
        if size < last_size:
            raise WitnessRefused("shrunk", f"the log shrank from {last_size} to {size} records: "
                                 "records were removed after this witness cosigned them")
        if size == last_size and root != last["root_hash"]:
            raise WitnessRefused("fork", f"a second head at size {size} with another root: the "
                                 "log was rewritten (or forked) after this witness cosigned it")
        if old_size is not None and old_size != last_size:  # only now: alarms come first
            raise WitnessRefused("stale-proof", f"the proof starts at size {old_size}; this "
                                 f"witness last cosigned size {last_size}", size=last_size)
        try:
            ok = merkle.verify_consistency(last_size, size, bytes.fromhex(last["root_hash"]),
                                           bytes.fromhex(root), proof)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise WitnessRefused("inconsistent", f"the head at size {size} does not extend the "
                                 f"head this witness cosigned at size {last_size} (RFC 9162 "
                                 "consistency proof fails): the log was rewritten")

    def _record_refusal(self, refusal: WitnessRefused, head: dict) -> None:
        entry = {"time": int(time.time()), "reason": refusal.reason, "message": str(refusal),
                 "head": {name: head.get(name) for name in
                          ("log_id", "tree_size", "root_hash", "timestamp", "key_id")}
                 if isinstance(head, dict) else None}
        cosign.append_jsonl(self.refusals_path, entry)


# -- a local endpoint: the witness answering on a Unix socket ----------------------------------

def answer(witness: Witness, line: bytes) -> dict:
    """One request ``{"head", "proof": [hex], "old_size"}`` -> one reply."""
    try:
        request = json.loads(line)
        proof = [bytes.fromhex(node) for node in request["proof"]]
        old_size = request.get("old_size")
        head = request["head"]
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "reason": "bad-request", "message": "not a cosign request"}
    try:
        return {"ok": True, "cosignature": witness.cosign(head, proof, old_size)}
    except WitnessRefused as refusal:
        return {"ok": False, "reason": refusal.reason, "message": str(refusal),
                "size": refusal.size}


def serve(witness: Witness, socket_path: Path) -> None:
    """Answer cosign requests on a Unix socket until SIGTERM/SIGINT. Who asks does not matter:
    the collector's signature on the head and the consistency proof are what the witness checks."""

    class Handler(socketserver.StreamRequestHandler):
        timeout = 10  # a caller that sends nothing does not hold the witness

        def handle(self) -> None:
            try:
                line = self.rfile.readline(MAX_REQUEST)
            except OSError:
                return
            reply = answer(witness, line)
            self.wfile.write(json.dumps(reply).encode() + b"\n")
            # the operator's log: sizes and reasons only (heads hold hashes, never a value)
            print(f"cosigned size {reply['cosignature']['tree_size']}" if reply["ok"] else
                  f"{'ALARM ' if reply['reason'] in _ALARMS else ''}refused "
                  f"({reply['reason']}): {reply['message']}", flush=True)

    socket_path = Path(socket_path)
    if socket_path.is_socket():
        socket_path.unlink()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through the clean-up below
    with socketserver.UnixStreamServer(str(socket_path), Handler) as server:
        os.chmod(socket_path, 0o666)  # noqa: S103 - see the docstring
        try:
            server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
