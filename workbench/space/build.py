"""``workbench init``: build a data space aside (a temporary directory beside the target, on the
same filesystem) and rename it into place, so a space is either complete or absent.

Order of work: keys -> public validation datasets -> synthetic three-source data (chunk by chunk:
national ids replaced by keyed pseudonyms, harmonised, appended to parquet) -> quality reports ->
catalog records -> views -> linkage report -> ownership certificates -> HE keys -> manifest ->
ownership and modes -> rename.

With ``synthetic_at_nodes`` (``workbench demo``) the synthetic holders' stores are not built here:
the space gets what is central by necessity (its keys, the holders' keys, the HE keys, the
catalog's views, the public validation datasets) and the manifest names the synthetic holders
and the generator's patients and seed (``ingest_at_nodes``); each holder's node then generates
and ingests its own sources (``workbench/space/at_nodes.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from workbench.catalog import certificates
from workbench.catalog.models import Column, Dataset, holder_schema
from workbench.catalog.store import Catalog
from workbench.catalog.view_files import check_views, load_view_file
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.space import keys, linkage, permissions, public
from workbench.space.tables import TableWriter, file_sha256

PUBLIC_VIEWS = Path(__file__).resolve().parent.parent / "catalog" / "public_views.yaml"
SYNTH_VIEWS = Path(__file__).resolve().parent.parent / "synth" / "views.yaml"
SYNTH_HOLDERS = {
    "hospital-a": "Hospital A (care records: encounters, diagnoses, labs, procedures, deaths)",
    "hospital-b": "Hospital B (care records: encounters, diagnoses, labs, procedures, deaths)",
    "insurer": "Health insurer (enrolment periods, claims and their costs)",
    "insurer-b": "Second health fund (enrolment periods, claims and their costs)",
    "pharma": "Pharma company (dispensing and adverse events)",
}
SYNTH_USAGE = "synthetic data for method development; no real person is described"
Echo = Callable[[str], None]


def init_space(data_dir: str | os.PathLike | None, patients: int = 10_000, seed: int = 42,
               force: bool = False, echo: Echo = print, chunk_size: int = 100_000,
               admin_key: str | os.PathLike | None = None, admin_name: str = "admin",
               synthetic_at_nodes: bool = False, public_datasets: bool = True) -> Space:
    """Build a complete space at ``data_dir`` or leave nothing behind. With ``admin_key``, an
    admin signing key is written there (0600) and registered: from the start, the space's
    services act only on a policy that key (or another registered one) signed. With
    ``synthetic_at_nodes`` no synthetic store is built here (each holder's node ingests its
    own, ``at_nodes.build_at_nodes``); ``public_datasets=False`` leaves out the lifelines
    validation datasets (fewer holders: tests)."""
    target = Space.at(data_dir).root
    if patients < 0:
        raise WorkbenchUserError("--patients must be 0 or more", reason="bad-option")
    if target.parent.is_dir():
        _recover_from_killed_builds(target)
    _refuse_non_empty(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-{os.getpid()}-",
                                  dir=target.parent))
    started = time.perf_counter()
    try:
        _build(Space(aside), patients, seed, echo, chunk_size, synthetic_at_nodes,
               public_datasets)
        if admin_key is not None:
            _register_admin(Space(aside), Path(admin_key), admin_name, echo)
        permissions.apply(Space(aside))
        _swap_into_place(aside, target, force)
    except BaseException:
        shutil.rmtree(aside, ignore_errors=True)
        raise
    echo(f"space ready at {target} ({time.perf_counter() - started:.1f}s)")
    return Space(target)


def _register_admin(space: Space, path: Path, name: str, echo: Echo) -> None:
    from workbench.policy import signed

    key = signed.create_admin_key(path)
    key_id = signed.register_admin_key(space, name, key.public_key())
    echo(f"admin key {key_id} written to {path} and registered: sign the policy with "
         "'workbench policy apply FILE --key KEY'")


def _refuse_non_empty(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise WorkbenchUserError(f"{target} exists and is not a directory: choose another "
                                 "--data-dir.", reason="not-a-directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise WorkbenchUserError(
            f"{target} is not empty: choose an empty or new directory, or pass --force to "
            "replace it (its contents are deleted once the new space is complete).",
            reason="data-dir-not-empty",
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover_from_killed_builds(target: Path) -> None:
    """A build killed hard (SIGKILL, power loss) leaves its aside directory behind, and one
    killed between the two renames of --force leaves the old space renamed away: delete the
    former, put the latter back when nothing took its place."""
    for kind in ("building", "old"):
        for path in sorted(target.parent.glob(f".{target.name}.{kind}-*-*")):
            pid = path.name.removeprefix(f".{target.name}.{kind}-").split("-")[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if kind == "old" and (path / "space").is_dir() and not target.exists():
                os.rename(path / "space", target)
            shutil.rmtree(path, ignore_errors=True)


def _swap_into_place(aside: Path, target: Path, force: bool) -> None:
    """rename(2) replaces an empty directory atomically; a non-empty one (only with --force) is
    first renamed away and deleted once the new space is in place."""
    if target.is_dir() and any(target.iterdir()):
        assert force
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-",
                                   dir=target.parent))
        os.rename(target, old / "space")
        try:
            os.rename(aside, target)
        except BaseException:
            os.rename(old / "space", target)
            shutil.rmtree(old, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(aside, target)


# -- the build ---------------------------------------------------------------------------------
def _build(space: Space, patients: int, seed: int, echo: Echo, chunk_size: int,
           at_nodes: bool = False, public_datasets: bool = True) -> None:
    keys.create_space_keys(space)
    for sub in ("datasets", "views", "quality", "certificates"):
        (space.catalog / sub).mkdir(parents=True, exist_ok=True)
    linkage_key = keys.load_linkage_key(space)
    tally = linkage.LinkageTally()
    created_at = datetime.now(UTC)
    datasets: list[Dataset] = []

    specs = public.PUBLIC_DATASETS if public_datasets else ()
    if specs:
        echo("public validation datasets (lifelines): " + ", ".join(s.table for s in specs))
    for spec in specs:
        for holder, frame in public.split_by_holder(spec, linkage_key).items():
            columns = public.columns_of(spec)
            writer = _writer(space, holder, spec.table, columns)
            writer.write(frame)
            writer.close()
            datasets.append(_record(space, writer, holder, spec.table, columns, created_at,
                                    title=f"{spec.title} ({holder})",
                                    description=spec.description, source=spec.source,
                                    usage_terms=spec.usage_terms, tags=spec.tags))

    view_files = [PUBLIC_VIEWS] if specs else []
    schemas: list = []  # what the views are checked against besides the datasets built here
    plan = None
    if patients and at_nodes:
        plan = {"holders": sorted(SYNTH_HOLDERS), "patients": patients, "seed": seed}
        schemas = _mapped_tables(plan["holders"])
        view_files.append(SYNTH_VIEWS)
        echo(f"synthetic data: not built here; the nodes of {', '.join(plan['holders'])} "
             "ingest their own sources")
    elif patients:
        datasets += _build_synthetic(space, patients, seed, chunk_size, linkage_key, tally,
                                     created_at, echo)
        view_files.append(SYNTH_VIEWS)

    holders = sorted({d.holder for d in datasets} | set(plan["holders"] if plan else ()))
    manifest = {
        "space_id": str(uuid.uuid4()),
        "created_at": created_at.isoformat(),
        "seed": seed,
        "patients": patients,
        "holders": holders,
        "datasets": sorted(d.id for d in datasets),
        "public_datasets": [s.source for s in specs],
    }
    if plan:
        manifest["ingest_at_nodes"] = plan
    space.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    for dataset in datasets:
        Catalog.write(space, dataset)
    _write_views(space, view_files, [*datasets, *schemas])
    _mark_derived_columns(space, echo)  # over the stores built here; at_nodes.py: the others
    report = tally.report()
    if plan is None:  # else made from the nodes' counts once they ingested (at_nodes.py)
        linkage.write_report(space.catalog / "linkage.json", report)
    if patients and plan is None:
        echo(f"linkage: {report['persons_total']} persons across "
             f"{len(report['holders'])} synthetic holders")
    for dataset in datasets:
        certificates.write(space.catalog / "certificates" / f"{dataset.id}.json",
                           certificates.issue(space, dataset))
    echo(f"{len(datasets)} datasets catalogued and certified")
    _create_he_keys(space)
    for folder in (space.usage, space.run, space.studies):
        folder.mkdir(exist_ok=True)


def _create_he_keys(space: Space) -> None:
    """The holders' signing keys and the HE key (he/public.ctx, the key parties' shares)."""
    from workbench.secure.keys import create_keys  # tenseal is heavy: import only when building

    create_keys(space)


def _writer(space: Space, holder: str, table: str, columns: tuple[Column, ...]) -> TableWriter:
    path = space.holder_dir(holder) / f"{table}.parquet"
    return TableWriter(path, columns, label=f"holders/{holder}/{table}.parquet")


def _record(space: Space, writer: TableWriter, holder: str, table: str,
            columns: tuple[Column, ...], created_at: datetime, *, title: str, description: str,
            source: str, usage_terms: str, tags: tuple[str, ...]) -> Dataset:
    dataset_id = f"{holder_schema(holder)}.{table}"
    quality = _quality(space, dataset_id, writer.path, table)
    return Dataset(
        id=dataset_id, title=title, description=description, holder=holder, table=table,
        source=source, file=writer.path.name, columns=columns, rows=writer.rows,
        version=file_sha256(writer.path), quality_score=quality, usage_terms=usage_terms,
        created_at=created_at, tags=tags,
    )


def _quality(space: Space, dataset_id: str, path: Path, table: str) -> float:
    """Runs the quality component's report and keeps it beside the catalog entry."""
    from workbench import quality

    report = quality.report(dataset_id, path, table)
    text = json.dumps(report, indent=2, default=str).replace(str(space.root), "<space>")
    (space.catalog / "quality" / f"{dataset_id}.json").write_text(text + "\n")
    return float(report["score"])


