"""``workbench policy check|show|schema|keygen|keys|apply|history``."""

from __future__ import annotations

import difflib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.policy import signed
from workbench.policy.changes import describe_changes, history, summary
from workbench.policy.loader import PolicyError, load_policy, parse_policy
from workbench.policy.model import Policy


def policy_schema() -> dict:
    """The JSON schema of the policy file (published as docs/policy.schema.json)."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Workbench hub policy"
    return schema


@click.group("policy")
def policy_group() -> None:
    """Check, summarise, sign and apply the hub policy (users, studies, grants, thresholds)."""


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
        missing = missing_views(policy, Space.at(data_dir))
        for study, view in missing:
            click.echo(f"{file}: study '{study}': granted view '{view}' is not in the catalog of "
                       f"{data_dir}", err=True)
        if missing:
            raise SystemExit(1)
    click.echo(f"{file}: valid ({len(policy.users)} users, {len(policy.studies)} studies, "
               f"{len(policy.holders)} holders)")


def missing_views(policy: Policy, space: Space) -> list[tuple[str, str]]:
    """(study, view) for every granted view that the space's catalog does not have."""
    from workbench.catalog.store import Catalog

    views = Catalog.load(space).views
    return [(s, v) for s, study in policy.studies.items() for v in study.views if v not in views]


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


# -- signing: admin keys, apply, history -----------------------------------------------------------
def _space(data_dir: str | None) -> Space:
    space = Space.at(data_dir)
    if not space.root.is_dir():
        raise WorkbenchUserError(f"{space.root} is not a data space directory: pass --data-dir "
                                 "of a space built by 'workbench init'", reason="no-data-space")
    return space


@policy_group.command("keygen")
@click.option("--data-dir", default=None, help="the space (or $WORKBENCH_DATA_DIR)")
@click.option("--name", required=True, help="the admin the key belongs to, e.g. 'ada'")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="where to write the private key (created 0600; never overwritten)")
def keygen(data_dir: str | None, name: str, out: str) -> None:
    """Create an admin's Ed25519 signing key and register its public half in the space (root)."""
    space = _space(data_dir)
    if os.geteuid() != 0:  # before a key file exists that could never be registered
        raise WorkbenchUserError("registering an admin key is a root action on the space: run "
                                 "it as root", reason="permission-denied")
    key = signed.create_admin_key(out)
    key_id = signed.register_admin_key(space, name, key.public_key())
    click.echo(f"admin key {key_id} written to {out} (mode 0600, keep it offline) and registered "
               f"in {space.admin_keys}; from now on the space's services act only "
               "on a policy signed by a registered admin key")


@policy_group.command("keys")
@click.option("--data-dir", default=None, help="the space (or $WORKBENCH_DATA_DIR)")
def keys(data_dir: str | None) -> None:
    """List the space's registered admin keys."""
    entries = signed.admin_key_entries(_space(data_dir))
    if not entries:
        click.echo("no admin key registered: the space accepts an unsigned policy "
                   "(run 'workbench policy keygen' as root)")
    for entry in entries:
        click.echo(f"{entry['id']:<28} {entry.get('name', ''):<12} added "
                   f"{entry.get('added_at', '?')}")


def _in_force(space: Space) -> tuple[bytes, dict | None, Policy | None]:
    """The active policy's bytes, record and parsed form (b"", None, None when there is none)."""
    path = space.policy
    if not path.exists():
        return b"", None, None
    data, record = signed.read_signed(path)
    try:
        return data, record, parse_policy(data.decode(), str(path))
    except (WorkbenchUserError, UnicodeDecodeError):
        return data, record, None


