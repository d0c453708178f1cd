"""The gateway's ``/release/*`` route: how a study kernel reaches the airlock.

The gateway registers, in its per-study app (after its peer-uid middleware)::

    app.router.add_route("*", "/release/{tail:.*}", release_forwarder(space, study))

Every header the kernel sent is dropped except the claims listed below; the gateway sets the
acting account (the study's kernel account) and the study itself, so a kernel can neither pick
another study nor act as a reviewer. A dashboard kernel's reviewer token is passed through: the
airlock verifies its signature.

On a study's re-run socket (``workbench rerun`` kernels; see docs/run.md) the route is mounted with
``dry_run=True``: every request it forwards carries ``X-Workbench-Dry-Run: 1``, so the airlock
checks a release request without storing it and refuses decisions. The marker comes from which
socket the kernel was given, never from the kernel, and it can only take abilities away.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from workbench.accounts import study_kernel_user
from workbench.paths import Space
from workbench.release.airlock import airlock_socket
from workbench.release.server import DRY_RUN_HEADER

PASSED_CLAIMS = ("X-Workbench-Kernel", "X-Workbench-Msg-Id", "X-Workbench-User",
                 "X-Workbench-Reviewer-Token")
TIMEOUT = aiohttp.ClientTimeout(total=600, connect=10)


def release_forwarder(space: Space, study: str, dry_run: bool = False):
    socket_path = str(airlock_socket(space))
    actor = study_kernel_user(study)

    async def forward(request: web.Request) -> web.Response:
        headers = {h: request.headers[h] for h in PASSED_CLAIMS if h in request.headers}
        headers.update({"X-Workbench-Actor": actor, "X-Workbench-Study": study,
                        "Content-Type": "application/json",
                        DRY_RUN_HEADER: "1" if dry_run else "0"})
        target = "/" + request.match_info.get("tail", "")
        if request.query_string:
            target += "?" + request.query_string
        body = await request.read()
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path),
                                             timeout=TIMEOUT) as session:
                async with session.request(request.method, f"http://airlock{target}", data=body,
                                           headers=headers) as reply:
                    data = await reply.read()
                    return web.Response(status=reply.status, body=data,
                                        content_type=reply.content_type)
        except (aiohttp.ClientError, TimeoutError):
            return web.json_response(
                {"error": {"reason": "airlock-unavailable",
                           "message": "the output airlock is not reachable, so nothing can be "
                                      "requested or released; try again later or tell the "
                                      "space's admin."}}, status=503)

    return forward
