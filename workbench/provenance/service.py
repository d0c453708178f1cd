"""The provenance collector: a Unix-socket service, run as its own uid, that appends records.

SECURITY BOUNDARY. Writers can only ``append`` (and ``ping``); there is no request that reads,
changes or deletes a record. Each record is validated against its kind's schema, stamped with the
writer's uid as seen by the kernel (SO_PEERCRED, not anything the writer claims), chained to the
previous record, committed, and only then acknowledged. Kernel accounts (``wbk-*``) are refused even
if a socket path leaks into a sandbox. Tree heads are signed every ``sign_every`` records or
``sign_interval`` seconds, and at shutdown.

For tests and other components: ``start_collector(space)`` runs ``workbench collector`` as a
subprocess and returns once the socket answers; ``handle.stop()`` stops it (SIGTERM: drain, sign a
final head).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.peercred import peer_credentials
from workbench.provenance import heads, merkle, records
from workbench.provenance.client import MAX_LINE, ProvenanceClient, ProvenanceUnavailable
from workbench.provenance.store import Store, open_store
from workbench.runtime import (
    ServiceProcess,
    bind_socket,
    drop_privileges,
    start_service,
    stop_requested,
    workbench_command,
)

log = logging.getLogger("workbench.provenance.collector")

KERNEL_ACCOUNT_PREFIX = "wbk-"
BACKEND_FILE = "backend.json"  # which store a space uses, read by verify/log/export
SIGN_EVERY = 1000  # records between signed tree heads (also signed every sign_interval seconds)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _peer(sock: socket.socket) -> dict:
    _pid, uid, _gid = peer_credentials(sock)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid-{uid}"
    return {"uid": uid, "user": name}


@dataclass
class _Pending:
    kind: str
    version: int
    fields: dict
    writer: dict
    done: asyncio.Future = field(repr=False)


class Collector:
    """Owns the chain state (last seq, last hash, Merkle frontier) and the store."""

    def __init__(self, space: Space, store: Store, sign_every: int = SIGN_EVERY,
                 sign_interval: float = 5.0):
        self.space, self.store = space, store
        self.sign_every, self.sign_interval = sign_every, sign_interval
        self.key = heads.load_or_create_key(space)
        self._pending: list[_Pending] = []
        self._leader_waiting = False
        self._load_state()

    def _load_state(self) -> None:
        """Rebuild the tree from the stored hashes and refuse to continue a log that disagrees with
        its own last signed head (someone changed the store while we were down)."""
        self.frontier = merkle.Frontier()
        signed = {h["tree_size"]: h for h in self.store.heads()}
        logged = heads.read_head_log(heads.heads_log_path(self.space))
        signed.update({h["tree_size"]: h for h in logged
                       if "tree_size" in h and h.get("log_id") == self.store.log_id})
        last = max(signed) if signed else 0
        root_at_last = None
        for digest in self.store.hashes():
            self.frontier.append(digest)
            if self.frontier.size == last:
                root_at_last = self.frontier.root()
        if last:
            head = signed[last]
            if root_at_last is None or root_at_last.hex() != head["root_hash"] \
                    or not heads.head_signature_ok(self.key.public_key(), head):
                raise WorkbenchError(
                    f"provenance store {self.store.describe()} does not match its last signed "
                    f"tree head (size {last}): run 'workbench provenance verify' before restarting")
        self.seq, last_hash = self.store.tail()
        self.prev = last_hash or merkle.GENESIS
        if self.seq != self.frontier.size:
            raise WorkbenchError("provenance store has gaps in its sequence numbers: run verify")
        self.signed_size = last

    # -- the write path ----------------------------------------------------------------------------
    def _commit(self, batch: list[_Pending]) -> list[str]:
        rows, seq, prev, now = [], self.seq, self.prev, _now()
        for item in batch:
            seq += 1
            body = records.canonical({"v": item.version, "seq": seq, "kind": item.kind, "ts": now,
                                      "writer": item.writer, "fields": item.fields})
            digest = merkle.record_hash(prev, body)
            rows.append((seq, prev, digest, body))
            prev = digest
        self.store.append(rows)  # durable on return, or raises and nothing advanced
        for row in rows:
            self.frontier.append(row[2])
        self.seq, self.prev = seq, prev
        return [row[2].hex() for row in rows]

    def _resync(self) -> None:
        """A failed commit may still have reached the database (the connection died after the
        server committed): reload the chain state from the store before the next batch."""
        try:
            self._load_state()
        except Exception as exc:
            log.error("reloading the chain state failed: %s", type(exc).__name__)

    def sign_head(self) -> dict | None:
        if self.frontier.size == self.signed_size:
            return None
        head = heads.sign_head(self.key, self.store.log_id, self.frontier.size,
                               self.frontier.root())
        heads.append_head_log(self.space, head)
        self.store.add_head(head)
        self.signed_size = head["tree_size"]
        return head

    async def _append(self, item: _Pending) -> str:
        """Group commit: the first request of a loop pass leads; it yields once so that every
        request read in the same pass joins its batch, then commits them in one transaction."""
        self._pending.append(item)
        if not self._leader_waiting:
            self._leader_waiting = True
            try:
                await asyncio.sleep(0)
            finally:  # even when cancelled: accepted requests are committed, never dropped
                self._leader_waiting = False
                self._flush()
        return await item.done

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1024], self._pending[1024:]
            try:
                ids = self._commit(batch)
            except Exception as exc:  # the store failed: no ack for anyone in this batch
                log.error("commit of %d record(s) failed: %s", len(batch), type(exc).__name__)
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(ProvenanceUnavailable("store write failed"))
                self._resync()
                continue
            for item, record_id in zip(batch, ids, strict=True):
                if not item.done.done():
                    item.done.set_result(record_id)
        if self.frontier.size - self.signed_size >= self.sign_every:
            self._sign_quietly()

    def _sign_quietly(self) -> None:
        try:
            self.sign_head()
        except Exception as exc:
            log.error("signing a tree head failed: %s", exc)

    async def _sign_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sign_interval)
            self._sign_quietly()

    # -- the socket side ---------------------------------------------------------------------------
    async def _request(self, line: bytes, writer: dict) -> dict:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "reason": "bad-request", "message": "request is not JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "reason": "bad-request", "message": "request is not an object"}
        op = request.get("op")
        if op == "ping":
            return {"ok": True}
        if op != "append":
            return {"ok": False, "reason": "bad-request",
                    "message": "the collector only accepts 'append' (writers cannot read back)"}
        kind, fields = request.get("kind"), request.get("fields")
        try:
            version = records.validate(kind, fields)
        except records.RecordRefused as exc:
            return {"ok": False, "reason": exc.reason, "message": str(exc)}
        done = asyncio.get_running_loop().create_future()
        try:
            return {"ok": True, "id": await self._append(_Pending(kind, version, fields, writer,
                                                                  done))}
        except ProvenanceUnavailable as exc:
            return {"ok": False, "reason": "store-failed", "message": str(exc)}

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                stream: asyncio.StreamWriter) -> None:
        try:
            writer = _peer(stream.get_extra_info("socket"))
            if writer["user"].startswith(KERNEL_ACCOUNT_PREFIX):
                log.warning("refused a connection from kernel account %s", writer["user"])
                stream.write(json.dumps({"ok": False, "reason": "writer-refused", "message":
                                         "kernels may not write provenance"}).encode() + b"\n")
                return
            while line := await reader.readline():
                reply = await self._request(line, writer)
                stream.write(json.dumps(reply).encode() + b"\n")
                await stream.drain()
        except (ValueError, asyncio.LimitOverrunError):
            stream.write(b'{"ok": false, "reason": "too-large", "message": "request too large"}\n')
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the writer went away, or the collector is shutting down
        finally:
            with contextlib.suppress(Exception):
                await stream.drain()
                stream.close()

    async def serve(self, listener: socket.socket) -> None:
        """Serve on an already bound socket until SIGTERM/SIGINT, then drain and sign a head."""
        stopping = stop_requested()
        signer = asyncio.create_task(self._sign_loop())
        server = await asyncio.start_unix_server(self._serve_connection, sock=listener,
                                                 limit=MAX_LINE)
        log.info("collector ready on %s (store %s, %d records)", listener.getsockname(),
                 self.store.describe(), self.seq)
        await stopping.wait()
        server.close()
        while self._pending or self._leader_waiting:  # let accepted requests finish
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and their replies go out
        signer.cancel()
        self._sign_quietly()
        self.store.close()
        log.info("collector stopped at %d records", self.seq)


# -- running it ------------------------------------------------------------------------------------

def _prime_lazy_imports() -> None:
    """After dropping to the collector uid the interpreter's own files may be unreadable (a Python
    under /root): load everything the request path touches first."""
    records.validate("login", {"user": "prime", "event": "login"})
    for kind in records.kinds():
        with contextlib.suppress(records.RecordRefused):
            records.validate(kind, {"unknown-field": 1})
    records.canonical({"a": [1.5, None, True]})
    _now()
    json.dumps({"x": 1})


def prepare_dirs(space: Space) -> tuple[int, int] | None:
    """Create DATA_DIR/provenance (0700, collector uid) and DATA_DIR/run (0755). Returns the
    collector's (uid, gid) when running as root, else None."""
    space.run.mkdir(parents=True, exist_ok=True)
    space.provenance.mkdir(parents=True, exist_ok=True)
    os.chmod(space.provenance, 0o700)
    if not accounts.is_root():
        return None
    os.chmod(space.run, 0o755)  # noqa: S103 - services find their sockets here
    uid, gid = accounts.ensure_user(accounts.COLLECTOR)
    for path in [space.provenance, *space.provenance.iterdir()]:
        os.chown(path, uid, gid)
    return uid, gid