def _build_synthetic(space: Space, patients: int, seed: int, chunk_size: int,
                     linkage_key: bytes, tally: linkage.LinkageTally, created_at: datetime,
                     echo: Echo) -> list[Dataset]:
    from workbench import harmonise, synth

    writers: dict[tuple[str, str], TableWriter] = {}
    chunks = -(-patients // chunk_size)
    done = 0
    for number, chunk in enumerate(synth.generate_chunks(patients, seed, chunk_size=chunk_size),
                                   start=1):
        started = time.perf_counter()
        for holder, tables in _pseudonymise(chunk.tables, linkage_key, tally).items():
            for table, frame in harmonise.harmonise(holder, tables).items():
                key = (holder, table)
                if key not in writers:
                    writers[key] = _writer(space, holder, table, harmonise.OMOP_SCHEMA[table])
                writers[key].write(frame)
        done = min(patients, done + chunk_size)
        echo(f"synthetic data: chunk {number}/{chunks} ({done}/{patients} patients, "
             f"{time.perf_counter() - started:.1f}s)")
    datasets = []
    started = time.perf_counter()
    echo(f"quality reports for {len(writers)} synthetic datasets ...")
    for (holder, table), writer in sorted(writers.items()):
        writer.close()
        if writer.rows == 0:
            continue
        datasets.append(_record(
            space, writer, holder, table, writer.columns, created_at,
            title=f"{SYNTH_HOLDERS.get(holder, holder).split(' (')[0]}: {table}",
            description=f"OMOP-like '{table}' table of {SYNTH_HOLDERS.get(holder, holder)}; "
                        f"synthetic, generated with seed {seed}.",
            source="synthetic", usage_terms=SYNTH_USAGE,
            tags=("synthetic", holder, table),
        ))
    echo(f"quality reports done ({time.perf_counter() - started:.1f}s)")
    return datasets


def _pseudonymise(chunk_tables: dict[str, dict[str, pd.DataFrame]], linkage_key: bytes,
                  tally: linkage.LinkageTally) -> dict[str, dict[str, pd.DataFrame]]:
    """Replace ``national_id`` by ``person_id`` in every raw table of a chunk: direct identifiers
    never reach a holder's store. All the chunk's ids are hashed in one call (each person once,
    whatever the number of tables). The tally records which persons each holder knows."""
    columns = []
    for holder, tables in chunk_tables.items():
        for name, frame in tables.items():
            if "national_id" not in frame.columns:
                raise WorkbenchUserError(
                    f"source '{holder}', table '{name}': field 'national_id' is missing; every "
                    "raw table must carry the direct identifier so it can be pseudonymised.",
                    reason="bad-data-file",
                )
            columns.append(frame["national_id"])
    hashed = linkage.pseudonym(linkage_key, pd.concat(columns, ignore_index=True)) \
        if columns else []
    out: dict[str, dict[str, pd.DataFrame]] = {}
    start = 0
    for holder, tables in chunk_tables.items():
        out[holder] = {}
        for name, frame in tables.items():
            ids = hashed[start:start + len(frame)]
            start += len(frame)
            tally.add(holder, ids)
            position = frame.columns.get_loc("national_id")
            frame = frame.drop(columns=["national_id"])
            frame.insert(position, "person_id", ids)
            out[holder][name] = frame
    return out


def _mark_derived_columns(space: Space, echo) -> None:
    """The catalog's derived-column check (catalog/derived.py) on every view's rows: a plaintext
    column that gives a sensitive one away is made sensitive before any study can read it."""
    from workbench.catalog.derived import mark_derived
    from workbench.views.engine import ViewEngine

    engine = ViewEngine(space, rekey_key=bytes(32))  # unprotected reads only: no study keys
    for view in engine.views.values():
        frame = engine.unprotected_frame(view.id, tuple(c.name for c in view.columns))
        marked = mark_derived(view, frame)
        if marked is not view:
            Catalog.write(space, marked)
            names = [c.name for c in marked.columns if c.derived_from]
            echo(f"view {view.id}: {', '.join(names)} made sensitive (derived from a sensitive "
                 "column)")


def _mapped_tables(holders: list[str]) -> list[Dataset]:
    """Schema-only stand-ins for the common-model tables the holders' mappings will make at their
    nodes: the views are checked against them before any node has ingested."""
    from workbench.harmonise import OMOP_SCHEMA
    from workbench.harmonise.mapping import load_mapping, mapping_path

    tables = {t for h in holders for t in load_mapping(mapping_path(h)).mapping.tables}
    return [Dataset.model_construct(table=t, columns=OMOP_SCHEMA[t]) for t in sorted(tables)]


def _write_views(space: Space, files: list[Path], datasets: list[Dataset]) -> None:
    for path in files:
        views = load_view_file(path)
        check_views(path, views, datasets)
        for view, _line in views:
            Catalog.write(space, view)
