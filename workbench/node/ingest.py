"""``workbench node ingest``: a holder loads, cleans and vouches for its own data, at its node.

From the holder's source files (``sources.py``) and its declarative mapping
(``workbench/harmonise``) the node makes a new **version** of its store (``versions.py``): the
national id replaced by a pseudonym, the common-model tables, each table's quality report
(``workbench/quality``, with the quarantined rows counted), its catalog entry and its ownership
certificate signed with the node's own key (``catalog/certificates.issue_by_holder``). The
version is built aside and switched to with one rename; the holder's retention rule
(``rules.yaml``: ``retention``) then decides which old versions go.

It all runs as the node's account: started as root, ``run`` reads what the node may not (the
space's linkage key, when the pseudonyms are the space's HMAC ones), starts ``python -m
workbench.node.ingest`` as the account that owns the node directory and hands it the key on its
standard input; afterwards, as root, it publishes the new catalog entries and certificates into
the space's catalog (the node cannot write there).

Pseudonyms: the ``pseudonymise`` parameter maps a list of national ids to pseudonyms. ``auto``
uses the OPRF linkage service's client (``workbench.linkage.client.pseudonyms``) when it is
installed and answers, else the space's keyed HMAC (``space/linkage.py``), the scheme every
centrally built store uses. The scheme is recorded in the version.

A source without a national id (the mapping's ``linkage: {by: name_and_birth_date}``) is linked
by name and birth date instead: the node encodes each distinct identity into a CLK with the
space's CLK secret (its own copy, ``keys/clk.key``), the linkage unit matches the CLKs against
its reference index and answers a pseudonym or none; unmatched identities get a fresh random
pseudonym. A source with a national id whose mapping names its name columns (``linkage: {from:
members, ...}``) uploads its persons' (pseudonym, CLK) pairs to that index after building the
version. Names never reach the store, a log or the linkage unit (docs/linkage.md).
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from workbench.catalog import certificates
from workbench.catalog.models import Dataset, holder_schema
from workbench.errors import WorkbenchUserError
from workbench.node import sources
from workbench.node.config import NodeConfig
from workbench.node.rules import load_rules
from workbench.node.versions import CATALOG_PARTS, VERSION_FILE, VersionStore
from workbench.paths import Space

Pseudonymise = Callable[[list[str]], list[str]]
Echo = Callable[[str], None]
MAX_QUARANTINE = 0.05  # a file with more failing rows than this is refused, not ingested


# -- pseudonyms ------------------------------------------------------------------------------------
def hmac_pseudonymiser(linkage_key: bytes) -> Pseudonymise:
    from workbench.space import linkage

    return lambda ids: list(linkage.pseudonym(linkage_key, ids))


def oprf_pseudonymiser(space: Space) -> Pseudonymise | None:
    """The OPRF linkage service's client, if it is installed and answers; else None."""
    try:
        client = importlib.import_module("workbench.linkage.client")
    except ImportError:
        return None
    try:  # a random probe: the service learns nothing from a blinded value anyway
        client.pseudonyms(space, [secrets.token_hex(8)])
    except Exception:  # noqa: BLE001 - whatever the client raises, the service is not usable
        return None
    return lambda ids: list(client.pseudonyms(space, ids))


def choose_pseudonymiser(scheme: str, space: Space,
                         linkage_key: bytes | None) -> tuple[str, Pseudonymise]:
    if scheme in ("auto", "oprf"):
        oprf = oprf_pseudonymiser(space)
        if oprf is not None:
            return "oprf", oprf
        if scheme == "oprf":
            raise WorkbenchUserError("the OPRF linkage service is not installed or does not "
                                     "answer: start it, or pass --pseudonyms hmac.",
                                     reason="no-linkage-service")
    if linkage_key is None:
        raise WorkbenchUserError(f"{space.linkage_key} is readable by root only: run the ingest "
                                 "as root (it drops to the node's account).",
                                 reason="permission-denied")
    return "hmac", hmac_pseudonymiser(linkage_key)


