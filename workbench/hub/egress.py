"""The browser's ways out of a study server, closed: nothing leaves without the airlock.

SECURITY BOUNDARY. A stock Jupyter server hands any workspace file to the browser as a file:
``/files/`` (JupyterLab's File > Download, "Open in New Browser Tab", "Copy Download Link"),
``/view/`` and ``/nbconvert/`` (File > Save and Export Notebook As, with or without
``?download=1``). :func:`close_routes` points every route served by one of those handler classes,
whatever its URL pattern, at :class:`EgressRefusedHandler`, which refuses every method (HEAD
too) with a message naming the airlock. The contents API stays (JupyterLab opens notebooks with
it) but becomes :class:`RecordedContentsHandler`: each file or notebook it returns with its
content is a ``file-access`` provenance record (path, size, SHA-256 of the bytes sent, the
authenticated user) written *before* the bytes are sent, and refused when the collector cannot
take it (fail closed); binary files other than images (``format=base64``: what a "download
through the contents API" script fetches) are refused. :func:`check_closed` walks the whole
routing table and fails the server's start if any of those handler classes is still reachable.

What this does not close (docs/security-model.md, "What a screen shows"): the page shows cells,
outputs and text files, and whatever a screen shows can be copied, printed or photographed, or
saved by a script in the browser from the contents API; those reads are on the record.
Guarded by tests/hub/test_egress.py (HTTP: every route and bypass) and tests/hub/test_browser.py
(File > Download and Export in headless Chromium).
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from jupyter_client.jsonutil import json_default
from jupyter_server.base.handlers import AuthenticatedFileHandler, JupyterHandler
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.nbconvert.handlers import NbconvertFileHandler, NbconvertPostHandler
from jupyter_server.services.contents.handlers import ContentsHandler
from jupyter_server.view.handlers import ViewHandler
from tornado.routing import Router
from tornado.web import HTTPError

from workbench.errors import WorkbenchError
from workbench.sandbox.attribution import user_name

# Lines, so the browser's error page (a <pre>) wraps it.
AIRLOCK = ("Downloads and exports are closed in a study server:\n"
           "nothing leaves the workbench without the airlock.\n"
           "Request a release from a notebook cell with\n"
           "    wb.release.request(obj, name, description, view=...)\n"
           "reviewers check it, and the approved file is released to you.")
BINARY = ("The workbench shows binary files only as images: '{path}' is not one. Read it in a "
          "notebook cell, or request its release with wb.release.request(...).")
# Handler classes that serve a workspace file (or a conversion of one) as a file.
FILE_SERVING = (FilesHandler, AuthenticatedFileHandler, ViewHandler, NbconvertFileHandler,
                NbconvertPostHandler)
ROUTE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")  # the record's label rule
COLLECTOR_SETTING = "workbench_collector_socket"
STUDY_SETTING = "workbench_study"


async def record_access(handler: JupyterHandler, fields: dict) -> None:
    """One ``file-access`` record for ``handler``'s authenticated user; raises
    ProvenanceUnavailable (a WorkbenchError) when the collector does not acknowledge it."""
    from workbench.provenance.client import ProvenanceClient

    socket_path = handler.settings.get(COLLECTOR_SETTING)
    if not socket_path:
        raise WorkbenchError("the study server has no provenance collector configured")
    user = user_name(handler.current_user)
    record = {"study": handler.settings[STUDY_SETTING], **fields}
    if user:
        record["user"] = user
    await ProvenanceClient(socket_path, timeout=10).append_async("file-access", record)


def _recorded_path(path: str) -> str:
    """A path as the record holds it: control characters (a file name may hold a newline)
    shown as '?', at most 1024 characters."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", path)[:1024] or "/"


def _relative(handler: JupyterHandler) -> str:
    """The request path below the server's base URL, e.g. ``files/analysis.ipynb``."""
    path = handler.request.path
    base = handler.base_url
    return (path[len(base):] if path.startswith(base) else path).lstrip("/") or "/"


