"""The two-person airlock (a security boundary): requests, disclosure evidence, reviewer
decisions and the outbox.

States::

    draft --(checks do not fail)--> submitted --approve--> reviewed --approve (2nd reviewer)-->
    approved --(differencing re-checked)--> released
    submitted/reviewed --reject--> rejected;  --return--> returned (the author sends a new request)
    submitted/reviewed/returned --withdraw (the requester)--> withdrawn
    returned/withdrawn --resubmit (the requester; the rules run again)--> submitted

Rules enforced here, each guarded by tests/release/test_airlock.py:
- every actor is checked by ``workbench.policy.access.ensure_allowed`` (request-release,
  review-release, view-dashboard) — deny by default;
- the author never reviews their own request, and two *different* reviewers must approve;
- every transition is written to the provenance collector *before* it is stored; if the
  collector is unreachable the transition does not happen (fail closed);
- the disclosure rules are run here on the deserialised output, never trusted from the kernel,
  and differencing is re-checked at release time against everything released since;
- a signed secure result is verified and its numbers rebuilt from the signature
  (``attested.py``, tests/release/test_attested.py); anything else is unverified and needs
  ``UNVERIFIED_APPROVALS`` whatever ``APPROVALS_NEEDED`` says (test_unverified.py);
- the author (the study kernel) sees rule names, how many cells each flagged and what to do,
  never the evidence's cells (``findings``; test_service.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.policy.access import decide, ensure_allowed
from workbench.release import rules
from workbench.release.attested import output_from_payload
from workbench.release.outputs import Output, released_table, rounded_fingerprint, with_data
from workbench.release.store import AirlockStore

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
MAX_DESCRIPTION = 4000
MAX_COMMENT = 4000
MAX_JUSTIFICATION = 4000
MAX_CONTROLS = 20  # disclosure controls the requester says they applied, each one short line
MAX_CONTROL = 200
MAX_COMMENTS = 200  # per request: a thread, not a chat
OPEN_STATES = ("submitted", "reviewed")
WITHDRAWABLE = ("submitted", "reviewed", "returned")
RESUBMITTABLE = ("returned", "withdrawn")
APPROVALS_NEEDED = 2
UNVERIFIED_APPROVALS = 2  # an unverified output never needs fewer, whatever the above becomes
AIRLOCK_ACTOR = "airlock"
RERUN_REASON = "rerun-not-submitted"  # the record of a re-run's release check (see check())
ROUNDED_TYPE = "rounded-values"  # output_type of the rounded fingerprint in release records


def airlock_dir(space: Space) -> Path:
    """The airlock's private state."""
    return space.airlock


def airlock_socket(space: Space) -> Path:
    return space.airlock_socket


@dataclass(frozen=True)
class Context:
    """Who is asking, as established by a trusted caller (gateway peer uid, hub OAuth)."""

    actor: str
    study: str | None = None
    kernel_id: str | None = None
    msg_id: str | None = None
    claimed_user: str | None = None  # who the kernel says ran the cell (a claim, not identity)
    # Set by the gateway for a `workbench rerun` kernel (its socket, not the kernel, decides):
    # requests are checked but never stored, and no decision is taken.
    dry_run: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def thresholds_for(policy, study: str) -> rules.Thresholds:
    """The study's thresholds exactly as its policy entry states them (one type for the
    airlock and the key holder: ``workbench.policy.model.Thresholds``)."""
    return policy.studies[study].thresholds


class PolicyFile:
    """The policy file, re-read when it changes so revocations apply at once; an unreadable or
    invalid file, or (once the space has admin keys) one not signed by an admin or older than
    one already in force, refuses everything (fail closed): ``workbench.policy.signed``."""

    def __init__(self, path: str | os.PathLike, space: Space):
        from workbench.policy.signed import ActivePolicy

        self.path = Path(path)
        self._source = ActivePolicy(self.path, space, "the airlock")

    def current(self):
        return self._source.current()


