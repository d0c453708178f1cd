"""``wb.release``: ask for an output to leave the study.

    req = wb.release.request(km, "km_by_tki", "Kaplan-Meier of progression by TKI, 30-day bins",
                             justification="figure 2 of the paper", controls=["coarsened to k"])
    req                     # verdict of the automatic disclosure checks, state of the request
    wb.release.status(req.id)
    wb.release.comment(req.id, "the 30-day bins follow the protocol")   # the reviewers read it

The kernel is untrusted: this module only serialises the output (Arrow, JSON, PNG/SVG bytes) and
sends it through the study's gateway to the airlock, which re-runs every check itself, stores the
request and waits for two reviewers. Nothing here decides anything. In a ``workbench rerun``
kernel the gateway marks the request as a dry run: the airlock checks it and answers with
``dry_run: True`` and no id, and nothing is stored.
"""

from __future__ import annotations

import html
from typing import Any

from workbench.release.helpers import coarsen_survival, magnitude_table

__all__ = ["coarsen_survival", "comment", "magnitude_table", "request", "requests", "status"]

GATEWAY_PREFIX = "/release"


class ReleaseRequest(dict):
    """The airlock's answer: id, state, verdict, failed rules. Shown as a short report."""

    @property
    def id(self) -> str | None:
        return self.get("id")  # None for a re-run's check, which creates no request

    @property
    def state(self) -> str:
        return self["state"]

    def __repr__(self) -> str:
        if self.get("dry_run"):
            lines = [f"release check '{self.get('name')}' in a re-run: not submitted to the "
                     f"airlock (checks: {self.get('verdict')})"]
        else:
            lines = [f"release request {self.get('id')} '{self.get('name')}': "
                     f"{self.get('state')} (checks: {self.get('verdict')})"]
        findings = self.get("findings")
        if findings is None:  # an airlock that sends rule names only
            findings = [{"rule": r, "verdict": "fail"} for r in self.get("failed_rules") or []]
            findings += [{"rule": r, "verdict": "review"} for r in self.get("review_rules") or []]
        if any(f["verdict"] == "fail" for f in findings):
            lines.append("  failed (fix the output and request again; the request stays a draft):")
        lines += [_finding(f) for f in findings if f["verdict"] == "fail"]
        if any(f["verdict"] == "review" for f in findings):
            lines.append("  for the reviewers to judge:")
        lines += [_finding(f) for f in findings if f["verdict"] == "review"]
        if self.get("approvals") is not None and self.get("state") in ("submitted", "reviewed"):
            lines.append(f"  approvals: {len(self['approvals'])} of "
                         f"{self.get('approvals_needed', 2)}")
        if self.get("comments"):  # the thread with the reviewers (wb.release.comment answers)
            lines.append("  comments:")
            lines += [f"    {_commenter(c)} ({c['role']}, {c['at'][:16]}): {c['body']}"
                      for c in self["comments"]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"


def _commenter(c: dict) -> str:
    """A reviewer by name; the requester as the person the kernel named, else its account."""
    return (c.get("claimed_user") or c["actor"]) if c["role"] == "requester" else c["actor"]


def _finding(f: dict) -> str:
    cells = f" ({f['cells']} cell(s))" if f.get("cells") else ""
    message = f": {f['message']}" if f.get("message") else ""
    return f"    {f['rule']}{cells}{message}"


def _call(method: str, path: str, payload: dict | None = None) -> Any:
    from workbench.client import request_json

    return request_json(method, GATEWAY_PREFIX + path, payload)


def request(obj: Any, name: str, description: str, *, view: str | None = None,
            counts: list[str] | None = None, data=None, justification: str | None = None,
            controls: list[str] | None = None) -> ReleaseRequest:
    """Ask for ``obj`` to be released as ``name``.

    ``obj``: a pandas DataFrame (a table of counts or statistics), a Kaplan-Meier fit
    (``wb.secure`` or lifelines), a model fit (``wb.secure`` Cox/logistic, lifelines, statsmodels)
    or a figure (matplotlib figure, PNG or SVG bytes). ``view``: the view it was computed from
    (differencing is checked against that view's earlier releases). ``counts``: which columns of
    a table are counts of people (guessed from integer columns and names like ``n`` otherwise).
    ``data``: for a figure, the numbers it draws (a table, a Kaplan-Meier fit, a model); a
    figure without them is refused, and they must pass the same rules as if released alone.
    ``justification``: why the output must leave the study; ``controls``: the disclosure
    controls you applied (e.g. ``["coarsened with coarsen_survival(k=10)"]``). The reviewers
    read both, as OpenSAFELY's airlock asks for context and controls.
    """
    from workbench.release.serialize import to_payload

    payload = to_payload(obj, view=view, counts=counts, data=data)
    body = {"name": name, "description": description, "payload": payload,
            "justification": justification,
            "controls": [controls] if isinstance(controls, str) else list(controls or [])}
    return ReleaseRequest(_call("POST", "/requests", body))


def comment(request_id: str, text: str) -> list[dict]:
    """Add to a request's comment thread (its reviewers answer there); returns the thread."""
    return _call("POST", f"/requests/{request_id}/comments", {"comment": text})["comments"]


def status(request_id: str) -> ReleaseRequest:
    """The current state of one of the study's requests."""
    if request_id is None:  # the id of a re-run's check (dry run): nothing was stored
        from workbench.errors import WorkbenchUserError

        raise WorkbenchUserError("a re-run only checks release requests: no request was made, "
                                 "so there is no status to show.", reason="not-found")
    detail = _call("GET", f"/requests/{request_id}")
    return ReleaseRequest({k: v for k, v in detail.items() if k not in ("payload", "evidence")})


def requests() -> list[ReleaseRequest]:
    """Every release request of this study."""
    return [ReleaseRequest(r) for r in _call("GET", "/requests")]
