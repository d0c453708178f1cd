"""The ``workbench`` command. Each component contributes its commands from its own ``cli`` module,
listed in COMMAND_MODULES (one line per component, with the commands it defines).

``workbench COMMAND`` imports only the module that defines COMMAND: every service is started as
``workbench SERVICE``, and importing all twelve components (pandas, TenSEAL, aiohttp, ...) cost
each start about half a second more than importing its own."""

from __future__ import annotations

import importlib
import sys

import click

from workbench.errors import WorkbenchUserError

# Each module exposes ``commands``: the click commands or groups named here, added to the top
# level (a test checks the names against the modules).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "workbench.hub.cli": ("demo", "hub", "deploy"),
    "workbench.provenance.cli": ("collector", "provenance"),
    "workbench.space.cli": ("init",),
    "workbench.catalog.cli": ("catalog",),
    "workbench.secure.cli": ("keyholder", "aggregator"),
    "workbench.gateway.cli": ("policy", "gateway", "usage"),
    "workbench.release.cli": ("airlock",),
    "workbench.sandbox.cli": ("sandbox",),
    "workbench.run.cli": ("run", "rerun"),
    "workbench.node.cli": ("node",),
    "workbench.review.cli": ("review",),
    "workbench.linkage.cli": ("linkage",),
}
_MODULE_OF = {name: module for module, names in COMMAND_MODULES.items() for name in names}


class _Commands(click.Group):
    """The top-level group: a command's module is imported when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_MODULE_OF)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _MODULE_OF.get(cmd_name)
        if module is None:
            return None
        found = [c for c in importlib.import_module(module).commands if c.name == cmd_name]
        return found[0] if found else None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Secure research workbench for a healthcare trusted data space."""


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
