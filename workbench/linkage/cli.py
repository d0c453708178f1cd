"""``workbench linkage serve``: the OPRF linkage service (docs/linkage.md)."""

from __future__ import annotations

import click

from workbench import linkage
from workbench.linkage.limits import PER_DAY, PER_MINUTE
from workbench.paths import Space


@click.group("linkage")
def group() -> None:
    """Linkage of holders' records without a party that sees identifiers."""


@group.command("serve")
@click.option("--data-dir", help="the data space (default: $WORKBENCH_DATA_DIR)")
@click.option("--max-batch", type=click.IntRange(1, 65536), default=linkage.MAX_BATCH,
              show_default=True, help="most blinded elements in one request")
@click.option("--per-minute", type=click.IntRange(1), default=PER_MINUTE, show_default=True,
              help="elements each node may have evaluated per minute")
@click.option("--per-day", type=click.IntRange(1), default=PER_DAY, show_default=True,
              help="elements each node may have evaluated per UTC day")
def serve(data_dir: str | None, max_batch: int, per_minute: int, per_day: int) -> None:
    """Run the linkage service on DATA_DIR/run/linkage.sock (as wb-linkage when root)."""
    from workbench.linkage.process import run_linkage

    run_linkage(Space.at(data_dir), max_batch, per_minute, per_day)


commands = [group]
