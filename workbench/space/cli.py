"""``workbench init``."""

from __future__ import annotations

import signal

import click

from workbench.paths import ENV_VAR


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


@click.command("init")
@click.option("--data-dir", envvar=ENV_VAR, help=f"where to build the space (or ${ENV_VAR})")
@click.option("--patients", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="synthetic patients (0: public validation datasets only)")
@click.option("--seed", type=int, default=42, show_default=True,
              help="seed of the synthetic generator")
@click.option("--chunk-size", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="patients generated and written per chunk (bounds memory)")
@click.option("--force", is_flag=True,
              help="replace a non-empty DIR (deleted only once the new space is complete)")
def init(data_dir: str | None, patients: int, seed: int, chunk_size: int, force: bool) -> None:
    """Build a data space: holders' stores, catalog, keys. Built aside, then renamed into place."""
    from workbench.space.build import init_space

    # SIGTERM unwinds like Ctrl-C, so the half-built aside directory is removed
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        init_space(data_dir, patients=patients, seed=seed, force=force, chunk_size=chunk_size,
                   echo=click.echo)
    finally:
        signal.signal(signal.SIGTERM, previous)


commands = [init]
