"""``workbench catalog``: list, search, show, export, linkage, certify, verify."""

from __future__ import annotations

import json
from pathlib import Path

import click

from workbench.catalog import certificates, dcat
from workbench.catalog.models import Dataset, View
from workbench.catalog.search import search as search_catalog
from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError
from workbench.paths import ENV_VAR, Space

data_dir_option = click.option(
    "--data-dir", envvar=ENV_VAR, help=f"the data space (or ${ENV_VAR})"
)


def _space(data_dir: str | None) -> Space:
    space = Space.at(data_dir)
    if not space.manifest.is_file():
        raise WorkbenchUserError(
            f"{space.root} is not a data space (no space.json). Build one with "
            f"'workbench init --data-dir {space.root}'.", reason="no-space")
    return space


def _catalog(space: Space) -> Catalog:
    try:
        return Catalog.load(space)
    except PermissionError:
        raise WorkbenchUserError(
            f"{space.catalog} is readable only by root and the gateway account.",
            reason="permission-denied") from None


@click.group("catalog")
def catalog() -> None:
    """The space's datasets and views: list, search, show, export, certify, verify."""


@catalog.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def list_(data_dir: str | None, as_json: bool) -> None:
    """Every dataset and view of the space."""
    cat = _catalog(_space(data_dir))
    if as_json:
        click.echo(json.dumps({
            "datasets": [{"id": d.id, "holder": d.holder, "table": d.table, "rows": d.rows,
                          "quality_score": d.quality_score} for d in cat.datasets.values()],
            "views": [{"id": v.id, "tables": list(v.tables)} for v in cat.views.values()],
        }, indent=2))
        return
    click.echo(f"{'DATASET':<34} {'HOLDER':<20} {'ROWS':>10} {'QUALITY':>7}  TITLE")
    for d in sorted(cat.datasets.values(), key=lambda d: d.id):
        click.echo(f"{d.id:<34} {d.holder:<20} {d.rows:>10} {d.quality_score:>7.3f}  {d.title}")
    click.echo(f"\n{'VIEW':<34} {'TABLES':<31}  TITLE")
    for v in sorted(cat.views.values(), key=lambda v: v.id):
        tables = ",".join(v.tables)
        tables = tables if len(tables) <= 31 else tables[:28] + "..."
        click.echo(f"{v.id:<34} {tables:<31}  {v.title}")


@catalog.command("search")
@data_dir_option
@click.argument("text")
def search(data_dir: str | None, text: str) -> None:
    """Datasets and views whose id, title, description, tags or columns contain every word."""
    hits = search_catalog(_catalog(_space(data_dir)), text)
    if not hits:
        click.echo(f"nothing matches '{text}'")
        return
    for hit in hits:
        click.echo(f"{hit.kind:<8} {hit.id:<34} {hit.title}")
        click.echo(f"{'':<8} matched: {', '.join(hit.matched)}")


def _schema_lines(columns) -> list[str]:
    lines = [f"  {'COLUMN':<22} {'TYPE':<10} {'SENSITIVITY':<18} DESCRIPTION"]
    lines += [f"  {c.name:<22} {c.type:<10} {c.sensitivity:<18} {c.description}"
              for c in columns]
    return lines


def _quality_dimensions(space: Space, dataset_id: str) -> str:
    try:
        report = json.loads((space.catalog / "quality" / f"{dataset_id}.json").read_text())
    except (FileNotFoundError, ValueError):
        return ""
    scores = [f"{k} {v:.3f}" for k, v in report.get("dimensions", {}).items() if v is not None]
    return f" ({', '.join(scores)})" if scores else ""


def _show_dataset(d: Dataset, space: Space) -> list[str]:
    return [
        f"dataset  {d.id}", f"title    {d.title}", f"holder   {d.holder}",
        f"table    {d.table}", f"source   {d.source}", f"rows     {d.rows}",
        f"version  {d.version}",
        f"quality  {d.quality_score:.3f}{_quality_dimensions(space, d.id)}",
        f"created  {d.created_at.isoformat()}", f"tags     {', '.join(d.tags)}",
        f"usage    {d.usage_terms}", "", d.description, "", "schema:", *_schema_lines(d.columns),
    ]


