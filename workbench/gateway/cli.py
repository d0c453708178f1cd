"""``workbench gateway``, ``workbench usage report``, and ``workbench policy`` (from
workbench.policy.cli): one module so the command list names one line per component."""

from __future__ import annotations

import json

import click

from workbench.policy.cli import policy_group


@click.command("gateway")
@click.option("--data-dir", default=None, help="the data space (or $WORKBENCH_DATA_DIR)")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
              help="the hub policy file")
@click.option("--max-rows", default=None, type=int, help="largest rows per Arrow fetch")
def gateway(data_dir: str | None, policy_path: str, max_rows: int | None) -> None:
    """Serve each study's granted views on its own Unix socket (run as root: it drops to the
    gateway account after binding the sockets)."""
    import logging
    import sys

    from workbench.gateway.openapi import MAX_ROWS
    from workbench.gateway.server import run_gateway
    from workbench.space.cli import existing_space

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stdout)
    run_gateway(str(existing_space(data_dir).root), policy_path, max_rows or MAX_ROWS)


@click.group("usage")
def usage() -> None:
    """The usage ledger: rows each data holder contributed to reads and secure operations."""


@usage.command("report")
@click.option("--data-dir", default=None, help="the data space (or $WORKBENCH_DATA_DIR)")
@click.option("--study", default=None, help="only this study")
@click.option("--holder", default=None, help="only this data holder")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def report(data_dir: str | None, study: str | None, holder: str | None, as_json: bool) -> None:
    """Requests and rows per study, holder and kind (view-read, secure-op)."""
    from workbench.gateway.ledger import read_ledger, usage_report
    from workbench.space.cli import existing_space

    rows = usage_report(read_ledger(existing_space(data_dir)), study=study, holder=holder)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'study':<20} {'holder':<22} {'kind':<10} {'requests':>9} {'rows':>12}")
    for row in rows:
        click.echo(f"{row['study']:<20} {row['holder']:<22} {row['kind']:<10} "
                   f"{row['requests']:>9} {row['rows']:>12}")
    click.echo(f"{'total':<20} {'':<22} {'':<10} {sum(r['requests'] for r in rows):>9} "
               f"{sum(r['rows'] for r in rows):>12}")


commands = [policy_group, gateway, usage]
