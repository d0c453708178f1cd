"""The audit proxy: the one ZMQ path between every Jupyter client and a sandboxed kernel.

SECURITY BOUNDARY. It runs in the trusted single-user server (outside the sandbox) and binds the
client-facing sockets in a directory only the server can reach; the kernel binds its own sockets
inside the sandbox. For each request on shell/control it verifies the HMAC, then:
- ``execute_request``, ``comm_*``, interrupt, shutdown and subshell requests are written to the
  provenance collector and forwarded only after the collector's acknowledgement; if the collector
  cannot be reached the request is answered with an error reply and NOT forwarded (fail closed);
- ``debug_request`` (the debugger can evaluate code) and any message type not listed are denied;
- iopub outputs are hashed (sha256 + size, never the values) and recorded when the cell completes.
The user is the one the authenticated websocket handler registered for the msg_id
(:meth:`AuditProxy.attribute`), else the server's own run user; never ``header.username``.
Guarded by tests/sandbox/test_proxy.py and tests/sandbox/test_escape.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import zmq
import zmq.asyncio
from jupyter_client.session import Session

from workbench.errors import log_fault

log = logging.getLogger(__name__)

DELIM = b"<IDS|MSG>"
RECORD_KIND = "cell-execution"
LIFECYCLE = {"interrupt_request": "interrupt", "shutdown_request": "shutdown"}  # kernel-lifecycle
STDIN = frozenset({"input_reply"})  # what a user types may be code (exec(input())): digest only
AUDITED = frozenset({
    "execute_request", "comm_open", "comm_msg", "comm_close", "create_subshell_request",
    "delete_subshell_request", *LIFECYCLE, *STDIN,
})
PASSED = frozenset({  # read-only requests: forwarded without a record
    "kernel_info_request", "complete_request", "inspect_request", "history_request",
    "is_complete_request", "comm_info_request", "connect_request", "usage_request",
    "list_subshell_request",
})
OUTPUTS = frozenset({"stream", "display_data", "update_display_data", "execute_result", "error"})
REQUEST_CHANNELS = ("shell", "control", "stdin")  # client -> kernel, checked and recorded
_MAX_ATTRIBUTIONS = 10_000
IOPUB_HWM = 5_000
MAX_OUTPUTS = 10_000  # the cell-execution schema's limit: later outputs share one digest
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


class Recorder(Protocol):
    """Returns the record id once the collector has it durably; raises otherwise.
    ``background``: the record gates nothing, so it must not delay gating ones."""

    async def __call__(self, kind: str, fields: dict[str, Any], background: bool = False
                       ) -> Any: ...


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _label(msg_type: str) -> str:
    """A message type as a provenance label (kebab-case, bounded)."""
    cleaned = "".join(c if c in _LABEL_CHARS else "-" for c in msg_type.lower()).strip("-")
    return (cleaned or "unknown")[:64]


def _url(info: dict, channel: str) -> str:
    return f"ipc://{info['ip']}-{info[f'{channel}_port']}"


@dataclass
class _Execution:
    """An execute_request forwarded to the kernel and not yet complete."""

    record: dict[str, Any]
    record_id: Any
    outputs: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None
    idle: bool = False
    _overflow: Any = None  # one running digest for outputs beyond the record's limit
    _stream: Any = None  # (name, running digest) of the stream output being written

    def add_stream(self, name: str, text: bytes) -> None:
        """Consecutive writes to one stream are one output (as a notebook shows them): how
        print() happens to be split into messages must not change the cell's digests."""
        last = self.outputs[-1] if self.outputs else None
        if self._stream is not None and self._stream[0] == name and last is not None \
                and last["output_type"] == "stream":
            self._stream[1].update(text)
            last["sha256"], last["size"] = self._stream[1].hexdigest(), last["size"] + len(text)
            return
        self.add_output("stream", text)
        if self.outputs[-1]["output_type"] == "stream":
            self._stream = (name, hashlib.sha256(text))

    def add_output(self, output_type: str, body: bytes) -> None:
        self._stream = None
        if len(self.outputs) < MAX_OUTPUTS - 1:
            self.outputs.append({"output_type": output_type, "sha256": _sha256(body),
                                 "size": len(body)})
            return
        if self._overflow is None:
            self._overflow = hashlib.sha256()
            self.outputs.append({"output_type": "overflow", "sha256": "", "size": 0})
        self._overflow.update(body)
        last = self.outputs[-1]
        last["sha256"], last["size"] = self._overflow.hexdigest(), last["size"] + len(body)


