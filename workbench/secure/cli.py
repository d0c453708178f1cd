"""``workbench keyholder --data-dir DIR``: serve decryptions of policy-checked pooled aggregates."""

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


commands = [keyholder]

if __name__ == "__main__":  # ``python -m workbench.secure.cli``: what start_keyholder runs
    import sys

    from workbench.errors import WorkbenchUserError

    try:
        keyholder.main(standalone_mode=False)
    except WorkbenchUserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
