"""``workbench node ingest`` (workbench/node/ingest.py): a holder's own files become a new version
of its store at its node, as its account; bad input is one line naming file, row and field and
writes nothing; failing rows are quarantined and counted; a SIGKILL leaves the previous version
serving. Real processes and accounts: the command runs as root and drops to ``wbh-<holder>``."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from tests.node import ingest_support as support
from workbench.catalog import certificates
from workbench.space.tables import file_sha256


@pytest.fixture(scope="module")
def built():
    root, space = support.build("wb-ingest-")
    yield root, space
    shutil.rmtree(root, ignore_errors=True)


def test_an_ingest_makes_a_version_at_the_node_as_its_account(built):
    root, space = built
    central = {p.name: file_sha256(p) for p in
               (space.node_dir("insurer") / "holders" / "insurer").glob("*.parquet")}
    done = support.ingest(space, "insurer", root / "src-insurer")
    assert done.returncode == 0, done.stderr
    node = space.node_dir("insurer")
    version = support.version_json(space, "insurer")
    uid = pwd.getpwnam("wbh-insurer").pw_uid
    version_dir = node / "versions" / version["id"]
    assert all(p.stat().st_uid == uid for p in version_dir.rglob("*")), \
        "the version was not written by the node's own account"
    # the store the node reads is the served version, through the links
    store = node / "holders" / "insurer"
    assert store.is_symlink() and store.resolve() == (version_dir / "holders" / "insurer")
    assert (node / "catalog" / "datasets").resolve() == version_dir / "datasets"
    # same raw data, same pseudonyms (the space's HMAC), same mapping: the same bytes as the
    # central build, which enrolment had moved here and the ingest kept as the first version
    assert {p.name: file_sha256(p) for p in store.glob("*.parquet")} == central
    assert version["pseudonyms"] == "hmac" and version["quarantined_rows"] == 0
    assert version["rows"] == sum(d["rows"] for d in version["datasets"].values()) > 0
    assert len([v for v in (node / "versions").iterdir() if not v.name.startswith(".")
                and not v.is_symlink()]) == 2
    kept = support.versions(space, "insurer")
    assert [v["id"] for v in kept][-1] == version["id"] and "adopted" in kept[0]
    # the entries are published to the space's catalog, and each certificate is the holder's
    published = certificates.verify(space, space.catalog / "certificates" / "insurer.cost.json")
    assert published.vouched_by.startswith("holder insurer ")
    assert "version" in done.stdout and "pseudonyms: hmac" in done.stdout


def test_parquet_sources_are_ingested_too(built):
    root, space = built
    done = support.ingest(space, "pharma", root / "src-pharma")
    assert done.returncode == 0, done.stderr
    version = support.version_json(space, "pharma")
    assert set(version["sources"]) == {"dispensing.parquet", "adverse_events.parquet"}
    assert version["datasets"]["pharma.drug_exposure"]["rows"] > 0


def _csv_rows(path):
    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
        column_types={"national_id": "string"}, strings_can_be_null=True))


def _edit_line(path, line: int, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("".join(lines))


def _set_field(path, line: int, field: str, value: str) -> None:
    header = path.read_text().splitlines()[0].replace('"', "").split(",")

    def edit(text):
        cells = text.rstrip("\n").split(",")
        cells[header.index(field)] = value
        return ",".join(cells) + "\n"

    _edit_line(path, line, edit)


def _drop_column(path, field: str) -> None:
    table = _csv_rows(path)
    pcsv.write_csv(table.drop_columns([field]), path)


# each case: how the sources are broken, extra options, what the one line must name
MALFORMED = {
    "no-id-column": (lambda d: _drop_column(d / "members.csv", "national_id"), (),
                     "members.csv: field 'national_id' is missing"),
    "needed-column-missing": (lambda d: _drop_column(d / "claims.csv", "service_from"), (),
                              "claims.csv: field 'service_from' is missing"),
    "not-a-number": (lambda d: _set_field(d / "members.csv", 4, "dob", "19x50501"),
                     ("--max-quarantine", "0"),
                     "members.csv, row 3 (line 4), field 'dob': not a whole number"),
    "no-id-in-a-row": (lambda d: _set_field(d / "enrolment.csv", 3, "national_id", '""'),
                       ("--max-quarantine", "0"),
                       "enrolment.csv, row 2 (line 3), field 'national_id': no national id"),
    "too-many-fields": (lambda d: _edit_line(d / "claims.csv", 6, lambda t: t[:-1] + ",9\n"),
                        ("--max-quarantine", "0"), "claims.csv, row 5 (line 6), field '*'"),
    "not-parquet": (lambda d: ((d / "claims.csv").unlink(),
                               (d / "claims.parquet").write_bytes(b"PAR1 not really")),
                    (), "claims.parquet: not a readable Parquet file"),
    "file-missing": (lambda d: (d / "enrolment.csv").unlink(), (),
                     "no source file enrolment.csv or enrolment.parquet, which the mapping reads"),
    "another-holders-mapping": (lambda d: None, ("--mapping", "PHARMA"), "field 'source'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_bad_input_is_one_line_and_writes_nothing(built, case):
    from workbench.harmonise.mapping import mapping_path

    root, space = built
    break_it, extra, expected = MALFORMED[case]
    folder = support.copy_sources(root, "insurer", f"bad-{case}")
    break_it(folder)
    support.give(folder, "insurer")
    extra = tuple(str(mapping_path("pharma")) if e == "PHARMA" else e for e in extra)
    before = support.state(space, "insurer")
    done = support.ingest(space, "insurer", folder, *extra)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr and "19x50501" not in done.stderr
    after = support.state(space, "insurer")
    assert after == before, "a refused ingest changed the node's versions or store"


def test_failing_rows_are_quarantined_and_counted(built):
    root, space = built
    folder = support.copy_sources(root, "insurer", "quarantine")
    claims = folder / "claims.csv"
    total = _csv_rows(claims).num_rows
    _set_field(claims, 3, "billed_amount", "abc")  # row 2
    _set_field(claims, 8, "national_id", "")  # row 7
    _edit_line(claims, 11, lambda t: t.split(",")[0] + "\n")  # row 10: one field
    support.give(folder, "insurer")
    done = support.ingest(space, "insurer", folder)
    assert done.returncode == 0, done.stderr
    assert f"claims.csv: {total} rows, 3 quarantined" in done.stdout
    version = support.version_json(space, "insurer")
    assert version["quarantined_rows"] == 3
    assert version["sources"]["claims.csv"] == {"rows": total, "quarantined": 3}
    current = space.node_dir("insurer") / "versions" / version["id"]
    listed = [json.loads(line) for line in (current / "quarantine.jsonl").read_text().splitlines()]
    assert [(p["file"], p["row"], p["line"], p["field"]) for p in listed] == [
        ("claims.csv", 2, 3, "billed_amount"), ("claims.csv", 7, 8, "national_id"),
        ("claims.csv", 10, 11, "*")]
    assert "abc" not in (current / "quarantine.jsonl").read_text()
    report = json.loads((current / "quality" / "insurer.cost.json").read_text())
    check = next(c for c in report["checks"] if c["check"] == "quarantined-source-rows")
    assert (check["checked"], check["failed"]) == (total, 3)
    assert report["quarantine"]["claims.csv"] == {"rows": total, "quarantined": 3}
    # the cost table is every claim: the three quarantined ones are not in it
    cost = pq.read_table(current / "holders" / "insurer" / "cost.parquet")
    assert cost.num_rows == total - 3
    # what the node's server loads (its view engine over its directory) is this version
    from workbench.catalog.store import Catalog
    from workbench.paths import Space
    from workbench.views import ViewEngine

    node = Space(space.node_dir("insurer"))
    assert Catalog.load(node).datasets["insurer.cost"].rows == total - 3
    engine = ViewEngine(node)
    assert engine._con.execute("SELECT count(*) FROM cost").fetchone()[0] == total - 3
    members = json.loads((current / "quality" / "insurer.person.json").read_text())
    assert members["quarantine"] == {"members.csv": {"rows": members["rows"], "quarantined": 0}}


def test_a_killed_ingest_leaves_the_previous_version_serving(built):
    from workbench.node.ingest import write_sources

    root, space = built
    done = support.ingest(space, "insurer", root / "src-insurer")
    assert done.returncode == 0, done.stderr
    before = support.state(space, "insurer")
    entries = json.loads((space.node_dir("insurer") / "catalog" / "datasets" /
                          "insurer.cost.json").read_text())
    big = root / "src-insurer-big"
    if not big.exists():
        write_sources(big, "insurer", 30_000, 11, "csv")
        support.give(big, "insurer")
    command = [sys.executable, "-m", "workbench.cli", "node", "ingest", "--data-dir",
               str(space.root), "--holder", "insurer", "--sources", str(big)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": str(support.ROOT)})
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("building the new version"):  # the aside folder exists now
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    versions = space.node_dir("insurer") / "versions"
    assert list(versions.glob(".building-*")), "the kill did not land during the build"
    after = support.state(space, "insurer")
    assert after["current"] == before["current"] and after["store"] == before["store"]
    assert json.loads((space.node_dir("insurer") / "catalog" / "datasets" /
                       "insurer.cost.json").read_text()) == entries
    # the next ingest sweeps the half-built folder away and serves its own version
    done = support.ingest(space, "insurer", root / "src-insurer")
    assert done.returncode == 0, done.stderr
    assert not list(versions.glob(".building-*"))
    assert support.state(space, "insurer")["current"] != before["current"]


@pytest.mark.parametrize("owner", ["root", "pharma"])
def test_the_ingest_reads_only_what_the_nodes_account_may(built, owner):
    """It reads the sources as wbh-insurer: files the node's account may not read (root's, or
    another holder's node's) are refused, one line, nothing written."""
    root, space = built
    folder = support.copy_sources(root, "insurer", f"foreign-{owner}")
    if owner == "root":
        for path in [folder, *folder.iterdir()]:
            os.chown(path, 0, 0)
    else:
        support.give(folder, "pharma")
    before = support.state(space, "insurer")
    done = support.ingest(space, "insurer", folder)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "not readable by the node's account" in done.stderr
    assert support.state(space, "insurer") == before
