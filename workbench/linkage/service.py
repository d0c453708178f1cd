"""The linkage service's HTTP app (aiohttp) on ``run/linkage.sock``.

    POST /v1/evaluate   body: n blinded elements, 32 bytes each (1 <= n <= max batch)
                        -> n evaluated elements, 32 bytes each, in the same order
    GET  /v1/info       -> suite, limits, key id (a hash of the public key k*G), CLK facts
    GET  /health        -> {"ok": true}
    POST /v1/clk/reference, /v1/clk/match   the linkage unit of fuzzy linkage (``clk``): it
                        keeps reference pseudonyms and CLKs, answers a pseudonym or none per CLK

Who may call is decided by the kernel (SO_PEERCRED), before any body is read: the account that
owns one of the space's enrolled node directories (``nodes/<holder>``, the ``wbh-<holder>``
account), root, or the service's own account. A batch is refused whole (nothing
evaluated) when its size is not a whole number of elements or over the limit, when the caller is
over its rate or quota (``limits``), or when any element is not a canonical ristretto255
encoding of a point other than the identity. A log line per batch names the caller, the batch
size and the time taken: the service receives no identifier, so none can reach its log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import pwd
import socket
import time

import pysodium
from aiohttp import web

from workbench import linkage
from workbench.apierror import error_response
from workbench.errors import WorkbenchUserError
from workbench.linkage import oprf
from workbench.linkage.limits import Limits, RateLimited
from workbench.paths import Space
from workbench.peercred import request_peer_uid
from workbench.runtime import stop_requested

STATUS = {"access-denied": 403, "batch-too-large": 413, "rate-limited": 429,
          "quota-exhausted": 429, "not-found": 404, "method-not-allowed": 405}


def log(event: str, **fields) -> None:
    """One JSON line on stdout (the service's log): names, counts and times, never an element."""
    print(json.dumps({"event": event, **fields}), flush=True)


def key_id(key: bytes) -> str:
    """A public name for the key (the first 16 hex digits of SHA-256 of k*G): which key made a
    set of pseudonyms, without revealing anything of it."""
    return hashlib.sha256(pysodium.crypto_scalarmult_ristretto255_base(key)).hexdigest()[:16]


def node_uids(space: Space) -> set[int]:
    """The owners of the space's node directories: its enrolled holders' node accounts (read
    again on every request, so a node enrolled later is served without a restart)."""
    try:
        found = [p for p in space.nodes.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:  # none, or not listable: no node is served (fail closed)
        return set()
    return {p.stat().st_uid for p in found}


def _peer_name(uid: int | None, own_uid: int, space: Space) -> str | None:
    """The caller's account if it may call, else None."""
    if uid is None or (uid not in (0, own_uid) and uid not in node_uids(space)):
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def evaluate_batch(key: bytes, body: bytes) -> bytes:
    """``key * element`` for each element of ``body``; refused whole on a bad element."""
    out = []
    for i in range(0, len(body), oprf.ELEMENT):
        try:
            out.append(oprf.evaluate(key, body[i:i + oprf.ELEMENT]))
        except (oprf.InvalidElement, ValueError):
            raise WorkbenchUserError(
                f"element {i // oprf.ELEMENT} of the batch is not a valid ristretto255 element "
                "(the identity, or not a canonical encoding of a point): nothing in the batch "
                "was evaluated", reason="invalid-element") from None
    return b"".join(out)


def make_app(key: bytes, limits: Limits, max_batch: int, own_uid: int,
             space: Space, index=None, clk_limits: Limits | None = None,
             threshold: float | None = None) -> web.Application:
    from workbench.linkage import clk
    from workbench.linkage.fuzzy import THRESHOLD

    threshold = THRESHOLD if threshold is None else threshold
    uploads, queries = clk.Parts(clk.ENTRY), clk.Parts(clk.CLK_BYTES)
    async def guard(request: web.Request, handler):
        peer = _peer_name(request_peer_uid(request), own_uid, space)
        try:
            if peer is None:
                raise WorkbenchUserError("only the account of one of this space's holder nodes "
                                         "may use its linkage service", reason="access-denied")
            request["peer"] = peer
            return await handler(request)
        except WorkbenchUserError as exc:
            log("refused", peer=peer or f"uid {request_peer_uid(request)}", reason=exc.reason)
            response = error_response(STATUS.get(exc.reason, 400), exc.reason, str(exc))
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = f"{max(1, round(exc.retry_after))}"
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(exc.status, STATUS_REASONS.get(exc.status, "bad-request"),
                                  exc.reason)
        except Exception as exc:  # noqa: BLE001 - the one error shape, the fault by its type
            log("fault", peer=peer, error=type(exc).__name__)
            return error_response(500, "internal", f"internal error ({type(exc).__name__})")

    async def evaluate(request: web.Request) -> web.Response:
        size = request.content_length
        if size is None or size == 0 or size % oprf.ELEMENT:
            raise WorkbenchUserError(f"a batch is a whole number of {oprf.ELEMENT}-byte elements "
                                     "with a Content-Length", reason="bad-batch")
        count = size // oprf.ELEMENT
        if count > max_batch:
            raise WorkbenchUserError(f"a batch holds at most {max_batch} elements; this one has "
                                     f"{count}: send smaller batches", reason="batch-too-large")
        limits.take(request["peer"], count)  # counted before the work: a bad batch costs too
        body = await request.read()
        if len(body) != size:
            raise WorkbenchUserError("the batch ended early", reason="bad-batch")
        started = time.perf_counter()
        out = await asyncio.get_running_loop().run_in_executor(None, evaluate_batch, key, body)
        log("evaluate", peer=request["peer"], elements=count,
            ms=round((time.perf_counter() - started) * 1000, 1))
        return web.Response(body=out, content_type="application/octet-stream")

    async def _part(request: web.Request, unit: int) -> tuple[int, bool, bytes]:
        """The part number, whether it is the last, and its body (read here, capped: a part
        holds at most ``clk.PART`` CLKs)."""
        try:
            part = int(request.query.get("part", "0"))
            final = request.query.get("final", "1") == "1"
        except ValueError:
            raise WorkbenchUserError("part must be a whole number", reason="bad-part") from None
        size = request.content_length
        if size is None or size % unit or part < 0:
            raise WorkbenchUserError(f"a part is a whole number of {unit}-byte entries with a "
                                     "Content-Length", reason="bad-batch")
        if size > clk.PART * unit:
            raise WorkbenchUserError(f"a part holds at most {clk.PART} entries: send smaller "
                                     "parts", reason="batch-too-large")
        body = await request.content.readexactly(size) if size else b""
        return part, final, body

    async def reference(request: web.Request) -> web.Response:
        if index is None:
            raise web.HTTPNotFound()
        part, final, body = await _part(request, clk.ENTRY)
        uploads.add(request["peer"], part, body)
        if not final:
            return web.json_response({"received": part + 1})
        started = time.perf_counter()
        whole = uploads.finish(request["peer"])
        entries = await asyncio.get_running_loop().run_in_executor(
            None, index.replace, request["peer"], whole)
        log("clk-reference", peer=request["peer"], entries=entries,
            ms=round((time.perf_counter() - started) * 1000, 1))
        return web.json_response({"entries": entries})

    async def match(request: web.Request) -> web.Response:
        if index is None:
            raise web.HTTPNotFound()
        part, final, body = await _part(request, clk.CLK_BYTES)
        if clk_limits is not None and body:
            clk_limits.take(request["peer"], len(body) // clk.CLK_BYTES)
        queries.add(request["peer"], part, body)
        if not final:
            return web.json_response({"received": part + 1})
        whole = queries.finish(request["peer"])
        started = time.perf_counter()
        query = [clk._clk(whole[i:i + clk.CLK_BYTES])
                 for i in range(0, len(whole), clk.CLK_BYTES)]
        found = await asyncio.get_running_loop().run_in_executor(None, index.match, query,
                                                                 threshold)
        log("clk-match", peer=request["peer"], clks=len(query),
            matched=sum(1 for key, _ in found if key != clk.NONE),
            ms=round((time.perf_counter() - started) * 1000, 1))
        return web.Response(body=clk.answer(found), content_type="application/octet-stream",
                            headers={"X-Threshold": repr(threshold),
                                     "X-Reference-Persons": str(index.size())})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({
            "suite": "OPRF(ristretto255, SHA-512), RFC 9497 mode 0", "max_batch": max_batch,
            "per_minute": limits.per_minute, "per_day": limits.per_day, "key_id": key_id(key),
            "clk": None if index is None else {
                "threshold": threshold, "bits": clk.CLK_BYTES * 8, "part": clk.PART,
                "reference_persons": index.size()}})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[web.middleware(guard)],
                          client_max_size=max_batch * oprf.ELEMENT)
    app.router.add_post(linkage.EVALUATE, evaluate)
    app.router.add_get(linkage.INFO, info)
    app.router.add_post(clk.REFERENCE, reference)
    app.router.add_post(clk.MATCH, match)
    app.router.add_get("/health", health)
    return app


STATUS_REASONS = {404: "not-found", 405: "method-not-allowed", 413: "batch-too-large"}


def serve(app: web.Application, listener: socket.socket) -> None:
    """Serve on ``listener`` until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = stop_requested()
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        log("ready", socket=listener.getsockname())
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