class Airlock:
    """One airlock per space. ``provenance`` is a ProvenanceClient-like object with
    ``append(kind, fields) -> id``; ``provenance_lookup(study, kernel_id, msg_id)`` (optional)
    returns ``{"cells": [...ids], "reads": [...ids]}`` for the evidence."""

    def __init__(self, space: Space, policy, provenance, provenance_lookup=None):
        self.space = space
        self._policy = policy  # a Policy, or a PolicyFile re-read when it changes
        self.provenance = provenance
        self.provenance_lookup = provenance_lookup
        directory = airlock_dir(space)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = AirlockStore(directory / "airlock.sqlite")
        self.outbox_fds: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def policy(self):
        return self._policy.current() if hasattr(self._policy, "current") else self._policy

    # -- provenance (fail closed) -------------------------------------------------------------
    def _record(self, kind: str, fields: dict) -> str:
        try:
            return str(self.provenance.append(kind, {k: v for k, v in fields.items()
                                                     if v is not None}))
        except WorkbenchUserError:
            raise
        except Exception as exc:  # any failure to record refuses the transition
            raise WorkbenchError(
                f"the provenance collector did not record the {kind}: nothing was changed "
                f"({type(exc).__name__})") from None

    # -- researcher side ----------------------------------------------------------------------
    def _validated(self, ctx: Context, payload: dict, name: str, description: str) -> Output:
        ensure_allowed(self.policy, ctx.actor, "request-release", ctx.study)
        if not isinstance(name, str) or not NAME.match(name):
            raise WorkbenchUserError(
                "the release name must be 1-80 letters, digits, '.', '_' or '-' "
                "(it becomes the file name), e.g. 'km_by_tki'", reason="bad-request")
        if not isinstance(description, str) or not description.strip():
            raise WorkbenchUserError("say in the description what the output shows and why it "
                                     "must leave the study", reason="bad-request")
        output = output_from_payload(payload, ctx.study, self.space)
        if output.kind == "figure" and isinstance(payload, dict) and payload.get("data"):
            # the numbers the figure draws, decoded (and verified when signed) like any output
            output = with_data(output, output_from_payload(payload["data"], ctx.study,
                                                           self.space))
        if output.view is not None and output.view not in self.policy.studies[ctx.study].views:
            raise WorkbenchUserError(
                f"study '{ctx.study}' is not granted the view '{output.view}'",
                reason="access-denied")
        return output

    def create(self, ctx: Context, payload: dict, name: str, description: str,
               justification: str | None = None, controls=None) -> dict:
        """Check an output and, unless a rule fails, submit it for review. In a dry-run context
        (a re-run kernel) the output is only checked: see ``check``. ``justification`` (why it
        must leave) and ``controls`` (the disclosure controls the requester applied, e.g.
        "rounded to 5", "groups under 10 merged") are the context the reviewers read, as
        OpenSAFELY's airlock asks for them: stored with the request, never in provenance."""
        if ctx.dry_run:
            return self.check(ctx, payload, name, description)
        study = ctx.study
        output = self._validated(ctx, payload, name, description)
        context = _request_context(justification, controls, ctx.claimed_user)
        description = description[:MAX_DESCRIPTION]
        request_id = f"rq-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
        with self._lock, self.store.transaction() as store:
            released = store.released_index(study, output.view)
            thresholds = thresholds_for(self.policy, study)
            verdict, results = rules.run_rules(output, thresholds, released)
            evidence = self._evidence(request_id, ctx, output, thresholds, verdict, results,
                                      released)
            evidence_text = json.dumps(evidence, sort_keys=True, default=str)
            payload_text = json.dumps(payload, sort_keys=True)
            at = _now()
            common = {
                "study": study, "user": ctx.actor, "request_id": request_id,
                "files": _digests(name, output, payload_text),
                "checks": [{"name": r.rule, "status": _prov_status(r.verdict)} for r in results],
                "kernel_id": ctx.kernel_id, "msg_id": ctx.msg_id, "output_kind": output.kind,
                "ref": _sha256(evidence_text.encode()),
            }
            failed = verdict == "fail"
            draft_id = self._record("release-request", {
                **common, "status": "denied" if failed else "ok",
                "reason": "disclosure-check-failed" if failed else "draft"})
            store.insert_request({
                "id": request_id, "study": study, "view": output.view, "name": name,
                "description": description, "author": ctx.actor, "kind": output.kind,
                "state": "draft", "verdict": verdict, "created_at": at, "updated_at": at,
                "payload": payload_text, "evidence": evidence_text,
                "context": json.dumps(context, sort_keys=True)})
            store.add_transition(request_id, None, "draft", ctx.actor, "create", "", at, draft_id)
            if not failed:
                sub_id = self._record("release-request", {**common, "status": "submitted"})
                store.set_state(request_id, "submitted", _now())
                store.add_transition(request_id, "draft", "submitted", ctx.actor, "submit", "",
                                     _now(), sub_id)
        return self.summary(request_id)

    def check(self, ctx: Context, payload: dict, name: str, description: str) -> dict:
        """A re-run's release request: the same validation and rules as ``create`` (differencing
        against what is released today), but nothing is stored and nobody is asked to review it.
        It is recorded (fail closed) as a ``release-request`` with status ``denied`` and reason
        ``rerun-not-submitted``, with the digest of the output and the rules' verdicts, so the
        re-run can compare them with the original request's record."""
        output = self._validated(ctx, payload, name, description)
        with self._lock:
            released = self.store.released_index(ctx.study, output.view)
        verdict, results = rules.run_rules(output, thresholds_for(self.policy, ctx.study),
                                           released)
        payload_text = json.dumps(payload, sort_keys=True)
        check_id = f"rerun-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
        payload_sha256 = _sha256(payload_text.encode())
        self._record("release-request", {
            "study": ctx.study, "user": ctx.actor, "request_id": check_id,
            "files": _digests(name, output, payload_text),
            "checks": [{"name": r.rule, "status": _prov_status(r.verdict)} for r in results],
            "kernel_id": ctx.kernel_id, "msg_id": ctx.msg_id, "output_kind": output.kind,
            "status": "denied", "reason": RERUN_REASON})
        return {"id": None, "check_id": check_id, "dry_run": True, "study": ctx.study,
                "view": output.view, "name": name, "kind": output.kind, "state": "not-submitted",
                "verdict": verdict, "payload_sha256": payload_sha256,
                "failed_rules": [r.rule for r in results if r.verdict == "fail"],
                "review_rules": [r.rule for r in results if r.verdict == "review"],
                "verified": output.attested is not None,
                "findings": findings([r.as_dict() for r in results])}

    def _evidence(self, request_id, ctx, output: Output, t, verdict, results, released) -> dict:
        from acro.version import __version__ as acro_version

        lookup = {}
        if self.provenance_lookup is not None:
            lookup = self.provenance_lookup(ctx.study, ctx.kernel_id, ctx.msg_id) or {}
        return {
            "request_id": request_id, "study": ctx.study, "view": output.view,
            "kind": output.kind, "verdict": verdict, "checked_by": "airlock",
            "checked_at": _now(), "acro_version": acro_version,
            "thresholds": {"min_cell_count": t.min_cell_count, "dominance_n": t.dominance_n,
                           "dominance_k": t.dominance_k, "p_percent": t.p_percent,
                           "min_dof": t.min_dof, "zeros_are_disclosive": t.zeros_are_disclosive},
            "rules": [r.as_dict() for r in results],
            "verified": output.attested is not None, "attestation": output.attested,
            "approvals_needed": approvals_needed(output.attested is not None),
            "counts": rules.count_cells(output),
            "compared_with": released.count,  # earlier releases of the study and view
            "claimed_user": ctx.claimed_user,
            "provenance": {"kernel_id": ctx.kernel_id, "msg_id": ctx.msg_id,
                           "cells": list(lookup.get("cells", [])),
                           "reads": list(lookup.get("reads", []))},
        }

    # -- reviewer side ------------------------------------------------------------------------
    def decide(self, ctx: Context, request_id: str, decision: str, comment: str = "") -> dict:
        """approve / reject / return a request; the second distinct approval releases it."""
        if ctx.dry_run:
            raise WorkbenchUserError("a re-run cannot decide release requests: decide in the "
                                     "study's review dashboard", reason="access-denied")
        if decision not in ("approve", "reject", "return"):
            raise WorkbenchUserError("a decision is 'approve', 'reject' or 'return'")
        comment = (comment or "").strip()[:MAX_COMMENT]
        if decision != "approve" and not comment:
            raise WorkbenchUserError(f"say why you {decision} the request: the author reads the "
                                     "comment", reason="bad-request")
        with self._lock, self.store.transaction() as store:
            row = self._row(request_id)
            ensure_allowed(self.policy, ctx.actor, "review-release", row["study"])
            if ctx.study is not None and ctx.study != row["study"]:
                raise WorkbenchUserError("this request belongs to another study",
                                         reason="access-denied")
            if ctx.actor == row["author"]:
                raise WorkbenchUserError("you wrote this request: someone else must review it",
                                         reason="own-request")
            state = row["state"]
            if state not in OPEN_STATES:
                raise WorkbenchUserError(
                    f"request {request_id} is {state}: only submitted or reviewed requests can be "
                    "decided", reason="bad-state")
            approvers = self._approvers(request_id)
            if decision == "approve" and ctx.actor in approvers:
                raise WorkbenchUserError("you already approved this request: a second, different "
                                         "reviewer must approve it", reason="same-reviewer")
            base = {"study": row["study"], "request_id": request_id, "reviewer": ctx.actor,
                    "user": row["author"], "ref": _sha256(row["evidence"].encode())}
            if decision == "approve":
                needed = approvals_needed(json.loads(row["evidence"]).get("verified", False))
                new_state = "approved" if len(approvers) + 1 >= needed else "reviewed"
                prov = self._record("release-decision", {**base, "decision": "approved",
                                                         "stage": new_state, "status": "ok"})
            else:
                new_state = "rejected" if decision == "reject" else "returned"
                prov = self._record("release-decision", {
                    **base, "decision": "rejected" if decision == "reject" else "changes-requested",
                    "stage": new_state, "status": "ok"})
            at = _now()
            store.set_state(request_id, new_state, at)
            store.add_transition(request_id, state, new_state, ctx.actor, decision, comment, at,
                                 prov)
            if new_state == "approved":
                self._release(store, self._row(request_id))
        return self.summary(request_id)

    def withdraw(self, ctx: Context, request_id: str, comment: str = "") -> dict:
        """The requester takes back an open or returned request: nobody decides it any more."""
        return self._requester_action(ctx, request_id, "withdraw", comment)

    def resubmit(self, ctx: Context, request_id: str, comment: str = "") -> dict:
        """A returned or withdrawn request back in the queue: the rules run again on the stored
        output (differencing against what was released since) and approvals start from none.
        Still failing, it stays where it is and the answer names the rules and the fix."""
        return self._requester_action(ctx, request_id, "resubmit", comment)

    def _requester_action(self, ctx: Context, request_id: str, action: str, comment) -> dict:
        if ctx.dry_run:
            raise WorkbenchUserError(f"a re-run cannot {action} release requests",
                                     reason="access-denied")
        comment = (comment if isinstance(comment, str) else "").strip()[:MAX_COMMENT]
        with self._lock, self.store.transaction() as store:
            row = self._row(request_id)
            if ctx.study is not None and ctx.study != row["study"]:
                raise WorkbenchUserError("this request belongs to another study",
                                         reason="access-denied")
            ensure_allowed(self.policy, ctx.actor, "request-release", row["study"])
            if ctx.actor != row["author"]:
                raise WorkbenchUserError(f"only the study that asked may {action} its request",
                                         reason="access-denied")
            state, allowed = row["state"], WITHDRAWABLE if action == "withdraw" else RESUBMITTABLE
            if state not in allowed:
                done = "withdrawn" if action == "withdraw" else "resubmitted"
                raise WorkbenchUserError(f"request {request_id} is {state}: only "
                                         f"{' or '.join(allowed)} requests can be {done}",
                                         reason="bad-state")
            base = {"study": row["study"], "request_id": request_id,
                    "ref": _sha256(row["evidence"].encode())}
            if action == "withdraw":
                new_state = "withdrawn"
                prov = self._record("release-decision", {
                    **base, "reviewer": ctx.actor, "user": row["author"],
                    "decision": "withdrawn", "stage": new_state, "status": "ok"})
            else:
                new_state = "submitted"
                prov = self._recheck(ctx, row, base)
            at = _now()
            store.set_state(request_id, new_state, at)
            store.add_transition(request_id, state, new_state, ctx.actor, action, comment, at,
                                 prov)
        return self.summary(request_id)

    def _recheck(self, ctx: Context, row: dict, base: dict) -> str:
        """The rules on a resubmitted request's stored output; its provenance id, or a refusal."""
        payload = json.loads(row["payload"])
        output = output_from_payload(payload, row["study"], self.space)
        released = self.store.released_index(row["study"], row["view"])
        verdict, results = rules.run_rules(output, thresholds_for(self.policy, row["study"]),
                                           released)
        failed = verdict == "fail"
        prov = self._record("release-request", {
            **base, "user": ctx.actor, "output_kind": output.kind,
            "files": _digests(row["name"], output, json.dumps(payload, sort_keys=True)),
            "checks": [{"name": r.rule, "status": _prov_status(r.verdict)} for r in results],
            "status": "denied" if failed else "submitted",
            "reason": "disclosure-check-failed" if failed else "resubmitted"})
        if failed:
            lines = [f"{f['rule']} ({f['cells']} cell(s)): {f['message']}"
                     for f in findings([r.as_dict() for r in results]) if f["verdict"] == "fail"]
            raise WorkbenchUserError(
                f"request {row['id']} still fails the checks, so it was not resubmitted: "
                + "; ".join(lines) + ". Fix the output and send a new request.",
                reason="bad-state")
        return prov

    def _release(self, store: AirlockStore, row: dict) -> None:
        """Re-check differencing against what was released meanwhile, then write the outbox."""
        output = output_from_payload(json.loads(row["payload"]), row["study"], self.space)
        released = store.released_index(row["study"], row["view"])
        thresholds = thresholds_for(self.policy, row["study"])
        cells = rules.count_cells(output)
        recheck = rules.differencing_rule(cells, released, thresholds) if cells else None
        base = {"study": row["study"], "request_id": row["id"], "reviewer": AIRLOCK_ACTOR,
                "user": row["author"], "ref": _sha256(row["evidence"].encode())}
        if recheck is not None and recheck.verdict == "fail":
            prov = self._record("release-decision", {
                **base, "decision": "rejected", "stage": "rejected", "status": "denied",
                "reason": "differencing", "checks": [{"name": "differencing", "status": "fail"}]})
            at = _now()
            store.set_state(row["id"], "rejected", at)
            store.add_transition(row["id"], "approved", "rejected", AIRLOCK_ACTOR, "recheck",
                                 "an output released since this request was checked makes it "
                                 "disclosive by differencing", at, prov)
            return
        files = self._files(row, output)
        digests = [{"sha256": _sha256(data), "size": len(data), "name": fname}
                   for fname, data in files]
        prov = self._record("release-decision", {
            **base, "decision": "released", "stage": "released", "status": "ok",
            "files": digests, "checks": [{"name": "differencing", "status": "pass"}]})
        self._write_outbox(row, files)
        at = _now()
        store.add_released(row["id"], row["study"], row["view"], cells, digests, at)
        store.set_state(row["id"], "released", at)
        store.add_transition(row["id"], "approved", "released", AIRLOCK_ACTOR, "release", "", at,
                             prov)

    def _files(self, row: dict, output: Output) -> list[tuple[str, bytes]]:
        name = row["name"]
        files: list[tuple[str, bytes]] = []
        if output.kind == "table":
            files.append((f"{name}.csv", released_table(output).to_csv(index=False).encode()))
        elif output.kind == "survival":
            import pandas as pd

            frames = [c.table.assign(group=c.group) for c in output.curves]
            files.append((f"{name}.csv", pd.concat(frames).to_csv(index=False).encode()))
        elif output.kind == "model":
            fit = output.model
            files.append((f"{name}.csv", fit.params.to_csv(index=False).encode()))
            files.append((f"{name}.model.json", json.dumps(
                {"family": fit.family, "n_obs": fit.n_obs, "n_params": fit.n_params,
                 "n_events": fit.n_events}, indent=2).encode()))
        else:
            files.append((f"{name}.{output.figure_format}", output.figure))
        files.append((f"{name}.evidence.json", row["evidence"].encode()))
        return files

    def _outbox_fd(self, study: str) -> int:
        """A directory fd of the study's outbox, made on first use: it lies in the airlock's own
        directory (0700), so a study added while the airlock runs needs neither root nor a
        restart. Files are then opened relative to it (O_NOFOLLOW)."""
        fd = self.outbox_fds.get(study)
        if fd is None:
            outbox = self.space.outbox(study)
            outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(outbox, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            self.outbox_fds[study] = fd
        return fd

    def _write_outbox(self, row: dict, files: list[tuple[str, bytes]]) -> None:
        outbox = self._outbox_fd(row["study"])
        try:
            os.mkdir(row["id"], 0o700, dir_fd=outbox)
        except FileExistsError:
            pass
        target = os.open(row["id"], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=outbox)
        try:
            for fname, data in files:
                fd = os.open(fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                             dir_fd=target)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
        finally:
            os.close(target)

    # -- reading ------------------------------------------------------------------------------
    def _row(self, request_id: str) -> dict:
        row = self.store.get(request_id) if isinstance(request_id, str) else None
        if row is None:
            raise WorkbenchUserError(f"there is no release request '{str(request_id)[:64]}'",
                                     reason="not-found")
        return row

    def _approvers(self, request_id: str) -> list[str]:
        """Who approved since the request was last (re)submitted."""
        approvers: list[str] = []
        for t in self.store.transitions(request_id):
            if t["action"] == "resubmit":
                approvers = []
            elif t["action"] == "approve":
                approvers.append(t["actor"])
        return approvers

    def summary(self, request_id: str) -> dict:
        """What the author (a study kernel) may see: states, rule names, how many cells each
        rule flagged and what to do; never a flagged label or count (see ``findings``)."""
        row = self._row(request_id)
        evidence = json.loads(row["evidence"])
        return {
            "id": row["id"], "study": row["study"], "view": row["view"], "name": row["name"],
            "description": row["description"], "author": row["author"], "kind": row["kind"],
            "state": row["state"], "verdict": row["verdict"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "approvals": self._approvers(request_id),
            "approvals_needed": evidence.get("approvals_needed",
                                             approvals_needed(evidence.get("verified", False))),
            "verified": evidence.get("verified", False),
            "failed_rules": [r["rule"] for r in evidence["rules"] if r["verdict"] == "fail"],
            "review_rules": [r["rule"] for r in evidence["rules"] if r["verdict"] == "review"],
            "findings": findings(evidence["rules"]),
            **json.loads(row.get("context") or "{}"),
        }

    def _can_see(self, actor: str, study: str) -> bool:
        return any(decide(self.policy, actor, action, study)
                   for action in ("request-release", "review-release", "view-dashboard"))

    def _reviews(self, actor: str, study: str) -> bool:
        return any(decide(self.policy, actor, action, study)
                   for action in ("review-release", "view-dashboard"))

    def list(self, ctx: Context, study: str | None = None, states=None) -> list[dict]:
        study = ctx.study or study
        studies = [study] if study else list(self.policy.studies)
        visible = [s for s in studies if self._can_see(ctx.actor, s)]
        if study and not visible:
            ensure_allowed(self.policy, ctx.actor, "view-dashboard", study)
        return [self.summary(r["id"]) for s in visible
                for r in self.store.list(s, tuple(states) if states else None)]

    def detail(self, ctx: Context, request_id: str) -> dict[str, Any]:
        """Everything a reviewer sees: summary, evidence, the output itself, the history."""
        row = self._row(request_id)
        if ctx.study is not None and ctx.study != row["study"]:
            raise WorkbenchUserError("this request belongs to another study",
                                     reason="access-denied")
        if not self._can_see(ctx.actor, row["study"]):
            ensure_allowed(self.policy, ctx.actor, "view-dashboard", row["study"])
        comments = self.store.comments(request_id)
        if not self._reviews(ctx.actor, row["study"]):  # the author: no evidence cells
            released = self.store.released_row(request_id)
            return {**self.summary(request_id), "transitions": self.store.transitions(request_id),
                    "comments": comments, "released": None if released is None else {
                        k: v for k, v in released.items() if k != "cells"}}
        return {**self.summary(request_id), "evidence": json.loads(row["evidence"]),
                "payload": json.loads(row["payload"]), "comments": comments,
                "transitions": self.store.transitions(request_id),
                "released": self.store.released_row(request_id)}

    def comment(self, ctx: Context, request_id: str, body: str) -> dict:
        """Add to a request's comment thread: its reviewers and its requester (the study kernel
        that sent it, with the person it claims) may write; the text stays in the airlock, the
        provenance record holds its digest (a comment may quote a number; a record never does).
        Recorded before it is stored (fail closed)."""
        if ctx.dry_run:
            raise WorkbenchUserError("a re-run cannot comment on release requests",
                                     reason="access-denied")
        body = body.strip() if isinstance(body, str) else ""
        if not body:
            raise WorkbenchUserError("write the comment's text", reason="bad-request")
        if len(body) > MAX_COMMENT:
            raise WorkbenchUserError(f"a comment is at most {MAX_COMMENT} characters: shorten it",
                                     reason="bad-request")
        with self._lock, self.store.transaction() as store:
            row = self._row(request_id)
            if ctx.study is not None and ctx.study != row["study"]:
                raise WorkbenchUserError("this request belongs to another study",
                                         reason="access-denied")
            if ctx.actor == row["author"]:
                role, claimed = "requester", ctx.claimed_user
            else:
                ensure_allowed(self.policy, ctx.actor, "review-release", row["study"])
                role, claimed = "reviewer", None
            if len(store.comments(request_id)) >= MAX_COMMENTS:
                raise WorkbenchUserError(f"request {request_id} already has {MAX_COMMENTS} "
                                         "comments: decide it or send a new request",
                                         reason="bad-state")
            prov = self._record("release-comment", {
                "study": row["study"], "request_id": request_id, "user": ctx.actor,
                "claimed_user": claimed, "role": role, "status": "ok",
                "ref": _sha256(body.encode())})
            store.add_comment(request_id, ctx.actor, claimed, role, body, _now(), prov)
        return {"id": request_id, "comments": self.store.comments(request_id)}

    def download(self, ctx: Context, request_id: str, filename: str) -> bytes:
        """A released file, for the study's members and reviewers only."""
        row = self._row(request_id)
        allowed = any(decide(self.policy, ctx.actor, a, row["study"])
                      for a in ("request-release", "review-release"))
        if not allowed or (ctx.study is not None and ctx.study != row["study"]):
            raise WorkbenchUserError(
                f"Access denied: only members and reviewers of study '{row['study']}' may "
                "download its released files", reason="access-denied")
        released = self.store.released_row(request_id)
        names = {f["name"]: f for f in (released or {}).get("files", [])}
        if row["state"] != "released" or filename not in names:
            raise WorkbenchUserError(f"request {request_id} has no released file '{filename[:80]}'",
                                     reason="not-found")
        target = os.open(row["id"], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                         dir_fd=self._outbox_fd(row["study"]))
        try:
            fd = os.open(filename, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=target)
        finally:
            os.close(target)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        if _sha256(data) != names[filename]["sha256"]:
            raise WorkbenchError(f"released file {filename} of {request_id} was altered on disk")
        return data


def _request_context(justification, controls, claimed_user: str | None) -> dict:
    """What the requester says about the request: why it must leave, the disclosure controls
    they applied, and who they claim to be (the kernel's word: the acting account is the study
    kernel's; the audit proxy's record of the producing cell names the person)."""
    if justification is not None and not isinstance(justification, str):
        raise WorkbenchUserError("the justification is text: say why the output must leave the "
                                 "study", reason="bad-request")
    if controls is None:
        controls = []
    if isinstance(controls, str):
        controls = [controls]
    if (not isinstance(controls, list) or len(controls) > MAX_CONTROLS
            or not all(isinstance(c, str) and 0 < len(c.strip()) <= MAX_CONTROL
                       for c in controls)):
        raise WorkbenchUserError(
            f"controls is a list of at most {MAX_CONTROLS} short lines (up to {MAX_CONTROL} "
            "characters each), e.g. ['counts rounded to 5', 'groups under 10 merged']",
            reason="bad-request")
    return {"justification": (justification or "").strip()[:MAX_JUSTIFICATION],
            "controls": [c.strip() for c in controls],
            "claimed_user": (claimed_user or "")[:64] or None}


def findings(rules_: list[dict]) -> list[dict]:
    """Each rule that did not pass, as the author may see it: its name, verdict, how many cells
    it flagged and its message (thresholds and what to do; rule messages hold no values)."""
    return [{"rule": r["rule"], "verdict": r["verdict"],
             "cells": sum(1 for c in r.get("cells") or [] if c.get("verdict") != "pass"),
             "message": r["message"]}
            for r in rules_ if r["verdict"] != "pass"]


def approvals_needed(verified: bool) -> int:
    """Two reviewers for every release; an unverified output (numbers on the kernel's word)
    never fewer than ``UNVERIFIED_APPROVALS``, even if the general rule were relaxed."""
    return APPROVALS_NEEDED if verified else max(APPROVALS_NEEDED, UNVERIFIED_APPROVALS)


def _digests(name: str, output: Output, payload_text: str) -> list[dict]:
    """What a release-request record says about the output: the digest of the request as sent
    and the digest of its numbers rounded to 4 significant digits (``rounded_fingerprint``), so a
    re-run can compare outputs without any value in the log."""
    rounded, size = rounded_fingerprint(output)
    return [{"sha256": _sha256(payload_text.encode()), "size": len(payload_text),
             "name": f"{name}.request.json", "output_type": output.kind},
            {"sha256": rounded, "size": size, "name": f"{name}.rounded.json",
             "output_type": ROUNDED_TYPE}]


def _prov_status(verdict: str) -> str:
    return {"pass": "pass", "fail": "fail", "review": "manual"}[verdict]
