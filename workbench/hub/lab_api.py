"""The researcher's panels in JupyterLab (``labextension/``): their server side, a Jupyter server
extension of the study server, and the catalog facts the hub hands that server at each spawn.

Routes, under the server's base URL, each behind the server's own Jupyter auth (the hub user
whose server this is; POSTs carry the XSRF token as every JupyterLab call does)::

    GET  workbench/api/study                      study, title, visibility, expiry (the policy)
    GET  workbench/api/catalog                    granted views: columns, sensitivity, quality,
                                                  certificate status
    GET  workbench/api/requests                   the study's release requests, with reviewer
                                                  comments; the user's own marked
    POST workbench/api/requests/{id}/withdraw     {comment}
    POST workbench/api/requests/{id}/resubmit     {comment}

Where the facts come from, given what the server's account (``wbs-<study>``) may read:
- the policy file is world-readable: study, expiry and grants are read live (a revocation shows at
  the next call);
- the catalog and the holders' data are the gateway's (0750/0700) and the gateway's study socket
  answers only the kernel account, so the hub (root) writes the granted views' descriptions into
  the server's root-owned config dir at every spawn (``write_catalog_snapshot``), recorded first
  as a ``view-read`` (operation ``catalog-panel``) like any description the gateway serves; no
  record, no snapshot (fail closed). Views granted since the spawn are listed without details;
- the airlock takes a study server's connection as its study's kernel account
  (``workbench.release.server``): the server sees and does what its kernels already may through
  the gateway (their requests, authors' views without evidence cells; withdraw, resubmit), no
  more, and says which person acts (``X-Workbench-User``, its hub user, as a claim).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space

SNAPSHOT = "workbench-catalog.json"  # in the study server's JUPYTER_CONFIG_DIR (root-owned)
_REQUEST_ID = r"rq-[A-Za-z0-9-]{1,64}"
MAX_REQUESTS = 50  # the newest shown in the panel (one airlock call each); wb.release lists all


# -- at spawn, as root --------------------------------------------------------------------------
def catalog_snapshot(space: Space, views: tuple[str, ...]) -> dict:
    """The public description of each granted view, as ``wb.describe`` gives it (columns with
    sensitivity, whether they are plaintext, their role) and, per contributing holder, its tables,
    their lowest quality score and whether their ownership certificates verify against the held
    data."""
    from workbench.catalog import certificates
    from workbench.catalog.store import Catalog

    catalog = Catalog.load(space)
    verified: dict[str, str] = {}  # views share datasets: each certificate checked once
    described = []
    for view_id in views:
        view = catalog.views.get(view_id)
        if view is None:
            continue  # granted but not in this space's catalog: listed as unavailable
        plain = set(view.plaintext_columns)
        datasets = [d for t in view.tables for d in catalog.holders_of(t)]
        described.append({
            "id": view.id, "title": view.title, "description": view.description,
            "columns": [{"name": c.name, "type": c.type, "description": c.description,
                         "sensitivity": c.sensitivity, "plaintext": c.name in plain,
                         "role": c.role} for c in view.columns],
            "holders": [_holder_facts(holder, [d for d in datasets if d.holder == holder],
                                      lambda d: _certificate_status(space, certificates, d,
                                                                    verified))
                        for holder in sorted({d.holder for d in datasets})]})
    return {"as_of": datetime.now(UTC).isoformat(timespec="seconds"), "views": described}


def _holder_facts(holder: str, datasets: list, certificate_status) -> dict:
    """One holder's part of a view: its tables, their lowest quality score and how many
    ownership certificates verify, are invalid or are missing."""
    status = [certificate_status(d.id) for d in datasets]
    return {"holder": holder, "tables": sorted(d.table for d in datasets),
            "quality_min": min(d.quality_score for d in datasets),
            "certificates": {s: status.count(s) for s in ("valid", "invalid", "missing")
                             if s in status}}


def _certificate_status(space: Space, certificates, dataset_id: str, known: dict) -> str:
    if dataset_id not in known:
        path = space.catalog / "certificates" / f"{dataset_id}.json"
        try:
            certificates.verify(space, path)
            known[dataset_id] = "valid"
        except WorkbenchUserError as exc:  # what differs: 'workbench catalog verify' says
            known[dataset_id] = "missing" if exc.reason == "no-file" else "invalid"
    return known[dataset_id]


def write_catalog_snapshot(space: Space, study_id: str, study, user: str,
                           config_dir: Path) -> None:
    """Record, then write, the catalog panel's facts for ``user``'s server of ``study_id``. If the
    catalog cannot be read or the read cannot be recorded, the file says so and holds nothing."""
    from workbench.provenance.client import ProvenanceClient

    target = Path(config_dir) / SNAPSHOT
    try:
        snapshot = catalog_snapshot(space, tuple(study.views))
        client = ProvenanceClient(space.collector_socket)
        try:
            for view in snapshot["views"]:
                body = json.dumps(view, sort_keys=True).encode()
                client.append("view-read", {
                    "study": study_id, "view": view["id"], "user": user, "status": "ok",
                    "operation": "catalog-panel", "format": "json",
                    "result_sha256": hashlib.sha256(body).hexdigest(),
                    "result_size": len(body)})
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - the panel says so; the server still starts
        snapshot = {"views": [], "unavailable": f"the catalog could not be read and recorded "
                                                f"at server start ({type(exc).__name__}); "
                                                "restart the server or tell the admin"}
    text = json.dumps(snapshot, sort_keys=True)
    target.write_text(text)
    os.chmod(target, 0o644)
    if os.geteuid() == 0:
        os.chown(target, 0, 0)


# -- in the study server ------------------------------------------------------------------------
def _policy():
    from workbench.policy import load_policy

    return load_policy(os.environ["WORKBENCH_POLICY"])


def _study_id() -> str:
    return os.environ["WORKBENCH_STUDY"]


class _Handler(APIHandler):
    """One JSON error shape: {"error": {"reason", "message"}}, never a traceback."""

    def fail(self, status: int, reason: str, message: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": {"reason": reason, "message": message}}))

    async def call(self, function, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(None, function, *args)
        except WorkbenchUserError as exc:
            status = {"not-found": 404, "access-denied": 403, "bad-state": 409}.get(exc.reason, 400)
            self.fail(status, exc.reason, str(exc))
        except (WorkbenchError, OSError) as exc:
            self.log.warning("workbench lab api: %s", type(exc).__name__)
            self.fail(503, "unavailable", "the airlock or the policy cannot be reached just now; "
                      "try again in a minute or tell the space's admin")
        return None

    @property
    def user_name(self) -> str:
        user = self.current_user
        return getattr(user, "username", None) or getattr(user, "name", None) or str(user)


def study_summary(user: str) -> dict:
    study_id = _study_id()
    study = _policy().studies.get(study_id)
    if study is None:
        raise WorkbenchUserError(f"study '{study_id}' is no longer in the policy",
                                 reason="not-found")
    levels = study.visibilities()
    return {"study": study_id, "title": study.title, "user": user,
            "expires": study.expires.isoformat(),
            "days_left": (study.expires - date.today()).days,
            "visibility": levels, "views": list(study.views)}


def catalog_panel() -> dict:
    study = _policy().studies.get(_study_id())
    granted = list(study.views) if study else []
    path = Path(os.environ.get("JUPYTER_CONFIG_DIR", "")) / SNAPSHOT
    try:
        snapshot = json.loads(path.read_text())
    except (OSError, ValueError):
        snapshot = {"views": [], "unavailable": "no catalog snapshot for this server: restart "
                                                "it from the hub home page"}
    levels = study.visibilities() if study else {}
    views = [{**v, "visibility": levels.get(v["id"], "rows")}
             for v in snapshot.get("views", []) if v["id"] in granted]  # revoked: gone at once
    described = {v["id"] for v in views}
    return {"as_of": snapshot.get("as_of"), "views": views,
            "unavailable": snapshot.get("unavailable"),
            "without_details": [v for v in granted if v not in described]}


def _airlock(user: str):
    from workbench.release.airlock import airlock_socket
    from workbench.release.http import UnixHTTP

    space = Space.at(os.environ.get("WORKBENCH_DATA_DIR"))
    return UnixHTTP(airlock_socket(space), timeout=60, headers={"X-Workbench-User": user})


def list_requests(user: str) -> dict:
    client = _airlock(user)
    summaries = client.json("GET", "/requests")
    summaries = sorted(summaries, key=lambda r: r.get("created_at", ""), reverse=True)
    shown = []
    for summary in summaries[:MAX_REQUESTS]:
        detail = client.json("GET", f"/requests/{summary['id']}")
        shown.append({**summary, "mine": summary.get("claimed_user") in (None, user),
                      "comments": _comments(detail)})
    return {"study": _study_id(), "user": user, "requests": shown,
            "more": max(0, len(summaries) - MAX_REQUESTS)}


def _comments(detail: dict) -> list[dict]:
    """Reviewers' decision comments and the requester's (withdraw, resubmit) from the request's
    history, and its comment thread, oldest first. The requester acts as the study's kernel
    account, so it is named by its role."""
    def who(actor: str) -> str:
        return "requester" if actor == detail.get("author") else actor

    out = [{"who": who(t["actor"]), "action": t["action"], "text": t["comment"], "at": t["at"]}
           for t in detail.get("transitions", []) if t.get("comment")]
    out += [{"who": c.get("claimed_user") or who(c["actor"]), "action": "comment",
             "text": c["body"], "at": c["at"]}
            for c in detail.get("comments", [])]
    return sorted(out, key=lambda c: c["at"])


def act_on_request(user: str, request_id: str, action: str, comment: str) -> dict:
    return _airlock(user).json("POST", f"/requests/{request_id}/{action}", {"comment": comment})


class StudyHandler(_Handler):
    @web.authenticated
    async def get(self):
        result = await self.call(study_summary, self.user_name)
        if result is not None:
            self.finish(json.dumps(result))


class CatalogHandler(_Handler):
    @web.authenticated
    async def get(self):
        result = await self.call(catalog_panel)
        if result is not None:
            self.finish(json.dumps(result))


class RequestsHandler(_Handler):
    @web.authenticated
    async def get(self):
        result = await self.call(list_requests, self.user_name)
        if result is not None:
            self.finish(json.dumps(result, default=str))


class ActionHandler(_Handler):
    @web.authenticated
    async def post(self, request_id: str, action: str):
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("comment", ""), str):
            return self.fail(400, "bad-request", 'the body is {"comment": "..."}')
        result = await self.call(act_on_request, self.user_name, request_id, action,
                                 body.get("comment", ""))
        if result is not None:
            self.finish(json.dumps(result, default=str))


def _jupyter_server_extension_points():
    return [{"module": "workbench.hub.lab_api"}]


def _load_jupyter_server_extension(serverapp) -> None:
    base = url_path_join(serverapp.web_app.settings["base_url"], "workbench", "api")
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, "study"), StudyHandler),
        (url_path_join(base, "catalog"), CatalogHandler),
        (url_path_join(base, "requests"), RequestsHandler),
        (url_path_join(base, "requests", f"({_REQUEST_ID})", "(withdraw|resubmit)"),
         ActionHandler),
    ])
    serverapp.log.info("workbench: researcher panels' API at %s", base)