def _show_view(v: View, cat: Catalog) -> list[str]:
    holders = sorted({d.holder for t in v.tables for d in cat.holders_of(t)})
    return [
        f"view     {v.id}", f"title    {v.title}", f"tables   {', '.join(v.tables)}",
        f"holders  {', '.join(holders)}", f"person   {v.person_column or '-'} (re-keyed per study)",
        f"dates    {v.date_policy} {', '.join(v.date_columns)}",
        f"filter   {v.row_filter or '-'}", f"min rows {v.min_rows}", "", v.description, "",
        "sql:", f"  {v.sql}", "", "schema:", *_schema_lines(v.columns),
    ]


@catalog.command("show")
@data_dir_option
@click.argument("record_id", metavar="ID")
def show(data_dir: str | None, record_id: str) -> None:
    """One dataset or view: schema with sensitivity, rows, version, quality."""
    space = _space(data_dir)
    cat = _catalog(space)
    if record_id in cat.datasets:
        lines = _show_dataset(cat.datasets[record_id], space)
    elif record_id in cat.views:
        lines = _show_view(cat.views[record_id], cat)
    else:
        raise WorkbenchUserError(
            f"no dataset or view '{record_id}' in the catalog: see 'workbench catalog list' or "
            "'workbench catalog search TEXT'.", reason="not-found")
    click.echo("\n".join(lines))


@catalog.command("export")
@data_dir_option
@click.option("--format", "fmt", type=click.Choice(["dcat"]), default="dcat", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="write to FILE instead of standard output")
def export(data_dir: str | None, fmt: str, out: Path | None) -> None:
    """The catalog as DCAT JSON-LD."""
    space = _space(data_dir)
    manifest = json.loads(space.manifest.read_text())
    text = dcat.dumps(dcat.export(_catalog(space), manifest["space_id"]))
    if out:
        out.write_text(text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@catalog.command("linkage")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="the raw report")
def linkage(data_dir: str | None, as_json: bool) -> None:
    """Linkage quality: persons per holder and match rates between sources."""
    space = _space(data_dir)
    try:
        report = json.loads((space.catalog / "linkage.json").read_text())
    except PermissionError:
        raise WorkbenchUserError(f"{space.catalog} is readable only by root and the gateway "
                                 "account.", reason="permission-denied") from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"linkage: {report['method']}; {report['persons_total']} persons in total")
    click.echo(f"{'HOLDER':<14} {'RECORDS':>10} {'NO ID':>8} {'PERSONS':>9}")
    for holder, row in report["holders"].items():
        click.echo(f"{holder:<14} {row['records']:>10} {row['records_missing_identifier']:>8} "
                   f"{row['persons']:>9}")
    click.echo(f"\n{'A':<14} {'B':<14} {'IN BOTH':>9} {'A IN B':>8} {'B IN A':>8}")
    for pair in report["pairs"]:
        click.echo(f"{pair['a']:<14} {pair['b']:<14} {pair['persons_in_both']:>9} "
                   f"{pair['share_of_a_found_in_b']:>8.1%} {pair['share_of_b_found_in_a']:>8.1%}")


@catalog.command("certify")
@data_dir_option
@click.argument("dataset_id", metavar="DATASET")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="where to write the certificate")
def certify(data_dir: str | None, dataset_id: str, out: Path) -> None:
    """Sign an ownership certificate for DATASET with the space's Ed25519 key (root only)."""
    space = _space(data_dir)
    cat = _catalog(space)
    if dataset_id not in cat.datasets:
        raise WorkbenchUserError(f"no dataset '{dataset_id}' in the catalog: see 'workbench "
                                 "catalog list'.", reason="not-found")
    certificates.write(out, certificates.issue(space, cat.datasets[dataset_id]))
    click.echo(f"wrote {out}")


@catalog.command("verify")
@data_dir_option
@click.argument("cert_file", type=click.Path(path_type=Path))
def verify(data_dir: str | None, cert_file: Path) -> None:
    """Check a certificate's signature and that the held data still match it (exit 0 if so)."""
    result = certificates.verify(_space(data_dir), cert_file)
    click.echo(f"certificate valid: dataset {result.dataset} of holder {result.holder}, "
               f"content {result.content_hash[:16]}..., issued {result.issued_at}")
    click.echo(f"vouched for by {result.vouched_by}")


commands = [catalog]
