"""``workbench review broker|files|dashboard``: the reviewer services. JupyterHub starts them as
managed services with the commands workbench/review/services.py builds; ``start_review_broker``
runs ``workbench review broker`` too. Imports are inside the commands: every ``workbench``
command loads this module."""

from __future__ import annotations

import click

from workbench.paths import ENV_VAR, Space

DATA_DIR = click.option("--data-dir", help=f"the data space (default: ${ENV_VAR})")


@click.group("review")
def review() -> None:
    """The reviewer dashboards' services (JupyterHub starts them)."""


@review.command("broker")
@DATA_DIR
@click.option("--policy", "policy_file", required=True, help="the hub policy file")
@click.option("--listen-fd", type=int,
              help="an inherited listening socket (start_review_broker binds it)")
def broker(data_dir: str | None, policy_file: str, listen_fd: int | None) -> None:
    """Run the review broker, the dashboards' one privileged helper (root only)."""
    import logging
    import signal
    import socket
    import sys

    from workbench.review.broker import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s review-broker %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(fileno=listen_fd) if listen_fd is not None else None
    serve(Space.at(data_dir), policy_file, listener)


@review.command("files")
@DATA_DIR
def files(data_dir: str | None) -> None:
    """Serve released files to study members and reviewers (behind hub OAuth)."""
    from workbench.review.files import serve

    serve(Space.at(data_dir))


@review.command("dashboard")
@click.option("--notebooks", required=True, help="the directory of this service's dashboards")
@DATA_DIR
@click.option("--policy", required=True, help="the hub policy file")
@click.option("--study", help="the study whose dashboards these are (none: the admin overview)")
@click.option("--all-studies", is_flag=True,
              help="serve every study's reviewers, the study named by each visit (?study=)")
@click.option("--dashboards", required=True,
              help="comma-separated notebook names this service may render")
def dashboard(notebooks: str, data_dir: str | None, policy: str, study: str | None,
              all_studies: bool, dashboards: str) -> None:
    """Run one reviewer dashboard service: standalone Voila behind hub OAuth."""
    import types

    from workbench.errors import WorkbenchUserError
    from workbench.review.voila_app import serve
    from workbench.sandbox.provisioner import PER_VISIT

    if all_studies and study:
        raise WorkbenchUserError("give --study or --all-studies, not both", reason="bad-usage")
    serve(types.SimpleNamespace(notebooks=notebooks, data_dir=data_dir, policy=policy,
                                study=PER_VISIT if all_studies else study,
                                dashboards=dashboards))


commands = [review]
