"""What a dashboard shows, gathered on the trusted side (the review service, as root or the
collector's reader): release requests with evidence from the airlock, the producing cells and
reads from the provenance log, the log's verification, and for admins the policy and usage.

The producing code and reads come from the audit proxy's own records, never from the kernel and
message ids the kernel put in its release request (it sets them and could name any cell): the
airlock's record of the request fixes *when* it arrived in the log, and the cell that was running
in one of the study's kernels at that moment (its ``submitted`` record before, its completion
after) is the producing cell. Only records the audit proxy wrote count (writer root or the study
server's account, for a kernel the provisioner recorded as the study kernel account's); a
dashboard kernel's cells never do. When no cell or several were running, the reviewer is told so
plainly, and a claim that disagrees with the records is shown as such.
Guarded by tests/review/test_snapshot.py.

The snapshot holds aggregate outputs and code, never rows: the same things a reviewer is shown.
"""

from __future__ import annotations

import json
import pwd
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.policy.access import decide
from workbench.provenance.reader import ProvenanceRecord
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP

TIMELINE_KINDS = ("cell-execution", "view-read", "he-operation", "he-decryption",
                  "release-request", "release-decision", "release-comment", "review-view",
                  "kernel-lifecycle", "server-spawn")
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
    if kind == "release-comment":
        return f"comment on {f.get('request_id')} by the {f.get('role')}"
    if kind == "review-view":
        return f"dashboard visit {f.get('status', '')}".strip()
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
    executions = study_executions(records, study)
    producing = {req["id"]: producing_cells(
        records, executions, req["id"], req.get("evidence", {}).get("provenance", {}))
        for req in requests}
    return {"available": True, "timeline": timeline, "producing": producing,
            "verification": {"ok": report.ok, "summary": report.summary(),
                             "records": report.records, "signed_heads": report.signed_heads,
                             "unsigned_tail": report.unsigned_tail, "checked_at": _now()}}


@dataclass
class Execution:
    """One execute_request (a cell) in a study kernel, as the audit proxy recorded it."""

    kernel_id: str
    msg_id: str
    submitted: ProvenanceRecord
    completed: ProvenanceRecord | None = None

    def running_at(self, seq: int) -> bool:
        return self.submitted.seq < seq and (self.completed is None or self.completed.seq > seq)


def study_executions(records, study: str) -> list[Execution]:
    """The study kernels' cells, from the audit proxy's records only: written by root or the
    study server's account, in a kernel whose start the provisioner recorded with the study
    kernel account's uid (a dashboard kernel runs as another account and is left out)."""
    trusted = {"root", accounts.study_server_user(study)}
    try:
        kernel_uid = pwd.getpwnam(accounts.study_kernel_user(study)).pw_uid
    except KeyError:  # never created: no study kernel ever ran here
        return []
    kernels = {r.fields.get("kernel_id") for r in records
               if r.kind == "kernel-lifecycle" and r.writer.get("user") in trusted
               and r.fields.get("event") in ("start", "restart")
               and r.fields.get("uid") == kernel_uid}
    found: dict[tuple[str, str], Execution] = {}
    for r in records:
        if (r.kind != "cell-execution" or r.writer.get("user") not in trusted
                or r.fields.get("kernel_id") not in kernels):
            continue
        if r.fields.get("reason"):
            # a comm or input message (a widget's state, typed input), not a cell: its record
            # names its type, holds no code, and the proxy records no completion for it, so it
            # would look like a cell running for ever and make every later request ambiguous
            continue
        key = (r.fields["kernel_id"], r.fields.get("msg_id", ""))
        if r.fields.get("status") == "submitted":
            found.setdefault(key, Execution(*key, submitted=r))
        elif key in found and found[key].completed is None:
            found[key].completed = r
    return sorted(found.values(), key=lambda e: e.submitted.seq)


def _cell(e: Execution) -> dict:
    r = e.submitted
    return {"id": r.id, "ts": r.ts, "user": r.fields.get("user"), "kernel_id": e.kernel_id,
            "msg_id": e.msg_id, "status": (e.completed or r).fields.get("status"),
            "code": r.fields.get("code", "(code not recorded)")}


