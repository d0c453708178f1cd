"""The dashboard kernel's side: the injected snapshot and how decisions travel.

In a Voila dashboard the review service injects, as the notebook's first cell,
``review.load_snapshot(<base64 JSON>)``. Decisions then go to the kernel's one socket,
``/run/gateway.sock``: the decision relay of :mod:`workbench.review.relay`, which knows the
reviewer and the study of this visit. The kernel holds no token or key: it says which request and
which decision, nothing about who. ``WORKBENCH_REVIEW_DIRECT=1`` (trusted processes and tests)
builds the snapshot in-process and talks to the airlock socket directly.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field

from workbench.errors import WorkbenchUserError

_LOADED: dict = {}


def load_snapshot(encoded: str) -> None:
    _LOADED["snapshot"] = json.loads(base64.b64decode(encoded))


class RelayActions:
    """Decisions from a sandboxed dashboard kernel, through its decision relay."""

    def _request(self, method: str, path: str, payload: dict | None = None):
        from workbench.release.http import UnixHTTP

        socket_path = os.environ.get("WORKBENCH_GATEWAY_SOCKET", "/run/gateway.sock")
        try:
            return UnixHTTP(socket_path, timeout=60).json(method, "/release" + path, payload)
        except OSError as exc:
            raise WorkbenchUserError(
                f"decisions are not possible from this dashboard ({type(exc).__name__}: no "
                "decision relay); reload the page, or ask the space's admin",
                reason="relay-unavailable") from None

    def decide(self, request_id: str, decision: str, comment: str) -> dict:
        return self._request("POST", f"/requests/{request_id}/decision",
                             {"decision": decision, "comment": comment})

    def comment(self, request_id: str, text: str) -> dict:
        return self._request("POST", f"/requests/{request_id}/comments", {"comment": text})

    def snapshot(self) -> dict:
        return self._request("GET", "/snapshot")["snapshot"]


class DirectActions:
    """Decisions from a trusted process: the airlock socket, acting for ``actor``."""

    def __init__(self, space, actor: str):
        from workbench.review.snapshot import airlock_client

        self.space, self.actor = space, actor
        self.http = airlock_client(space, actor)

    def decide(self, request_id: str, decision: str, comment: str) -> dict:
        return self.http.json("POST", f"/requests/{request_id}/decision",
                              {"decision": decision, "comment": comment})

    def comment(self, request_id: str, text: str) -> dict:
        return self.http.json("POST", f"/requests/{request_id}/comments", {"comment": text})

    def snapshot(self) -> dict:
        from workbench.policy import load_policy
        from workbench.review.snapshot import study_snapshot

        return study_snapshot(self.space, load_policy(os.environ["WORKBENCH_POLICY"]),
                              os.environ["WORKBENCH_STUDY"], self.actor)


@dataclass
class ReviewContext:
    snapshot: dict
    actions: object | None = None
    log: list[str] = field(default_factory=list)

    @property
    def study(self) -> str | None:
        return self.snapshot.get("study")

    def decide(self, request_id: str, decision: str, comment: str = "") -> dict:
        if self.actions is None:
            raise WorkbenchUserError("decisions are not possible from this dashboard",
                                     reason="access-denied")
        summary = self.actions.decide(request_id, decision, comment)
        for req in self.snapshot.get("requests", []):
            if req["id"] == request_id:
                req.update({k: summary[k] for k in ("state", "approvals", "updated_at")
                            if k in summary})
        self.log.append(f"{decision} {request_id}: now {summary.get('state')}")
        return summary

    def _actions(self):
        if self.actions is None:
            raise WorkbenchUserError("this dashboard cannot act", reason="access-denied")
        return self.actions

    def comment(self, request_id: str, text: str) -> list[dict]:
        """Add the reviewer's comment to a request's thread; returns the thread."""
        thread = self._actions().comment(request_id, text)["comments"]
        for req in self.snapshot.get("requests", []):
            if req["id"] == request_id:
                req["comments"] = thread
        self.log.append(f"comment {request_id}")
        return thread

    def refresh(self) -> None:
        """A fresh snapshot (after a decision, the queue shows what the airlock now holds)."""
        self.snapshot = self._actions().snapshot()


def context() -> ReviewContext:
    """The dashboard's data and actions (see the module docstring)."""
    if "snapshot" in _LOADED:
        return ReviewContext(_LOADED["snapshot"], RelayActions())
    if os.environ.get("WORKBENCH_REVIEW_DIRECT") == "1":
        from workbench.paths import Space
        from workbench.policy import load_policy
        from workbench.review.snapshot import admin_snapshot, study_snapshot

        space = Space.at(None)
        viewer = os.environ["WORKBENCH_REVIEW_USER"]
        policy_file = os.environ["WORKBENCH_POLICY"]
        study = os.environ.get("WORKBENCH_STUDY")
        if study:
            snap = study_snapshot(space, load_policy(policy_file), study, viewer)
        else:
            snap = admin_snapshot(space, policy_file, viewer)
        return ReviewContext(snap, DirectActions(space, viewer))
    raise WorkbenchUserError("no dashboard data: open this dashboard through the hub's review "
                             "service", reason="no-snapshot")