def run_collector(space: Space, backend: str | None = None, sign_every: int = SIGN_EVERY,
                  sign_interval: float = 5.0) -> None:
    """``workbench collector``: bind the socket, drop to the collector uid, serve until stopped."""
    ids = prepare_dirs(space)
    if backend:
        (space.provenance / BACKEND_FILE).write_text(json.dumps({"backend": backend}) + "\n")
        if ids:
            os.chown(space.provenance / BACKEND_FILE, *ids)
    # writers run as several uids; kernels have no path to this socket (the sandbox does not bind
    # it) and are refused by uid anyway
    listener = bind_socket(space.collector_socket, 0o666)
    _prime_lazy_imports()
    store = None
    if backend and ids:  # a network store: connect before dropping privileges (library loading)
        store = open_store(space, backend)
    drop_privileges(ids)
    if ids:
        if not os.access(space.provenance, os.R_OK | os.W_OK | os.X_OK):
            raise WorkbenchUserError(
                f"the {accounts.COLLECTOR} account cannot reach {space.provenance}: every parent "
                "directory of the data space must be traversable by other users (o+x)",
                reason="data-dir-not-traversable")
    if store is None:
        store = open_store(space, backend, create=True)
    collector = Collector(space, store, sign_every=sign_every, sign_interval=sign_interval)
    asyncio.run(collector.serve(listener))


