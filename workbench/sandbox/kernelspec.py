"""The sandboxed kernelspec and the strict kernelspec manager that makes it the only one.

SECURITY BOUNDARY. ``KernelSpecManager.allowed_kernelspecs`` only filters the *listing*:
``POST /api/kernels {"name": "python3"}`` would still start ipykernel's bundled, unsandboxed spec.
:class:`StrictKernelSpecManager` enforces the allow-list on lookup, requires the
``workbench-sandbox`` provisioner and a root-owned, not group/world-writable kernelspec directory.
Guarded by tests/sandbox/test_kernelspec.py and the REST test in tests/sandbox/test_server.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from traitlets import Set, default

from workbench.errors import WorkbenchUserError
from workbench.sandbox.provisioner import PROVISIONER_NAME

KERNEL_NAME = "workbench-python"


def kernelspec_dict() -> dict:
    """kernel.json of the study kernel. ``python`` becomes the server's own interpreter; the
    provisioner swaps the connection file for the sandbox-private one."""
    return {
        "argv": ["python", "-s", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.extensions=workbench_kernel"],
        "display_name": "Python 3 (workbench study)",
        "language": "python",
        # interrupts travel as control messages, so the audit proxy records them
        "interrupt_mode": "message",
        "metadata": {"kernel_provisioner": {"provisioner_name": PROVISIONER_NAME},
                     "debugger": False},
    }


def install_kernelspec(jupyter_dir: str | os.PathLike) -> Path:
    """Write the sandboxed kernelspec into ``<jupyter_dir>/kernels/workbench-python``.

    ``jupyter_dir`` is an entry of the single-user server's JUPYTER_PATH; as root the files are
    made root-owned and read-only for everyone else, so a server uid cannot replace them.
    """
    target = Path(jupyter_dir) / "kernels" / KERNEL_NAME
    target.mkdir(parents=True, exist_ok=True)
    spec_file = target / "kernel.json"
    spec_file.write_text(json.dumps(kernelspec_dict(), indent=2) + "\n")
    for path in (Path(jupyter_dir), Path(jupyter_dir) / "kernels", target):
        os.chmod(path, 0o755)  # noqa: S103 - world-readable, root-owned: the point
    os.chmod(spec_file, 0o644)
    if os.geteuid() == 0:
        for path in (Path(jupyter_dir), Path(jupyter_dir) / "kernels", target, spec_file):
            os.chown(path, 0, 0)
    return target


def _safe_owner(path: str) -> bool:
    """Root-owned and not writable by group or others (pitfall: user-writable kernelspecs)."""
    info = os.stat(path)
    return info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class StrictKernelSpecManager(KernelSpecManager):
    """Only sandboxed kernelspecs exist, for listing *and* for starting by name."""

    allowed_kernelspecs = Set(config=True, help="Kernel names that may be started; each must "
                                                "use the workbench-sandbox provisioner.")

    @default("allowed_kernelspecs")
    def _allowed_default(self) -> set[str]:
        return {KERNEL_NAME}

    @default("ensure_native_kernel")
    def _native_default(self) -> bool:
        return False

    def _refuse(self, kernel_name: str, why: str) -> NoSuchKernel:
        self.log.warning("refused kernelspec %r: %s", kernel_name, why)
        return NoSuchKernel(kernel_name)

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name not in self.allowed_kernelspecs:
            raise self._refuse(kernel_name, "not in the allow-list")
        spec = super().get_kernel_spec(kernel_name)
        provisioner = (spec.metadata or {}).get("kernel_provisioner", {}).get("provisioner_name")
        if provisioner != PROVISIONER_NAME:
            raise self._refuse(kernel_name, f"provisioner {provisioner!r} is not sandboxed")
        if not _safe_owner(spec.resource_dir) or not _safe_owner(
                os.path.join(spec.resource_dir, "kernel.json")):
            raise self._refuse(kernel_name, f"{spec.resource_dir} is not root-owned read-only")
        return spec

    def find_kernel_specs(self) -> dict[str, str]:
        found = {}
        for name, path in super().find_kernel_specs().items():
            try:
                self.get_kernel_spec(name)
            except (NoSuchKernel, OSError):
                continue
            found[name] = path
        return found

    def get_all_specs(self) -> dict[str, dict]:
        return {name: {"resource_dir": path, "spec": self.get_kernel_spec(name).to_dict()}
                for name, path in self.find_kernel_specs().items()}


def require_installed(manager: StrictKernelSpecManager) -> None:
    """Fail at server start, not at first kernel, when the sandboxed kernelspec is missing."""
    if KERNEL_NAME not in manager.find_kernel_specs():
        raise WorkbenchUserError(
            f"The sandboxed kernelspec '{KERNEL_NAME}' is not installed in a root-owned "
            "JUPYTER_PATH directory: run 'workbench sandbox install-kernelspec DIR' as root and "
            "put DIR on the server's JUPYTER_PATH.", reason="no-kernelspec")
