"""The review broker: the dashboards' one privileged helper (root), so that the dashboard servers
themselves need no privilege.

SECURITY BOUNDARY. The dashboard servers run unprivileged, each as its own account: a study's
Voila review service as ``wbv-<study>``, the admin overview as ``wbv-review-admin``, review-files
as ``wb-review-files``; their kernels come from the root kernel launcher (dashboard mode), as a
study server's do. What needs more than they have (the airlock as a trusted caller, the provenance
log, the usage ledger) they ask here, over ``DATA_DIR/run/review-broker.sock``. The caller's
account (SO_PEERCRED, not anything it says) fixes what it may ask:

- ``wbv-<study>``: ``snapshot`` (the study's dashboards, for a user), ``decide`` (that user's
  decision on a request, in that study only) and ``comment`` (that user's comment on a request
  of that study);
- ``wbv-review-studies`` (the shared review service, every study's reviewers in one process):
  ``snapshot``, ``decide`` and ``comment`` naming the study, only for a user the current policy
  lets see that study's dashboards (its reviewers and admins); anyone else is refused here;
- ``wbv-review-admin``: ``snapshot`` (the admin overview, for a user);
- ``wb-review-files``: ``airlock-get`` (released requests and their files, for a user; GET only);
- root: any of these, naming the study (tests, the admin's tools).

The user is the one the hub signed in, in the server's word (as the airlock takes the gateway's):
the broker never widens it, the policy and the airlock decide what that user may see or do, and a
server can only ever speak for its own study. Any other account, including every kernel account,
is refused. Guarded by tests/review/test_broker.py.

Protocol (one JSON line each way): -> ``{"op": ..., "user": U, ...}``  <- ``{"ok": true, ...}`` |
``{"ok": false, "reason": R, "message": M}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import pwd
import re
import socket
import threading
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError, log_fault
from workbench.paths import Space
from workbench.peercred import peer_credentials
from workbench.runtime import ServiceProcess, bind_socket, start_service, workbench_command
from workbench.sandbox.launcher import dashboard_server_user, shared_dashboard_server_user

log = logging.getLogger("workbench.review.broker")

FILES_ACCOUNT = "wb-review-files"
ADMIN = "review-admin"  # = services.ADMIN_SANDBOX (services imports this module's names)
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_REQUEST_ID = r"rq-[A-Za-z0-9-]{1,64}"
_FILES_PATHS = (re.compile(r"^/requests\?state=released$"),
                re.compile(rf"^/requests/{_REQUEST_ID}$"),
                re.compile(rf"^/requests/{_REQUEST_ID}/files/[A-Za-z0-9_.%-]{{1,360}}$"))
MAX_LINE = 64 * 1024


def broker_socket(space: Space) -> Path:
    return space.review_broker_socket


def _peer_uid(conn: socket.socket) -> int:
    return peer_credentials(conn)[1]


class Broker:
    def __init__(self, space: Space, policy_file: str):
        self.space, self.policy_file = space, policy_file

    def role(self, uid: int, request: dict) -> tuple[str, str | None]:
        """(what the caller is, its study) from its uid: 'study', 'admin', 'files' or 'root'."""
        if uid == 0:
            return "root", request.get("study")
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = None
        if name == FILES_ACCOUNT:
            return "files", None
        if name == dashboard_server_user(ADMIN):
            return "admin", ADMIN
        from workbench.policy import load_policy

        policy = load_policy(self.policy_file)
        if name == shared_dashboard_server_user():
            return "studies", self._shared_study(policy, request)
        for study in policy.studies:
            if name == dashboard_server_user(study):
                return "study", study
        raise WorkbenchUserError(f"uid {uid} is not a dashboard server", reason="access-denied")

    @staticmethod
    def _shared_study(policy, request: dict) -> str:
        """The study the shared review service names, which its user must review (or admin):
        that service speaks for every study, so the broker checks each request's pair again
        rather than trusting the service's own check (the airlock checks decisions a third
        time)."""
        from workbench.policy.access import decide

        study, user = request.get("study"), request.get("user")
        if not isinstance(study, str) or study not in policy.studies:
            raise WorkbenchUserError("no study of the policy named", reason="not-found")
        if not isinstance(user, str) or not decide(policy, user, "view-dashboard", study):
            raise WorkbenchUserError(f"that user does not review study {study}",
                                     reason="access-denied")
        return study

    def handle(self, uid: int, request: dict) -> dict:
        role, study = self.role(uid, request)
        op, user = request.get("op"), request.get("user")
        if not isinstance(user, str) or not _USER.match(user):
            raise WorkbenchUserError("no valid user given", reason="bad-request")
        if op == "snapshot" and role in ("study", "studies", "admin", "root") and study:
            return {"snapshot": self._snapshot(study, user)}
        if (op in ("decide", "comment") and role in ("study", "studies", "root") and study
                and study != ADMIN):
            return self._act(op, study, user, request)
        if op == "airlock-get" and role in ("files", "root"):
            return self._airlock_get(user, str(request.get("path", "")))
        raise WorkbenchUserError(f"{op!r} is not something this account may ask",
                                 reason="access-denied")

    def _snapshot(self, study: str, user: str) -> dict:
        from workbench.policy import load_policy
        from workbench.review.snapshot import admin_snapshot, study_snapshot

        if study == ADMIN:
            return admin_snapshot(self.space, self.policy_file, user)
        policy = load_policy(self.policy_file)  # re-read: revocations apply at the next visit
        if study not in policy.studies:
            raise WorkbenchUserError(f"no study {study}", reason="not-found")
        return study_snapshot(self.space, policy, study, user)

    def _act(self, op: str, study: str, user: str, request: dict) -> dict:
        """A decision or a comment by ``user`` on a request of ``study`` (the airlock checks
        that the user may review it)."""
        from workbench.review.snapshot import airlock_client

        request_id = str(request.get("request_id", ""))
        if not re.fullmatch(_REQUEST_ID, request_id):
            raise WorkbenchUserError("no valid request id given", reason="bad-request")
        client = airlock_client(self.space, user)
        client.headers["X-Workbench-Study"] = study
        comment = str(request.get("comment") or "")
        if op == "decide":
            path, body = "decision", {"decision": request.get("decision"), "comment": comment}
        else:
            path, body = "comments", {"comment": comment}
        status, data, _ = client.request("POST", f"/requests/{request_id}/{path}", body)
        return {"status": status, "body": data.decode("utf-8", "replace")}

    def _airlock_get(self, user: str, path: str) -> dict:
        from workbench.review.snapshot import airlock_client

        if not any(p.match(path) for p in _FILES_PATHS):
            raise WorkbenchUserError("not a released-files path", reason="access-denied")
        status, data, content_type = airlock_client(self.space, user).request("GET", path)
        return {"status": status, "content_type": content_type,
                "body": base64.b64encode(data).decode("ascii")}

    def serve_connection(self, conn: socket.socket) -> None:
        with conn:
            try:
                uid = _peer_uid(conn)
                line = conn.makefile("rb").readline(MAX_LINE)
                reply = {"ok": True, **self.handle(uid, json.loads(line or b"{}"))}
            except WorkbenchUserError as exc:
                reply = {"ok": False, "reason": exc.reason, "message": str(exc)}
            except (ValueError, OSError) as exc:
                reply = {"ok": False, "reason": "bad-request", "message": type(exc).__name__}
            except Exception as exc:  # never a traceback, never a value, to the caller
                log_fault(log, "review broker", exc)
                reply = {"ok": False, "reason": "internal", "message": type(exc).__name__}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply, default=str).encode() + b"\n")


def ask(space: Space, request: dict, timeout: float = 120) -> dict:
    """One request to the broker, from a dashboard server; a refusal is raised."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(broker_socket(space)))
        conn.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(conn.makefile("rb").readline() or b"{}")
    except OSError as exc:
        raise WorkbenchError(f"the review broker is not reachable ({type(exc).__name__}): "
                             "is the hub's review-broker service running?") from None
    finally:
        conn.close()
    if not reply.get("ok"):
        raise WorkbenchUserError(reply.get("message", "refused"),
                                 reason=reply.get("reason", "access-denied"))
    return reply


