"""Authentication: NativeAuthenticator (bcrypt-hashed passwords in the hub database, sign-ups
wait for an admin's approval, optional TOTP) plus a ``login`` provenance record for every login.

A login is refused when it cannot be recorded (fail closed). Failed attempts are recorded too
(user name only, never the password); if the collector is down they are still refused.
"""

from __future__ import annotations

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.handlers import ToggleAuthorizationHandler as NativeToggleHandler
from tornado import web
from tornado.escape import url_escape
from tornado.httputil import url_concat
from traitlets import Unicode

from workbench.errors import WorkbenchError
from workbench.paths import Space


class LoginHandler(NativeLoginHandler):
    """NativeAuthenticator 1.3's login page, ported to JupyterHub 6 (its own handler uses the
    removed ``statsd`` and breaks the hub's error rendering)."""

    def _render(self, login_error=None, username=None, sync=False, **_ignored):
        return self.render_template(
            "native-login.html",
            sync=sync,
            next=url_escape(self.get_argument("next", default="")),
            username=username,
            login_error=login_error,
            custom_html=self.authenticator.custom_html,
            login_url=self.settings["login_url"],
            enable_signup=self.authenticator.enable_signup,
            two_factor_auth=self.authenticator.allow_2fa,
            xsrf=self.xsrf_token.decode("ascii"),
            authenticator_login_url=url_concat(
                self.authenticator.login_url(self.hub.base_url),
                {"next": self.get_argument("next", "")},
            ),
        )

    async def post(self):
        data = {arg: self.get_argument(arg, strip=arg == "username")
                for arg in self.request.body_arguments if arg != "_xsrf"}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        self.set_status(403)
        # one message for every failure: it must not tell which user names exist
        self.finish(await self._render(login_error="Invalid username or password, or the "
                                                   "account awaits an admin's approval.",
                                       username=data.get("username", "")[:32]))


class ToggleAuthorizationHandler(NativeToggleHandler):
    """Approving a sign-up is a GET in NativeAuthenticator: refuse it when another site made
    the admin's browser send it (a link or image elsewhere must not approve an account)."""

    async def get(self, slug):
        if self.request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin",
                                                                              "none"):
            raise web.HTTPError(403, "Approve sign-ups from the hub's own page (/hub/authorize).")
        await super().get(slug)


class WorkbenchAuthenticator(NativeAuthenticator):
    data_dir = Unicode(config=True, help="The data space whose collector records logins.")

    def get_handlers(self, app):
        ours = {r"/login": LoginHandler, r"/authorize/([^/]*)": ToggleAuthorizationHandler}
        return [(path, ours.get(path, handler)) for path, handler in super().get_handlers(app)]

    async def _record(self, fields: dict) -> None:
        from workbench.provenance.client import ProvenanceClient

        client = ProvenanceClient(Space.at(self.data_dir or None).collector_socket)
        await client.append_async("login", fields)

    def _client_ip(self, handler) -> str:
        request = getattr(handler, "request", None)
        return getattr(request, "remote_ip", "") or ""

    async def authenticate(self, handler, data):
        username = await super().authenticate(handler, data)
        attempted = self.normalize_username(str(data.get("username", "")))[:64]
        fields = {"user": username or attempted or "-", "event": "login" if username else "failed",
                  "status": "ok" if username else "denied", "authenticator": "native-password"}
        remote = self._client_ip(handler)
        if remote:
            fields["remote_addr"] = remote
        try:
            await self._record(fields)
        except WorkbenchError as exc:
            self.log.error("login of %s not recorded, refusing it: %s", attempted, exc)
            return None
        return username
