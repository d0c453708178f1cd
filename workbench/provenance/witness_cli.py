"""``workbench provenance witnesses|witness|cosign``: listing the space's witnesses, running a
witness, and asking the witnesses to cosign (registered on the provenance group in cli.py)."""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import click

from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.provenance import cosign

DATA_DIR = click.option("--data-dir", envvar="WORKBENCH_DATA_DIR",
                        help="The data space (default: $WORKBENCH_DATA_DIR).")
STATE = click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False),
                     help="The witness's own directory (0700; its key and the last head).")


@click.group("witnesses")
def witnesses():
    """The witnesses the space lists (DATA_DIR/witnesses.json, public): verify requires a quorum
    of their cosignatures on the log."""


def _listing(space: Space) -> cosign.WitnessList:
    return cosign.load_witnesses(space.witnesses) or cosign.WitnessList({}, 0)


@witnesses.command("add")
@DATA_DIR
@click.argument("witness_id")
@click.option("--key", "public_key", required=True,
              help="The witness's Ed25519 public key, base64 (printed by 'witness init').")
@click.option("--endpoint", help="Where the cosigner reaches it, e.g. unix:/run/wb/witness.sock.")
@click.option("--quorum", type=int, help="Cosignatures verify requires (default: unchanged; 1 "
                                         "for the first witness).")
@click.option("--grace", type=int,
              help=f"Seconds a new head may wait for its cosignatures "
                   f"(default: unchanged; {cosign.GRACE_SECONDS} at first).")
def witnesses_add(data_dir, witness_id, public_key, endpoint, quorum, grace):
    """List a witness (or replace its key or endpoint)."""
    space = Space.at(data_dir)
    current = _listing(space)
    cosign.check_id(witness_id)
    key = cosign.public_key_from(public_key, f"--key for {witness_id}")
    endpoints = {k: v for k, v in current.endpoints.items() if k != witness_id}
    if endpoint:
        endpoints[witness_id] = endpoint
    listing = cosign.WitnessList({**current.witnesses, witness_id: key},
                                 quorum or current.quorum or 1,
                                 current.grace_seconds if grace is None else grace, endpoints)
    cosign.save_witnesses(space, listing)
    click.echo(f"listed witness {witness_id} (key {cosign.key_id(key)}); quorum "
               f"{listing.quorum} of {len(listing.witnesses)}, grace {listing.grace_seconds} s")


@witnesses.command("remove")
@DATA_DIR
@click.argument("witness_id")
@click.option("--quorum", type=int, help="The new quorum (required if it would exceed the list).")
def witnesses_remove(data_dir, witness_id, quorum):
    """Take a witness off the list: its cosignatures stop counting."""
    space = Space.at(data_dir)
    current = _listing(space)
    if witness_id not in current.witnesses:
        raise WorkbenchUserError(f"{space.witnesses} lists no witness {witness_id[:64]!r}",
                                 reason="no-such-witness")
    left = {k: v for k, v in current.witnesses.items() if k != witness_id}
    if not left:
        space.witnesses.unlink()
        click.echo(f"removed {witness_id}; no witnesses listed: the log is not witnessed")
        return
    listing = cosign.WitnessList(left, quorum or current.quorum, current.grace_seconds,
                                 {k: v for k, v in current.endpoints.items() if k != witness_id})
    cosign.save_witnesses(space, listing)
    click.echo(f"removed {witness_id}; quorum {listing.quorum} of {len(left)}")


@witnesses.command("list")
@DATA_DIR
def witnesses_list(data_dir):
    """The listed witnesses, their key ids, the quorum and the grace period."""
    listing = _listing(Space.at(data_dir))
    if not listing.witnesses:
        click.echo("no witnesses listed: the log is not witnessed")
        return
    click.echo(f"quorum {listing.quorum} of {len(listing.witnesses)}, grace "
               f"{listing.grace_seconds} s")
    for name, key in sorted(listing.witnesses.items()):
        click.echo(f"{name}  key {cosign.key_id(key)}  {listing.endpoints.get(name, '-')}")


@click.group("witness")
def witness():
    """Run a witness of a space's provenance log (a holder's node, or any independent party)."""


@witness.command("init")
@STATE
@click.option("--id", "witness_id", required=True, help="Its name in the space's witness list.")
@DATA_DIR
@click.option("--log-key", type=click.Path(exists=True, dir_okay=False),
              help="The collector's tree-head public key (PEM); default: the space's copy.")
def witness_init(state_dir, witness_id, data_dir, log_key):
    """Create a witness: its key, and the collector key it will accept heads from (pinned)."""
    from workbench.node import witness as node_witness
    from workbench.provenance import heads

    path = Path(log_key) if log_key else heads.public_key_path(Space.at(data_dir))
    if not path.exists():
        raise WorkbenchUserError(f"no tree-head public key at {path}: start the collector once, "
                                 "or pass --log-key", reason="no-public-key")
    key = node_witness.enroll(Path(state_dir), witness_id, path.read_bytes())
    encoded = base64.b64encode(cosign.raw_public(key.public_key())).decode()
    click.echo(f"witness {witness_id} created in {state_dir}; the space admin lists it with:\n"
               f"  workbench provenance witnesses add {witness_id} --key {encoded} "
               "[--endpoint unix:SOCKET]")


def _witness(state_dir):
    from workbench.node import witness as node_witness

    return node_witness.Witness(Path(state_dir), node_witness.load_key(Path(state_dir)))


@witness.command("serve")
@STATE
@click.option("--socket", "socket_path", required=True, type=click.Path(dir_okay=False),
              help="The Unix socket to answer on (the endpoint in the witness list).")
def witness_serve(state_dir, socket_path):
    """Answer cosign requests until stopped (SIGTERM)."""
    from workbench.node import witness as node_witness

    node_witness.serve(_witness(state_dir), Path(socket_path))


@witness.command("show")
@STATE
def witness_show(state_dir):
    """Print the last cosignature (one JSON line: hand it to whoever runs verify, as
    --cosignatures FILE) and every refusal on record; exit 1 if there is any."""
    current = _witness(state_dir)
    last = current.last()
    if last:
        click.echo(json.dumps(last["cosignature"], sort_keys=True))
    refusals = current.refusals()
    for entry in refusals:
        click.echo(f"ALARM {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(entry['time']))} "
                   f"{entry['reason']}: {entry['message']}", err=True)
    sys.exit(1 if refusals else 0)


@click.command("cosign")
@DATA_DIR
@click.option("--backend", default=None, help="As for verify (default: what the collector uses).")
@click.option("--every", type=float, help="Repeat every this many seconds until stopped.")
def cosign_command(data_dir, backend, every):
    """Ask the listed witnesses to cosign the newest signed tree head (run beside the collector,
    as root or its account). Exit 1 if a witness refused: that is an alarm."""
    from workbench.provenance.cosigner import Cosigner
    from workbench.provenance.reader import ProvenanceReader

    space = Space.at(data_dir)
    listing = cosign.load_witnesses(space.witnesses)
    if listing is None:
        raise WorkbenchUserError(f"no witnesses listed in {space.witnesses}: add them with "
                                 "'workbench provenance witnesses add'", reason="no-witnesses")
    alarm = False
    with ProvenanceReader(space, backend) as reader:
        cosigner = Cosigner(reader, listing)
        while True:
            result = cosigner.round()
            for line in result.lines():
                click.echo(line)
            alarm = alarm or bool(result.refused)
            if every is None:
                break
            time.sleep(every)
    sys.exit(1 if alarm else 0)


COMMANDS = [witnesses, witness, cosign_command]
