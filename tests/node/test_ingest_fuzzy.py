"""Fuzzy linkage through the real path: a real linkage service process (as ``wb-linkage``) and
``workbench node ingest`` (root dropping to the node's account) of the synthetic generator's raw
files. The insurer's source has national ids and, in ``members``, the names its registry wrote
(with typos, swaps and gaps); its ingest gets OPRF pseudonyms and uploads (pseudonym, CLK) pairs
to the linkage unit's reference index. Pharma's source has no national id, only names and birth
dates written with other errors; its ingest sends CLKs and stores the pseudonyms the unit
answers. Measured against the generator's truth (which row is which national id)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from tests.node import ingest_support as support
from workbench import accounts, linkage
from workbench.harmonise.mapping import mapping_path

PATIENTS, SEED = 1000, 5
PRECISION_FLOOR, RECALL_FLOOR = 0.95, 0.8
INSURER_LINKAGE = """linkage:
  from: members
  first_name: first_name
  last_name: last_name
  birth_date: dob
  birth_date_format: yyyymmdd
"""
PHARMA_LINKAGE = """linkage:
  by: name_and_birth_date
  first_name: first_name
  last_name: last_name
  birth_date: birth_date
"""

pytestmark = pytest.mark.skipif(not accounts.is_root(),
                                reason="node accounts and the linkage account need root")


def _mapping(folder: Path, holder: str, block: str, name: str | None = None) -> Path:
    text = mapping_path(holder).read_text()
    text = re.sub(r"^(description: .*\n)", lambda m: m.group(1) + block, text, count=1,
                  flags=re.M)
    path = folder / (name or f"{holder}.yaml")
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def _write(folder: Path, tables: dict, fmt: str) -> None:
    folder.mkdir()
    for name, frame in tables.items():
        if frame.empty:
            continue
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if fmt == "csv":
            pcsv.write_csv(table, folder / f"{name}.csv")
        else:
            pq.write_table(table, folder / f"{name}.parquet")


@pytest.fixture(scope="module")
def built():
    from workbench import synth
    from workbench.linkage.process import start_linkage
    from workbench.node.enroll import enroll_node
    from workbench.space.build import init_space
    from workbench.synth import identities

    root = Path(tempfile.mkdtemp(prefix="wb-ingest-fuzzy-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = init_space(root / "space", patients=PATIENTS, seed=SEED, echo=lambda _l: None)
    for holder in ("insurer", "pharma"):
        enroll_node(space, holder)
    tables = synth.generate(PATIENTS, SEED).tables
    people = identities.register(PATIENTS, SEED)
    insurer = dict(tables["insurer"])
    insurer["members"] = identities.with_names(
        insurer["members"], identities.as_written(people, SEED, "insurer"))
    _write(root / "src-insurer", insurer, "csv")
    pharma = identities.without_national_id(
        tables["pharma"], identities.as_written(people, SEED, "pharma"))
    _write(root / "src-pharma", pharma, "parquet")
    for holder in ("insurer", "pharma"):
        support.give(root / f"src-{holder}", holder)
    mappings = {"insurer": _mapping(root, "insurer", INSURER_LINKAGE),
                "pharma": _mapping(root, "pharma", PHARMA_LINKAGE)}
    if tables["pharma"]["adverse_events"].empty:  # no file: its block leaves the mapping
        text = mappings["pharma"].read_text()
        mappings["pharma"].write_text(text[:text.index("  condition_occurrence:")])
    service = start_linkage(space)
    try:
        started = time.perf_counter()
        done = {h: support.ingest(space, h, root / f"src-{h}", "--mapping", str(mappings[h]),
                                  "--pseudonyms", "oprf") for h in ("insurer", "pharma")}
        print(f"both ingests {time.perf_counter() - started:.1f} s")
        yield {"root": root, "space": space, "service": service, "tables": tables,
               "people": people, "done": done, "mappings": mappings}
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


def _store(space, holder: str, table: str) -> pa.Table:
    return pq.read_table(space.node_dir(holder) / "holders" / holder / f"{table}.parquet")


def _truth(built) -> dict:
    """Per national id seen at pharma: the pseudonym its rows got; the OPRF pseudonym of every
    national id; who the insurer's reference holds."""
    from workbench.linkage.client import pseudonyms

    space, tables = built["space"], built["tables"]
    dispensing = tables["pharma"]["dispensing"]
    stored = _store(space, "pharma", "drug_exposure")
    # one block without a filter: the rows keep the source's order (checked on the drug)
    assert stored.num_rows == len(dispensing)
    assert stored.column("drug_concept").to_pylist() == dispensing["atc_code"].tolist()
    got: dict[str, set] = {}
    for nid, person in zip(dispensing["national_id"].astype(str),
                           stored.column("person_id").to_pylist(), strict=True):
        got.setdefault(nid, set()).add(person)
    everyone = built["people"]["national_id"].tolist()
    oprf = dict(zip(everyone, pseudonyms(space, everyone), strict=True))  # root may ask
    at_insurer = set(tables["insurer"]["members"]["national_id"].astype(str))
    return {"got": got, "oprf": oprf, "at_insurer": at_insurer}