def _pseudonymise(found: dict[str, sources.Source], pseudonymise: Pseudonymise) -> None:
    """Every distinct id of every file once through ``pseudonymise``; ``national_id`` becomes
    ``person_id`` in place (the ids never reach the store)."""
    columns = [s.table.column(sources.ID) for s in found.values()]
    ids = pa.chunked_array([c for col in columns for c in col.chunks], pa.string())
    codes, uniques = pd.factorize(pd.Series(ids.to_numpy(zero_copy_only=False)).str.strip())
    names = pseudonymise([str(u) for u in uniques])
    if len(names) != len(uniques):
        raise WorkbenchUserError("the pseudonymiser returned a different number of pseudonyms "
                                 "than ids it was given.", reason="bad-pseudonyms")
    missing = sum(1 for name in names if not name)
    if missing:  # e.g. an id whose text a client takes for a missing value ('None', 'nan')
        raise WorkbenchUserError(f"the pseudonymiser gave no pseudonym for {missing} distinct "
                                 "ids, and no row may be stored unlinked: check the id column "
                                 "for placeholder text.", reason="bad-pseudonyms")
    mapped = np.asarray(names, dtype=object)[codes]
    start = 0
    for source in found.values():
        n = source.table.num_rows
        position = source.table.column_names.index(sources.ID)
        source.table = source.table.remove_column(position).add_column(
            position, "person_id", pa.array(mapped[start:start + n], pa.string()))
        start += n


# -- linkage by name and birth date (CLKs) ------------------------------------------------------
CLK_KEY_FILE = "clk.key"  # keys/clk.key (root) and nodes/<h>/keys/clk.key (0600, the node)


@dataclass
class NameLinkage:
    """What a node needs for fuzzy linkage: the space's CLK secret (never the linkage unit's) and
    the linkage unit's two calls (``workbench.linkage.clk.match`` / ``upload_reference``)."""

    secret: bytes
    match: Callable
    upload: Callable


def name_linkage(space: Space, node_root: Path) -> NameLinkage | None:
    """The node's own copy of the CLK secret and the linkage unit's client; None without it."""
    from workbench.linkage import clk

    try:
        secret = (node_root / "keys" / CLK_KEY_FILE).read_bytes()
    except (FileNotFoundError, PermissionError):
        return None
    return NameLinkage(secret, lambda clks: clk.match(space, clks),
                       lambda names, clks: clk.upload_reference(space, names, clks))


