"""The strict kernelspec manager: only the sandboxed kernelspec exists, for listing and by name."""

from __future__ import annotations

import json
import os

import pytest
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_client.manager import KernelManager

from workbench.sandbox.kernelspec import (
    KERNEL_NAME,
    StrictKernelSpecManager,
    install_kernelspec,
    kernelspec_dict,
)


def _write_spec(root, name, spec):
    target = root / "kernels" / name
    target.mkdir(parents=True)
    (target / "kernel.json").write_text(json.dumps(spec))
    return target


@pytest.fixture
def kernels(open_tmp):
    install_kernelspec(open_tmp)
    unsandboxed = dict(kernelspec_dict(), metadata={})
    _write_spec(open_tmp, "python3", unsandboxed)  # what ipykernel would install
    _write_spec(open_tmp, "other-provisioner", dict(
        kernelspec_dict(), metadata={"kernel_provisioner": {"provisioner_name":
                                                            "local-provisioner"}}))
    return open_tmp


def _manager(root, **kw):
    return StrictKernelSpecManager(kernel_dirs=[str(root / "kernels")], **kw)


def test_installed_spec_is_root_owned_and_uses_the_sandbox(kernels):
    spec_dir = kernels / "kernels" / KERNEL_NAME
    info = os.stat(spec_dir / "kernel.json")
    assert info.st_uid == 0 and oct(info.st_mode & 0o777) == "0o644"
    spec = _manager(kernels).get_kernel_spec(KERNEL_NAME)
    assert spec.metadata["kernel_provisioner"]["provisioner_name"] == "workbench-sandbox"
    assert spec.interrupt_mode == "message"


def test_only_the_sandboxed_spec_is_listed(kernels):
    manager = _manager(kernels)
    assert set(manager.find_kernel_specs()) == {KERNEL_NAME}
    assert set(manager.get_all_specs()) == {KERNEL_NAME}


@pytest.mark.parametrize("name", ["python3", "other-provisioner", "does-not-exist"])
def test_other_specs_cannot_be_looked_up_by_name(kernels, name):
    with pytest.raises(NoSuchKernel):
        _manager(kernels).get_kernel_spec(name)


def test_allow_listing_an_unsandboxed_spec_does_not_help(kernels):
    manager = _manager(kernels, allowed_kernelspecs={KERNEL_NAME, "python3"})
    with pytest.raises(NoSuchKernel):
        manager.get_kernel_spec("python3")


def test_python3_by_name_never_starts(kernels):
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_manager(kernels))
    with pytest.raises(NoSuchKernel):
        km.start_kernel()
    assert not km.has_kernel


def test_native_kernel_is_not_added(kernels):
    manager = StrictKernelSpecManager(kernel_dirs=[str(kernels / "kernels")])
    assert manager.ensure_native_kernel is False
    with pytest.raises(NoSuchKernel):
        manager.get_kernel_spec("python3")


@pytest.mark.parametrize("mode", [0o666, 0o646])
def test_writable_kernelspec_is_refused(kernels, mode):
    os.chmod(kernels / "kernels" / KERNEL_NAME / "kernel.json", mode)
    with pytest.raises(NoSuchKernel):
        _manager(kernels).get_kernel_spec(KERNEL_NAME)


def test_kernelspec_owned_by_another_uid_is_refused(kernels):
    os.chown(kernels / "kernels" / KERNEL_NAME, 65534, 65534)
    with pytest.raises(NoSuchKernel):
        _manager(kernels).get_kernel_spec(KERNEL_NAME)