def test_both_ingests_succeed_and_say_what_they_linked(built):
    for holder, done in built["done"].items():
        assert done.returncode == 0, (holder, done.stderr)
    assert "reference index:" in built["done"]["insurer"].stdout
    assert "linkage by name and birth date:" in built["done"]["pharma"].stdout
    assert support.version_json(built["space"], "pharma")["pseudonyms"] == "clk"


def test_matched_records_carry_the_reference_holders_pseudonyms(built):
    truth = _truth(built)
    oprf_of = truth["oprf"]
    known = set(oprf_of.values())
    insurer_persons = set(_store(built["space"], "insurer", "person").column(
        "person_id").to_pylist())
    matched = correct = in_reference = found = 0
    for nid, names in truth["got"].items():
        assert len(names) == 1  # every row of one person got one pseudonym
        (name,) = names
        if name in known:
            matched += 1
            correct += name == oprf_of[nid]
            assert name in insurer_persons  # a pseudonym the reference holder stores
        if nid in truth["at_insurer"]:
            in_reference += 1
            found += name == oprf_of[nid]
    # per-study re-keying is unchanged: a matched person is one study id at both holders
    from workbench.space.linkage import study_pseudonyms

    key = (built["space"].node_dir("pharma") / "holders" / ".study-rekey.key").read_bytes()
    linked = sorted(n for (n,) in truth["got"].values() if n in insurer_persons)
    assert linked and set(study_pseudonyms(key, "a-study", linked)) <= set(
        study_pseudonyms(key, "a-study", sorted(insurer_persons)))
    precision, recall = correct / matched, found / in_reference
    print(f"persons at pharma {len(truth['got'])}, at both {in_reference}, matched {matched}, "
          f"precision {precision:.3f}, recall {recall:.3f}")
    assert in_reference >= 50
    assert precision >= PRECISION_FLOOR and recall >= RECALL_FLOOR


def test_unmatched_records_get_unlinkable_pseudonyms(built):
    truth = _truth(built)
    known = set(truth["oprf"].values())
    insurer_persons = set(_store(built["space"], "insurer", "person").column(
        "person_id").to_pylist())
    unmatched = {nid: next(iter(n)) for nid, n in truth["got"].items()
                 if not n & known}
    outside = [nid for nid in truth["got"] if nid not in truth["at_insurer"]]
    print(f"outside the reference {len(outside)}, unlinked "
          f"{sum(nid in unmatched for nid in outside)}")
    assert len(outside) >= 50
    # persons the reference does not hold stay unlinked (a false link is the rare exception)
    assert sum(nid in unmatched for nid in outside) >= PRECISION_FLOOR * len(outside)
    for nid, name in unmatched.items():
        assert re.fullmatch(r"[0-9a-f]{24}", name)
        assert name != truth["oprf"][nid] and name not in insurer_persons
    assert len(set(unmatched.values())) == len(unmatched)


def test_the_quality_report_counts_matches_and_their_scores(built):
    space = built["space"]
    version = support.version_json(space, "pharma")
    report = version["linkage"]
    assert report["matched"] + report["unmatched"] == report["identities"] > 0
    assert sum(report["scores"].values()) == report["matched"]
    assert report["threshold"] == 0.8 and report["reference_persons"] > 0
    quality = json.loads(next((space.node_dir("pharma") / "catalog" / "quality").glob(
        "*drug_exposure.json")).read_text())
    assert quality["linkage"] == report
    insurer = support.version_json(space, "insurer")
    assert insurer["reference"]["persons"] == report["reference_persons"]
    # no name column reached either store
    for holder in ("insurer", "pharma"):
        for path in (space.node_dir(holder) / "holders" / holder).glob("*.parquet"):
            assert not {"first_name", "last_name"} & set(pq.read_schema(path).names)


def test_the_linkage_unit_keeps_and_logs_no_name_or_birth_date(built):
    from workbench.linkage.fuzzy import _normal

    space, people = built["space"], built["people"]
    state = linkage.state_dir(space)
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"insurer.ref", "oprf.key"} or any(
        p.suffix == ".ref" for p in files)
    binary = b"".join(p.read_bytes() for p in files)
    log = built["service"].output()
    assert '"event": "clk-match"' in log and '"event": "clk-reference"' in log
    logged = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    words = {w for entry in logged for value in [*entry, *map(str, entry.values())]
             for w in re.split(r"[^\w]+", value.casefold()) if w}
    for row in people.itertuples():
        dob = row.birth_date
        texts = {dob, dob.replace("-", ""), f"{dob[8:]}.{dob[5:7]}.{dob[:4]}"}
        for name in (row.first_name, row.last_name):
            texts |= {name, name.casefold(), _normal("first_name", name)}
        for text in texts:
            assert text.casefold() not in words
            if len(text) >= 6:  # shorter ASCII may occur by chance in 128-byte random CLKs
                assert text not in log and text.encode() not in binary


