"""The decision relay: how a sandboxed dashboard kernel takes a reviewer's decision to the airlock
without holding anything a researcher could use.

One relay per dashboard kernel, started by the sandbox provisioner of the review service (a
trusted process outside the sandbox) and bound into the kernel's sandbox at ``/run/gateway.sock``,
its only socket. The relay knows who the kernel serves (the reviewer the hub signed in for this
visit, given to the provisioner by the service's prelaunch hook) and which study; the kernel only
says which request and which decision. So the kernel holds no token: nothing it could leak lets
anyone else act as the reviewer, and nothing in the kernel can name another reviewer or study.

Accepted: ``POST /release/requests/<id>/decision {"decision", "comment"}`` from the kernel's own
uid (SO_PEERCRED); forwarded to the airlock as the reviewer, for the relay's study, where the
airlock decides (``review-release``, two different reviewers, never the author): directly when
the service runs as root, else through the review broker (workbench.review.broker), which only
lets a study's review service decide in that study. Everything else is refused with the
gateway's error shape.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.peercred import peer_credentials

log = logging.getLogger("workbench.review.relay")

_DECISION = re.compile(r"^/release/requests/(rq-[A-Za-z0-9-]{1,64})/decision$")
MAX_BODY = 16 * 1024


def _peer_uid(sock: socket.socket) -> int:
    return peer_credentials(sock)[1]


class _Handler(BaseHTTPRequestHandler):
    server: DecisionRelay

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.info("%s %s", self.command, self.path[:120])

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, reason: str, message: str) -> None:
        self._reply(status, json.dumps({"error": {"reason": reason, "message": message}})
                    .encode())

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._error(404, "not-found", "a dashboard kernel can only send decisions")

    def do_POST(self) -> None:  # noqa: N802
        relay = self.server
        if relay.kernel_uid is not None and _peer_uid(self.connection) != relay.kernel_uid:
            return self._error(403, "wrong-peer", "only this dashboard's kernel may use this "
                                                  "socket")
        match = _DECISION.match(self.path)
        if match is None:
            return self._error(404, "not-found", "a dashboard kernel can only send decisions")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._error(413, "too-large", "the decision is too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            decision, comment = body["decision"], str(body.get("comment") or "")
        except (ValueError, KeyError, TypeError):
            return self._error(400, "bad-request", "send {\"decision\": ..., \"comment\": ...}")
        try:
            status, data = relay.forward(match[1], decision, comment)
        except WorkbenchUserError as exc:  # the broker refused
            return self._error(403, exc.reason, str(exc))
        except (OSError, WorkbenchError) as exc:
            return self._error(503, "airlock-unavailable",
                               f"the output airlock is not reachable ({type(exc).__name__}): "
                               "try again later")
        self._reply(status, data)


class DecisionRelay(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serve ``path`` for one dashboard kernel (``kernel_uid``; ``None`` without root, where
    the kernel shares the service's uid) acting for ``reviewer`` in ``study``. ``forward(rid,
    decision, comment) -> (status, body)`` reaches the airlock (default: its socket, as a
    trusted caller)."""

    daemon_threads = True

    def __init__(self, path: Path, study: str, reviewer: str, kernel_uid: int | None,
                 forward=None, space=None):
        self.study, self.reviewer, self.kernel_uid = study, reviewer, kernel_uid
        self._forward, self._space = forward, space
        super().__init__(str(path), _Handler)
        Path(path).chmod(0o666)  # noqa: S103 - bound into one sandbox; SO_PEERCRED decides
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name=f"decision-relay-{study}")
        self._thread.start()

    def forward(self, request_id: str, decision: str, comment: str) -> tuple[int, bytes]:
        if self._forward is not None:
            return self._forward(request_id, decision, comment)
        if os.geteuid() != 0:  # an unprivileged review service: the broker is the way
            from workbench.review.broker import ask

            reply = ask(self._space, {"op": "decide", "user": self.reviewer,
                                      "request_id": request_id, "decision": decision,
                                      "comment": comment})
            return reply["status"], reply["body"].encode()
        from workbench.release.airlock import airlock_socket
        from workbench.release.http import UnixHTTP

        client = UnixHTTP(airlock_socket(self._space), timeout=60, headers={
            "X-Workbench-Actor": self.reviewer, "X-Workbench-Study": self.study})
        status, data, _ = client.request("POST", f"/requests/{request_id}/decision",
                                         {"decision": decision, "comment": comment})
        return status, data

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)
        Path(self.server_address).unlink(missing_ok=True)