def ensure_clk_secret(space: Space, node_root: Path) -> None:
    """As root: the space's CLK secret (made once, ``keys/clk.key``, 0600 root, beside the other
    keys the linkage service cannot read) and the node's copy (``keys/clk.key``, 0600, owned by
    the node's account). The linkage service's account can read neither."""
    from workbench.linkage.fuzzy import SECRET_BYTES

    master = space.keys / CLK_KEY_FILE
    try:
        fd = os.open(master, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = master.read_bytes()
    else:
        secret = secrets.token_bytes(SECRET_BYTES)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
            handle.flush()
            os.fsync(handle.fileno())
    copy = node_root / "keys" / CLK_KEY_FILE
    if copy.is_file() and copy.read_bytes() == secret:
        return
    owner = node_root.stat()
    partial = copy.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    os.chown(partial, owner.st_uid, owner.st_gid)
    os.replace(partial, copy)


def _identities(source: sources.Source, linkage) -> list[tuple[str | None, ...]]:
    """Each row's (first name, last name, ISO birth date), stripped; missing as None."""
    from workbench.linkage.clk import birth_dates

    def text(column: str) -> list[str | None]:
        values = source.table.column(column).to_pylist()
        return [None if v is None or not str(v).strip() else str(v).strip() for v in values]

    dates = birth_dates(source.table.column(linkage.birth_date).to_pylist(),
                        linkage.birth_date_format)
    return list(zip(text(linkage.first_name), text(linkage.last_name), dates, strict=True))


def _encode(identities: list[tuple], secret: bytes) -> list:
    from workbench.linkage import fuzzy

    return fuzzy.encode(({"first_name": f, "last_name": la, "birth_date": b}
                         for f, la, b in identities), secret)


def _drop_names(found: dict[str, sources.Source], loaded) -> None:
    """The names leave the tables (the mapping cannot read them); the birth date stays only
    where the mapping reads it (e.g. for a year of birth)."""
    linkage = loaded.mapping.linkage
    needed = sources.needed_columns(loaded)
    for name, source in found.items():
        drop = [c for c in linkage.columns.values()
                if c in source.table.column_names and c not in needed[name]]
        if drop:
            source.table = source.table.drop_columns(drop)


def _link_by_names(found: dict[str, sources.Source], loaded, names: NameLinkage,
                   echo: Echo) -> dict:
    """Every distinct identity once: its CLK to the linkage unit, the pseudonym it answers (or a
    fresh random one) to every row of that identity as ``person_id``. Returns the linkage
    quality report (counts and the score distribution; no identity)."""
    from workbench.linkage import fuzzy
    from workbench.linkage.clk import score_histogram

    linkage = loaded.mapping.linkage
    per_source = {n: _identities(s, linkage) for n, s in found.items()}
    distinct = list(dict.fromkeys(i for rows in per_source.values() for i in rows))
    clks = _encode(distinct, names.secret)
    matched, scores, facts = names.match(clks)
    if len(matched) != len(distinct):
        raise WorkbenchUserError("the linkage unit answered a different number of matches than "
                                 "CLKs it was sent.", reason="bad-pseudonyms")
    pseudonym = {identity: name or secrets.token_hex(12)  # unmatched: linkable to nothing
                 for identity, name in zip(distinct, matched, strict=True)}
    linked = {identity for identity, name in zip(distinct, matched, strict=True) if name}
    rows = unmatched_rows = 0
    first = linkage.first_name
    for name, source in found.items():
        ids = per_source[name]
        rows += len(ids)
        unmatched_rows += sum(1 for i in ids if i not in linked)
        position = source.table.column_names.index(first)
        source.table = source.table.add_column(
            position, "person_id", pa.array([pseudonym[i] for i in ids], pa.string()))
    _drop_names(found, loaded)
    threshold = facts["threshold"]
    report = {
        "method": "CLK (Bloom filter) of name and birth date, matched by the linkage unit",
        "threshold": threshold, "reference_persons": facts["reference_persons"],
        "identities": len(distinct), "matched": len(linked),
        "unmatched": len(distinct) - len(linked), "rows": rows, "unmatched_rows": unmatched_rows,
        "match_rate": round(len(linked) / len(distinct), 6) if distinct else 0.0,
        "scores": score_histogram(scores, threshold),
        "secret_fingerprint": fuzzy.fingerprint(names.secret),
    }
    echo(f"linkage by name and birth date: {len(linked)} of {len(distinct)} identities matched "
         f"at Dice >= {threshold} ({report['unmatched']} unmatched got unlinkable pseudonyms)")
    return report


def _reference_entries(found: dict[str, sources.Source], loaded,
                       names: NameLinkage) -> tuple[list[str], list]:
    """(pseudonym, CLK) of every distinct (person, spelling) of the ``from`` table."""
    source = found[loaded.mapping.linkage.from_]
    pairs = list(dict.fromkeys(
        (person, identity) for person, identity in zip(
            source.table.column("person_id").to_pylist(),
            _identities(source, loaded.mapping.linkage), strict=True)
        if person and any(identity)))
    return [p for p, _ in pairs], _encode([i for _, i in pairs], names.secret)


# -- the ingest ------------------------------------------------------------------------------------
def ingest(node_root: Path, source_dir: Path, pseudonymise: Pseudonymise | None, *, scheme: str,
           space_id: str, mapping: Path | None = None, max_quarantine: float = MAX_QUARANTINE,
           echo: Echo = print, now: datetime | None = None,
           names: NameLinkage | None = None) -> dict:
    """Make and serve a new version of the node's store; returns its ``version.json``."""
    from nacl.signing import SigningKey

    from workbench.harmonise.engine import harmonise_with
    from workbench.harmonise.mapping import load_mapping, mapping_path

    config = NodeConfig.load(node_root)
    holder, now = config.holder, now or datetime.now(UTC)
    loaded = load_mapping(mapping or mapping_path(holder))
    if loaded.mapping.source != holder:
        raise loaded.error(("source",), f"this mapping is for '{loaded.mapping.source}', the "
                           f"node is '{holder}'")
    linkage = loaded.mapping.linkage
    if linkage.columns and names is None:
        raise WorkbenchUserError(
            f"{loaded.path} links on names and birth dates, and this node has no copy of the "
            f"space's CLK secret ({node_root / 'keys' / CLK_KEY_FILE}): run 'workbench node "
            "ingest' as root, which installs it before dropping to the node's account.",
            reason="no-clk-secret")
    rules = load_rules(config.rules)  # a bad rules file stops the ingest before any work
    store = VersionStore(config.root, holder)
    with store.locked():
        found = _read_sources(Path(source_dir), loaded, max_quarantine, echo)
        linked, reference = None, None
        if linkage.by_names:
            scheme = "clk"
            linked = _link_by_names(found, loaded, names, echo)
        else:
            if pseudonymise is None:
                raise WorkbenchUserError("no pseudonymiser for the national ids.",
                                         reason="no-linkage-service")
            _pseudonymise(found, pseudonymise)
            if linkage.columns:
                reference = _reference_entries(found, loaded, names)
                _drop_names(found, loaded)
        raw = {name: s.table.to_pandas(types_mapper=pd.ArrowDtype) for name, s in found.items()}
        tables = harmonise_with(loaded, raw)
        del raw
        adopted = adopt_enrolled_store(store, now)  # only now: a refused ingest changes nothing
        if adopted:
            echo(f"the store enrolment moved here is kept as version {adopted}")
        key = SigningKey((config.keys / "signing.key").read_bytes())
        aside = store.aside()
        echo(f"building the new version in {aside.name}")
        try:
            version = _write_version(store, aside, tables, found, loaded, key, space_id, scheme,
                                     now, echo, linked)
            if reference is not None:  # only now: a refused ingest uploads nothing
                sent = names.upload(*reference)
                version["reference"] = {"entries": sent["entries"],
                                        "persons": len(set(reference[0]))}
                (aside / VERSION_FILE).write_text(json.dumps(version, indent=2) + "\n")
                echo(f"reference index: {sent['entries']} CLKs of {version['reference']['persons']}"
                     " persons sent to the linkage unit with their pseudonyms")
        except BaseException:
            shutil.rmtree(aside, ignore_errors=True)  # (a killed ingest's: by the next one)
            raise
        store.publish(aside, version["id"])
        removed = store.prune(rules.retention.versions, rules.retention.days, now)
    echo(f"version {version['id']} serving: {version['rows']} rows in "
         f"{len(version['datasets'])} datasets, quality {version['quality_score']:.3f}, "
         f"{version['quarantined_rows']} rows quarantined; pseudonyms: {scheme}")
    if removed:
        echo(f"retention: removed version(s) {', '.join(removed)}")
    return version


def _read_sources(folder: Path, loaded, max_quarantine: float,
                  echo: Echo) -> dict[str, sources.Source]:
    files = sources.find(folder, loaded)
    needed, numeric = sources.needed_columns(loaded), sources.numeric_columns(loaded)
    text, identity = sources.text_columns(loaded), sources.identity_columns(loaded)
    found = {}
    for name, path in sorted(files.items()):
        source = sources.screen(sources.read(name, path, text[name]), needed[name],
                                numeric.get(name, {}), identity.get(name),
                                loaded.mapping.linkage.by_names)
        bad = source.quarantined_rows
        if bad and bad > max_quarantine * source.read_rows:
            first = source.problems[0]
            raise WorkbenchUserError(
                f"{first.where()}: {first.reason}; {bad} of {source.read_rows} rows of "
                f"{path.name} fail, more than the {max_quarantine:.1%} an ingest quarantines: "
                "fix the source file (or raise --max-quarantine).", reason="bad-source-file")
        echo(f"{path.name}: {source.read_rows} rows, {bad} quarantined")
        found[name] = source
    return found


def _write_version(store: VersionStore, aside: Path, tables: dict[str, pd.DataFrame],
                   found: dict[str, sources.Source], loaded, key, space_id: str, scheme: str,
                   now: datetime, echo: Echo, linked: dict | None = None) -> dict:
    from workbench.harmonise.schema import OMOP_SCHEMA
    from workbench.space.tables import TableWriter, file_sha256

    folder = store.store_in(aside)
    for part in ("holders", *CATALOG_PARTS):
        (aside / part).mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True)
    written = {}
    for table, frame in sorted(tables.items()):
        if frame.empty:
            continue
        path = folder / f"{table}.parquet"
        writer = TableWriter(path, OMOP_SCHEMA[table], label=f"holders/{store.holder}/"
                                                            f"{table}.parquet")
        writer.write(frame)
        writer.close()
        written[table] = (path, writer.rows)
        echo(f"wrote {table}: {writer.rows} rows")
    feeds = _feeds(loaded)
    previous = _previous_entries(store)
    datasets = []
    for table, (path, rows) in written.items():
        dataset_id = f"{holder_schema(store.holder)}.{table}"
        report = _quality(dataset_id, path, table, [found[n] for n in sorted(feeds[table])])
        if linked is not None:
            report["linkage"] = linked
        (aside / "quality" / f"{dataset_id}.json").write_text(
            json.dumps(report, indent=2, default=str) + "\n")
        old = previous.get(dataset_id)
        dataset = Dataset(
            id=dataset_id, holder=store.holder, table=table, file=path.name,
            columns=OMOP_SCHEMA[table], rows=rows, version=file_sha256(path),
            quality_score=float(report["score"]), created_at=now,
            title=old.title if old else f"{store.holder}: {table}",
            description=old.description if old else
            f"'{table}' of {store.holder}: {loaded.mapping.description}",
            source=old.source if old else "ingested", usage_terms=old.usage_terms if old else
            "as agreed with the holder", tags=old.tags if old else (store.holder, table))
        (aside / "datasets" / f"{dataset_id}.json").write_text(
            dataset.model_dump_json(indent=2))
        rel = f"holders/{store.holder}/{path.name}"  # as the store's root sees it
        certificates.write(aside / "certificates" / f"{dataset_id}.json",
                           certificates.issue_by_holder(dataset, [(rel, path)], space_id, key,
                                                        now))
        datasets.append(dataset)
    if not datasets:
        raise WorkbenchUserError("the mapping produced no rows from these source files: "
                                 "nothing to ingest.", reason="empty-ingest")
    problems = [p.as_dict() for s in found.values() for p in s.problems]
    with open(aside / "quarantine.jsonl", "w") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in problems)
    return _version_record(aside, datasets, found, scheme, now, linked)


