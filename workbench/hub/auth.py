"""Authentication: NativeAuthenticator (bcrypt-hashed passwords in the hub database, sign-ups
wait for an admin's approval, optional TOTP) plus a ``login`` provenance record for every login.

A login is refused when it cannot be recorded (fail closed). Failed attempts are recorded too
(user name only, never the password); if the collector is down they are still refused.
"""

from __future__ import annotations

from nativeauthenticator import NativeAuthenticator
from traitlets import Unicode

from workbench.errors import WorkbenchError
from workbench.paths import Space


class WorkbenchAuthenticator(NativeAuthenticator):
    data_dir = Unicode(config=True, help="The data space whose collector records logins.")

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
