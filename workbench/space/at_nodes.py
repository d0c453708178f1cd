"""The demo space's synthetic stores, built at the holders' own nodes (``workbench demo``).

``init_space(..., synthetic_at_nodes=True)`` builds what is central by necessity (the space's
keys, the holders' and HE keys, the views, the public validation datasets) and names in the
manifest the holders whose data is theirs to bring (``ingest_at_nodes``: holders, patients,
seed). Once enrolment has made their nodes (accounts, 0700 directories, signing keys),
``build_at_nodes``:

1. starts the OPRF linkage service (if it is not running) for the time of the ingests;
2. per holder, as **its node's account**: generates its raw source files into
   ``nodes/<holder>/sources/`` (0700 folder, 0600 files; the synthetic generator stands in for
   the holder's own systems: it simulates every holder at once and this process keeps only its
   own tables), then ``workbench node ingest --pseudonyms oprf`` from them (the node's process
   reads them, blinds the ids for the service, harmonises, checks quality and signs the
   certificates with the holder's key; root only publishes the catalog entries);
3. per holder, as its node's account again, checks the views over its own rows for plaintext
   columns that give a sensitive one away (``catalog/derived.py``; only column names leave) and
   counts its records and persons for the linkage report, giving its persons as pseudonyms
   re-keyed for a one-off "study" (the nodes' shared study re-keying key, a fresh random name
   never a valid study id), so the report's overlaps are counted without anyone outside the
   nodes seeing a space-wide pseudonym, let alone an id;
4. as root: marks the derived columns in the space's catalog and in every node's copy of the
   views, writes the linkage report and lists the new datasets in the manifest.

A holder whose node already serves a version is skipped, so an interrupted demo build goes on
where it stopped; the checks of step 3 run again until they have finished once. No process but
a holder's node account opens its sources.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from workbench.errors import WorkbenchUserError
from workbench.paths import Space

Echo = Callable[[str], None]
SOURCES = "sources"  # in the node's directory: the holder's raw files


def plan(space: Space) -> dict | None:
    return json.loads(space.manifest.read_text()).get("ingest_at_nodes")


def pending(space: Space) -> list[str]:
    """The holders of the plan whose node serves no version of its store yet."""
    from workbench.node.versions import VersionStore

    holders = (plan(space) or {}).get("holders", [])
    return [h for h in holders if VersionStore(space.node_dir(h), h).current() is None]


def build_at_nodes(space: Space, echo: Echo = print) -> list[str]:
    """Each pending holder's node generates and ingests its own sources; returns those holders."""
    from workbench.linkage import socket_path
    from workbench.linkage.process import start_linkage
    from workbench.node import ingest
    from workbench.runtime import socket_answers

    todo, made = pending(space), plan(space)
    if not todo and (made is None or made.get("checked")):
        return []
    for holder in todo:
        if not (space.node_dir(holder) / "node.json").exists():
            raise WorkbenchUserError(f"{holder} must be enrolled as a node before it ingests: "
                                     "run 'workbench node enroll' first.", reason="no-node")
    service = None if not todo or socket_answers(socket_path(space)) else start_linkage(space)
    try:
        for holder in todo:
            echo(f"node {holder}: generating its raw sources as its own account ...")
            written = json.loads(_as_node(space, holder, "sources", "--patients",
                                          str(made["patients"]), "--seed", str(made["seed"])))
            folder = Path(written["sources"])
            mapping = Path(written["mapping"]) if written["mapping"] else None
            echo(f"node {holder}: ingesting {folder} (OPRF pseudonyms)")
            status = ingest.run(space, holder, folder, mapping, "oprf", ingest.MAX_QUARANTINE,
                                echo)
            if status:
                raise WorkbenchUserError(f"the ingest at node {holder} failed (exit {status}, "
                                         "see above); run the demo again to retry it.",
                                         reason="ingest-failed")
    finally:
        if service is not None:
            service.stop()
    study = f"linkage-report:{secrets.token_hex(8)}"  # never a study id: ':' is not allowed
    found = {h: json.loads(_as_node(space, h, "check", "--study", study))
             for h in made["holders"]}
    _mark_derived(space, found, echo)
    _linkage_report(space, found, echo)
    _finish(space)  # only now: a build stopped before this point checks again next time
    return todo


# -- as root, with what the nodes answered --------------------------------------------------------
def _as_node(space: Space, holder: str, *args: str) -> str:
    """Run this module's node side as the account that owns the holder's node directory."""
    root = space.node_dir(holder)
    owner = root.stat()
    drop = {}
    if os.geteuid() == 0 and owner.st_uid != 0:
        drop = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}
    done = subprocess.run([sys.executable, "-m", "workbench.space.at_nodes", *args,
                           "--node-dir", str(root)], stdout=subprocess.PIPE, cwd="/",
                          check=False, **drop)
    if done.returncode != 0:  # its one-line error went to our stderr
        raise WorkbenchUserError(f"node {holder}: '{args[0]}' failed (exit {done.returncode}, "
                                 "see above).", reason="node-step-failed")
    return done.stdout.decode()


def _mark_derived(space: Space, found: dict[str, dict], echo: Echo) -> None:
    """A column any node found derived is sensitive in every copy of the view."""
    from workbench.catalog.store import Catalog

    catalog = Catalog.load(space)
    marks: dict[str, dict[str, str]] = {}
    for answer in found.values():
        for view_id, columns in answer["derived"].items():
            for column, sensitive in columns.items():
                marks.setdefault(view_id, {}).setdefault(column, sensitive)
    for view_id, columns in sorted(marks.items()):
        view = catalog.views[view_id]
        marked = view.model_copy(update={"columns": tuple(
            c.model_copy(update={"sensitivity": "sensitive", "derived_from": columns[c.name]})
            if c.name in columns else c for c in view.columns)})
        _write_like_folder(Catalog.write(space, marked))
        for node in sorted(p for p in space.nodes.iterdir() if (p / "node.json").exists()):
            _write_like_folder(Catalog.write(Space(node), marked))
        echo(f"view {view_id}: {', '.join(sorted(columns))} made sensitive (derived from a "
             "sensitive column at a holder)")