def _version_record(aside: Path, datasets: list[Dataset], found: dict[str, sources.Source],
                    scheme: str, now: datetime, linked: dict | None = None) -> dict:
    files = sorted((f"holders/{d.holder}/{d.file}", d.version) for d in datasets)
    content = certificates._hash_files(files)
    rows = sum(d.rows for d in datasets)
    version = {
        "id": f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{content[:12]}",
        "created_at": now.isoformat(),
        "content_hash": content,
        "rows": rows,
        # the store's score: each dataset's weighted by its rows
        "quality_score": round(sum(d.quality_score * d.rows for d in datasets) / max(rows, 1), 6),
        "datasets": {d.id: {"version": d.version, "rows": d.rows,
                            "quality_score": d.quality_score} for d in datasets},
        "sources": {s.path.name: {"rows": s.read_rows, "quarantined": s.quarantined_rows}
                    for s in found.values()},
        "quarantined_rows": sum(s.quarantined_rows for s in found.values()),
        "pseudonyms": scheme,
    }
    if linked is not None:
        version["linkage"] = linked
    (aside / VERSION_FILE).write_text(json.dumps(version, indent=2) + "\n")
    return version


def _feeds(loaded) -> dict[str, set[str]]:
    return {table: {b.from_ for b in blocks} for table, blocks in loaded.mapping.tables.items()}


