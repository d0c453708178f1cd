"""The ``workbench`` command. Each component contributes its commands from its own ``cli`` module,
listed in COMMAND_MODULES (one line per component)."""

from __future__ import annotations

import importlib
import sys

import click

from workbench.errors import WorkbenchUserError

# Each module exposes ``commands``: a list of click commands or groups added to the top level.
COMMAND_MODULES: list[str] = [
    "workbench.hub.cli",
    "workbench.provenance.cli",
    "workbench.space.cli",
    "workbench.catalog.cli",
    "workbench.secure.cli",
    "workbench.gateway.cli",
    "workbench.release.cli",
    "workbench.sandbox.cli",
    "workbench.run.cli",
    "workbench.node.cli",
    "workbench.review.cli",
    "workbench.linkage.cli",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Secure research workbench for a healthcare trusted data space."""


for _module in COMMAND_MODULES:
    for _command in importlib.import_module(_module).commands:
        cli.add_command(_command)


def main() -> None:
    """Entry point: user mistakes are shown as one clear message, never a traceback."""
    try:
        # Without standalone mode click returns a command's ctx.exit(n) code instead of exiting.
        status = cli.main(standalone_mode=False)
    except WorkbenchUserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError) as exc:
        if exc.filename is None:
            raise
        # a path the user gave (or one inside it) cannot be used: say which, and why
        click.echo(f"error: cannot use {exc.filename}: {exc.strerror}", err=True)
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
