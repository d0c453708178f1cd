"""The airlock service: HTTP/1.1 over its own Unix socket (``run/airlock.sock``).

Who may connect is decided by the kernel, not by headers: the peer uid of each connection
(SO_PEERCRED) must be one of the trusted callers (root, the gateway, the airlock itself). Those
callers assert the acting user and study in headers, having established them themselves (the
gateway from the study socket's peer uid, the review service from hub OAuth). A reviewer's
dashboard kernel, which is not trusted, proves its reviewer with a signed token instead
(``workbench.release.tokens``), relayed by the gateway.

Routes (JSON; errors are ``{"error": {"reason", "message"}}``)::

    POST /requests                         {name, description, payload}  -> summary
                                           (X-Workbench-Dry-Run: 1 -> checked, not stored)
    GET  /requests?study=S&state=X         -> [summary]
    GET  /requests/{id}                    -> detail (evidence, output, history)
    POST /requests/{id}/decision           {decision, comment}  -> summary
    GET  /requests/{id}/files/{name}       -> bytes of a released file
    GET  /health                           -> {"ok": true}
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
import struct
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from workbench.errors import WorkbenchError, WorkbenchUserError, log_fault
from workbench.release.airlock import Airlock, Context
from workbench.release.tokens import verify_token

log = logging.getLogger("workbench.airlock")
MAX_BODY = 32 * 1024 * 1024
_STATUS = {"access-denied": 403, "own-request": 403, "same-reviewer": 409, "bad-state": 409,
           "not-found": 404, "release-too-large": 413, "unauthenticated": 401,
           "policy-unavailable": 503}
DRY_RUN_HEADER = "X-Workbench-Dry-Run"  # set only by trusted callers (the gateway's re-run route)
_REQUEST = re.compile(r"^/requests/(?P<id>[A-Za-z0-9-]{1,64})(?P<rest>/.*)?$")


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class _Handler(BaseHTTPRequestHandler):
    server: AirlockHTTPServer
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # Unix sockets have no client address
        return "unix"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.info("%s %s", self.command, urlsplit(self.path).path)

    # -- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, default=str).encode())

    def _error(self, reason: str, message: str, status: int | None = None) -> None:
        self._json(status or _STATUS.get(reason, 400),
                   {"error": {"reason": reason, "message": message}})

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise WorkbenchUserError(f"request body larger than {MAX_BODY} bytes",
                                     reason="release-too-large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise WorkbenchUserError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise WorkbenchUserError("the request body must be a JSON object")
        return body

    def _context(self) -> Context:
        uid = peer_uid(self.connection)
        if uid not in self.server.trusted_uids:
            raise WorkbenchUserError("this account may not call the airlock directly",
                                     reason="access-denied")
        study = self.headers.get("X-Workbench-Study") or None
        # Any value but "0" means dry run: a garbled marker errs on the side of doing less.
        dry_run = self.headers.get(DRY_RUN_HEADER, "0") != "0"
        token = self.headers.get("X-Workbench-Reviewer-Token")
        if token:
            claims = verify_token(self.server.token_key, token)
            if study is not None and claims["study"] != study:
                raise WorkbenchUserError("the reviewer token is for another study",
                                         reason="access-denied")
            return Context(actor=claims["user"], study=claims["study"], dry_run=dry_run)
        actor = self.headers.get("X-Workbench-Actor")
        if not actor:
            raise WorkbenchUserError("no acting user given", reason="unauthenticated")
        return Context(actor=actor, study=study,
                       kernel_id=self.headers.get("X-Workbench-Kernel") or None,
                       msg_id=self.headers.get("X-Workbench-Msg-Id") or None,
                       claimed_user=self.headers.get("X-Workbench-User") or None,
                       dry_run=dry_run)

    def _dispatch(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            body = self._body() if method == "POST" else {}
            if url.path == "/health":
                return self._json(200, {"ok": True})
            ctx = self._context()
            airlock = self.server.airlock
            if url.path == "/requests" and method == "POST":
                made = airlock.create(ctx, body.get("payload") or {}, body.get("name"),
                                      body.get("description"))
                return self._json(200 if ctx.dry_run else 201, made)
            if url.path == "/requests" and method == "GET":
                query = parse_qs(url.query)
                return self._json(200, airlock.list(ctx, (query.get("study") or [None])[0],
                                                    query.get("state")))
            match = _REQUEST.match(url.path)
            if match is None:
                return self._error("not-found", f"no route {method} {url.path[:100]}", 404)
            rid, rest = match["id"], match["rest"] or ""
            if rest == "" and method == "GET":
                return self._json(200, airlock.detail(ctx, rid))
            if rest == "/decision" and method == "POST":
                return self._json(200, airlock.decide(ctx, rid, body.get("decision"),
                                                      body.get("comment") or ""))
            if rest.startswith("/files/") and method == "GET":
                data = airlock.download(ctx, rid, unquote(rest[len("/files/"):]))
                return self._send(200, data, "application/octet-stream")
            return self._error("not-found", f"no route {method} {url.path[:100]}", 404)
        except WorkbenchUserError as exc:
            return self._error(exc.reason, str(exc))
        except WorkbenchError as exc:
            log.error("airlock fault: %s", exc)
            return self._error("unavailable", str(exc), 503)
        except Exception as exc:  # never a traceback (or a value) to the caller
            log_fault(log, "airlock bug", exc)
            return self._error("internal", f"internal error ({type(exc).__name__})", 500)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")


class AirlockHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, airlock: Airlock, trusted_uids: set[int], token_key: bytes):
        self.airlock = airlock
        self.trusted_uids = trusted_uids
        self.token_key = token_key
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        super().__init__(str(path), _Handler)
        # Reachable by every local account; SO_PEERCRED decides who may actually use it.
        os.chmod(path, 0o666)  # noqa: S103 - access is decided per connection by peer uid
