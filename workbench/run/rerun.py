"""``workbench rerun``: re-execute a study's logged cells and compare their outputs with the log.

The cells come from the provenance log (``cell-execution`` records carry the code); they are
replayed in log order, one fresh sealed kernel per logged kernel session (a kernel restart starts
a new session), through the same sandbox and audit proxy, so the replay's output digests are
computed by the same code as the originals'. Each cell is then:

- ``match``: same status and the same output digests, in order;
- ``stale``: it read a view (``view-read`` / ``he-operation`` records of the cell) whose version
  differs from the catalog's today, or it follows a stale cell in its session and its outputs
  differ: the difference is explained by changed data. Unless ``current=True``, a cell whose
  changed views the holder nodes still keep the versions of (``run/versions.py``) is replayed
  on those versions instead (``run/pins.py``: the gateway's re-run socket asks the nodes for
  them) and compared like any other: ``match`` when its outputs are the original's, with the
  versions in ``recreated``;
- ``differs``: outputs or status differ with unchanged data: the cell is not reproducible
  (time, randomness without a seed, memory addresses ...); shown, never hidden;
- ``unverifiable``: the original has no completion record (its kernel died, the cell was aborted).

The replay's own records are marked (``notebook_path`` = ``workbench-rerun``) and are never
replayed themselves.

Release requests are not sent again: the replay's kernels are given the gateway's re-run socket
(``SandboxProvisioner.rerun``), whose release route makes the airlock only *check* a request (same
rules, nothing stored, recorded as a ``release-request`` with reason ``rerun-not-submitted``). A
cell whose original made release requests is compared by those records instead of its output
digests (its output shows the request's random id): the output's digest and the rules' verdicts
of each check must equal the original request's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError
from workbench.gateway import rerun_socket
from workbench.paths import Space
from workbench.policy import load_policy
from workbench.policy.access import decide, ensure_allowed
from workbench.provenance.reader import ProvenanceReader
from workbench.release.airlock import RERUN_REASON, ROUNDED_TYPE
from workbench.release.outputs import FINGERPRINT_DIGITS
from workbench.run.headless import first_line
from workbench.run.kernel import run_user, sandbox_kernel_manager
from workbench.run.pins import clear_pins, write_pins
from workbench.services import socket_answers, space_services

Echo = Callable[[str], None]
RERUN_SESSION = "workbench-rerun"
CELL_TIMEOUT = 1800.0
EXIT_OK, EXIT_DIFFERS, EXIT_STALE = 0, 1, 3


@dataclass
class LoggedCell:
    record_id: str  # the submitted record (it holds the code)
    seq: int
    kernel_id: str
    msg_id: str
    user: str
    code: str
    completion: dict | None = None  # fields of the completion record
    completion_id: str | None = None
    views: dict = field(default_factory=dict)  # view -> version it read
    releases: list[dict] = field(default_factory=list)  # the release requests it made


@dataclass
class CellResult:
    record_id: str
    kernel_id: str
    first_line: str
    status: str  # match | stale | differs | unverifiable
    detail: str = ""
    views: dict = field(default_factory=dict)
    releases: list[dict] = field(default_factory=list)  # per original request: not re-submitted
    ran_on: dict = field(default_factory=dict)  # stale view -> {holder: node version} it read
    recreated: dict = field(default_factory=dict)  # view -> {holder: kept version} replayed on


@dataclass
class RerunReport:
    study: str
    cells: list[CellResult]

    def count(self, status: str) -> int:
        return sum(1 for c in self.cells if c.status == status)

    @property
    def exit_code(self) -> int:
        if self.count("differs") or self.count("unverifiable"):
            return EXIT_DIFFERS
        if self.count("stale"):
            return EXIT_STALE
        return EXIT_OK

    def as_dict(self) -> dict:
        return {"study": self.study, "exit_code": self.exit_code,
                "counts": {s: self.count(s) for s in ("match", "stale", "differs",
                                                      "unverifiable")},
                "release_requests_not_resubmitted": sum(
                    1 for c in self.cells for r in c.releases if r.get("request")),
                "cells": [asdict(c) for c in self.cells]}

    def summary(self) -> str:
        lines = []
        for n, cell in enumerate(self.cells, start=1):
            if cell.status != "match" or cell.releases or cell.recreated:
                lines.append(f"  cell {n} [{cell.record_id[:12]}] {cell.status}: "
                             f"{cell.first_line}\n      {cell.detail}")
        counts = self.as_dict()["counts"]
        verdict = {EXIT_OK: "reproduced", EXIT_STALE: "stale: data changed since the run",
                   EXIT_DIFFERS: "NOT reproduced"}[self.exit_code]
        lines.append(f"rerun of study '{self.study}': {len(self.cells)} cells, "
                     + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" - {verdict}")
        return "\n".join(lines)


# -- what the log says ----------------------------------------------------------------------------
def view_version(catalog: Catalog, view_id: str) -> str | None:
    """The view's current version, computed as the view engine computes it (definition + the
    version of every dataset it reads); guarded by tests/run against ViewEngine.versions."""
    view = catalog.views.get(view_id)
    if view is None:
        return None
    parts = [view.model_dump_json()]
    for table in sorted(view.tables):
        parts += [f"{d.id}={d.version}" for d in catalog.holders_of(table)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def logged_sessions(reader: ProvenanceReader, study: str) -> list[list[LoggedCell]]:
    """The study's executed cells, grouped into kernel sessions, in log order."""
    sessions: dict[tuple[str, int], list[LoggedCell]] = {}
    generation: dict[str, int] = {}  # kernel_id -> restarts seen so far
    by_id: dict[str, LoggedCell] = {}
    by_msg: dict[str, LoggedCell] = {}
    for record in reader.records(study=study, kinds=["cell-execution", "kernel-lifecycle",
                                                     "view-read", "he-operation",
                                                     "release-request"]):
        fields = record.fields
        if record.kind == "release-request":
            cell = by_msg.get(fields.get("msg_id", ""))
            if cell is not None and fields.get("reason") != RERUN_REASON and \
                    fields.get("request_id") not in {r["request_id"] for r in cell.releases}:
                cell.releases.append(_release_fields(fields))  # its first record: the check
            continue
        if record.kind == "kernel-lifecycle":
            if fields.get("event") == "restart" and fields.get("status") == "ok":
                kernel = fields.get("kernel_id", "")
                generation[kernel] = generation.get(kernel, 0) + 1
            continue
        if record.kind in ("view-read", "he-operation"):
            cell = by_msg.get(fields.get("msg_id", ""))
            if cell is not None and fields.get("view") and fields.get("view_version"):
                cell.views[fields["view"]] = fields["view_version"]
            continue
        if fields.get("notebook_path") == RERUN_SESSION or fields.get("reason"):
            continue  # the replays' own records; comm / input records carry no code
        if fields.get("status") == "submitted" and "code" in fields:
            kernel = fields.get("kernel_id", "")
            cell = LoggedCell(record.id, record.seq, kernel, fields.get("msg_id", ""),
                              fields.get("user", ""), fields["code"])
            sessions.setdefault((kernel, generation.get(kernel, 0)), []).append(cell)
            by_id[record.id] = cell
            by_msg[cell.msg_id] = cell
        elif fields.get("ref") in by_id:
            cell = by_id[fields["ref"]]
            cell.completion, cell.completion_id = fields, record.id
    return [cells for _, cells in sorted(sessions.items(), key=lambda kv: kv[1][0].seq)]


