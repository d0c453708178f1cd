"""``workbench linkage serve``: the OPRF linkage service; ``workbench linkage fuzzy-report``: the
quality of Bloom-filter linkage on name and birth date (docs/linkage.md)."""

from __future__ import annotations

import click

from workbench import linkage
from workbench.linkage.limits import PER_DAY, PER_MINUTE
from workbench.paths import Space
from workbench.synth.identities import ErrorRates


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
@click.option("--clk-threshold", type=click.FloatRange(0.5, 1),
              help="the Dice similarity at which a holder's CLK matches a reference CLK "
                   "(default: workbench.linkage.fuzzy.THRESHOLD, 0.8)")
def serve(data_dir: str | None, max_batch: int, per_minute: int, per_day: int,
          clk_threshold: float | None) -> None:
    """Run the linkage service on DATA_DIR/run/linkage.sock (as wb-linkage when root): the OPRF
    for national ids, and the linkage unit matching CLKs of name and birth date."""
    from workbench.linkage.process import run_linkage

    run_linkage(Space.at(data_dir), max_batch, per_minute, per_day, clk_threshold)


@group.command("usage")
@click.option("--data-dir", help="the data space (default: $WORKBENCH_DATA_DIR)")
@click.option("--days", type=click.IntRange(1), default=7, show_default=True,
              help="how many of the latest UTC days")
@click.option("--clk", is_flag=True,
              help="the CLKs each node had matched (fuzzy linkage) instead of OPRF elements")
def usage(data_dir: str | None, days: int, clk: bool) -> None:
    """Elements and batches each node had evaluated, per UTC day (root or wb-linkage: the
    service's state is 0600). A node far above its ingests' sizes is guessing ids (with
    --clk: names and birth dates)."""
    from workbench.linkage.limits import read_counts
    from workbench.linkage.process import CLK_STATE_FILE, STATE_FILE

    counts = read_counts(Space.at(data_dir), CLK_STATE_FILE if clk else STATE_FILE)
    rows = [(day, peer, c["elements"], c["batches"])
            for day in sorted(counts)[-days:] for peer, c in sorted(counts[day].items())]
    if not rows:
        click.echo("no evaluations recorded")
        return
    click.echo(f"{'day':<11} {'account':<32} {'clks' if clk else 'elements':>12} "
               f"{'parts' if clk else 'batches':>8}")
    for day, peer, elements, batches in rows:
        click.echo(f"{day:<11} {peer:<32} {elements:>12} {batches:>8}")


@group.command("fuzzy-report")
@click.option("--persons", type=click.IntRange(10, 200_000), default=2000, show_default=True,
              help="synthetic persons (holder A sees 75 %, B 75 %, half of them both)")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--typo", type=click.FloatRange(0, 1), default=ErrorRates.typo, show_default=True,
              help="per name field: rate of a typo")
@click.option("--date-swap", type=click.FloatRange(0, 1), default=ErrorRates.date_swap,
              show_default=True, help="rate of day and month transposed")
@click.option("--name-swap", type=click.FloatRange(0, 1), default=ErrorRates.name_swap,
              show_default=True, help="rate of first and last name swapped")
@click.option("--missing", type=click.FloatRange(0, 1), default=ErrorRates.missing,
              show_default=True, help="per field: rate of an empty value")
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="the Dice similarity the linkage uses, marked in the sweep (default: "
                   "workbench.linkage.fuzzy.THRESHOLD, 0.8)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              help="also write the table as JSON to this file")
def fuzzy_report(persons: int, seed: int, typo: float, date_swap: float, name_swap: float,
                 missing: float, threshold: float | None, json_path: str | None) -> None:
    """Precision and recall of Bloom-filter (CLK) linkage on name and birth date, against the
    synthetic generator's truth, over a threshold sweep and beside exact matching."""
    from workbench.linkage.fuzzy import THRESHOLD
    from workbench.linkage.fuzzy_report import SWEEP, render, report

    threshold = THRESHOLD if threshold is None else threshold
    rates = ErrorRates(typo=typo, date_swap=date_swap, name_swap=name_swap, missing=missing)
    table = report(persons, seed, rates, sorted({*SWEEP, threshold}))
    click.echo(f"{persons} persons, seed {seed}, {rates}")
    click.echo(render(table, threshold))
    if json_path:
        try:
            table.to_json(json_path, orient="records", indent=1)
        except OSError as e:
            raise click.ClickException(f"cannot write {json_path}: {e.strerror or e}") from None


commands = [group]
