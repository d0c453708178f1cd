"""``workbench collector`` and ``workbench provenance ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from workbench.paths import Space

DATA_DIR = click.option("--data-dir", envvar="WORKBENCH_DATA_DIR",
                        help="The data space (default: $WORKBENCH_DATA_DIR).")
BACKEND = click.option("--backend", default=None,
                       help="'sqlite' (DATA_DIR/provenance/provenance.sqlite) or a postgresql:// "
                            "URL, optionally ending in #schema (default: what the collector uses).")


@click.command("collector")
@DATA_DIR
@BACKEND
@click.option("--sign-every", default=1000, show_default=True,
              help="Sign a tree head after this many new records.")
@click.option("--sign-interval", default=5.0, show_default=True,
              help="... or after this many seconds with new records.")
def collector(data_dir, backend, sign_every, sign_interval):
    """Run the provenance collector (drops to the wb-collector account when root)."""
    import logging

    from workbench.errors import WorkbenchUserError

    space = Space.at(data_dir)
    # a space built by `workbench init`, or one whose services are being started (start_service
    # makes run/ first); never a mistyped path, where it would start a new, empty log
    if not (space.manifest.is_file() or space.run.is_dir()):
        raise WorkbenchUserError(
            f"{space.root} is not a data space (no space.json): build one with "
            f"'workbench init --data-dir {space.root}'.", reason="no-data-space")
    # jsonschema checks 'iri' formats with rfc3987_syntax, which builds a grammar at import
    # (about a second of CPU); the record schemas use no format keyword, so it is not loaded
    sys.modules.setdefault("rfc3987_syntax", None)
    from workbench.provenance.service import run_collector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s collector %(message)s")
    run_collector(space, backend, sign_every, sign_interval)


@click.group("provenance")
def provenance():
    """Verify, read and export the tamper-evident provenance log."""


def _reader(data_dir, backend, public_key=None):
    from workbench.provenance.reader import ProvenanceReader

    return ProvenanceReader(Space.at(data_dir), backend,
                            Path(public_key) if public_key else None)


@provenance.command("verify")
@DATA_DIR
@BACKEND
@click.option("--anchor", "anchors", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A heads file exported earlier ('provenance heads export'); repeatable.")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False),
              help="Pin the tree-head public key (PEM) instead of the space's copy.")
@click.option("--cosignatures", "cosigned", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Cosignatures a witness handed over ('provenance witness show'); repeatable.")
@click.option("--witnesses", type=click.Path(exists=True, dir_okay=False),
              help="Pin the witness list instead of the space's DATA_DIR/witnesses.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(data_dir, backend, anchors, public_key, cosigned, witnesses, as_json):
    """Check the chain, the Merkle tree, every signed head and the witnesses' cosignatures; exit
    1 naming the first bad record."""
    with _reader(data_dir, backend, public_key) as reader:
        report = reader.verify([Path(a) for a in anchors], [Path(c) for c in cosigned],
                               Path(witnesses) if witnesses else None)
    if as_json:
        click.echo(json.dumps({**report.__dict__, "unsigned_tail": report.unsigned_tail}))
    else:
        click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@provenance.command("log")
@DATA_DIR
@BACKEND
@click.option("--study", help="Only this study's records.")
@click.option("--kind", "kinds", multiple=True, help="Only these record kinds; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
def log_command(data_dir, backend, study, kinds, as_json):
    """The timeline of a study (or of the whole space)."""
    from workbench.provenance.export import timeline_line

    with _reader(data_dir, backend) as reader:
        for record in reader.records(study=study, kinds=kinds or None):
            click.echo(json.dumps(record.as_dict()) if as_json else timeline_line(record))


@provenance.command("export")
@DATA_DIR
@BACKEND
@click.option("--study", required=True)
@click.option("--format", "fmt", type=click.Choice(["prov-json", "ro-crate"]), required=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Default: standard output.")
def export_command(data_dir, backend, study, fmt, output):
    """Export a study's provenance as W3C PROV-JSON or a Five Safes RO-Crate metadata file."""
    from workbench.provenance import export

    with _reader(data_dir, backend) as reader:
        text = export.export(reader, study, fmt)
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text)


@provenance.group("heads")
def heads_group():
    """Signed tree heads."""


@heads_group.command("export")
@DATA_DIR
@BACKEND
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Default: standard output.")
def heads_export(data_dir, backend, output):
    """Write the signed heads and the public key, to anchor them outside the space."""
    with _reader(data_dir, backend) as reader:
        text = json.dumps(reader.export_heads(), indent=2)
    if output:
        Path(output).write_text(text + "\n")
    else:
        click.echo(text)


@provenance.command("proof")
@DATA_DIR
@BACKEND
@click.argument("record_id", required=False)
@click.option("--consistency", "old_size", type=int,
              help="Instead: prove the current tree extends the tree of this size.")
def proof(data_dir, backend, record_id, old_size):
    """Print the RFC 9162 inclusion proof of RECORD_ID in the last signed tree, or a consistency
    proof (--consistency OLD_SIZE) from an earlier tree size to the current one."""
    from workbench.errors import WorkbenchUserError

    with _reader(data_dir, backend) as reader:
        if old_size is not None:
            result = reader.consistency_proof(old_size)
        elif record_id:
            result = reader.inclusion_proof(record_id)
        else:
            raise WorkbenchUserError("give a RECORD_ID or --consistency OLD_SIZE",
                                     reason="bad-request")
    click.echo(json.dumps(result, indent=2))


@provenance.command("init-postgres")
@click.option("--owner-dsn", required=True, help="postgresql:// URL of the schema owner role.")
@click.option("--writer-role", required=True, help="The existing role the collector connects as.")
@click.option("--schema", default="provenance", show_default=True)
def init_postgres(owner_dsn, writer_role, schema):
    """Create the PostgreSQL provenance schema: append-only triggers, INSERT-only writer role."""
    from workbench.provenance.store import create_postgres_schema

    log_id = create_postgres_schema(owner_dsn, writer_role, schema)
    click.echo(f"created schema {schema} (log id {log_id}); run the collector with "
               f"--backend postgresql://{writer_role}@HOST/DB#{schema}")


from workbench.provenance.witness_cli import COMMANDS as _WITNESSING  # noqa: E402

for _command in _WITNESSING:  # provenance witnesses / witness / cosign
    provenance.add_command(_command)

commands = [collector, provenance]
