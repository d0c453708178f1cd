"""The study server's kernel manager: refuses a kernel name before anything is registered.

jupyter_client registers a kernel id as "pending" before the kernelspec is looked up; when the
strict kernelspec manager then refuses (``POST /api/kernels {"name": "python3"}``) the stale id
stays behind and the server's shutdown later fails on it. Checking the name first keeps the
refusal clean and answers 403 with a message instead of a 500.
"""

from __future__ import annotations

from jupyter_client.kernelspec import NoSuchKernel
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web

from workbench.sandbox.kernelspec import KERNEL_NAME


class KernelNotAllowed(web.HTTPError, NoSuchKernel):
    """403 for the kernels API; the sessions API knows it as NoSuchKernel (and says so)."""


class StrictMappingKernelManager(AsyncMappingKernelManager):
    """``c.ServerApp.kernel_manager_class``: only kernels the strict kernelspec manager allows."""

    def pre_start_kernel(self, kernel_name, kwargs):
        name = kernel_name or self.default_kernel_name
        try:
            self.kernel_spec_manager.get_kernel_spec(name)
        except NoSuchKernel:
            raise KernelNotAllowed(403, f"Kernel '{name}' is not available in a study server: only "
                                     f"the sandboxed '{KERNEL_NAME}' kernel can be started."
                                ) from None
        return super().pre_start_kernel(kernel_name, kwargs)