def _release_fields(fields: dict) -> dict:
    """What a release-request record says about the output: which request, its digests (exact,
    and of its numbers rounded, see ``rounded_fingerprint``) and the verdict of each rule (never
    a count)."""
    files = fields.get("files") or [{}]
    rounded = next((f.get("sha256") for f in files if f.get("output_type") == ROUNDED_TYPE), None)
    return {"request_id": fields.get("request_id", ""),
            "name": str(files[0].get("name", "")).removesuffix(".request.json"),
            "sha256": files[0].get("sha256", ""), "rounded": rounded,
            "checks": fields.get("checks", [])}


def cut_at(sessions: list[list[LoggedCell]], until: str) -> list[list[LoggedCell]]:
    """Sessions up to and including the cell whose submitted or completion record is ``until``."""
    kept = []
    for cells in sessions:
        for n, cell in enumerate(cells):
            if until in (cell.record_id, cell.completion_id):
                kept.append(cells[: n + 1])
                return kept
        kept.append(cells)
    raise WorkbenchUserError(f"no logged cell of this study has the record id {until[:64]}; list "
                             "them with 'workbench provenance log --study STUDY'.",
                             reason="no-such-record")


# -- replay ----------------------------------------------------------------------------------------
async def _execute(kc, code: str) -> str:
    """Send one cell, wait until the kernel is idle again and the reply came; return its msg_id."""
    msg_id = kc.execute(code, allow_stdin=False, stop_on_error=False)
    deadline = time.monotonic() + CELL_TIMEOUT
    idle = replied = False
    while not (idle and replied):
        if time.monotonic() > deadline:
            raise WorkbenchUserError("a replayed cell ran longer than 30 minutes.",
                                     reason="rerun-timeout")
        if not idle:
            msg = await kc.get_iopub_msg(timeout=CELL_TIMEOUT)
            idle = (msg["parent_header"].get("msg_id") == msg_id
                    and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle")
        else:
            msg = await kc.get_shell_msg(timeout=CELL_TIMEOUT)
            replied = msg["parent_header"].get("msg_id") == msg_id
    return msg_id


async def _replay(km, cells: list[LoggedCell], before=None) -> list[str]:
    await km.start_kernel(env={"JPY_SESSION_NAME": RERUN_SESSION}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        msg_ids = []
        for cell in cells:
            if before is not None:
                before(cell)  # the kept versions this cell reads (root's pins)
            msg_ids.append(await _execute(kc, cell.code))
        return msg_ids
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=False)


def _completions(space: Space, study: str, msg_ids: list[str],
                 timeout: float = 30.0) -> tuple[dict, dict]:
    """The replay's completion records (written by the audit proxy just after each reply) and
    the airlock's records of its release checks, by msg_id (those are written before the airlock
    answers, so before the cell completes)."""
    wanted = set(msg_ids)
    deadline = time.monotonic() + timeout
    while True:
        found: dict = {}
        checks: dict[str, list[dict]] = {}
        with ProvenanceReader(space) as reader:
            for r in reader.records(study=study, kinds=["cell-execution", "release-request"]):
                msg_id = r.fields.get("msg_id")
                if msg_id not in wanted:
                    continue
                if r.kind == "release-request" and r.fields.get("reason") == RERUN_REASON:
                    checks.setdefault(msg_id, []).append(_release_fields(r.fields))
                elif r.kind == "cell-execution" and r.fields.get("ref"):
                    found[msg_id] = r.fields
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found, checks
        time.sleep(0.2)


def _outputs(fields: dict | None) -> list[tuple[str, str]]:
    return [(o.get("output_type", ""), o.get("sha256", "")) for o in (fields or {}).get("outputs",
                                                                                        [])]


def _compare(cell: LoggedCell, replay: dict | None, current: dict, after_stale: bool,
             checks: list[dict] | None = None, pins: dict | None = None) -> CellResult:
    result = CellResult(cell.record_id, cell.kernel_id, first_line(cell.code), "match",
                        views=dict(cell.views))
    pins = pins or {}
    result.recreated = {v: dict(pin["holders"]) for v, pin in sorted(pins.items())}
    changed = sorted(v for v, version in cell.views.items()
                     if current.get(v) != version and v not in pins)
    checks = checks or []
    if cell.releases or checks:
        result.releases = _compare_releases(cell.releases, checks)
    if cell.completion is None:
        result.status, result.detail = "unverifiable", "the original run left no completion record"
        return result
    if replay is None:
        result.status, result.detail = "unverifiable", "the replay left no completion record"
        return result
    same_status = cell.completion.get("status") == replay.get("status")
    if result.releases:  # the output shows each request's random id: compare the requests
        same = same_status and all(r["same"] for r in result.releases)
        why = "" if same_status else (f"status {cell.completion.get('status')} then, "
                                      f"{replay.get('status')} now")
    else:
        before, after = _outputs(cell.completion), _outputs(replay)
        same = before == after and same_status
        why = "" if same else _difference(cell.completion, replay, before, after)
    if changed:
        result.status = "stale"
        result.detail = (f"read {', '.join(changed)}, whose data changed since the run"
                         + ("; outputs still match" if same else "; outputs differ"))
    elif pins and same:
        result.detail = "re-created on the kept versions it ran on: " + "; ".join(
            f"{v}: " + ", ".join(f"{h} version {i}" for h, i in sorted(hs.items()))
            for v, hs in result.recreated.items()) + "; outputs match the original's"
    elif not same:
        if after_stale:
            result.status, result.detail = "stale", "outputs differ after a stale cell"
        else:
            result.status, result.detail = "differs", why
    if result.releases:
        result.detail = "; ".join(p for p in (result.detail, _release_detail(result.releases))
                                  if p)
    return result


def _compare_releases(originals: list[dict], checks: list[dict]) -> list[dict]:
    """Pair the original requests with the replay's checks, in order."""
    out = []
    for n in range(max(len(originals), len(checks))):
        original = originals[n] if n < len(originals) else None
        check = checks[n] if n < len(checks) else None
        entry = {"request": original and original["request_id"],
                 "name": (original or check)["name"], "resubmitted": False,
                 "check": check and check["request_id"]}
        if original is None:
            entry.update(same=False, note="the re-run asked for a release the original did not")
        elif check is None:
            entry.update(same=False, note="the re-run did not ask for this release again")
        else:
            identical = original["sha256"] == check["sha256"]
            close = identical or (original["rounded"] is not None
                                  and original["rounded"] == check["rounded"])
            same_checks = original["checks"] == check["checks"]
            output = ("same output" if identical else
                      f"same output to {FINGERPRINT_DIGITS} significant digits (not "
                      "bit-identical)" if close else "output differs")
            entry.update(same=close and same_checks, note=f"{output}, " + (
                "same rule verdicts" if same_checks else "rule verdicts differ"))
        out.append(entry)
    return out


def _release_detail(releases: list[dict]) -> str:
    parts = []
    for r in releases:
        what = f"release request {r['request']} '{r['name']}'" if r["request"] \
            else f"release '{r['name']}'"
        checked = f", checked in the re-run ({r['check']})" if r["check"] else ""
        parts.append(f"{what} not re-submitted{checked}: {r['note']}")
    return "; ".join(parts)


def _difference(original: dict, replay: dict, before: list, after: list) -> str:
    if original.get("status") != replay.get("status"):
        return f"status {original.get('status')} then, {replay.get('status')} now"
    if len(before) != len(after):
        return f"{len(before)} outputs then, {len(after)} now (not deterministic?)"
    kinds = sorted({b[0] for b, a in zip(before, after, strict=True) if b != a})
    return (f"{', '.join(kinds)} output differs with unchanged data: not deterministic "
            "(time, unseeded randomness, object addresses?)")


def rerun_study(space: Space, policy_path: str | os.PathLike, study: str, until: str | None = None,
                user: str | None = None, echo: Echo = print,
                current_data: bool = False) -> RerunReport:
    """Replay the logged cells of ``study`` and compare them with the log (see module doc);
    ``current_data``: on today's data even where the nodes keep the versions it ran on."""
    policy = load_policy(policy_path)
    with ProvenanceReader(space) as reader:
        sessions = logged_sessions(reader, study)
    if until:
        sessions = cut_at(sessions, until)
    sessions = [cells for cells in sessions if cells]
    if not sessions:
        raise WorkbenchUserError(f"study '{study}' has no logged cells to re-run.",
                                 reason="nothing-to-rerun")
    run_as = user or sessions[0][0].user
    if not decide(policy, run_as, "admin", None):  # admins may audit any study
        ensure_allowed(policy, run_as, "spawn-server", study)
    catalog = Catalog.load(space)
    current = {view: view_version(catalog, view) for cells in sessions for c in cells
               for view in c.views}
    results: list[CellResult] = []
    found_versions: dict = {}
    total = sum(len(cells) for cells in sessions)
    echo(f"re-running {total} logged cells of study '{study}' in {len(sessions)} fresh "
         f"kernel session(s) as {run_as}")
    with space_services(space, policy_path, echo), run_user(run_as):
        if not socket_answers(rerun_socket(space, study)):
            raise WorkbenchUserError(
                f"the running gateway has no re-run socket for study '{study}' (it predates "
                "them), so a re-run could send release requests again; restart the gateway.",
                reason="rerun-unavailable")
        for number, cells in enumerate(sessions, start=1):
            echo(f"session {number}/{len(sessions)}: {len(cells)} cells "
                 f"(logged kernel {cells[0].kernel_id[:8]})")
            pins = {} if current_data else {
                c.record_id: _pins(space, catalog, c, current, found_versions) for c in cells}
            try:
                with sandbox_kernel_manager(space, study, rerun=True) as km:
                    msg_ids = asyncio.run(_replay(km, cells, lambda c, pins=pins:
                                                  write_pins(space, study,
                                                             pins.get(c.record_id))))
            finally:
                clear_pins(space, study)
            replays, checks = _completions(space, study, msg_ids)
            after_stale = False
            for cell, msg_id in zip(cells, msg_ids, strict=True):
                result = _compare(cell, replays.get(msg_id), current, after_stale,
                                  checks.get(msg_id), pins.get(cell.record_id))
                after_stale = after_stale or result.status == "stale"
                _where_it_ran(space, catalog, cell, current, result, found_versions)
                echo(f"  [{len(results) + 1}/{total}] {result.status:<12} {result.first_line}")
                results.append(result)
    return RerunReport(study, results)


def _pins(space: Space, catalog: Catalog, cell: LoggedCell, current: dict,
          cache: dict) -> dict:
    """view -> {"holders": kept versions, "view_version"} for each view of ``cell`` whose data
    changed and whose versions the holder nodes still keep (none: replayed on today's data)."""
    from workbench.run.versions import ran_on

    pins = {}
    for view, version in sorted(cell.views.items()):
        if current.get(view) == version:
            continue
        if (view, version) not in cache:
            cache[view, version] = ran_on(space, catalog, view, version)
        if cache[view, version]:
            pins[view] = {"holders": cache[view, version], "view_version": version}
    return pins


def _where_it_ran(space: Space, catalog: Catalog, cell: LoggedCell, current: dict,
                  result: CellResult, cache: dict) -> None:
    """For a cell stale because a view's data changed: the holders' kept dataset versions it
    read (workbench/run/versions.py), so the holder can serve the study that data again."""
    from workbench.run.versions import describe, ran_on

    for view, version in sorted(cell.views.items()):
        if result.status != "stale" or current.get(view) == version:
            continue
        if (view, version) not in cache:
            cache[view, version] = ran_on(space, catalog, view, version)
        result.ran_on[view] = cache[view, version]
        result.detail += f"; {view}: {describe(cache[view, version])}"


def report_json(report: RerunReport) -> str:
    return json.dumps(report.as_dict(), indent=2)
