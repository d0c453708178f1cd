"""``workbench sandbox ...``: install the sandboxed kernelspec, check the sandbox tools."""

from __future__ import annotations

import click

from workbench.errors import WorkbenchUserError
from workbench.sandbox.kernelspec import KERNEL_NAME, install_kernelspec
from workbench.sandbox.launch import tool_path


@click.group("sandbox")
def sandbox() -> None:
    """The study kernel sandbox (bubblewrap + setpriv, audit proxy)."""


@sandbox.command("install-kernelspec")
@click.argument("jupyter_dir", type=click.Path(file_okay=False))
def install_kernelspec_command(jupyter_dir: str) -> None:
    """Install the sandboxed kernelspec into JUPYTER_DIR/kernels/workbench-python.

    Run as root and put JUPYTER_DIR on the study server's JUPYTER_PATH: the strict kernelspec
    manager only accepts a root-owned kernelspec that no one else can write.
    """
    try:
        target = install_kernelspec(jupyter_dir)
    except PermissionError as exc:
        raise WorkbenchUserError(f"cannot write {exc.filename}: run this as root",
                                 reason="permission-denied") from None
    click.echo(f"installed kernelspec {KERNEL_NAME} in {target}")


@sandbox.command("launcher")
@click.option("--data-dir", help="The data space (default: $WORKBENCH_DATA_DIR).")
def launcher_command(data_dir: str | None) -> None:
    """Run the root kernel launcher: starts sealed kernels for non-root study servers."""
    import logging

    from workbench.paths import Space
    from workbench.sandbox.launcher import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s kernel-launcher %(message)s")
    serve(Space.at(data_dir))


@sandbox.command("check")
def check_command() -> None:
    """Check that bubblewrap and setpriv are installed."""
    for tool in ("bwrap", "setpriv"):
        click.echo(f"{tool}: {tool_path(tool)}")


commands = [sandbox]
