"""``workbench keyholder`` and ``workbench aggregator``: the HE roles that run as services."""

from __future__ import annotations

import click

from workbench.paths import Space


@click.command("keyholder")
@click.option("--data-dir", help="the data space (default: $WORKBENCH_DATA_DIR)")
@click.option("--min-cell-floor", type=int, default=5, show_default=True,
              help="never release a count cell or at-risk count below this, whatever a request's "
                   "thresholds say")
def keyholder(data_dir: str | None, min_cell_floor: int) -> None:
    """Run the HE key holder on DATA_DIR/run/keyholder.sock (as wb-keyholder when root)."""
    from workbench.secure.process import run_keyholder

    run_keyholder(Space.at(data_dir), min_cell_floor=min_cell_floor)


@click.command("aggregator")
@click.option("--data-dir", help="the data space (default: $WORKBENCH_DATA_DIR)")
def aggregator(data_dir: str | None) -> None:
    """Run the HE aggregator on DATA_DIR/run/aggregator.sock (as wb-aggregator when root)."""
    from workbench.secure.process import run_aggregator

    run_aggregator(Space.at(data_dir))


commands = [keyholder, aggregator]

if __name__ == "__main__":  # ``python -m workbench.secure.cli ROLE ...``: what process.py runs
    import sys

    from workbench.errors import WorkbenchUserError

    roles = {"keyholder": keyholder, "aggregator": aggregator}
    if len(sys.argv) < 2 or sys.argv[1] not in roles:
        click.echo(f"usage: python -m workbench.secure.cli {{{','.join(roles)}}} ...", err=True)
        sys.exit(2)
    try:
        roles[sys.argv[1]].main(sys.argv[2:], standalone_mode=False)
    except WorkbenchUserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