class AuditProxy:
    """Proxies one kernel's five channels in a thread of its own (its own asyncio loop), so it
    keeps working whatever loop, or none, the kernel manager's owner runs."""

    def __init__(self, outer: dict, inner: dict, context: dict[str, Any], recorder: Recorder,
                 default_user: str):
        self.outer, self.inner = outer, inner
        self.context = context  # study, kernel_id, notebook_path ... copied into every record
        self.recorder = recorder
        self.default_user = default_user
        self.session = Session(key=outer["key"].encode(),
                               signature_scheme=outer["signature_scheme"],
                               username="workbench-audit")
        self._attributions: OrderedDict[str, deque[tuple[str, str | None]]] = OrderedDict()
        self._lock = threading.Lock()
        self._executions: dict[str, _Execution] = {}
        self._background: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx: zmq.asyncio.Context | None = None
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._generation = 0  # which kernel: +1 at each restart
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="wb-audit-proxy")

    # -- called from the server's threads -------------------------------------------------------
    def attribute(self, msg_id: str, user: str, notebook_path: str | None = None) -> None:
        """Register the authenticated sender of ``msg_id`` (called by the websocket handler
        before the message is sent on)."""
        with self._lock:  # a queue per msg_id: a repeated msg_id cannot take over another's
            self._attributions.setdefault(msg_id, deque()).append((user, notebook_path))
            while len(self._attributions) > _MAX_ATTRIBUTIONS:
                self._attributions.popitem(last=False)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise RuntimeError("the audit proxy did not start")

    def restarted(self) -> None:
        """The kernel is gone and a new one is about to start (restart): cells the old one was
        running will never complete (recorded as aborted), and no request sent to the old
        kernel reaches the new one. A request still queued for the old kernel, or still being
        recorded when it died, would otherwise be delivered to its successor: a cell recorded
        as aborted would run after all, and the interrupt a restart sends first would hit the
        new kernel (SIGINT at any point of its start, even half-way through sending a reply,
        which the client then rejects for its signature). Also binds again the client-side
        socket files, which the kernel manager deletes at a restart. Returns once done."""
        if self._loop is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._restarted(), self._loop).result(timeout=10)

    abort_pending = restarted  # what the provisioner calls at each restart

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)

    # -- the proxy thread -----------------------------------------------------------------------
    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()
            log.exception("audit proxy for kernel %s stopped", self.context.get("kernel_id"))

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        ctx = self._ctx = zmq.asyncio.Context()
        sockets: dict[str, tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]] = {}
        self.sockets = sockets
        try:
            kernel_side = self._kernel_side()
            for channel in ("shell", "control", "stdin", "hb"):
                sockets[channel] = (ctx.socket(zmq.ROUTER), kernel_side.get(channel)
                                    or ctx.socket(zmq.DEALER))
            front, back = ctx.socket(zmq.XPUB), ctx.socket(zmq.XSUB)
            front.setsockopt(zmq.XPUB_VERBOSE, 1)
            # room for output bursts (a kernel's PUB drops what does not fit; bounded on purpose:
            # an untrusted kernel must not be able to grow the server's memory without limit)
            front.sndhwm = back.rcvhwm = IOPUB_HWM
            sockets["iopub"] = (front, back)
            for channel, (front, back) in sockets.items():
                front.linger = back.linger = 0
                front.bind(_url(self.outer, channel))
                back.connect(_url(self.inner, channel))
            for channel in sockets:
                for side in ("front", "back"):
                    self._start_pump(channel, side)
            self._ready.set()
            await self._stopped.wait()
            for task in self._tasks.values():
                task.cancel()
            self._abort_pending()
            if self._background:  # let completion records reach the collector
                await asyncio.wait(self._background, timeout=5)
        finally:
            for front, back in sockets.values():
                front.close(linger=0)
                back.close(linger=0)
            ctx.term()

    def _kernel_side(self) -> dict[str, zmq.asyncio.Socket]:
        """New sockets towards the kernel for the request channels (not connected yet)."""
        # the kernel answers an input request to the identity the shell request came from,
        # on its stdin socket: both of our kernel-side sockets must carry one identity
        shared_identity = os.urandom(16)
        made = {}
        for channel in REQUEST_CHANNELS:
            made[channel] = self._ctx.socket(zmq.DEALER)
            made[channel].linger = 0
            if channel in ("shell", "stdin"):
                made[channel].identity = shared_identity
        return made

    def _start_pump(self, channel: str, side: str) -> None:
        task = asyncio.create_task(self._pump(channel, side))
        task.add_done_callback(self._pump_ended)
        self._tasks[channel, side] = task

    async def _restarted(self) -> None:
        self._generation += 1
        self._abort_pending()
        # What was sent towards the old kernel and not taken by it is still queued in these
        # sockets (ZMQ delivers it on reconnect, i.e. to the new kernel): drop it with them.
        fresh = self._kernel_side()
        for channel in REQUEST_CHANNELS:
            task = self._tasks.pop((channel, "back"))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            front, old = self.sockets[channel]
            old.close(linger=0)
            fresh[channel].connect(_url(self.inner, channel))
            self.sockets[channel] = (front, fresh[channel])
            self._start_pump(channel, "back")
        # The kernel manager deletes its connection's ipc files (ours: the client side) when it
        # restarts a kernel. Connected clients keep working, but no new one could connect (a
        # second notebook, a reconnecting browser, the manager's own next interrupt): bind
        # again, which makes the files anew beside the existing connections.
        for channel, (front, _back) in self.sockets.items():
            url = _url(self.outer, channel)
            if not os.path.exists(url.removeprefix("ipc://")):
                front.bind(url)

    def _pump_ended(self, task: asyncio.Task) -> None:
        """A channel that stops relaying stays stopped (nothing unrecorded gets through); say so."""
        if not task.cancelled() and task.exception() is not None:
            log.error("audit proxy for kernel %s: a channel stopped: %r",
                      self.context.get("kernel_id"), task.exception())

    async def _pump(self, channel: str, side: str) -> None:
        front, back = self.sockets[channel]
        source, sink = (front, back) if side == "front" else (back, front)
        observe = {"iopub": self._observe_output, "shell": self._observe_reply}.get(channel)
        while True:
            frames = await source.recv_multipart()
            generation = self._generation  # the kernel this request was sent to
            if side == "back":
                # The kernel's messages are forwarded first and observed after: the record is
                # made from the same frames either way, and the client does not wait for it.
                await sink.send_multipart(frames)
                if observe is not None:
                    try:
                        observe(frames)
                    except Exception as exc:  # a malformed message must not stop the proxy
                        log_fault(log, f"audit proxy: cannot inspect a {channel} message", exc)
                continue
            if channel in REQUEST_CHANNELS:
                try:
                    admitted = await self._admit(channel, frames, generation)
                except Exception as exc:  # fail closed: an uninspectable request is not forwarded
                    log_fault(log, f"audit proxy: cannot inspect a {channel} message", exc)
                    continue
                if not admitted:
                    continue
                sink = self.sockets[channel][1]  # towards the kernel of ``generation``
            await sink.send_multipart(frames)

    def _split(self, frames: list[bytes]) -> tuple[list[bytes], dict | None]:
        try:
            i = frames.index(DELIM)
        except ValueError:
            return frames, None
        return frames[:i], self.session.deserialize(frames[i + 1:], content=True)  # checks HMAC

    def _sender(self, msg_id: str) -> tuple[str, str, str | None]:
        with self._lock:
            queue = self._attributions.get(msg_id)
            found = queue.popleft() if queue else None
            if queue is not None and not queue:
                del self._attributions[msg_id]
        if found is None:
            return self.default_user, "server", None
        return found[0], "websocket", found[1]

    async def _admit(self, channel: str, frames: list[bytes], generation: int) -> bool:
        """Record the request and say whether it may reach the kernel (the one it was sent to,
        ``generation``: not its successor)."""
        try:
            idents, msg = self._split(frames)
        except ValueError as exc:  # bad signature, replayed or malformed
            log.warning("audit proxy: rejected a %s message: %s", channel, exc)
            return False
        if msg is None:
            return False
        header, msg_type = msg["header"], msg["header"]["msg_type"]
        if msg_type in PASSED:
            return generation == self._generation  # a client asking the old kernel asks again
        user, source, ws_path = self._sender(header["msg_id"])
        metadata = msg.get("metadata") or {}
        base = {"study": self.context["study"], "kernel_id": self.context["kernel_id"],
                "user": user, "msg_id": header["msg_id"], "session": header.get("session")}
        refusal = self._refusal(channel, msg)
        if refusal is not None:
            denial = {**base, "event": "denied", "status": "denied", "reason": _label(msg_type)}
            await self._try_record("kernel-lifecycle", denial)
            await self._refuse(channel, idents, msg, "denied", refusal)
            return False
        if msg_type in LIFECYCLE:
            kind, record = "kernel-lifecycle", {**base, "event": LIFECYCLE[msg_type],
                                                "status": "submitted"}
        else:
            kind = RECORD_KIND
            record = {**base, "source": source, "status": "submitted", "started": _now(),
                      "cell_id": metadata.get("cellId") or metadata.get("cell_id"),
                      "notebook_path": (metadata.get("notebookPath") or ws_path
                                        or self.context.get("notebook_path"))}
            content = msg["content"]
            if msg_type == "execute_request":
                code = content.get("code", "")
                record.update(code=code, code_sha256=_sha256(code.encode()))
            else:  # comm payloads and typed input may carry values: only their digest is kept
                record.update(code_sha256=_sha256(self.session.pack(content)),
                              reason=_label(msg_type))
        record = {k: v for k, v in record.items() if v is not None}
        try:
            record_id = await self.recorder(kind, record)
        except Exception as exc:
            # the collector's messages name fields and rules, never values
            log.error("audit proxy: %s not forwarded, no provenance record (%s: %s)",
                      msg_type, type(exc).__name__, exc)
            await self._refuse(channel, idents, msg, "ProvenanceUnavailable",
                               "The provenance log cannot record this request, so nothing is "
                               "run (every cell is recorded first). Try again in a moment; if "
                               "it persists, tell the space administrator.")
            return False
        if msg_type == "execute_request":
            self._executions[header["msg_id"]] = _Execution(record, record_id)
        if generation != self._generation:  # the kernel restarted while this was recorded
            if msg_type == "execute_request":
                self._executions[header["msg_id"]].status = "aborted"
                self._executions[header["msg_id"]].idle = True
                self._complete(header["msg_id"])
            await self._refuse(channel, idents, msg, "KernelRestarted",
                               "The kernel restarted before this request reached it: it was "
                               "not run. Send it again.")
            return False
        return True

    @staticmethod
    def _refusal(channel: str, msg: dict) -> str | None:
        """Why a request may not reach the kernel at all, or None."""
        msg_type = msg["header"]["msg_type"]
        if msg_type not in AUDITED or (channel == "stdin") != (msg_type in STDIN):
            return f"{msg_type} is not allowed in a workbench study kernel"
        if msg_type == "execute_request" and msg["content"].get("user_expressions"):
            # evaluated by the kernel after the cell: code that would not be in the record
            return "user_expressions are not allowed in a workbench study kernel"
        return None

    async def _refuse(self, channel: str, idents: list[bytes], request: dict, ename: str,
                evalue: str) -> None:
        """Answer a refused request like a kernel would, so clients show the reason and do not
        wait: an error reply on its channel and busy/error/idle on iopub."""
        if channel == "stdin":  # an input_reply has no reply of its own: it is dropped
            return
        msg_type = request["header"]["msg_type"]
        reply_type = msg_type.rsplit("_", 1)[0] + "_reply"
        content = {"status": "error", "ename": ename, "evalue": evalue, "traceback": [evalue]}
        if msg_type == "execute_request":
            content["execution_count"] = None
        front, _ = self.sockets[channel]
        reply = self.session.msg(reply_type, content, parent=request["header"])
        await front.send_multipart(self.session.serialize(reply, ident=idents))
        iopub, _ = self.sockets["iopub"]
        topic = [b"kernel.workbench-audit.status"]
        for kind, body in (("status", {"execution_state": "busy"}),
                           ("error", {k: content[k] for k in ("ename", "evalue", "traceback")}),
                           ("status", {"execution_state": "idle"})):
            if kind == "error" and msg_type != "execute_request":
                continue
            await iopub.send_multipart(self.session.serialize(
                self.session.msg(kind, body, parent=request["header"]), ident=topic))

    async def _try_record(self, kind: str, record: dict[str, Any]) -> None:
        try:
            await self.recorder(kind, record, background=True)
        except Exception as exc:
            log.error("audit proxy: could not record a %s (%s): %s", kind, record.get("status"),
                      exc)

    # -- kernel -> clients ------------------------------------------------------------------------
    def _parse_out(self, frames: list[bytes]) -> dict | None:
        try:
            i = frames.index(DELIM)
            return self.session.deserialize(frames[i + 1:], content=False)
        except ValueError:
            return None

    def _observe_output(self, frames: list[bytes]) -> None:
        msg = self._parse_out(frames)
        if msg is None:
            return
        execution = self._executions.get(msg["parent_header"].get("msg_id", ""))
        if execution is None:
            return
        msg_type = msg["header"]["msg_type"]
        if msg_type in OUTPUTS:
            self._digest_output(execution, msg, msg_type)
        elif (msg_type == "status" and self.session.unpack(bytes(msg["content"]))
              .get("execution_state") == "idle"):
            execution.idle = True
            self._complete(msg["parent_header"]["msg_id"])

    def _digest_output(self, execution: _Execution, msg: dict, msg_type: str) -> None:
        body = bytes(msg["content"]) + b"".join(bytes(b) for b in msg.get("buffers", []))
        content = None
        if msg_type == "stream":
            try:  # the kernel is untrusted: a malformed stream is digested as it came
                content = self.session.unpack(bytes(msg["content"]))
            except Exception:  # noqa: BLE001 - any parse failure means "not a proper stream"
                content = None
        if isinstance(content, dict) and isinstance(content.get("text"), str):
            execution.add_stream(str(content.get("name", "")),
                                 content["text"].encode("utf-8", "surrogatepass"))
        else:
            execution.add_output(_label(msg_type), body)

    def _observe_reply(self, frames: list[bytes]) -> None:
        msg = self._parse_out(frames)
        if msg is None or msg["header"]["msg_type"] != "execute_reply":
            return
        execution = self._executions.get(msg["parent_header"].get("msg_id", ""))
        if execution is not None:
            status = self.session.unpack(bytes(msg["content"])).get("status")
            execution.status = status if status in ("ok", "error", "aborted") else "error"
            self._complete(msg["parent_header"]["msg_id"])

    def _abort_pending(self) -> None:
        for msg_id, execution in list(self._executions.items()):
            execution.status = execution.status or "aborted"
            execution.idle = True
            self._complete(msg_id)

    def _complete(self, msg_id: str) -> None:
        execution = self._executions[msg_id]
        if execution.status is None or not execution.idle:
            return
        del self._executions[msg_id]
        record = {k: v for k, v in execution.record.items() if k != "code"}
        record.update(ended=_now(), status=execution.status, outputs=execution.outputs)
        if execution.record_id:
            record["ref"] = execution.record_id
        task = asyncio.get_running_loop().create_task(self._try_record(RECORD_KIND, record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