def _write_like_folder(path: Path) -> None:
    """A file root wrote into another account's folder: owned as the folder, not readable by
    others."""
    folder = path.parent.stat()
    os.chown(path, folder.st_uid, folder.st_gid)
    os.chmod(path, 0o640 if folder.st_mode & 0o050 else 0o600)


def _linkage_report(space: Space, found: dict[str, dict], echo: Echo) -> None:
    from workbench.space import linkage

    tally = linkage.LinkageTally()
    for holder, answer in sorted(found.items()):
        counts = answer["linkage"]
        tally.add(holder, counts["persons"], counts["records"],
                  counts["records_missing_identifier"])
    report = tally.report()
    report["method"] = ("OPRF (RFC 9497, ristretto255) pseudonyms made at each node with the "
                        "linkage service; overlaps counted on pseudonyms each node re-keyed for "
                        "this report only")
    path = space.catalog / "linkage.json"
    linkage.write_report(path, report)
    _write_like_folder(path)
    echo(f"linkage: {report['persons_total']} persons across {len(report['holders'])} holders "
         "(ingested at their nodes)")


def _finish(space: Space) -> None:
    """The manifest lists the new datasets and records that the checks ran."""
    from workbench.catalog.store import Catalog

    manifest = json.loads(space.manifest.read_text())
    manifest["datasets"] = sorted(Catalog.load(space).datasets)
    manifest["ingest_at_nodes"]["checked"] = True
    tmp = space.manifest.with_name(f".{space.manifest.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, space.manifest)


# -- as the node's account ------------------------------------------------------------------------
def _sources(node_root: Path, patients: int, seed: int) -> dict:
    """The holder's raw files, written by this account only: 0700 folder, 0600 files. A raw
    table the generator left empty (a few patients: no adverse event) is no file, and the
    blocks reading it leave the node's copy of its mapping (the central build leaves such
    tables out too); returns the folder and that mapping (None: the packaged one)."""
    import pyarrow.csv as pcsv
    import yaml

    from workbench.harmonise.mapping import mapping_path
    from workbench.node.config import NodeConfig
    from workbench.node.ingest import write_sources

    os.umask(0o077)
    holder = NodeConfig.load(node_root).holder
    folder, aside = node_root / SOURCES, node_root / f".{SOURCES}-building"
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(mode=0o700)
    empty = set()
    for name, path in write_sources(aside, holder, patients, seed, "csv").items():
        os.chmod(path, 0o600)
        if pcsv.read_csv(path).num_rows == 0:
            path.unlink()
            empty.add(name)
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(aside, folder)
    mapping = node_root / "mapping.yaml"
    mapping.unlink(missing_ok=True)
    if not empty:
        return {"sources": str(folder), "mapping": None}
    document = yaml.safe_load(mapping_path(holder).read_text())
    tables = {table: [b for b in blocks if b["from"] not in empty]
              for table, blocks in document["tables"].items()}
    document["tables"] = {table: blocks for table, blocks in tables.items() if blocks}
    mapping.write_text(yaml.safe_dump(document, sort_keys=False))
    return {"sources": str(folder), "mapping": str(mapping)}


def _check(node_root: Path, study: str) -> dict:
    """Derived columns of the views over this node's rows (names only), and its linkage counts
    with its persons re-keyed for ``study``."""
    import pyarrow.parquet as pq

    from workbench.catalog.derived import derived_columns
    from workbench.node.config import NodeConfig
    from workbench.node.versions import VERSION_FILE, VersionStore
    from workbench.space.linkage import study_pseudonyms, study_rekey_key
    from workbench.views import ViewEngine

    node = Space(node_root)
    engine = ViewEngine(node, rekey_key=bytes(32))  # unprotected reads on its own rows only
    derived = {}
    for view in engine.views.values():
        frame = engine.unprotected_frame(view.id, tuple(c.name for c in view.columns))
        if len(frame):
            found = derived_columns(view, frame)
            if found:
                derived[view.id] = found
    persons: set[str] = set()
    for dataset in engine.catalog.datasets.values():
        if any(c.name == "person_id" for c in dataset.columns):
            path = engine.catalog.dataset_path(node, dataset)
            persons.update(p for p in pq.read_table(path, columns=["person_id"])
                           .column(0).to_pylist() if p)
    store = VersionStore(node_root, NodeConfig.load(node_root).holder)
    version = json.loads((store.path(store.current()) / VERSION_FILE).read_text())
    quarantine = store.path(store.current()) / "quarantine.jsonl"
    no_id = sum(1 for line in quarantine.read_text().splitlines()
                if json.loads(line)["reason"].startswith("no national id"))
    rekeyed = study_pseudonyms(study_rekey_key(node), study, sorted(persons))
    return {"derived": derived, "linkage": {
        "records": sum(s["rows"] for s in version["sources"].values()),
        "records_missing_identifier": no_id, "persons": sorted(rekeyed)}}


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="workbench.space.at_nodes")
    parser.add_argument("step", choices=["sources", "check"])
    parser.add_argument("--node-dir", required=True, type=Path)
    parser.add_argument("--patients", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--study")
    args = parser.parse_args(argv)
    try:
        if args.step == "sources":
            print(json.dumps(_sources(args.node_dir, args.patients, args.seed)), flush=True)
        else:
            print(json.dumps(_check(args.node_dir, args.study)), flush=True)
    except WorkbenchUserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