def _previous_entries(store: VersionStore) -> dict[str, Dataset]:
    folder = store.root / "catalog" / "datasets"
    entries = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            entry = Dataset.model_validate_json(path.read_text())
        except ValueError:
            continue
        entries[entry.id] = entry
    return entries


def _quality(dataset_id: str, path: Path, table: str, fed_by: list[sources.Source]) -> dict:
    """The quality component's report, with the rows quarantined from the source files that feed
    this table counted as one more validity check."""
    from workbench import quality

    report = quality.report(dataset_id, path, table)
    checked = sum(s.read_rows for s in fed_by)
    failed = sum(s.quarantined_rows for s in fed_by)
    report["checks"].append({
        "dimension": "validity", "check": "quarantined-source-rows", "columns": [],
        "description": "source rows left out by the ingest (" +
                       ", ".join(s.path.name for s in fed_by) + "); see quarantine.jsonl",
        "checked": checked, "failed": failed,
        "rate": round(failed / checked, 6) if checked else 0.0})
    rates = [c["rate"] for c in report["checks"] if c["dimension"] == "validity"]
    report["dimensions"]["validity"] = round(1 - sum(rates) / len(rates), 6)
    scored = [s for s in report["dimensions"].values() if s is not None]
    report["score"] = round(max(0.0, min(1.0, sum(scored) / len(scored))), 6)
    report["quarantine"] = {s.path.name: {"rows": s.read_rows, "quarantined": s.quarantined_rows}
                            for s in fed_by}
    return report


