"""The single-user server settings the sandbox needs, in one call for the hub's config.

In the study server's ``jupyter_server_config.py`` (root-owned)::

    from workbench.sandbox.server_config import configure
    configure(c, study="cml-tki", data_dir="/var/lib/workbench/demo")

Every value set here is listed in docs/sandbox.md; tests/sandbox/test_server.py starts a real
``jupyter server`` with exactly this configuration.
"""

from __future__ import annotations

import sys

from workbench.sandbox.kernelspec import KERNEL_NAME
from workbench.sandbox.launch import EXTENSIONS_DIR
from workbench.sandbox.provisioner import PROVISIONER_NAME

SERVER_EXTENSION = "workbench_server"  # workbench/extensions/workbench_server.py

# Kernel idle culling (MappingKernelManager): an idle kernel holds a study uid, memory and a
# gateway socket; culling it is recorded (its shutdown_request goes through the audit proxy).
KERNEL_CULLING = {
    "cull_idle_timeout": 3600,  # seconds idle before a kernel is shut down
    "cull_interval": 300,  # how often to check
    "cull_connected": True,  # an open but forgotten browser tab does not keep a kernel alive
    "cull_busy": False,  # never kill a running analysis
}


def configure(c, *, study: str | None = None, data_dir: str | None = None,
              run_user: str | None = None) -> None:
    """Apply the sandbox's settings to a traitlets config object ``c``."""
    if str(EXTENSIONS_DIR) not in sys.path:  # holds the server extension module
        sys.path.insert(0, str(EXTENSIONS_DIR))
    c.ServerApp.kernel_spec_manager_class = "workbench.sandbox.kernelspec.StrictKernelSpecManager"
    # the per-kernel class, so the hub's own mapping kernel manager (limits) keeps working
    c.MultiKernelManager.kernel_manager_class = (
        "workbench.sandbox.kernelmanager.StrictServerKernelManager")
    c.ServerApp.kernel_websocket_connection_class = (
        "workbench.sandbox.attribution.AttributingWebsocketConnection")
    # .update works on a dict set earlier and on traitlets' lazy value when nothing was set;
    # Voila's server-extension mode is off: reviewers use standalone Voila as a hub service
    c.ServerApp.jpserver_extensions.update({SERVER_EXTENSION: True,
                                            "voila.server_extension": False})
    c.ServerApp.reraise_server_extension_failures = True  # a failed hardening check stops it
    c.ServerApp.terminals_enabled = False
    c.KernelProvisionerFactory.default_provisioner_name = PROVISIONER_NAME
    c.MappingKernelManager.default_kernel_name = KERNEL_NAME
    for name, value in KERNEL_CULLING.items():
        setattr(c.MappingKernelManager, name, value)
    if study:
        c.SandboxProvisioner.study = study
    if data_dir:
        c.SandboxProvisioner.data_dir = str(data_dir)
    if run_user:
        c.SandboxProvisioner.run_user = run_user
