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


@group.command("usage")
@click.option("--data-dir", help="the data space (default: $WORKBENCH_DATA_DIR)")
@click.option("--days", type=click.IntRange(1), default=7, show_default=True,
              help="how many of the latest UTC days")
def usage(data_dir: str | None, days: int) -> None:
    """Elements and batches each node had evaluated, per UTC day (root or wb-linkage: the
    service's state is 0600). A node far above its ingests' sizes is guessing ids."""
    from workbench.linkage.limits import read_counts

    counts = read_counts(Space.at(data_dir))
    rows = [(day, peer, c["elements"], c["batches"])
            for day in sorted(counts)[-days:] for peer, c in sorted(counts[day].items())]
    if not rows:
        click.echo("no evaluations recorded")
        return
    click.echo(f"{'day':<11} {'account':<32} {'elements':>12} {'batches':>8}")
    for day, peer, elements, batches in rows:
        click.echo(f"{day:<11} {peer:<32} {elements:>12} {batches:>8}")


commands = [group]
