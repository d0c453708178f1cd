"""THE access decision point. Every component (gateway, hub, secure ops, airlock, dashboards) asks
``decide``/``ensure_allowed``; nothing else grants anything. Deny by default: an action is allowed
only by one of the explicit rules below, and never in an expired or unknown study.

Actors are policy user names, or a study's kernel account (``wbk-<study>``), which the gateway
identifies by the peer uid of its socket and which acts for the study's members.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from workbench.accounts import study_kernel_user
from workbench.errors import WorkbenchUserError, did_you_mean
from workbench.policy.model import Policy

ACTIONS = (
    "read-view",        # pseudonymised rows of a granted view at visibility 'rows'
    "read-twin",        # description or synthetic twin of a granted view (any visibility)
    "secure-op",        # secure computation over a granted view (resource: view id)
    "spawn-server",     # start the study's Jupyter server
    "request-release",  # put an output into the airlock
    "review-release",   # approve or reject an output of the study
    "view-dashboard",   # reviewer dashboards of the study
    "admin",            # administer the space (study may be None)
)
_NEEDS_VIEW = {"read-view", "read-twin", "secure-op"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _how_to_ask(policy: Policy, study: str | None) -> str:
    admins = ", ".join(policy.admins()) or "the space's admin"
    where = f" for study '{study}'" if study else ""
    return f"To request access{where}, ask an admin ({admins}) to change the hub policy file."


def decide(policy: Policy, actor: str, action: str, study: str | None,
           resource: str | None = None, now: datetime | None = None) -> Decision:
    """May ``actor`` do ``action`` in ``study`` (on ``resource``, a view id for view actions)?"""
    if action not in ACTIONS:
        return Decision(False, f"unknown action '{action}'")
    is_admin = policy.has_role(actor, "admin")
    if action == "admin":
        if is_admin:
            return Decision(True, f"'{actor}' is an admin")
        return Decision(False, f"'{actor}' is not an admin. {_how_to_ask(policy, None)}")
    if study is None or study not in policy.studies:
        return Decision(False, f"there is no study '{study}' in the policy")
    entry = policy.studies[study]
    today = (now or datetime.now(UTC)).date()
    if today > entry.expires:
        return Decision(False, f"study '{study}' expired on {entry.expires.isoformat()}. "
                               f"{_how_to_ask(policy, study)}")
    is_member = actor in entry.members and policy.has_role(actor, "researcher")
    is_kernel = actor == study_kernel_user(study)
    is_reviewer = actor in entry.reviewers and policy.has_role(actor, "reviewer")

    if action in _NEEDS_VIEW:
        if not (is_member or is_kernel):
            return Decision(False, f"'{actor}' is not a member of study '{study}'. "
                                   f"{_how_to_ask(policy, study)}")
        if resource is None or resource not in entry.views:
            # the study's own grants only: whether another view exists is not said
            return Decision(False, f"study '{study}' is not granted the view '{resource}'"
                                   f"{did_you_mean(resource, entry.views)}. "
                                   f"{_how_to_ask(policy, study)}")
        if action == "read-view" and entry.visibility_of(resource) == "aggregates":
            # "usable but not visible": code is written on the twin, numbers come from wb.secure
            return Decision(False, f"study '{study}' sees view '{resource}' as aggregates only: "
                                   "wb.view returns its synthetic twin (no real row); real "
                                   "numbers come from wb.secure and leave through the airlock")
        return Decision(True, f"study '{study}' is granted view '{resource}'")
    if action == "spawn-server":
        ok = is_member
    elif action == "request-release":
        ok = is_member or is_kernel
    elif action == "review-release":
        ok = is_reviewer
    else:  # view-dashboard
        ok = is_reviewer or is_admin
    if ok:
        return Decision(True, f"'{actor}' may {action} in study '{study}'")
    return Decision(False, f"'{actor}' may not {action} in study '{study}'. "
                           f"{_how_to_ask(policy, study)}")


def view_read(policy: Policy, actor: str, study: str | None, view: str | None,
              now: datetime | None = None) -> str:
    """What a plain read of ``view`` returns to ``actor``: ``"rows"`` or ``"twin"`` (the view is
    granted at visibility ``aggregates``); raises like ``ensure_allowed`` when neither is
    allowed."""
    if decide(policy, actor, "read-view", study, view, now):
        return "rows"
    ensure_allowed(policy, actor, "read-twin", study, view, now)
    return "twin"


def ensure_allowed(policy: Policy, actor: str, action: str, study: str | None,
                   resource: str | None = None, now: datetime | None = None) -> Decision:
    """``decide`` or raise WorkbenchUserError(reason='access-denied') with the reason as message."""
    decision = decide(policy, actor, action, study, resource, now)
    if not decision.allowed:
        raise WorkbenchUserError(f"Access denied: {decision.reason}", reason="access-denied")
    return decision