def producing_cells(records, executions: list[Execution], request_id: str,
                    claimed: dict) -> dict:
    """The cell that was running in a study kernel when the airlock recorded ``request_id``,
    with that kernel's earlier cells and the reads made while they ran. ``claimed``: the
    kernel and message ids the kernel put in its request, only ever compared with the records.
    ``status``: ``resolved``, ``ambiguous`` (several cells were running) or ``not-found``."""
    arrival = next((r for r in records if r.kind == "release-request"
                    and r.writer.get("user") in ("root", accounts.AIRLOCK)
                    and r.fields.get("request_id") == request_id), None)
    claim = {"kernel_id": claimed.get("kernel_id"), "msg_id": claimed.get("msg_id")}
    if arrival is None:
        return {"status": "not-found", "claimed": claim, "cells": [], "reads": [],
                "note": "the provenance log holds no record of this request's arrival, so the "
                        "cell that produced it is not known"}
    running = [e for e in executions if e.running_at(arrival.seq)]
    if not running:
        return {"status": "not-found", "claimed": claim, "cells": [], "reads": [],
                "note": "no cell of this study's kernels was running when the request arrived "
                        "(per the audit proxy's records), so the code that produced it is not "
                        "known"}
    if len(running) > 1:
        return {"status": "ambiguous", "claimed": claim, "cells": [_cell(e) for e in running],
                "reads": [],
                "note": f"{len(running)} cells of this study's kernels were running when the "
                        "request arrived: any of them may have produced it"}
    producer = running[0]
    earlier = [e for e in executions if e.kernel_id == producer.kernel_id
               and e.submitted.seq <= producer.submitted.seq][-CELLS_PER_REQUEST:]
    reads = [r for r in records if r.kind in ("view-read", "he-decryption")
             and r.seq < arrival.seq and any(e.running_at(r.seq) for e in earlier)]
    # a claim the kernel did not make (no id sent) is no disagreement
    actual = {"kernel_id": producer.kernel_id, "msg_id": producer.msg_id}
    disagree = [k for k, v in claim.items() if v is not None and v != actual[k]]
    matches = not disagree
    claimed = " of ".join(f"{what} {claim[k]}" for k, what in (("msg_id", "cell"),
                                                             ("kernel_id", "kernel")) if claim[k])
    note = ("" if matches else f"the kernel claimed {claimed}; the audit proxy's records show "
            f"cell {producer.msg_id} of kernel {producer.kernel_id}")
    return {"status": "resolved", "claimed": claim, "claim_matches": matches, "note": note,
            # who ran the producing cell: the hub's signed-in user, as the audit proxy recorded
            "requester": producer.submitted.fields.get("user"),
            "cells": [_cell(e) for e in earlier],
            "reads": [{"id": r.id, "ts": r.ts, "kind": r.kind, "view": r.fields.get("view"),
                       "rows": r.fields.get("rows"),
                       # another kernel of the study was running too: the read may be its
                       "shared": any(e.running_at(r.seq) for e in executions
                                     if e.kernel_id != producer.kernel_id)} for r in reads]}


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
    # the catalog is read once, and only when a request carries a verified result
    views = _catalog_views(space) if any((r.get("evidence") or {}).get("verified")
                                         for r in requests) else {}
    for request in requests:
        request["time_label"] = _time_label(views, request)
    snap.update({
        "title": entry.title, "reviewers": list(entry.reviewers),
        "thresholds": entry.thresholds.model_dump(),
        "can_review": bool(decide(policy, viewer, "review-release", study)),
        "requests": requests,
        "provenance": provenance_view(space, study, requests),
    })
    return snap


def _catalog_views(space: Space) -> dict:
    from workbench.catalog.store import Catalog

    try:
        return Catalog.load(space).views
    except (OSError, ValueError):  # no catalog here: labels fall back to the column's name
        return {}


def _time_label(views: dict, request: dict) -> str:
    """The time axis of a survival output's figure as the researcher's plot labels it (the
    catalog's description of the duration column), when its numbers carry the release
    checker's verified signature, whose spec names the column; else plain "time"."""
    from workbench.secure.results import format_time_label, time_column

    if not (request.get("evidence") or {}).get("verified"):
        return "time"
    payload = request.get("payload") or {}
    view, column = time_column(payload.get("attestation")
                                or (payload.get("data") or {}).get("attestation"))
    if column is None:
        return "time"
    info = views[view].column(column) if view in views else None
    return format_time_label(column, getattr(info, "description", None),
                             getattr(info, "granularity", None))


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
    try:  # what the services check too: the admins' signature (workbench.policy.signed)
        from workbench.policy.signed import load_admin_keys, read_signed, verify_policy

        keys = load_admin_keys(space)
        if keys:
            record = verify_policy(*read_signed(Path(policy_file)), keys)
            snap["policy_status"]["signed"] = {"serial": record["serial"],
                                               "key_id": record["key_id"]}
    except WorkbenchUserError as exc:
        snap["policy_status"] = {"ok": False, "problems": [f"{exc} [{exc.reason}]"]}
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
    try:  # the recorded policy changes (workbench policy apply), newest first
        from workbench.policy.changes import history

        snap["policy_history"] = {"available": True, "rows": history(space)[:100]}
    except Exception as exc:
        snap["policy_history"] = {"available": False,
                                  "reason": f"{type(exc).__name__}: {exc}"[:300]}
    from workbench.node.keygen import key_status

    snap["he_key"] = key_status(space, policy)
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
