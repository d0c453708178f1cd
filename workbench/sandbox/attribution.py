"""Who sent each message: the kernel websocket connection that tells the audit proxy.

SECURITY BOUNDARY (attribution). A message's ``header.username`` is written by the client, so it
is never identity. This connection class (``c.ServerApp.kernel_websocket_connection_class``)
takes the user from the authenticated websocket handler and registers each incoming msg_id with
the kernel's :class:`~workbench.sandbox.provisioner.SandboxProvisioner` *before* the message is
sent on; a kernel whose provisioner cannot take attributions gets no websocket at all.
Guarded by tests/sandbox/test_server.py (forged ``header.username`` is recorded as the real user).
"""

from __future__ import annotations

import json

from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web

from workbench.sandbox.proxy import PASSED

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"


def user_name(current_user) -> str | None:
    """The authenticated name, whatever the identity provider returns (jupyter_server ``User``,
    a JupyterHub user model dict, or a plain string)."""
    if current_user is None:
        return None
    if isinstance(current_user, str):
        return current_user or None
    if isinstance(current_user, dict):
        return current_user.get("name") or None
    return getattr(current_user, "username", None) or None


class AttributingWebsocketConnection(ZMQChannelsWebsocketConnection):
    """A kernel websocket whose every request is attributed to the authenticated user."""

    _user: str | None = None
    _notebook_path: str | None = None

    async def prepare(self):
        self._user = user_name(self.websocket_handler.current_user)
        if self._user is None:
            raise web.HTTPError(403, "kernel websocket without an authenticated user")
        if not hasattr(getattr(self.kernel_manager, "provisioner", None), "attribute"):
            self.log.error("kernel %s is not sandboxed: websocket refused", self.kernel_id)
            raise web.HTTPError(403, "this kernel is not a workbench study kernel")
        self._notebook_path = await self._session_path()
        await super().prepare()

    async def _session_path(self) -> str | None:
        manager = self.websocket_handler.settings.get("session_manager")
        if manager is None:
            return None
        try:
            for session in await manager.list_sessions():
                if (session.get("kernel") or {}).get("id") == self.kernel_id:
                    return session.get("path") or None
        except Exception:  # the path is a convenience; attribution does not depend on it
            self.log.warning("no session path for kernel %s", self.kernel_id, exc_info=True)
        return None

    def _header(self, incoming_msg) -> dict:
        if self.subprotocol == V1_PROTOCOL:
            _, msg_list = deserialize_msg_from_ws_v1(incoming_msg)
            header = json.loads(msg_list[0])
        elif isinstance(incoming_msg, bytes):
            header = deserialize_binary_message(incoming_msg)["header"]
        else:
            header = json.loads(incoming_msg)["header"]
        return header if isinstance(header, dict) else {}

    def handle_incoming_message(self, incoming_msg) -> None:
        if not self.channels:
            return super().handle_incoming_message(incoming_msg)
        try:
            header = self._header(incoming_msg)
        except (ValueError, KeyError, IndexError, TypeError):
            header = {}
        msg_id = header.get("msg_id")
        if not isinstance(msg_id, str) or not msg_id:  # nothing to attribute it by: dropped
            self.log.warning("dropped a kernel websocket message without a msg_id")
            return None
        if header.get("msg_type") not in PASSED:  # the proxy consumes only these attributions
            self.kernel_manager.provisioner.attribute(msg_id, self._user, self._notebook_path)
        return super().handle_incoming_message(incoming_msg)
