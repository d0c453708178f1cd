"""A reviewer's queues for the hub's home page: each study they review, how many of its release
requests wait for a decision, and the link to its release queue.

Called by the hub (``template_vars``) on every render of the home page, so it re-reads the
policy and asks the airlock afresh: a decision taken in a dashboard shows in the counts at the
next visit. The hub is a trusted caller of the airlock (root); the airlock applies the policy
to the reviewer itself. A slow or absent airlock costs the page at most ``TIMEOUT`` and shows
the queues without counts rather than failing the page.
"""

from __future__ import annotations

from collections import Counter

from workbench.errors import WorkbenchError
from workbench.paths import Space
from workbench.policy.access import decide
from workbench.release.airlock import OPEN_STATES, airlock_socket
from workbench.review.services import SHARED_SERVICE

TIMEOUT = 3.0


def queue_path(study: str) -> str:
    """The study's release queue in the shared review service, relative to the proxy's prefix
    (study ids are URL-safe: a-z, 0-9 and '-')."""
    return f"services/{SHARED_SERVICE}/voila/render/release_queue.ipynb?study={study}"


def pending_counts(space: Space, user: str) -> dict[str, int]:
    """{study: open requests} over the studies the airlock lets ``user`` see."""
    from workbench.unixhttp import UnixHTTP

    client = UnixHTTP(airlock_socket(space), timeout=TIMEOUT,
                      headers={"X-Workbench-Actor": user})
    query = "&".join(f"state={s}" for s in OPEN_STATES)
    return Counter(r["study"] for r in client.json("GET", f"/requests?{query}"))


def review_queues(policy, space: Space, user: str) -> dict:
    """``{"queues": [{id, title, pending, path}], "counts": bool, "reason": str}`` for the
    studies ``user`` may review (empty for everyone else)."""
    studies = [(sid, s) for sid, s in sorted(policy.studies.items())
               if decide(policy, user, "review-release", sid)]
    if not studies:
        return {"queues": [], "counts": True, "reason": ""}
    try:
        counts, reason = pending_counts(space, user), ""
    except (OSError, WorkbenchError) as exc:
        counts, reason = None, f"the airlock did not answer ({type(exc).__name__})"
    return {"queues": [{"id": sid, "title": s.title, "path": queue_path(sid),
                        "pending": None if counts is None else counts.get(sid, 0)}
                       for sid, s in studies],
            "counts": counts is not None, "reason": reason}