def bind(space: Space) -> socket.socket:
    """The broker's listening socket (a stale socket file is replaced): any dashboard server may
    ask; SO_PEERCRED decides what."""
    return bind_socket(broker_socket(space), 0o666)


def serve(space: Space, policy_file: str, listener: socket.socket | None = None) -> None:
    if not accounts.is_root():
        raise WorkbenchUserError("the review broker must run as root (it reads the provenance "
                                 "log and calls the airlock for the dashboards)",
                                 reason="not-root")
    broker = Broker(space, policy_file)
    listener = listener or bind(space)
    log.info("review broker ready on %s", broker_socket(space))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=broker.serve_connection, args=(conn,), daemon=True).start()


def start_review_broker(space: Space, policy_file: str | os.PathLike) -> ServiceProcess:
    """``workbench review broker`` as a child process (tests; the hub runs the same command as a
    managed service). The socket is bound here and handed over, so it answers (queued until
    the child accepts) as soon as this returns: no waiting for the child."""
    listener = bind(space)
    try:
        handle = start_service(
            "review broker",
            workbench_command("review", "broker", "--data-dir", str(space.root),
                              "--policy", str(policy_file), "--listen-fd", str(listener.fileno())),
            ready=lambda _handle: True, pass_fds=(listener.fileno(),))
    finally:
        listener.close()  # the child holds its own copy
    # removed when it stops (not given to start_service, which would remove it now as stale)
    handle.sockets = (broker_socket(space),)
    return handle

