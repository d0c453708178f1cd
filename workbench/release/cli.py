"""``workbench airlock``: the airlock service (see workbench/release/service.py). The only way
to start it: ``start_airlock`` runs this command too."""

from __future__ import annotations

import logging

import click

from workbench.paths import Space


@click.command("airlock")
@click.option("--data-dir", help="the data space (default $WORKBENCH_DATA_DIR)")
@click.option("--policy", "policy_file", required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="the hub policy file (studies, reviewers, thresholds)")
def airlock(data_dir: str | None, policy_file: str) -> None:
    """Run the output airlock: disclosure checks, two-person review, outbox."""
    from workbench.release.service import run_airlock

    logging.basicConfig(level=logging.INFO, format="%(asctime)s airlock %(message)s")
    run_airlock(Space.at(data_dir), policy_file)


commands = [airlock]
