"""Hub groups and RBAC roles derived from the policy file.

Studies become groups (``<study>``: its researchers, ``<study>-reviewers``: its output checkers);
the policy stays the authority: the spawner asks the access decision point at every start, so a
group edited in the hub's admin page grants nothing by itself.

Scopes are the least each role needs (no blanket hub admin, no shares):
- every user: read their own user model and servers;
- researchers: start, stop and use *their own* servers (``servers!user``, ``access:servers!user``);
- reviewers: nothing on servers; their dashboards are services with their own access scopes;
- admins: users, groups and servers administration and the admin page, but not
  ``access:servers`` (that would be code execution in a researcher's server) nor ``tokens``.
"""

from __future__ import annotations

from workbench.policy.model import Policy

USER_SCOPES = ["read:users!user", "read:servers!user", "users:activity!user"]
RESEARCHER_SCOPES = ["servers!user", "access:servers!user", "read:users!user",
                     "users:activity!user"]
ADMIN_SCOPES = ["admin-ui", "list:users", "read:users", "admin:users", "admin:groups",
                "admin:servers", "read:roles", "read:hub", "list:services", "read:services"]
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
CULLER_SERVICE = "idle-culler"


def reviewers_group(study: str) -> str:
    return f"{study}-reviewers"


def groups(policy: Policy) -> dict[str, dict]:
    """``c.JupyterHub.load_groups`` from the policy's studies."""
    loaded: dict[str, dict] = {}
    for study_id, study in sorted(policy.studies.items()):
        properties = {"study": study_id, "expires": study.expires.isoformat()}
        loaded[study_id] = {"users": sorted(study.members),
                            "properties": {**properties, "role": "researcher"}}
        loaded[reviewers_group(study_id)] = {"users": sorted(study.reviewers),
                                             "properties": {**properties, "role": "reviewer"}}
    return loaded


def roles(policy: Policy) -> list[dict]:
    """``c.JupyterHub.load_roles``: the built-in ``user`` role narrowed, plus researchers,
    admins and the idle culler."""
    return [
        {"name": "user", "description": "Every signed-in user: their own user model only.",
         "scopes": USER_SCOPES},
        {"name": "workbench-researcher",
         "description": "Researchers: start and use their own study servers.",
         "scopes": RESEARCHER_SCOPES, "groups": sorted(policy.studies)},
        {"name": "workbench-admin",
         "description": "Admins: users, groups and servers, never access to a server.",
         "scopes": ADMIN_SCOPES, "users": policy.admins()},
        {"name": "idle-culler", "description": "Stops idle study servers.",
         "scopes": CULLER_SCOPES, "services": [CULLER_SERVICE]},
    ]
