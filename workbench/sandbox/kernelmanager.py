"""The study server's per-kernel manager: refuses a kernel name before anything is registered.

jupyter_client registers a kernel id as "pending" before the kernelspec is looked up; when the
strict kernelspec manager then refuses (``POST /api/kernels {"name": "python3"}``) the stale id
stays behind and the server's shutdown later fails on it. Resolving the kernelspec while the
per-kernel manager is built (before the id is registered) keeps the refusal clean and answers 403
with a message instead of a 500. It is set as ``c.MultiKernelManager.kernel_manager_class``, so
any mapping kernel manager (the hub's ``StudyKernelManager`` too) builds its kernels with it.
"""

from __future__ import annotations

from jupyter_client.kernelspec import NoSuchKernel
from jupyter_server.services.kernels.kernelmanager import ServerKernelManager
from tornado import web

from workbench.sandbox.kernelspec import KERNEL_NAME


class KernelNotAllowed(web.HTTPError, NoSuchKernel):
    """403 for the kernels API; the sessions API knows it as NoSuchKernel (and says so)."""


class StrictServerKernelManager(ServerKernelManager):
    """A kernel manager that cannot exist for a kernelspec the strict manager refuses."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        try:
            self.kernel_spec_manager.get_kernel_spec(self.kernel_name)
        except NoSuchKernel:
            raise KernelNotAllowed(
                403, f"Kernel '{self.kernel_name}' is not available in a study server: only the "
                     f"sandboxed '{KERNEL_NAME}' kernel can be started.") from None