def configured_backend(space: Space) -> str | None:
    """The backend a space's collector was started with (None: SQLite)."""
    path = space.provenance / BACKEND_FILE
    if path.exists():
        return json.loads(path.read_text())["backend"]
    return None


# -- a subprocess handle for tests and other components ------------------------------------------

class CollectorHandle(ServiceProcess):
    """A collector running as a child process. Use as a context manager or call ``stop()``
    (SIGTERM: it drains and signs a final head; ``kill()`` for crash tests)."""

    def __init__(self, space: Space, *args):
        super().__init__(*args)
        self.space, self.socket = space, space.collector_socket

    def client(self, timeout: float = 10.0) -> ProvenanceClient:
        return ProvenanceClient(self.socket, timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int:
        return super().stop(timeout)


def _answers(handle: CollectorHandle) -> bool:
    client = handle.client(timeout=2.0)
    try:
        client.ping()
    finally:
        client.close()
    return True


def start_collector(space: Space, backend: str | None = None, sign_every: int = SIGN_EVERY,
                    sign_interval: float = 5.0, ready_timeout: float = 30.0) -> CollectorHandle:
    """Start ``workbench collector`` for ``space``; return once its socket answers a ping.
    Raises WorkbenchUserError naming its log if it exits or never answers."""
    command = workbench_command("collector", "--data-dir", str(space.root),
                                "--sign-every", str(sign_every),
                                "--sign-interval", str(sign_interval))
    if backend:
        command += ["--backend", backend]
    return start_service("provenance collector", command, _answers, (space.collector_socket,),
                         ready_timeout, partial(CollectorHandle, space))
