"""``workbench node``: enrol holders as nodes, run a node, revoke certificates, check a journal."""

from __future__ import annotations

import os
from pathlib import Path

import click

from workbench.errors import WorkbenchUserError


@click.group("node")
def node_group() -> None:
    """Holder nodes: each holder's store, keys and rules behind its own mTLS service."""


@node_group.command("enroll")
@click.option("--data-dir", type=click.Path(), help="the space (default $WORKBENCH_DATA_DIR)")
@click.option("--holder", "holders", multiple=True, help="only these holders (default: all)")
def enroll(data_dir: str | None, holders: tuple[str, ...]) -> None:
    """Make every holder of the space a node (own account, directory, keys, certificate)."""
    from workbench import accounts
    from workbench.node import enroll as enrolment
    from workbench.paths import Space

    space = Space.at(data_dir)
    if not space.manifest.exists():
        raise WorkbenchUserError(f"{space.root} is not a space: build one with 'workbench init'.",
                                 reason="no-space")
    for holder in holders or enrolment.space_holders(space):
        config = enrolment.enroll_node(space, holder)
        click.echo(f"node {holder}: {config.root} (account {accounts.holder_node_user(holder)})")
    enrolment.enroll_role(space, "coordinator", accounts.GATEWAY)
    enrolment.enroll_role(space, "aggregator", accounts.AGGREGATOR)
    if not holders:
        enrolment.finish(space)
    click.echo(f"certificates from the space CA in {space.pki}")


@node_group.command("serve")
@click.option("--node-dir", required=True, type=click.Path(), help="the node's own directory")
@click.option("--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT")
def serve(node_dir: str, listen: str) -> None:
    """Run a holder node (as root it drops to the account that owns NODE_DIR first)."""
    from workbench.node.config import NodeConfig
    from workbench.node.server import serve as run

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise WorkbenchUserError(f"--listen {listen!r} is not HOST:PORT.", reason="bad-listen")
    root = Path(node_dir).resolve()
    if os.geteuid() == 0:
        import tenseal  # noqa: F401 - loaded before dropping privileges

        owner = root.stat()
        if owner.st_uid != 0:
            os.setgroups([])
            os.setgid(owner.st_gid)
            os.setuid(owner.st_uid)
    run(NodeConfig.load(root), host, int(port))


@node_group.command("ingest")
@click.option("--data-dir", type=click.Path(), help="the space (default $WORKBENCH_DATA_DIR)")
@click.option("--holder", required=True, help="the node that ingests (its own data)")
@click.option("--sources", "source_dir", required=True, type=click.Path(path_type=Path),
              help="folder of the holder's raw files: <raw table>.csv or .parquet")
@click.option("--mapping", type=click.Path(path_type=Path),
              help="its declarative mapping (default: the packaged mappings/<holder>.yaml)")
@click.option("--pseudonyms", type=click.Choice(["auto", "oprf", "hmac"]), default="auto",
              show_default=True, help="OPRF linkage service, or the space's keyed HMAC")
@click.option("--max-quarantine", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="largest share of a file's rows that may be quarantined")
def ingest(data_dir: str | None, holder: str, source_dir: Path, mapping: Path | None,
           pseudonyms: str, max_quarantine: float) -> None:
    """Make a new version of HOLDER's store from its source files, at its node, as its account:
    harmonised, pseudonymised, quality-checked, certified by the holder; then serve it."""
    from workbench.node.ingest import run
    from workbench.paths import Space

    space = Space.at(data_dir)
    if not space.manifest.exists():
        raise WorkbenchUserError(f"{space.root} is not a space: build one with 'workbench init'.",
                                 reason="no-space")
    status = run(space, holder, source_dir, mapping, pseudonyms, max_quarantine, click.echo)
    if status:
        raise click.exceptions.Exit(status)


@node_group.command("versions")
@click.option("--data-dir", type=click.Path())
@click.option("--holder", required=True)
def versions(data_dir: str | None, holder: str) -> None:
    """The dataset versions a node keeps (its retention rule decides how many)."""
    from workbench.node.versions import VersionStore
    from workbench.paths import Space

    store = VersionStore(Space.at(data_dir).node_dir(holder), holder)
    current = store.current()
    for v in store.versions():
        mark = "*" if v["id"] == current else " "
        click.echo(f"{mark} {v['id']}  {v['created_at']}  rows {v['rows']:>9}  quality "
                   f"{v['quality_score']:.3f}  quarantined {v.get('quarantined_rows', 0)}  "
                   f"content {v['content_hash'][:16]}")


@node_group.command("revoke")
@click.argument("role", type=click.Choice(["node", "coordinator", "aggregator"]))
@click.argument("name")
@click.option("--serial", type=int, help="only this certificate (default: all of NAME's)")
@click.option("--data-dir", type=click.Path())
def revoke(role: str, name: str, serial: int | None, data_dir: str | None) -> None:
    """Revoke a certificate: nodes and the coordinator refuse it at the next request."""
    from workbench.node.pki import Authority
    from workbench.paths import Space

    serials = Authority(Space.at(data_dir).pki).revoke(role, name, serial)
    click.echo(f"revoked {role} {name}: serial(s) {', '.join(map(str, serials))}")


@node_group.command("keygen")
@click.option("--data-dir", type=click.Path(), help="the space (default $WORKBENCH_DATA_DIR)")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False),
              help="the signed policy in force (default: the space's policy/policy.yaml)")
def keygen(data_dir: str | None, policy_path: str | None) -> None:
    """Make the nodes' joint BFV key for the signed policy's key parties and decryption
    threshold, if the key in place is not already theirs (run as root, the nodes running):
    after 'workbench policy apply' changed secure.decryption_threshold, the nodes refuse
    rounds under the old key until this has run."""
    from workbench.node.keygen import ensure_joint_key
    from workbench.paths import Space

    record = ensure_joint_key(Space.at(data_dir), policy_path=policy_path)
    if record is None:
        click.echo("fewer than 2 key parties: the space keeps its single BFV key")
        return
    click.echo(f"joint key {record['keygen'][:12]}: t = {record['t']} of "
               f"{', '.join(record['parties'])}")


@node_group.command("list")
@click.option("--data-dir", type=click.Path())
def list_certificates(data_dir: str | None) -> None:
    """Every certificate the space CA issued, and whether it is revoked."""
    from workbench.node.pki import Authority
    from workbench.paths import Space

    for entry in Authority(Space.at(data_dir).pki).ledger()["issued"]:
        state = f"revoked {entry['revoked']}" if entry["revoked"] else "valid"
        click.echo(f"{entry['role']:<12} {entry['name']:<16} {entry['serial']:>40}  "
                   f"issued {entry['issued']}  {state}")


@node_group.command("journal")
@click.option("--node-dir", required=True, type=click.Path())
def journal(node_dir: str) -> None:
    """Verify the node's hash-chained journal and print how many entries it holds."""
    from workbench.node.config import NodeConfig
    from workbench.node.journal import Journal

    count = Journal(NodeConfig.load(Path(node_dir)).journal).verify()
    click.echo(f"{count} entries; the hash chain is intact")
commands = [node_group]
