"""``workbench demo``, ``workbench hub users`` and ``workbench deploy render``."""

from __future__ import annotations

import click

from workbench.paths import ENV_VAR


@click.command("demo")
@click.option("--data-dir", envvar=ENV_VAR, required=True,
              help=f"the demo space, built when missing (or ${ENV_VAR})")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
              help="the hub policy file, e.g. workbench/hub_config/policy.yaml")
@click.option("--port", default=8000, show_default=True, help="public port on 127.0.0.1")
@click.option("--patients", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="synthetic patients when the space is built (at least 1: the demo's member "
                   "organisations, whose nodes hold the HE key, exist only with them)")
def demo(data_dir: str, policy_path: str, port: int, patients: int) -> None:
    """Run the whole workbench on this machine: services, demo users, proxy and hub."""
    from workbench.hub.demo import run_demo

    raise SystemExit(run_demo(data_dir, policy_path, echo=click.echo, port=port,
                              patients=patients))


@click.group("hub")
def hub() -> None:
    """JupyterHub administration."""


@hub.command("users")
@click.option("--data-dir", envvar=ENV_VAR, required=True, help=f"the space (or ${ENV_VAR})")
@click.option("--db-url", envvar="WORKBENCH_HUB_DB_URL", default=None,
              help="the hub database (or $WORKBENCH_HUB_DB_URL; default: the space's SQLite)")
@click.option("--reset", is_flag=True, help="give existing accounts new passwords")
@click.argument("names", nargs=-1, required=True)
def users(data_dir: str, db_url: str | None, reset: bool, names: tuple[str, ...]) -> None:
    """Create approved password accounts NAMES and print their passwords once."""
    from workbench.hub.database import hub_db_url
    from workbench.hub.layout import HubLayout
    from workbench.hub.users import create_users
    from workbench.space.cli import existing_space

    layout = HubLayout(existing_space(data_dir))
    layout.ensure()
    created = create_users(hub_db_url(layout, db_url), names, reset=reset)
    for name in names:
        click.echo(f"{name}: {created[name]}" if name in created else f"{name}: exists (kept)")


@click.group("deploy")
def deploy() -> None:
    """The workbench on Kubernetes (deploy/README.md)."""


@deploy.command("render")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
              help="the hub policy file")
def render(policy_path: str) -> None:
    """Print the Kubernetes objects beside the z2jh chart's (workbench.hub.kube_manifests)."""
    import yaml

    from workbench.hub.kube_manifests import render as objects
    from workbench.policy import load_policy

    click.echo(yaml.safe_dump_all(objects(load_policy(policy_path)), sort_keys=False))


commands = [demo, hub, deploy]
