"""The decision relay: how a sandboxed dashboard kernel takes a reviewer's decision to the airlock
without holding anything a researcher could use.

One relay per dashboard kernel, started by the sandbox provisioner of the review service (a
trusted process outside the sandbox) and bound into the kernel's sandbox at ``/run/gateway.sock``,
its only socket. The relay knows who the kernel serves (the reviewer the hub signed in for this
visit, given to the provisioner by the service's prelaunch hook) and which study; the kernel only
says which request and which decision. So the kernel holds no token: nothing it could leak lets
anyone else act as the reviewer, and nothing in the kernel can name another reviewer or study.

Accepted, from the kernel's own uid (SO_PEERCRED) only:
- ``POST /release/requests/<id>/decision {"decision", "comment"}`` and
  ``POST /release/requests/<id>/comments {"comment"}``: forwarded to the airlock as the reviewer,
  for the relay's study, where the airlock decides (``review-release``, two different reviewers,
  never the author);
- ``GET /release/snapshot``: a fresh snapshot of the study's dashboards for the reviewer (the
  queue refreshes after a decision), the same data the page was opened with.
Directly when the service runs as root, else through the review broker
(workbench.review.broker), which only lets a study's review service act in that study, and the
shared review service only for a reviewer of the study it names (the relay's).
Everything else is refused with the gateway's error shape.
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

_ACTION = re.compile(r"^/release/requests/(rq-[A-Za-z0-9-]{1,64})/(decision|comments)$")
SNAPSHOT = "/release/snapshot"
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

    def _wrong_peer(self) -> bool:
        relay = self.server
        if relay.kernel_uid is not None and _peer_uid(self.connection) != relay.kernel_uid:
            self._error(403, "wrong-peer", "only this dashboard's kernel may use this socket")
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self._wrong_peer():
            return None
        if self.path != SNAPSHOT:
            return self._error(404, "not-found", "a dashboard kernel can only send decisions "
                                                 "and comments, and refresh its snapshot")
        try:
            snapshot = self.server.snapshot()
        except WorkbenchUserError as exc:
            return self._error(403, exc.reason, str(exc))
        except (OSError, WorkbenchError) as exc:
            return self._error(503, "review-broker-unavailable",
                               f"the snapshot could not be refreshed ({type(exc).__name__}): "
                               "reload the page")
        self._reply(200, json.dumps({"snapshot": snapshot}, default=str).encode())

    def do_POST(self) -> None:  # noqa: N802
        relay = self.server
        if self._wrong_peer():
            return None
        match = _ACTION.match(self.path)
        if match is None:
            return self._error(404, "not-found", "a dashboard kernel can only send decisions "
                                                 "and comments")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._error(413, "too-large", "the decision is too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            action = ({"decision": body["decision"], "comment": str(body.get("comment") or "")}
                      if match[2] == "decision" else {"comment": str(body["comment"])})
        except (ValueError, KeyError, TypeError):
            return self._error(400, "bad-request", "send {\"decision\": ..., \"comment\": ...}")
        try:
            status, data = relay.forward(match[1], match[2], action)
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
    what, body) -> (status, body)`` reaches the airlock (default: its socket, as a trusted
    caller); ``what`` is ``decision`` or ``comments``."""

    daemon_threads = True

    def __init__(self, path: Path, study: str, reviewer: str, kernel_uid: int | None,
                 forward=None, space=None, policy_file: str | None = None):
        self.study, self.reviewer, self.kernel_uid = study, reviewer, kernel_uid
        self._forward, self._space = forward, space
        self._policy_file = policy_file or os.environ.get("WORKBENCH_POLICY")
        super().__init__(str(path), _Handler)
        Path(path).chmod(0o666)  # noqa: S103 - bound into one sandbox; SO_PEERCRED decides
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name=f"decision-relay-{study}")
        self._thread.start()

    def forward(self, request_id: str, what: str, body: dict) -> tuple[int, bytes]:
        if self._forward is not None:
            return self._forward(request_id, what, body)
        if os.geteuid() != 0:  # an unprivileged review service: the broker is the way
            from workbench.review.broker import ask

            op = "decide" if what == "decision" else "comment"
            reply = ask(self._space, {**body, "op": op, "user": self.reviewer,
                                      "study": self.study, "request_id": request_id})
            return reply["status"], reply["body"].encode()
        from workbench.release.airlock import airlock_socket
        from workbench.release.http import UnixHTTP

        client = UnixHTTP(airlock_socket(self._space), timeout=60, headers={
            "X-Workbench-Actor": self.reviewer, "X-Workbench-Study": self.study})
        status, data, _ = client.request("POST", f"/requests/{request_id}/{what}", body)
        return status, data

    def snapshot(self) -> dict:
        """The study's dashboards as the reviewer would see them if they reloaded the page."""
        if os.geteuid() != 0:
            from workbench.review.broker import ask

            return ask(self._space, {"op": "snapshot", "user": self.reviewer,
                                     "study": self.study})["snapshot"]
        from workbench.policy import load_policy
        from workbench.review.snapshot import study_snapshot

        if not self._policy_file:
            raise WorkbenchError("the review service names no policy file (WORKBENCH_POLICY)")
        policy = load_policy(self._policy_file)
        return study_snapshot(self._space, policy, self.study, self.reviewer)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)
        Path(self.server_address).unlink(missing_ok=True)
