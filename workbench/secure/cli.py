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
