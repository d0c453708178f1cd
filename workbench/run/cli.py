"""``workbench run`` and ``workbench rerun``."""

from __future__ import annotations

import os
import sys

import click

from workbench.resources import DEMO_POLICY
from workbench.space.cli import existing_space


def resolve_policy(policy: str | None) -> str:
    """``--policy``, else ``$WORKBENCH_POLICY``, else the demo policy shipped with the package."""
    return policy or os.environ.get("WORKBENCH_POLICY") or str(DEMO_POLICY)


_policy_option = click.option("--policy", help="the hub policy file (default: $WORKBENCH_POLICY, "
                                               "else the demo policy shipped with the package)")
_data_option = click.option("--data-dir", help="the data space (default: $WORKBENCH_DATA_DIR)")


@click.command("run")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--study", required=True, help="the study to run in, e.g. cml-tki")
@click.option("--user", required=True, help="the study member the run is attributed to")
@click.option("-p", "--parameter", "parameters", multiple=True, metavar="NAME=VALUE",
              help="set a notebook parameter (papermill-style; repeatable)")
@_data_option
@_policy_option
def run_command(notebook, study, user, parameters, data_dir, policy):
    """Run NOTEBOOK headless in a sealed study kernel; the executed copy goes into the study
    workspace. Starts the space's services for the run if they are not running."""
    from workbench.run.headless import parse_parameters, run_notebook

    result = run_notebook(existing_space(data_dir), resolve_policy(policy), study, user, notebook,
                          parse_parameters(list(parameters)), echo=click.echo)
    click.echo(f"executed notebook: {result.notebook}")
    if result.failed:
        failed = result.failed
        click.echo(f"error: cell [{failed['code_cell']}/{result.code_cells}] failed: "
                   f"{failed['first_line']}\n  {failed['error']}", err=True)
        sys.exit(1)  # workbench.cli.main drops click's Exit codes (standalone_mode=False)
    click.echo(f"ok: {result.cells} cells ran (kernel {result.kernel_id})")


@click.command("rerun")
@click.option("--study", required=True, help="the study whose logged cells are re-executed")
@click.option("--until", "until", metavar="RECORD_ID",
              help="stop after the cell with this provenance record id")
@click.option("--user", help="who the re-run is attributed to (default: the logged user)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--current", "current_data", is_flag=True,
              help="replay on today's data even where the holder nodes keep the versions a "
                   "stale cell ran on (default: re-create it on those)")
@_data_option
@_policy_option
def rerun_command(study, until, user, as_json, current_data, data_dir, policy):
    """Re-execute a study's logged cells in a fresh sealed kernel and compare each output with
    its record. Exit 0: all reproduced; 1: some outputs differ; 3: differences are all explained
    by datasets that changed since (stale)."""
    import json

    from workbench.run.rerun import rerun_study

    report = rerun_study(existing_space(data_dir), resolve_policy(policy), study, until=until,
                         user=user, echo=(lambda _line: None) if as_json else click.echo,
                         current_data=current_data)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.summary())
    sys.exit(report.exit_code)


commands = [run_command, rerun_command]
