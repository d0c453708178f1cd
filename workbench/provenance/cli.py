"""``workbench collector`` and ``workbench provenance ...``."""

from __future__ import annotations

import click

from workbench.paths import Space

DATA_DIR = click.option("--data-dir", envvar="WORKBENCH_DATA_DIR",
                        help="The data space (default: $WORKBENCH_DATA_DIR).")


@click.command("collector")
@DATA_DIR
@click.option("--backend", default=None,
              help="'sqlite' (default: DATA_DIR/provenance/provenance.sqlite) or a postgresql:// "
                   "URL of the INSERT-only writer role, optionally ending in #schema.")
@click.option("--sign-every", default=256, show_default=True,
              help="Sign a tree head after this many new records.")
@click.option("--sign-interval", default=5.0, show_default=True,
              help="... or after this many seconds with new records.")
def collector(data_dir, backend, sign_every, sign_interval):
    """Run the provenance collector (drops to the wb-collector account when root)."""
    import logging

    from workbench.provenance.service import run_collector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s collector %(message)s")
    run_collector(Space.at(data_dir), backend, sign_every, sign_interval)


commands = [collector]