# -- adopting an enrolled node's store ------------------------------------------------------------
def adopt_enrolled_store(store: VersionStore, now: datetime) -> str | None:
    """An enrolled node's store (built centrally, moved by enrolment) becomes its first version,
    so the first ingest has a previous version to keep serving and to go back to."""
    folder = store.root / "holders" / store.holder
    if store.current() is not None or folder.is_symlink() or not folder.is_dir():
        return None
    from workbench.space.tables import file_sha256

    aside = store.aside()
    target = store.store_in(aside)
    target.mkdir(parents=True)
    for path in folder.iterdir():
        os.link(path, target / path.name)  # the same files, no copy
    datasets = []
    for part in CATALOG_PARTS:
        (aside / part).mkdir()
        for path in sorted((store.root / "catalog" / part).glob("*.json")):
            os.link(path, aside / part / path.name)
            if part == "datasets":
                datasets.append(Dataset.model_validate_json(path.read_text()))
    datasets = [d.model_copy(update={"version": file_sha256(target / d.file)}) for d in datasets
                if (target / d.file).is_file()]
    made = min((d.created_at for d in datasets), default=now)  # when it was built
    version = _version_record(aside, datasets, {}, "hmac (built centrally)", made)
    version["adopted"] = "the store enrolment moved here"
    (aside / VERSION_FILE).write_text(json.dumps(version, indent=2) + "\n")
    store.publish(aside, version["id"])
    return version["id"]


# -- as root: drop to the node's account, then publish ---------------------------------------------
def run(space: Space, holder: str, source_dir: Path, mapping: Path | None, scheme: str,
        max_quarantine: float, echo: Echo = print) -> int:
    """Run the ingest as the node's account; publish its catalog entries when it succeeds."""
    root = space.node_dir(holder)
    if not (root / "node.json").exists():
        raise WorkbenchUserError(f"{holder} is not enrolled as a node of {space.root}: run "
                                 f"'workbench node enroll --holder {holder}' first.",
                                 reason="no-node")
    manifest = json.loads(space.manifest.read_text())
    if os.geteuid() == 0 and _declares_names(mapping, holder):
        ensure_clk_secret(space, root)
    key = b""
    if scheme != "oprf":
        try:  # root only: handed to the node's process, never written to its disk
            key = space.linkage_key.read_bytes()
        except (PermissionError, FileNotFoundError):
            key = b""
    command = [sys.executable, "-m", "workbench.node.ingest", "--node-dir", str(root),
               "--sources", str(Path(source_dir).resolve()), "--space", str(space.root),
               "--space-id", manifest["space_id"], "--pseudonyms", scheme,
               "--max-quarantine", repr(max_quarantine)]
    if mapping:
        command += ["--mapping", str(Path(mapping).resolve())]
    owner = root.stat()
    drop = {}
    if os.geteuid() == 0 and owner.st_uid != 0:
        drop = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}
    child = subprocess.Popen(command, stdin=subprocess.PIPE, cwd="/", **drop)
    child.communicate(key.hex().encode())
    if child.returncode != 0:
        return child.returncode
    publish(space, holder)
    echo(f"published the catalog entries and certificates of {holder} in {space.catalog}")
    return 0


