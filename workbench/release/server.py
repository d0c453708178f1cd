"""The airlock's HTTP app (aiohttp) on its own Unix socket (``run/airlock.sock``).

Security boundary (guarded by tests/release/test_service.py and tests/release/test_fuzz.py):
- who may connect is decided by the kernel, not by headers: the peer uid of each connection
  (SO_PEERCRED) must be one of the trusted callers (root, the gateway, the airlock itself), and
  it is checked in the one middleware, after the headers and before any body is read;
- a study server (``wbs-<study>``, the researcher's JupyterLab panels) is taken as its study's
  kernel account, whatever it asserts: it may list and read its study's requests (the author's
  view) and withdraw or resubmit them, nothing else (``STUDY_SERVER_ROUTES``), so it gets no more
  than its kernels already get through the gateway;
- those callers assert the acting user and study in headers, having established them themselves
  (the gateway from the study socket's peer uid, the review service from hub OAuth); a reviewer's
  dashboard kernel, which is not trusted, proves its reviewer with a signed token instead
  (``workbench.release.tokens``), relayed by the gateway;
- every error, including unknown routes and oversized bodies, has the one shape
  ``{"error": {"reason", "message"}}``; a fault is logged by type and frames, never by value.

Routes (JSON; the OpenAPI document is ``workbench.release.openapi.SPEC``)::

    POST /requests                         {name, description, payload[, justification,
                                           controls]}  -> summary
                                           (X-Workbench-Dry-Run: 1 -> checked, not stored)
    GET  /requests?study=S&state=X         -> [summary]
    GET  /requests/{id}                    -> detail (evidence, output, history)
    POST /requests/{id}/decision           {decision, comment}  -> summary
    POST /requests/{id}/withdraw|resubmit  {comment}  -> summary (the requester)
    POST /requests/{id}/comments           {comment}  -> {id, comments}
    GET  /requests/{id}/files/{name}       -> bytes of a released file
    GET  /health                           -> {"ok": true}
    GET  /openapi.json                     -> the OpenAPI document
"""

from __future__ import annotations

import asyncio
import json
import logging
import pwd
import re
import socket
from functools import partial
from pathlib import Path

from aiohttp import web

from workbench.accounts import study_kernel_user, study_server_user
from workbench.apierror import error_response
from workbench.errors import WorkbenchError, WorkbenchUserError, log_fault
from workbench.peercred import request_peer_uid as peer_uid
from workbench.release.airlock import Airlock, Context
from workbench.release.openapi import MAX_BODY, SPEC
from workbench.release.tokens import verify_token
from workbench.runtime import bind_socket, stop_requested

log = logging.getLogger("workbench.airlock")
STATUS = {"access-denied": 403, "own-request": 403, "same-reviewer": 409, "bad-state": 409,
          "not-found": 404, "method-not-allowed": 405, "release-too-large": 413,
          "unauthenticated": 401, "policy-unavailable": 503}
_HTTP_REASONS = {404: "not-found", 405: "method-not-allowed", 413: "release-too-large"}
DRY_RUN_HEADER = "X-Workbench-Dry-Run"  # set only by trusted callers (the gateway's re-run route)
READY = "airlock serving"
_REQUEST_ID = "{request_id:[A-Za-z0-9-]{1,64}}"
STUDY_SERVER_ROUTES = re.compile(r"^(GET /requests(/[A-Za-z0-9-]{1,64})?|"
                                 r"POST /requests/[A-Za-z0-9-]{1,64}/(withdraw|resubmit))$")