def apply_policy(space: Space, new_bytes: bytes, source: str, key, *, echo=click.echo,
                 confirm=lambda: True) -> dict | None:
    """Validate, show the diff, confirm, sign (serial = newest + 1), record a ``policy-change``
    and put the policy in force. Returns the provenance fields, or None when nothing changed.
    The record comes before the swap: a change that cannot be recorded is not made."""
    from workbench.provenance.client import ProvenanceClient

    try:
        new = parse_policy(new_bytes.decode(), source)
    except UnicodeDecodeError:
        raise WorkbenchUserError(f"{source} is not UTF-8 text", reason="bad-policy") from None
    if space.catalog.is_dir():
        missing = missing_views(new, space)
        if missing:
            study, view = missing[0]
            raise WorkbenchUserError(
                f"{source}: study '{study}': granted view '{view}' is not in the space's "
                f"catalog ({len(missing)} such grant(s)); list views with 'workbench catalog "
                "list'", reason="bad-policy")
    key_id = signed.key_id_of(space, key)
    old_bytes, old_record, old = _in_force(space)
    if old_bytes == new_bytes:
        echo(f"no change: {source} is the policy in force"
             + (f" (serial {old_record['serial']})" if old_record else ""))
        return None
    before = f"serial {old_record['serial']} (in force)" if old_record else "(no policy in force)"
    diff = difflib.unified_diff(old_bytes.decode(errors="replace").splitlines(keepends=True),
                                new_bytes.decode().splitlines(keepends=True),
                                fromfile=before, tofile=source)
    echo("".join(diff).rstrip("\n"))
    changes = describe_changes(old, new)
    echo(f"changes: {summary(changes)}")
    if not confirm():
        echo("not applied: the policy in force is unchanged")
        return None
    previous = signed.newest_serial(space)
    record = signed.sign_policy(new_bytes, key, key_id, previous + 1)
    try:
        version = signed.stage(space, new_bytes, record)
    except OSError as exc:
        raise WorkbenchUserError(f"cannot write {space.policy_dir}: {exc.strerror}; putting a "
                                 "policy in force is a root action on the space",
                                 reason="permission-denied") from None
    actor = next((e.get("name") for e in signed.admin_key_entries(space)
                  if e["id"] == key_id), None) or key_id
    fields = {"actor": actor, "status": "ok", "policy_sha256": record["sha256"],
              "policy_path": str(space.policy), "serial": record["serial"],
              "previous_serial": previous, "key_id": key_id, "issued_at": record["issued_at"],
              **({"previous_sha256": old_record["sha256"]} if old_record else {}), **changes}
    client = ProvenanceClient(space.collector_socket, timeout=10)
    try:
        record_id = client.append("policy-change", fields)
    except WorkbenchError as exc:
        raise WorkbenchUserError(f"the policy-change could not be recorded, so the policy in "
                                 f"force is unchanged: {exc}",
                                 reason=getattr(exc, "reason", "provenance-unavailable")) from None
    finally:
        client.close()
    path = signed.activate(space, version)
    echo(f"serial {record['serial']} in force at {path}, signed with {key_id}; provenance "
         f"record {record_id[:16]}")
    from workbench.node.keygen import key_status

    he_key = key_status(space, new)
    if he_key.get("status") == "re-key needed":  # a changed secure: takes a new key first
        echo(f"HE key: {he_key['note']}")
    return {**fields, "record": record_id}


@policy_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--data-dir", default=None, help="the space (or $WORKBENCH_DATA_DIR)")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False),
              help="the admin's private signing key ('workbench policy keygen')")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def apply(file: str, data_dir: str | None, key_path: str, yes: bool) -> None:
    """Validate FILE, show its diff against the policy in force, sign it and put it in force.

    The space's gateway, airlock and hub pick it up at their next request."""
    space = _space(data_dir)
    key = signed.load_admin_private_key(key_path)
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise WorkbenchUserError(f"cannot read policy file {file}: {exc.strerror}",
                                 reason="bad-policy") from None
    apply_policy(space, data, file, key,
                 confirm=lambda: yes or click.confirm("sign and apply this policy?"))


@policy_group.command("history")
@click.option("--data-dir", default=None, help="the space (or $WORKBENCH_DATA_DIR)")
def history_command(data_dir: str | None) -> None:
    """The policy changes recorded in provenance, newest first (root: reads the store)."""
    for row in history(_space(data_dir)):
        click.echo(f"serial {row['serial']}  {row['ts'][:19]}  {row['key_id']:<24} "
                   f"{row['what']}")



def install_demo_policy(space: Space, initial: str, echo=click.echo) -> Path:
    """``workbench demo``: the space's signed policy. On the first run, an admin key is made
    (``keys/admin.key``, root only) and registered for the policy's first admin, and ``initial``
    is applied as serial 1 (recorded: a collector is started for it if none answers). Later
    runs keep the policy in force, which the admin changes with ``workbench policy apply``."""
    from workbench.provenance.client import ProvenanceClient
    from workbench.provenance.service import start_collector

    key_file = space.keys / "admin.key"
    if not signed.load_admin_keys(space):
        name = (load_policy(initial).admins() or ["admin"])[0]
        key = (signed.load_admin_private_key(key_file) if key_file.exists()
               else signed.create_admin_key(key_file))
        key_id = signed.register_admin_key(space, name, key.public_key())
        echo(f"admin key {key_id} of '{name}' registered (private key {key_file})")
    path = space.policy
    if path.exists():
        echo(f"the space's signed policy is in force ({path}); change it with 'workbench policy "
             f"apply FILE --data-dir {space.root} --key {key_file}'")
        return path
    key = signed.load_admin_private_key(key_file)
    data = Path(initial).read_bytes()
    probe = ProvenanceClient(space.collector_socket, timeout=2)
    try:
        probe.ping()
        collector_up = True
    except WorkbenchError:
        collector_up = False
    finally:
        probe.close()
    if collector_up:
        apply_policy(space, data, initial, key, echo=echo)
    else:
        with start_collector(space):
            apply_policy(space, data, initial, key, echo=echo)
    return path


commands = [policy_group]