def _declares_names(mapping: Path | None, holder: str) -> bool:
    """Whether the mapping links by name or gives names to the reference index (a mapping that
    does not load is the node's process's to report, in its one line)."""
    from workbench.harmonise.mapping import load_mapping, mapping_path

    try:
        return bool(load_mapping(mapping or mapping_path(holder)).mapping.linkage.columns)
    except WorkbenchUserError:
        return False


def publish(space: Space, holder: str) -> None:
    """Copy the served version's catalog entries, quality reports and certificates into the
    space's catalog (root: the node cannot write there), owned like the folder they go to."""
    current = VersionStore(space.node_dir(holder), holder)
    version = current.path(current.current() or "")
    for part in CATALOG_PARTS:
        target = space.catalog / part
        target.mkdir(exist_ok=True)
        owner = target.stat()
        for path in sorted((version / part).glob("*.json")):
            tmp = target / f".{path.name}.tmp"
            tmp.write_bytes(path.read_bytes())
            os.chown(tmp, owner.st_uid, owner.st_gid)
            os.chmod(tmp, 0o640)
            os.replace(tmp, target / path.name)


def _main(argv: list[str] | None = None) -> int:
    """The part that runs as the node's account (``run`` starts it)."""
    import argparse

    parser = argparse.ArgumentParser(prog="workbench.node.ingest")
    for name in ("--node-dir", "--sources", "--space", "--space-id", "--pseudonyms"):
        parser.add_argument(name, required=True)
    parser.add_argument("--mapping")
    parser.add_argument("--max-quarantine", type=float, default=MAX_QUARANTINE)
    args = parser.parse_args(argv)
    key = bytes.fromhex(sys.stdin.read().strip() or "") or None
    echo = lambda line: print(line, flush=True)  # noqa: E731
    try:
        from workbench.harmonise.mapping import load_mapping, mapping_path

        space, node_root = Space(Path(args.space)), Path(args.node_dir)
        mapping = Path(args.mapping) if args.mapping else None
        linkage = load_mapping(mapping or mapping_path(NodeConfig.load(node_root).holder)
                               ).mapping.linkage
        scheme, pseudonymise = "clk", None
        if not linkage.by_names:  # a source without national ids needs no OPRF
            scheme, pseudonymise = choose_pseudonymiser(args.pseudonyms, space, key)
        ingest(node_root, Path(args.sources), pseudonymise, scheme=scheme,
               space_id=args.space_id, mapping=mapping, max_quarantine=args.max_quarantine,
               echo=echo, names=name_linkage(space, node_root) if linkage.columns else None)
    except WorkbenchUserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


# -- the demo's sources ----------------------------------------------------------------------------
def write_sources(folder: Path, holder: str, patients: int, seed: int,
                  fmt: str = "csv") -> dict[str, Path]:
    """The synthetic generator's raw tables of ``holder`` as files, one per raw table."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from workbench import synth

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list] = {}
    for chunk in synth.generate_chunks(patients, seed):
        for name, frame in chunk.tables[holder].items():
            written.setdefault(name, []).append(pa.Table.from_pandas(frame, preserve_index=False))
    paths = {}
    for name, parts in written.items():
        table = pa.concat_tables(parts, promote_options="permissive")
        paths[name] = folder / f"{name}.{fmt}"
        if fmt == "csv":
            pcsv.write_csv(table, paths[name])
        else:
            pq.write_table(table, paths[name])
    return paths


if __name__ == "__main__":
    sys.exit(_main())
