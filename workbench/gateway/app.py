"""The gateway's HTTP app for one study socket.

Security boundary (guarded by tests/gateway/test_gateway.py):
- the study is the socket's (one socket per study), never a request field;
- the caller is the peer uid from SO_PEERCRED, which must be the study's kernel account; the
  X-Workbench-User / X-Workbench-Kernel / X-Workbench-Msg-Id headers are recorded as *claims*
  only (the kernel sets them from its environment and could lie);
- every request goes through ``workbench.policy.access.ensure_allowed``;
- data leaves only after the provenance collector acknowledged the read (fail closed) and the
  usage ledger recorded it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from aiohttp import web

from workbench.accounts import study_kernel_user
from workbench.apierror import error_response
from workbench.errors import WorkbenchUserError, log_fault
from workbench.gateway.ledger import UsageLedger
from workbench.gateway.openapi import MAX_ROWS, SPEC
from workbench.paths import Space
from workbench.peercred import request_peer_uid as peer_uid
from workbench.policy.access import decide, ensure_allowed, view_read
from workbench.policy.model import Policy
from workbench.policy.signed import ActivePolicy
from workbench.provenance.client import ProvenanceClient, ProvenanceUnavailable
from workbench.release.forward import release_forwarder
from workbench.views import ViewEngine
from workbench.views.twin import synthetic_twin, twin_rows

log = logging.getLogger("workbench.gateway")

STATUS = {
    "bad-request": 400, "unknown-column": 400, "bad-params": 400,
    "access-denied": 403, "wrong-peer": 403, "sensitive-column": 403, "too-few-rows": 403,
    "unknown-view": 404, "not-found": 404, "method-not-allowed": 405,
    "invalid-view": 409, "too-large": 413, "too-many-rows": 413,
    "internal-error": 500,
    "provenance-unavailable": 503, "policy-unavailable": 503, "secure-unavailable": 503,
}
_VIEW_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CLAIM = {"user": re.compile(r"^[a-z][a-z0-9_.-]{0,31}$"),
          "kernel_id": re.compile(r"^[A-Za-z0-9._:@/+-]{1,128}$"),
          "msg_id": re.compile(r"^[A-Za-z0-9._:@/+-]{1,128}$")}
_HEADERS = {"user": "X-Workbench-User", "kernel_id": "X-Workbench-Kernel",
            "msg_id": "X-Workbench-Msg-Id"}
ARROW_TYPE = "application/vnd.apache.arrow.stream"
MAX_BODY = 256 * 1024


@dataclass
class GatewayState:
    """What all study apps share: the engine, the policy (re-read when its file changes), the
    provenance client and the ledger."""

    space: Space
    engine: ViewEngine
    policy_path: Path
    provenance: ProvenanceClient
    ledger: UsageLedger
    max_rows: int = MAX_ROWS
    nodes: object = None  # a node.coordinator.NodeCoordinator when the holders are nodes
    _policy_source: ActivePolicy | None = field(default=None, repr=False)
    _catalog_stamp: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._catalog_stamp = _catalog_stamp(self.space)  # what the engine was built from

    def follow_catalog(self) -> None:
        """With holder nodes, a node's ingest publishes a new dataset version into the catalog
        while the gateway runs: the engine (catalog only, no data) is rebuilt when the catalog's
        dataset or view entries change, so every read records the view version it really read
        (reruns rely on it). Reads already running keep the engine they started with."""
        if self.nodes is None:
            return
        stamp = _catalog_stamp(self.space)
        if stamp != self._catalog_stamp:
            try:
                engine = ViewEngine(self.space, data=False)
            except Exception as exc:  # noqa: BLE001 - an entry half-written: the next request
                log.warning("catalog changed but could not be read yet (%s)", type(exc).__name__)
                return
            self.engine, self.nodes.engine, self._catalog_stamp = engine, engine, stamp

    def policy(self) -> Policy:
        """The current policy; a changed file is re-read (revocations take effect at once). If the
        file cannot be read, is invalid or, once the space has admin keys, is not signed by one
        (or is older than one in force before), everything is refused (fail closed)."""
        if self._policy_source is None:
            self._policy_source = ActivePolicy(self.policy_path, self.space, "the gateway")
        return self._policy_source.current()


def _catalog_stamp(space: Space) -> tuple:
    """(name, size, mtime) of every dataset and view entry: changes when an entry does."""
    found = []
    for folder in ("datasets", "views"):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(space.catalog / folder):
                info = entry.stat()
                found.append((folder, entry.name, info.st_size, info.st_mtime_ns))
    return tuple(sorted(found))


def _claims(request: web.Request) -> dict:
    """Identity the kernel *claims* (untrusted, recorded as such); malformed claims are dropped."""
    out = {}
    for key, header in _HEADERS.items():
        value = request.headers.get(header, "")
        if _CLAIM[key].match(value):
            out[key] = value
    return out


def _view_id(request: web.Request) -> str:
    view_id = request.match_info["view_id"]
    if not _VIEW_ID.match(view_id):
        raise WorkbenchUserError("view ids are lowercase letters, digits and '_'; list them "
                                 "with wb.views().", reason="unknown-view")
    return view_id


def _parse_columns(value: str | None) -> list[str] | None:
    if value is None or value == "":
        return None
    names = value.split(",")
    if len(names) > 200 or not all(_COLUMN.match(n) for n in names):
        raise WorkbenchUserError("columns is a comma-separated list of column names "
                                 "(lowercase letters, digits and '_').", reason="bad-request")
    return names


def _parse_limit(value: str | None, max_rows: int) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise WorkbenchUserError("limit must be a whole number of rows.", reason="bad-request")
    limit = int(value)
    if limit > max_rows:
        raise WorkbenchUserError(f"limit may be at most {max_rows} rows per request.",
                                 reason="too-large")
    return limit


def make_app(state: GatewayState, study: str, kernel_uid: int,
             rerun: bool = False) -> web.Application:
    """The app of one study socket; ``rerun``: the study's re-run socket, the same app except
    that release requests are only checked (the airlock's dry run), never submitted."""
    actor = study_kernel_user(study)

    def pin_of(request: web.Request, view_id: str) -> dict | None:
        """The kept dataset versions a re-run kernel's read of ``view_id`` uses (root's pins,
        ``workbench/run/pins.py``); a study kernel cannot ask for any: it reads today's data."""
        if "version" in request.query or "versions" in request.query \
                or "X-Workbench-Version" in request.headers:
            raise WorkbenchUserError(
                "a study kernel reads today's data; only 'workbench rerun' (as root) re-creates "
                "a study on the dataset versions it ran on.", reason="access-denied")
        if not rerun or state.nodes is None:
            return None
        from workbench.run.pins import read_pin

        return read_pin(state.space, study, view_id)

    def refused(request: web.Request, reason: str, view: str | None, status: int) -> None:
        log.warning(json.dumps({"event": "refused", "study": study, "peer_uid": peer_uid(request),
                                "method": request.method, "path": request.path[:200],
                                "view": view, "reason": reason, "status": status}))

    async def record_denial(request: web.Request, view: str | None, reason: str) -> None:
        """Refusals are recorded too, best effort: no data leaves, so a failure is only logged."""
        if view is None or not _VIEW_ID.match(view):
            return
        fields = {"study": study, "view": view, "status": "denied", "reason": reason,
                  **_claims(request)}
        try:
            await state.provenance.append_async("view-read", fields)
        except ProvenanceUnavailable as exc:
            log.error("could not record a refusal: %s", exc)

    @web.middleware
    async def errors(request: web.Request, handler):
        view = request.match_info.get("view_id") if request.match_info else None
        try:
            uid = peer_uid(request)
            if uid != kernel_uid:
                raise WorkbenchUserError(
                    f"this socket serves study '{study}' to its kernels only.",
                    reason="wrong-peer")
            state.follow_catalog()
            return await handler(request)
        except WorkbenchUserError as exc:
            status = STATUS.get(exc.reason, 400)
            refused(request, exc.reason, view, status)
            if status in (403, 404, 409):
                await record_denial(request, view, exc.reason)
            return error_response(status, exc.reason, str(exc))
        except ProvenanceUnavailable as exc:
            log.error("provenance unavailable, request refused: %s", exc)
            refused(request, "provenance-unavailable", view, 503)
            return error_response(503, "provenance-unavailable",
                                  "the provenance log cannot record this request, so no data is "
                                  "served; try again later or tell the space's admin.")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = {404: "not-found", 405: "method-not-allowed",
                      413: "too-large"}.get(exc.status, "bad-request")
            refused(request, reason, view, exc.status)
            return error_response(exc.status, reason, f"{exc.reason}: see GET /openapi.json")
        except Exception as exc:
            log_fault(log, f"gateway fault on {request.method} {request.path[:200]}", exc)
            return error_response(500, "internal-error",
                                  "the gateway failed on this request; the fault is logged.")

    async def list_views(request: web.Request) -> web.Response:
        policy = state.policy()
        granted = policy.studies[study].views if study in policy.studies else ()
        allowed = [v for v in granted if decide(policy, actor, "read-twin", study, v)]
        if len(allowed) < len(granted):
            ensure_allowed(policy, actor, "read-twin", study,  # raises: expired, unknown study
                           next((v for v in granted if v not in allowed), None))
        views = [_described(state.engine.describe(v), policy.studies[study].visibility_of(v))
                 for v in allowed if v in state.engine.views]
        unavailable = [v for v in allowed if v not in state.engine.views]
        body = _json_bytes({"study": study, "views": views, "unavailable": unavailable})
        for description in views:
            await record_description(request, description, "list", body)
        return web.Response(body=body, content_type="application/json")

    async def describe_view(request: web.Request) -> web.Response:
        view_id = _view_id(request)
        policy = state.policy()
        ensure_allowed(policy, actor, "read-twin", study, view_id)
        description = _described(state.engine.describe(view_id),
                                 policy.studies[study].visibility_of(view_id))
        body = _json_bytes(description)
        await record_description(request, description, "describe", body)
        return web.Response(body=body, content_type="application/json")

    async def record_description(request: web.Request, description: dict, operation: str,
                                 body: bytes) -> None:
        """A description carries facts derived from the data (the version is a digest of the
        datasets, quality scores are computed from their rows, holders say who contributes), so
        it is a read like any other: recorded before it leaves, or not served (fail closed)."""
        await state.provenance.append_async("view-read", {
            "study": study, "view": description["id"], "view_version": description["version"],
            "status": "ok", "operation": operation, "format": "json",
            "result_sha256": hashlib.sha256(body).hexdigest(), "result_size": len(body),
            "request_id": uuid.uuid4().hex, **_claims(request)})

    async def fetch_arrow(request: web.Request) -> web.Response:
        view_id = _view_id(request)
        columns = _parse_columns(request.query.get("columns"))
        limit = _parse_limit(request.query.get("limit"), state.max_rows)
        pin = pin_of(request, view_id)
        if view_read(state.policy(), actor, study, view_id) == "twin":
            return await fetch_twin(request, view_id, columns, limit)
        fetch_limit = limit if limit is not None else state.max_rows + 1
        loop = asyncio.get_running_loop()
        timing = _Timing()
        if state.nodes is not None:  # the nodes protect their rows; the gateway merges
            result = await loop.run_in_executor(None, lambda: state.nodes.read(
                study, view_id, columns, fetch_limit, state.policy_path, pin))
        else:
            result = await loop.run_in_executor(
                None, lambda: state.engine.read(study, view_id, columns, fetch_limit))
        timing.mark("query")
        if result.rows > state.max_rows:
            raise WorkbenchUserError(
                f"view '{view_id}' has more than {state.max_rows} rows; ask for fewer with "
                "limit=N (wb.view(name, limit=N)).", reason="too-many-rows")
        fields = {"study": study, "view": view_id, "view_version": result.version,
                  "rows": result.rows, "columns": list(result.columns), "status": "ok",
                  "format": "arrow", "request_id": uuid.uuid4().hex, **_claims(request)}
        # serialise while the collector makes the record durable; nothing is sent before both
        # the provenance ack and the ledger entry exist (fail closed)
        encoding = loop.run_in_executor(None, _arrow_bytes, result.table)
        try:
            record_id = await state.provenance.append_async("view-read", fields)
            timing.mark("provenance")
        finally:
            body = await encoding
        timing.mark("encode")
        await loop.run_in_executor(None, lambda: state.ledger.record(
            study=study, kind="view-read", view=view_id, rows_by_holder=result.rows_by_holder,
            record_id=record_id))
        timing.mark("ledger")
        return web.Response(body=body, content_type=ARROW_TYPE, headers={
            "X-Workbench-Rows": str(result.rows), "X-Workbench-View-Version": result.version,
            "X-Workbench-Record": record_id, "Server-Timing": timing.header()})

    async def fetch_twin(request: web.Request, view_id: str, columns: list[str] | None,
                         limit: int | None) -> web.Response:
        """The view's synthetic twin, made from its catalog description alone: neither the
        engine's rows nor the holder nodes are asked, and the ledger counts no row."""
        seed = request.query.get("seed", "0")
        if not seed.isdigit() or len(seed) > 9:
            raise WorkbenchUserError("seed must be a whole number (0 to 999999999).",
                                     reason="bad-request")
        view = state.engine.view(view_id)
        # the same column rules as a real read: sensitive and unknown columns are refused alike
        chosen = state.engine._columns(view, columns, view.plaintext_columns)
        holders = tuple(sorted({h for t in view.tables for h in state.engine.tables.get(t, [])}))
        table = synthetic_twin(view, study, chosen, twin_rows(limit), int(seed), holders)
        body = _arrow_bytes(table)
        record_id = await state.provenance.append_async("view-read", {
            "study": study, "view": view_id, "view_version": state.engine.versions[view_id],
            "rows": table.num_rows, "columns": list(chosen), "status": "ok", "format": "arrow",
            "synthetic": True, "request_id": uuid.uuid4().hex, **_claims(request)})
        return web.Response(body=body, content_type=ARROW_TYPE, headers={
            "X-Workbench-Rows": str(table.num_rows), "X-Workbench-Synthetic": "twin",
            "X-Workbench-View-Version": state.engine.versions[view_id],
            "X-Workbench-Record": record_id})

    async def secure_op(request: web.Request) -> web.Response:
        op = request.match_info["op"]
        if not re.match(r"^[a-z_]{1,40}$", op):
            raise WorkbenchUserError("unknown secure operation.", reason="not-found")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise WorkbenchUserError("the body must be a JSON object {view, params}.",
                                     reason="bad-request") from None
        if not isinstance(body, dict) or not isinstance(body.get("view"), str) \
                or not isinstance(body.get("params", {}), dict) \
                or set(body) - {"view", "params", "columns"}:
            raise WorkbenchUserError("the body must be a JSON object {view, params}.",
                                     reason="bad-request")
        view_id = body["view"]
        if not _VIEW_ID.match(view_id):
            raise WorkbenchUserError("unknown view id.", reason="unknown-view")
        columns = body.get("columns")
        if columns is not None and (not isinstance(columns, list) or len(columns) > 200 or not all(
                isinstance(c, str) and _COLUMN.match(c) for c in columns)):
            raise WorkbenchUserError("columns is a list of column names.", reason="bad-request")
        policy = state.policy()
        ensure_allowed(policy, actor, "secure-op", study, view_id)
        pin = pin_of(request, view_id)
        try:
            from workbench.secure.service import run_secure_op
        except ImportError:
            raise WorkbenchUserError("secure operations are not available in this space yet.",
                                     reason="secure-unavailable") from None
        loop = asyncio.get_running_loop()
        thresholds = policy.studies[study].thresholds.model_dump()
        privacy = policy.studies[study].privacy
        context = {"study": study, "view": view_id, "request_id": uuid.uuid4().hex,
                   "view_version": pin["view_version"] if pin else
                   state.engine.versions[view_id], **_claims(request)}
        partitions = remote = None
        if state.nodes is not None:  # the holders' nodes compute; the gateway reads no row
            remote = state.nodes.remote(study, view_id, columns, state.policy_path,
                                        context["request_id"],
                                        quorum=policy.studies[study].node_quorum, pin=pin)
        else:
            partitions = await loop.run_in_executor(
                None, lambda: state.engine.partitions(study, view_id, columns))
        result = await loop.run_in_executor(None, lambda: run_secure_op(
            op, partitions, body.get("params", {}), thresholds, state.provenance, context,
            space=state.space, view=state.engine.view(view_id),
            privacy=privacy.model_dump() if privacy else None, remote=remote))
        # with nodes, each node counts its own rows in its journal; here: who contributed
        rows = ({h: 0 for h in result["meta"]["holders"]} if remote is not None
                else {h: len(f) for h, f in partitions.items()})
        await loop.run_in_executor(None, lambda: state.ledger.record(
            study=study, kind="secure-op", view=view_id, op=op, rows_by_holder=rows))
        return web.json_response(result, dumps=lambda v: json.dumps(v, default=str))

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(SPEC)

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app.router.add_get("/views", list_views)
    app.router.add_get("/views/{view_id}", describe_view)
    app.router.add_get("/views/{view_id}/arrow", fetch_arrow)
    app.router.add_post("/secure/{op}", secure_op)
    app.router.add_get("/openapi.json", openapi)
    # Release requests and reviewer decisions go on to the airlock, behind the same peer check.
    app.router.add_route("*", "/release/{tail:.*}",
                         release_forwarder(state.space, study, dry_run=rerun))
    return app


class _Timing:
    """Server-Timing header (ms per step): where a fetch spends its time, for operators."""

    def __init__(self):
        self._last = time.perf_counter()
        self._steps: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self._steps.append((step, (now - self._last) * 1000))
        self._last = now

    def header(self) -> str:
        return ", ".join(f"{step};dur={ms:.1f}" for step, ms in self._steps)


def _described(description: dict, visibility: str) -> dict:
    """A view's description with how this study sees it (rows, or aggregates: a twin)."""
    return {**description, "visibility": visibility}


def _json_bytes(obj) -> bytes:
    """The JSON body exactly as sent, so its digest in the record is the digest of what left."""
    return json.dumps(obj).encode()


def _arrow_bytes(table: pa.Table) -> memoryview:
    """The table as one Arrow IPC stream, in Arrow's own buffer (no copy on the way out)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=64 * 1024)
    return memoryview(sink.getvalue())
