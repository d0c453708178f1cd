"""What a dashboard shows, gathered on the trusted side (the review service, as root or the
collector's reader): release requests with evidence from the airlock, the producing cells and
reads from the provenance log, the log's verification, and for admins the policy and usage.

The snapshot holds aggregate outputs and code, never rows: the same things a reviewer is shown.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from workbench.paths import Space
from workbench.policy.access import decide
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP

TIMELINE_KINDS = ("cell-execution", "view-read", "he-operation", "he-decryption",
                  "release-request", "release-decision", "kernel-lifecycle", "server-spawn")
MAX_TIMELINE = 2000
CELLS_PER_REQUEST = 5


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def airlock_client(space: Space, actor: str) -> UnixHTTP:
    """The airlock as a trusted caller (root or another trusted uid) acting for ``actor``."""
    return UnixHTTP(airlock_socket(space), headers={"X-Workbench-Actor": actor})


def _summary(record) -> str:
    f = record.fields
    kind = record.kind
    if kind == "cell-execution":
        return f"cell {f.get('execution_count', '')} {f.get('status', '')}".strip()
    if kind == "view-read":
        return f"read {f.get('view')} ({f.get('rows', '?')} rows) {f.get('status', 'ok')}"
    if kind in ("he-operation", "he-decryption"):
        return f"{f.get('op', '')} {f.get('decision', f.get('view', ''))}".strip()
    if kind == "release-request":
        return f"request {f.get('request_id')} {f.get('status', '')}"
    if kind == "release-decision":
        return f"{f.get('decision')} {f.get('request_id')} by {f.get('reviewer')}"
    return f.get("event", "") or f.get("status", "")


def provenance_view(space: Space, study: str, requests: list[dict]) -> dict:
    """Timeline, verification, and per request the producing cells (code) and reads."""
    try:
        from workbench.provenance.reader import ProvenanceReader
    except ImportError:  # pragma: no cover - provenance is part of the package
        return {"available": False, "reason": "provenance reader not installed"}
    try:
        with ProvenanceReader(space) as reader:
            records = list(reader.records(study=study, kinds=TIMELINE_KINDS))
            report = reader.verify()
    except Exception as exc:  # the dashboard shows why, never crashes
        return {"available": False, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    timeline = [{"seq": r.seq, "id": r.id, "ts": r.ts, "kind": r.kind,
                 "user": r.fields.get("reviewer") or r.fields.get("user") or "",
                 "summary": _summary(r)} for r in records[-MAX_TIMELINE:]]
    producing = {}
    for req in requests:
        prov = req.get("evidence", {}).get("provenance", {})
        kernel, msg = prov.get("kernel_id"), prov.get("msg_id")
        cells = [r for r in records if r.kind == "cell-execution" and kernel
                 and r.fields.get("kernel_id") == kernel and r.ts <= req["created_at"]
                 .replace("+00:00", "Z")]
        exact = [r for r in cells if r.fields.get("msg_id") == msg]
        chosen = (cells[-CELLS_PER_REQUEST:] if not exact
                  else [r for r in cells if r.seq <= exact[-1].seq][-CELLS_PER_REQUEST:])
        reads = [r for r in records if r.kind in ("view-read", "he-decryption") and kernel
                 and r.fields.get("kernel_id") == kernel]
        producing[req["id"]] = {
            "cells": [{"id": r.id, "ts": r.ts, "user": r.fields.get("user"),
                       "msg_id": r.fields.get("msg_id"), "status": r.fields.get("status"),
                       "code": r.fields.get("code", "(code not recorded)")} for r in chosen],
            "reads": [{"id": r.id, "ts": r.ts, "kind": r.kind, "view": r.fields.get("view"),
                       "rows": r.fields.get("rows")} for r in reads],
        }
    return {"available": True, "timeline": timeline, "producing": producing,
            "verification": {"ok": report.ok, "summary": report.summary(),
                             "records": report.records, "signed_heads": report.signed_heads,
                             "unsigned_tail": report.unsigned_tail, "checked_at": _now()}}


def study_snapshot(space: Space, policy, study: str, viewer: str) -> dict:
    """Everything the study dashboards show to ``viewer`` (who must pass view-dashboard)."""
    allowed = decide(policy, viewer, "view-dashboard", study)
    snap = {"kind": "study", "study": study, "viewer": viewer, "generated_at": _now(),
            "allowed": bool(allowed), "reason": allowed.reason}
    if not allowed:
        return snap
    entry = policy.studies[study]
    airlock = airlock_client(space, viewer)
    try:
        summaries = airlock.json("GET", f"/requests?study={study}")
        requests = [airlock.json("GET", f"/requests/{s['id']}") for s in summaries]
        snap["airlock"] = {"available": True}
    except Exception as exc:
        requests = []
        snap["airlock"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    snap.update({
        "title": entry.title, "reviewers": list(entry.reviewers),
        "thresholds": entry.thresholds.model_dump(),
        "can_review": bool(decide(policy, viewer, "review-release", study)),
        "requests": requests,
        "provenance": provenance_view(space, study, requests),
    })
    return snap


def admin_snapshot(space: Space, policy_file: str | Path, viewer: str) -> dict:
    """Studies, members, expiry, policy validation, usage per holder, airlock queue sizes."""
    from workbench.policy import PolicyError, load_policy

    snap = {"kind": "admin", "viewer": viewer, "generated_at": _now(),
            "policy_file": str(policy_file)}
    try:
        policy = load_policy(policy_file)
        snap["policy_status"] = {"ok": True, "problems": []}
    except PolicyError as exc:
        snap["policy_status"] = {"ok": False, "problems": [str(p) for p in exc.problems]}
        return snap
    allowed = decide(policy, viewer, "admin", None)
    snap.update(allowed=bool(allowed), reason=allowed.reason)
    if not allowed:
        return snap
    today = date.today()
    snap["studies"] = [{
        "study": sid, "title": s.title, "members": list(s.members),
        "reviewers": list(s.reviewers), "views": list(s.views),
        "expires": s.expires.isoformat(), "days_left": (s.expires - today).days,
        "min_cell_count": s.thresholds.min_cell_count,
    } for sid, s in sorted(policy.studies.items())]
    snap["holders"] = {h: {"title": v.title, "kind": v.kind} for h, v in policy.holders.items()}
    try:
        from workbench.gateway.ledger import read_ledger, usage_report

        snap["usage"] = {"available": True, "rows": usage_report(read_ledger(space))}
    except Exception as exc:
        snap["usage"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    queue = {}
    try:
        for item in airlock_client(space, viewer).json("GET", "/requests"):
            counts = queue.setdefault(item["study"], {})
            counts[item["state"]] = counts.get(item["state"], 0) + 1
        snap["queue"] = {"available": True, "by_study": queue}
    except Exception as exc:
        snap["queue"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    return snap


def encode(snapshot: dict) -> str:
    import base64

    return base64.b64encode(json.dumps(snapshot, default=str).encode()).decode("ascii")