def study_of_server(uid: int, policy) -> str | None:
    """The study whose server account ``uid`` is, if it is one."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
    return next((s for s in policy.studies if study_server_user(s) == name), None)


def _context(request: web.Request, token_key: bytes) -> Context:
    """Who acts: a reviewer token's signed claims, or the trusted caller's asserted actor."""
    headers = request.headers
    if request.get("study_server"):  # the peer decides: its study, as that study's kernels
        study = request["study_server"]
        return Context(actor=study_kernel_user(study), study=study,
                       claimed_user=headers.get("X-Workbench-User") or None)
    study = headers.get("X-Workbench-Study") or None
    # Any value but "0" means dry run: a garbled marker errs on the side of doing less.
    dry_run = headers.get(DRY_RUN_HEADER, "0") != "0"
    token = headers.get("X-Workbench-Reviewer-Token")
    if token:
        claims = verify_token(token_key, token)
        if study is not None and claims["study"] != study:
            raise WorkbenchUserError("the reviewer token is for another study",
                                     reason="access-denied")
        return Context(actor=claims["user"], study=claims["study"], dry_run=dry_run)
    actor = headers.get("X-Workbench-Actor")
    if not actor:
        raise WorkbenchUserError("no acting user given", reason="unauthenticated")
    return Context(actor=actor, study=study,
                   kernel_id=headers.get("X-Workbench-Kernel") or None,
                   msg_id=headers.get("X-Workbench-Msg-Id") or None,
                   claimed_user=headers.get("X-Workbench-User") or None,
                   dry_run=dry_run)


async def _body(request: web.Request) -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise WorkbenchUserError(f"request body larger than {MAX_BODY} bytes",
                                 reason="release-too-large")
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise WorkbenchUserError("the request body is not JSON", reason="bad-request") from None
    if not isinstance(body, dict):
        raise WorkbenchUserError("the request body must be a JSON object", reason="bad-request")
    return body


def _json(obj, status: int = 200) -> web.Response:
    return web.json_response(obj, status=status, dumps=partial(json.dumps, default=str),
                             headers={"X-Content-Type-Options": "nosniff"})


def make_app(airlock: Airlock, trusted_uids: set[int], token_key: bytes) -> web.Application:
    """The airlock's app: every route behind the peer-uid check and the one error shape."""

    async def blocking(function, *args):
        """The airlock's work (SQLite, provenance, the rules) runs off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            uid = peer_uid(request)
            if uid not in trusted_uids:
                study = study_of_server(uid, airlock.policy)
                if study is None or not STUDY_SERVER_ROUTES.match(
                        f"{request.method} {request.path}"):
                    raise WorkbenchUserError("this account may not call the airlock directly",
                                             reason="access-denied")
                request["study_server"] = study
            if request.body_exists and (request.content_length or 0) <= MAX_BODY:
                # A caller who may speak has its body (within the limit) read before any
                # refusal: left unread, aiohttp closes the connection after the answer
                # (lingering_time=0), and the caller, still sending, can get a reset in its place.
                await request.read()
            response = await handler(request)
        except WorkbenchUserError as exc:
            response = error_response(STATUS.get(exc.reason, 400), exc.reason, str(exc))
        except WorkbenchError as exc:
            log.error("airlock fault: %s", exc)
            response = error_response(503, "unavailable", str(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(exc.status, _HTTP_REASONS.get(exc.status, "bad-request"),
                                      f"{exc.reason}: see GET /openapi.json")
        except Exception as exc:  # never a traceback (or a value) to the caller
            log_fault(log, f"airlock bug on {request.method} {request.path[:200]}", exc)
            response = error_response(500, "internal", f"internal error ({type(exc).__name__})")
        log.info("%s %s %s", request.method, request.path[:200], response.status)
        return response

    async def create(request: web.Request) -> web.Response:
        ctx = _context(request, token_key)
        body = await _body(request)
        made = await blocking(airlock.create, ctx, body.get("payload") or {}, body.get("name"),
                              body.get("description"), body.get("justification"),
                              body.get("controls"))
        return _json(made, 200 if ctx.dry_run else 201)

    async def list_requests(request: web.Request) -> web.Response:
        ctx = _context(request, token_key)
        states = request.query.getall("state", []) or None
        return _json(await blocking(airlock.list, ctx, request.query.get("study") or None,
                                    states))

    async def detail(request: web.Request) -> web.Response:
        ctx = _context(request, token_key)
        return _json(await blocking(airlock.detail, ctx, request.match_info["request_id"]))

    async def decide(request: web.Request) -> web.Response:
        ctx = _context(request, token_key)
        body = await _body(request)
        return _json(await blocking(airlock.decide, ctx, request.match_info["request_id"],
                                    body.get("decision"), body.get("comment") or ""))

    async def comment(request: web.Request) -> web.Response:
        ctx = _context(request, token_key)
        body = await _body(request)
        return _json(await blocking(airlock.comment, ctx, request.match_info["request_id"],
                                    body.get("comment")), 201)

    async def download(request: web.Request) -> web.Response:
        ctx = _context(request, token_key)
        data = await blocking(airlock.download, ctx, request.match_info["request_id"],
                              request.match_info["name"])
        return web.Response(body=data, content_type="application/octet-stream",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def by_author(request: web.Request) -> web.Response:
        ctx = _context(request, token_key)
        body = await _body(request)
        action = getattr(airlock, request.match_info["action"])  # withdraw | resubmit
        return _json(await blocking(action, ctx, request.match_info["request_id"],
                                    body.get("comment") or ""))

    async def health(request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def openapi(request: web.Request) -> web.Response:
        return _json(SPEC)

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app.router.add_post("/requests", create)
    app.router.add_post(f"/requests/{_REQUEST_ID}/{{action:withdraw|resubmit}}", by_author)
    app.router.add_get("/requests", list_requests)
    app.router.add_get(f"/requests/{_REQUEST_ID}", detail)
    app.router.add_post(f"/requests/{_REQUEST_ID}/decision", decide)
    app.router.add_post(f"/requests/{_REQUEST_ID}/comments", comment)
    app.router.add_get(f"/requests/{_REQUEST_ID}/files/{{name:.+}}", download)
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi)
    return app


def bind(path: Path) -> socket.socket:
    """The airlock's listening socket, reachable by every local account: SO_PEERCRED decides
    who may actually use it."""
    listener = bind_socket(path, 0o666)
    listener.setblocking(False)
    return listener


class _Connection(web.RequestHandler):
    """One connection. aiohttp answers a request it cannot parse (a bad Content-Length, a broken
    header line) itself, before any middleware, in plain text and logging a traceback that
    quotes the request's bytes; here that answer has the one error shape and its log line names
    only the fault's type."""

    def handle_error(self, request, status=500, exc=None, message=None) -> web.Response:
        log.warning("unparsable request refused: %s", type(exc).__name__)
        response = error_response(
            status, "bad-request" if status < 500 else "internal",
            "the request is not valid HTTP/1.1 (check its Content-Length and header lines)")
        response.force_close()
        return response


def serve(app: web.Application, listener: socket.socket) -> None:
    """Serve until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = stop_requested()
        loop = asyncio.get_running_loop()
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        listening = await loop.create_unix_server(
            # lingering_time=0: a refused body (an untrusted peer's, one over the limit) is never
            # read; aiohttp would otherwise read it for up to 10 s to keep the connection.
            lambda: _Connection(runner.server, loop=loop, access_log=None, lingering_time=0),
            sock=listener)
        log.info(READY)
        await stop.wait()
        listening.close()
        await runner.cleanup()

    asyncio.run(main())
