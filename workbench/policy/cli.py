"""``workbench policy check|show|schema``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from workbench.policy.loader import PolicyError, load_policy
from workbench.policy.model import Policy


def policy_schema() -> dict:
    """The JSON schema of the policy file (published as docs/policy.schema.json)."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Workbench hub policy"
    return schema


@click.group("policy")
def policy_group() -> None:
    """Check and summarise the hub policy file (users, studies, grants, thresholds)."""


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--data-dir", default=None, help="also check that granted views exist in this space")
def check(file: str, data_dir: str | None) -> None:
    """Exit 0 if FILE is a valid policy; otherwise list each problem with its line and field."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    if data_dir:
        from workbench.catalog.store import Catalog
        from workbench.paths import Space

        views = Catalog.load(Space.at(data_dir)).views
        missing = [(s, v) for s, study in policy.studies.items()
                   for v in study.views if v not in views]
        for study, view in missing:
            click.echo(f"{file}: study '{study}': granted view '{view}' is not in the catalog of "
                       f"{data_dir}", err=True)
        if missing:
            raise SystemExit(1)
    click.echo(f"{file}: valid ({len(policy.users)} users, {len(policy.studies)} studies, "
               f"{len(policy.holders)} holders)")


@policy_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
def show(file: str) -> None:
    """Summarise FILE: users and roles, then each study with members, reviewers and views."""
    policy = load_policy(file)
    today = datetime.now(UTC).date()
    click.echo("users:")
    for name, user in sorted(policy.users.items()):
        click.echo(f"  {name:<12} {', '.join(user.roles)}")
    click.echo("holders:")
    for name, holder in sorted(policy.holders.items()):
        click.echo(f"  {name:<12} {holder.kind:<9} {holder.title}")
    click.echo("studies:")
    for study_id, study in sorted(policy.studies.items()):
        state = "EXPIRED" if today > study.expires else "active"
        click.echo(f"  {study_id} — {study.title} ({state} until {study.expires.isoformat()})")
        click.echo(f"    sponsor:    {study.sponsor}")
        click.echo(f"    members:    {', '.join(study.members) or '-'}")
        click.echo(f"    reviewers:  {', '.join(study.reviewers) or '-'}")
        click.echo(f"    views:      {', '.join(study.views) or '-'}")
        t, r = study.thresholds, study.resources
        click.echo(f"    disclosure: min cell count {t.min_cell_count}, "
                   f"dominance n={t.dominance.n} k={t.dominance.k}")
        click.echo(f"    resources:  {r.cpu:g} CPU, {r.memory} memory, {r.max_kernels} kernels")


@policy_group.command("schema")
def schema() -> None:
    """Print the policy file's JSON schema."""
    click.echo(json.dumps(policy_schema(), indent=2, sort_keys=True))


commands = [policy_group]