def test_the_clk_secret_is_the_nodes_and_not_the_linkage_units(built):
    space = built["space"]
    secret = space.keys / "clk.key"
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.stat().st_uid == 0
    for holder in ("insurer", "pharma"):
        copy = space.node_dir(holder) / "keys" / "clk.key"
        assert copy.read_bytes() == secret.read_bytes()
        assert copy.stat().st_mode & 0o777 == 0o600
        assert copy.stat().st_uid == space.node_dir(holder).stat().st_uid
    paths = [str(secret), *(str(space.node_dir(h) / "keys" / "clk.key")
                            for h in ("insurer", "pharma"))]
    tried = _run_as(linkage.ACCOUNT, f"""
        import json
        out = []
        for path in {paths!r}:
            try:
                open(path, "rb").read()
                out.append("read")
            except PermissionError:
                out.append("refused")
        print(json.dumps(out))
    """)
    assert tried == ["refused"] * 3


@pytest.mark.parametrize("account", ["nobody", "wbh-lt-fuzzy-stranger"])
def test_an_account_that_is_no_node_is_refused_by_the_linkage_unit(built, account):
    space = built["space"]
    said = _run_as(account, f"""
        import json
        from bitarray import bitarray
        from workbench.errors import WorkbenchUserError
        from workbench.linkage import clk
        out = []
        one = bitarray(1024); one.setall(1)
        for call in (lambda: clk.match({str(space.root)!r}, [one]),
                     lambda: clk.upload_reference({str(space.root)!r}, ["ab" * 12], [one])):
            try:
                call()
                out.append("served")
            except WorkbenchUserError as exc:
                out.append(exc.reason)
        print(json.dumps(out))
    """)
    assert said == ["access-denied", "access-denied"]


@pytest.mark.parametrize(("block", "expect"), [
    ("linkage:\n  by: name_and_birth_date\n  first_name: first_name\n  last_name: last_name\n",
     "needs the columns 'first_name', 'last_name' and 'birth_date'"),
    (PHARMA_LINKAGE + "  birth_date_format: mdy\n", "field 'linkage.birth_date_format'"),
    (PHARMA_LINKAGE.replace("by: name_and_birth_date", "by: nationality"),
     "field 'linkage.by'"),
    (PHARMA_LINKAGE + "  from: dispensing\n", "'from' is for a source with a national id"),
])
def test_a_bad_linkage_mapping_is_one_line_naming_file_line_and_field(built, block, expect):
    root, space = built["root"], built["space"]
    path = _mapping(root, "pharma", block, "bad-pharma.yaml")
    before = support.state(space, "pharma")
    done = support.ingest(space, "pharma", root / "src-pharma", "--mapping", str(path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert str(path) in lines[0] and ", line " in lines[0] and expect in lines[0]
    assert support.state(space, "pharma") == before


def test_a_source_without_its_name_columns_is_one_line_naming_the_file(built):
    root, space = built["root"], built["space"]
    folder = root / "no-names"
    shutil.copytree(root / "src-pharma", folder)
    path = folder / "dispensing.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["last_name"]), path)
    support.give(folder, "pharma")
    before = support.state(space, "pharma")
    done = support.ingest(space, "pharma", folder, "--mapping",
                          str(built["mappings"]["pharma"]))
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: dispensing.parquet: field 'last_name' is missing "
                                   "(the mapping reads it; the file has " +
                                   ", ".join(pq.read_schema(path).names) + ")")
    assert support.state(space, "pharma") == before


def _run_as(account: str, code: str):
    import textwrap

    uid, gid = accounts.ensure_user(account)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(support.ROOT), "HOME": "/nonexistent"}
    done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           sys.executable, "-c", textwrap.dedent(code)], env=env, cwd="/",
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_the_linkage_unit_both_ingests_stop_in_one_line_and_change_nothing(built):
    """Fail closed: no reference upload, no match, no version (runs last: it stops the
    service)."""
    root, space = built["root"], built["space"]
    built["service"].stop()
    for holder in ("insurer", "pharma"):
        before = support.state(space, holder)
        done = support.ingest(space, holder, root / f"src-{holder}", "--mapping",
                              str(built["mappings"][holder]), "--pseudonyms", "hmac")
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "the linkage service is not answering" in lines[0], lines
        assert support.state(space, holder) == before
