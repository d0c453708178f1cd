"""Jupyter server extension of a study server: refuses to run unless the sandbox is in place.

Enabled by ``workbench.sandbox.server_config.configure`` (which also sets
``ServerApp.reraise_server_extension_failures`` so a failed check stops the server). The checks
are the settings that close the known holes: the strict kernelspec manager, the attributing
kernel websocket, the sandbox as default provisioner, the sandboxed kernelspec installed in a
root-owned place, no terminals, and no route that hands a workspace file to the browser as a file
(``workbench.hub.egress``: downloads and exports refused, contents reads recorded).
"""

from __future__ import annotations

import os

from jupyter_client.provisioning import KernelProvisionerFactory
from traitlets.utils.importstring import import_item

from workbench.errors import WorkbenchError
from workbench.hub import egress
from workbench.paths import Space
from workbench.sandbox.attribution import AttributingWebsocketConnection
from workbench.sandbox.kernelmanager import StrictServerKernelManager
from workbench.sandbox.kernelspec import StrictKernelSpecManager, require_installed
from workbench.sandbox.provisioner import PROVISIONER_NAME


def _jupyter_server_extension_points():
    return [{"module": "workbench_server"}]


def check_hardening(serverapp) -> None:
    """Raise WorkbenchError naming the first setting that leaves a hole open."""
    if not isinstance(serverapp.kernel_spec_manager, StrictKernelSpecManager):
        raise WorkbenchError("ServerApp.kernel_spec_manager_class must be StrictKernelSpecManager")
    per_kernel = import_item(serverapp.kernel_manager.kernel_manager_class)
    if not issubclass(per_kernel, StrictServerKernelManager):
        raise WorkbenchError("MultiKernelManager.kernel_manager_class must be "
                             "StrictServerKernelManager")
    ws_class = serverapp.web_app.settings.get("kernel_websocket_connection_class")
    if not (isinstance(ws_class, type) and issubclass(ws_class, AttributingWebsocketConnection)):
        raise WorkbenchError("ServerApp.kernel_websocket_connection_class must be "
                             "AttributingWebsocketConnection")
    factory = KernelProvisionerFactory.instance(parent=serverapp)
    if factory.default_provisioner_name != PROVISIONER_NAME:
        raise WorkbenchError(f"KernelProvisionerFactory.default_provisioner_name must be "
                             f"{PROVISIONER_NAME}")
    if serverapp.terminals_enabled:
        raise WorkbenchError("ServerApp.terminals_enabled must be False in a study server")
    require_installed(serverapp.kernel_spec_manager)
    egress.check_closed(serverapp.web_app)


def _load_jupyter_server_extension(serverapp) -> None:
    sandbox = serverapp.config.SandboxProvisioner
    study = sandbox.get("study") or os.environ.get("WORKBENCH_STUDY")
    if not study:
        raise WorkbenchError("the study server does not know its study (SandboxProvisioner.study)")
    egress.close_routes(serverapp.web_app, study=study,
                        collector_socket=Space.at(sandbox.get("data_dir") or None).collector_socket)
    check_hardening(serverapp)
    serverapp.log.info("workbench: study server hardening checked (sandboxed kernels only)")
