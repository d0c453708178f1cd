"""The study server's kernel manager: at most ``max_kernels`` kernels at a time (the policy's
``resources.max_kernels``), so one study cannot exhaust the machine by opening notebooks."""

from __future__ import annotations

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado.web import HTTPError
from traitlets import Integer


class StudyKernelManager(AsyncMappingKernelManager):
    """Jupyter Server's kernel manager plus a count limit (which kernels may start at all is
    the sandbox's strict kernelspec and per-kernel managers' business)."""

    max_kernels = Integer(
        2, config=True,
        help="Most kernels this server may run at once (from the study's policy resources); "
             "starting one more is refused with 403 until a kernel is shut down.",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._starting = 0

    async def start_kernel(self, *args, kernel_id=None, **kwargs):
        if kernel_id is not None and kernel_id in self:
            return await super().start_kernel(*args, kernel_id=kernel_id, **kwargs)
        if len(self.list_kernel_ids()) + self._starting >= self.max_kernels:
            raise HTTPError(
                403,
                f"This study may run at most {self.max_kernels} kernel(s) at a time. Shut down a "
                "kernel you no longer need (Kernel > Shut Down Kernel) and try again.",
            )
        self._starting += 1
        try:
            return await super().start_kernel(*args, kernel_id=kernel_id, **kwargs)
        finally:
            self._starting -= 1