class EgressRefusedHandler(JupyterHandler):
    """Every method of a route that would hand a workspace file over as a file: 403 with the
    airlock message (an HTML page in a browser tab). The attempt is recorded, best effort:
    the refusal stands either way."""

    def initialize(self, **_kwargs) -> None:  # the replaced handler's kwargs (e.g. its path)
        pass

    async def prepare(self):
        await super().prepare(_redirect_to_login=False)  # who asked, for the record
        path = _relative(self)
        if self.current_user is not None:
            try:
                route = path.split("/")[0]
                await record_access(self, {"path": _recorded_path(path),
                                           "route": route if ROUTE.match(route) else "other",
                                           "method": self.request.method.lower(),
                                           "status": "refused", "reason": "download-closed"})
            except WorkbenchError as exc:
                self.log.warning("refused download not recorded: %s", exc)
        raise HTTPError(403, AIRLOCK)


class RecordedContentsHandler(ContentsHandler):
    """The contents API with each file or notebook read recorded before its bytes are sent."""

    _held: dict | None = None

    def _finish_model(self, model, location=True):
        if self.request.method == "GET" and model.get("type") in ("file", "notebook") and \
                model.get("content") is not None:
            self._held = model  # sent by get() below, once recorded
            return
        super()._finish_model(model, location)

    async def get(self, path=""):
        self._held = None
        await super().get(path)
        model = self._held
        if model is None:  # a directory, a model without content, or an error already sent
            return
        fields = {"path": _recorded_path(model["path"]), "route": "contents", "method": "get",
                  "type": model["type"], "format": model.get("format") or "json"}
        if model.get("format") == "base64" and not _is_image(model["content"]):
            try:
                await record_access(self, {**fields, "status": "refused", "reason": "binary-file"})
            except WorkbenchError as exc:
                self.log.warning("refused binary read not recorded: %s", exc)
            raise HTTPError(403, BINARY.format(path=model["path"]))
        body = json.dumps(model, default=json_default).encode()
        try:
            await record_access(self, {**fields, "status": "ok", "size": len(body),
                                       "sha256": hashlib.sha256(body).hexdigest()})
        except WorkbenchError as exc:
            self.log.error("contents read of %r not recorded, refused: %s", model["path"], exc)
            raise HTTPError(503, "The provenance collector is not reachable, so the workbench "
                                 "does not open files (every read is recorded). Try again, "
                                 "then ask an admin.") from None
        self.set_header("Last-Modified", model["last_modified"])
        self.set_header("Content-Type", "application/json")
        await self.finish(body)


# Signatures of the image formats JupyterLab's image viewer shows: a name ending in .png is not
# enough (a kernel names its files). A speed bump, not a boundary: an image's pixels can carry
# any bytes, as can a text file; the record of each read is what bounds it.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def _is_image(content: str) -> bool:
    import base64
    import binascii

    try:
        head = base64.b64decode(content[:24].encode("ascii"), validate=False)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _rules(router):
    for rule in getattr(router, "rules", []):
        yield rule
        if isinstance(rule.target, Router):
            yield from _rules(rule.target)


def close_routes(web_app, *, study: str, collector_socket: str | os.PathLike) -> int:
    """Point every file-serving route at the refusal and the contents API at its recorded
    form; returns how many routes were changed."""
    web_app.settings[STUDY_SETTING] = study
    web_app.settings[COLLECTOR_SETTING] = str(collector_socket)
    changed = 0
    for rule in _rules(web_app.default_router):
        target = rule.target
        if isinstance(target, type) and issubclass(target, FILE_SERVING):
            rule.target, changed = EgressRefusedHandler, changed + 1
        elif target is ContentsHandler:
            rule.target, changed = RecordedContentsHandler, changed + 1
    return changed


def check_closed(web_app) -> None:
    """Raise WorkbenchError if any route still serves files or unrecorded contents."""
    contents = 0
    for rule in _rules(web_app.default_router):
        target = rule.target
        if isinstance(target, type) and issubclass(target, FILE_SERVING):
            raise WorkbenchError(f"route {rule.matcher!r} still serves files ({target.__name__})")
        if isinstance(target, type) and issubclass(target, ContentsHandler):
            if not issubclass(target, RecordedContentsHandler):
                raise WorkbenchError(f"route {rule.matcher!r} serves unrecorded contents")
            contents += 1
    if not contents:
        raise WorkbenchError("no recorded contents API route found")
    if not web_app.settings.get(COLLECTOR_SETTING):
        raise WorkbenchError("file reads cannot be recorded: no collector socket")
