"""``review-files``: released files, downloadable through the hub by study members and reviewers.

A hub-managed tornado service behind hub OAuth (``access:services!service=review-files``); who may
fetch which file is then decided by the airlock itself (members and reviewers of the file's study,
``workbench.policy.access``), which it asks over its socket as a trusted caller acting for the
signed-in user. Routes: ``GET <prefix>`` (a list of what the user may download) and
``GET <prefix>files/<request id>/<file name>``.

Under the hub it runs as its own unprivileged account (``wb-review-files``) and reaches the
airlock through the review broker (workbench.review.broker), which lets it only read released
requests and their files for the signed-in user; run as root (tests) it calls the airlock itself.
"""

from __future__ import annotations

import base64
import os
import signal
from urllib.parse import quote, urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.release.http import decode_reply
from workbench.review.broker import ask
from workbench.review.framing import FILES_CSP, deny_framing
from workbench.review.render import esc
from workbench.review.snapshot import airlock_client

STATUS = {"access-denied": 403, "not-found": 404}


def airlock_get(space: Space, user: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` from the airlock for ``user``: (status, body)."""
    if os.geteuid() == 0:
        status, data, _ = airlock_client(space, user).request("GET", path)
        return status, data
    reply = ask(space, {"op": "airlock-get", "user": user, "path": path})
    return reply["status"], base64.b64decode(reply["body"])


def airlock_json(space: Space, user: str, path: str):
    return decode_reply(*airlock_get(space, user, path))


class _Base(HubOAuthenticated, web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", FILES_CSP)
        self.set_header("X-Frame-Options", "DENY")

    @property
    def space(self) -> Space:
        return self.settings["space"]


class ListHandler(_Base):
    @web.authenticated
    def get(self):
        user = self.current_user["name"]
        try:
            requests = airlock_json(self.space, user, "/requests?state=released")
        except WorkbenchUserError as exc:
            raise web.HTTPError(STATUS.get(exc.reason, 400), reason=exc.reason) from None
        rows = []
        for req in requests:
            detail = airlock_json(self.space, user, f"/requests/{req['id']}")
            for file in (detail.get("released") or {}).get("files", []):
                href = url_path_join(self.settings["prefix"], "files", req["id"],
                                     quote(file["name"]))
                rows.append(f"<tr><td>{esc(req['study'])}</td><td>{esc(req['name'])}</td>"
                            f"<td><a class='wb-download' href='{esc(href)}'>{esc(file['name'])}"
                            f"</a></td><td>{file['size']}</td><td><code>{esc(file['sha256'])}"
                            "</code></td></tr>")
        self.write(f"<html><head><title>Released files</title></head><body>"
                   f"<h2>Released files</h2><p>signed in as {esc(user)}</p>"
                   "<table border=1><tr><th>study</th><th>output</th><th>file</th><th>bytes</th>"
                   "<th>sha256</th></tr>" + "".join(rows) + "</table></body></html>")


class FileHandler(_Base):
    @web.authenticated
    def get(self, request_id: str, name: str):
        user = self.current_user["name"]
        try:
            status, data = airlock_get(self.space, user,
                                       f"/requests/{request_id}/files/{quote(name)}")
        except (OSError, WorkbenchError):
            raise web.HTTPError(503, reason="airlock-unavailable") from None
        if status != 200:
            raise web.HTTPError(status)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{quote(name)}"')
        self.write(data)


def make_app(space: Space, prefix: str) -> web.Application:
    return web.Application([
        (prefix, ListHandler),
        (url_path_join(prefix, r"files/(rq-[A-Za-z0-9-]{1,64})/([A-Za-z0-9_.-]{1,120})"),
         FileHandler),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], space=space, prefix=prefix, cookie_secret=os.urandom(32),
        transforms=[deny_framing(FILES_CSP)])  # errors and redirects too



def serve(space: Space) -> None:
    """Serve at the URL the hub gave the service, until SIGTERM (``workbench review files``)."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/review-files/")
    url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8399"))
    make_app(space, prefix).listen(url.port or 8399, url.hostname or "127.0.0.1")
    loop = ioloop.IOLoop.current()
    signal.signal(signal.SIGTERM, lambda *_: loop.add_callback_from_signal(loop.stop))
    loop.start()
