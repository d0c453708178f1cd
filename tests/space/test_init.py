"""`workbench init`: the layout it writes, pseudonymisation, refusal, --force, all-or-nothing."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from space_support import BUILD_LOG, CHUNK, PATIENTS, SEED

from workbench import synth
from workbench.catalog.store import Catalog
from workbench.cli import cli
from workbench.errors import WorkbenchUserError
from workbench.node.keygen import key_status
from workbench.paths import Space
from workbench.policy import load_policy
from workbench.space import build, public
from workbench.space.tables import file_sha256

DEMO_POLICY = Path(__file__).resolve().parents[2] / "workbench" / "hub_config" / "policy.yaml"


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if ".building-" in p.name or ".old-" in p.name]


def test_space_layout_and_manifest(built_space):
    manifest = json.loads(built_space.manifest.read_text())
    assert manifest["patients"] == PATIENTS and manifest["seed"] == SEED
    assert {"hospital-a", "hospital-b", "insurer", "insurer-b", "pharma", "gbsg", "actg",
            "ncctg-inst-01", "ncctg-inst-unknown"} <= set(manifest["holders"])
    for path in (built_space.signing_key, built_space.linkage_key, built_space.signing_pub,
                 built_space.he / "public.ctx", built_space.he / "checker-box.key",
                 built_space.catalog / "linkage.json"):
        assert path.is_file(), path
    # the HE key: a joint key of the five member organisations (simulated key parties, each
    # share its own file); no single-key file
    record = json.loads((built_space.he / "threshold.json").read_text())
    members = ["hospital-a", "hospital-b", "insurer", "insurer-b", "pharma"]
    assert record["parties"] == members and record["t"] == 5
    assert sorted(p.name for p in (built_space.he / "key-shares").iterdir()) == sorted(
        f"{m}.key" for m in members)
    assert not (built_space.he / "secret.ctx").exists()
    # what the admin overview says of it: simulated, the five members, all five decrypt
    key = key_status(built_space, load_policy(DEMO_POLICY))
    assert (key["status"], key["parties"], key["t"], key["scheme"]) == (
        "simulated", members, 5, "N-out-of-N")
    assert not _leftovers(built_space.root.parent)
    assert any("chunk 3/3" in line for line in BUILD_LOG)  # progress is printed


def test_catalog_records_describe_their_files(built_space):
    catalog = Catalog.load(built_space)
    assert {"hospital_a.person", "insurer.cost", "pharma.drug_exposure", "gbsg.gbsg2",
            "actg.actg175", "ncctg_inst_01.lung"} <= set(catalog.datasets)
    for dataset in catalog.datasets.values():
        path = catalog.dataset_path(built_space, dataset)
        assert dataset.version == file_sha256(path)
        meta = pq.read_metadata(path)
        assert meta.num_rows == dataset.rows > 0
        assert [c.name for c in dataset.columns] == meta.schema.to_arrow_schema().names
        assert dataset.columns[0].name == "person_id"
        quality = json.loads((built_space.catalog / "quality" / f"{dataset.id}.json").read_text())
        assert 0 <= dataset.quality_score <= 1
        assert str(built_space.root.parent) not in json.dumps(quality)  # no build-aside paths
        assert (built_space.catalog / "certificates" / f"{dataset.id}.json").is_file()
    assert {"lung_survival", "gbsg2_survival", "actg175_trial"} <= set(catalog.views)


def test_public_datasets_are_split_by_site(built_space):
    catalog = Catalog.load(built_space)
    lung = catalog.holders_of("lung")
    assert sum(d.rows for d in lung) == len(public.LUNG.load())
    assert len(lung) == 19  # 18 NCCTG institutions + the rows without one
    unknown = pd.read_parquet(catalog.dataset_path(built_space,
                                                   catalog.datasets["ncctg_inst_unknown.lung"]))
    assert unknown["inst"].isna().all()
    actg = pd.read_parquet(catalog.dataset_path(built_space, catalog.datasets["actg.actg175"]))
    assert "pidnum" not in actg.columns and actg["person_id"].is_unique


def test_no_direct_identifier_reaches_a_store(built_space):
    """Every national id of the generated sources is absent from every stored file and value."""
    national = set()
    for chunk in synth.generate_chunks(PATIENTS, SEED, chunk_size=CHUNK):
        for tables in chunk.tables.values():
            for frame in tables.values():
                national.update(frame["national_id"].dropna().astype(str))
    assert len(national) >= PATIENTS * 0.9
    for path in built_space.holders.rglob("*.parquet"):
        frame = pd.read_parquet(path)
        assert "national_id" not in frame.columns
        for column in frame.columns:
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                assert not national & set(frame[column].dropna().astype(str)), (path, column)


def test_holders_link_through_pseudonyms(built_space):
    report = json.loads((built_space.catalog / "linkage.json").read_text())
    assert set(report["holders"]) == {"hospital-a", "hospital-b", "insurer", "insurer-b", "pharma"}
    assert 0 < report["persons_total"] <= PATIENTS
    rates = [p["share_of_a_found_in_b"] for p in report["pairs"]]
    assert len(rates) == 10 and all(0 <= r <= 1 for r in rates) and max(rates) > 0
    result = CliRunner().invoke(cli, ["catalog", "linkage", "--data-dir", str(built_space.root)])
    assert result.exit_code == 0 and "hospital-a" in result.output and "IN BOTH" in result.output


def test_init_refuses_a_non_empty_directory(open_tmp):
    target = open_tmp / "full"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["init", "--data-dir", str(target), "--patients", "0"])
    assert result.exit_code != 0
    assert isinstance(result.exception, WorkbenchUserError)
    assert "not empty" in str(result.exception) and "--force" in str(result.exception)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert not _leftovers(open_tmp)


def test_init_with_force_replaces_the_directory(open_tmp, monkeypatch):
    target = open_tmp / "old"
    target.mkdir()
    (target / "notes.txt").write_text("old space")
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(target))  # found through the environment
    result = CliRunner().invoke(cli, ["init", "--patients", "0", "--force"])
    assert result.exit_code == 0, result.output
    assert not (target / "notes.txt").exists() and (target / "space.json").is_file()
    assert "space ready" in result.output
    assert not _leftovers(open_tmp)


def test_init_into_an_empty_existing_directory(open_tmp):
    target = open_tmp / "empty"
    target.mkdir()
    build.init_space(target, patients=0, echo=lambda _l: None)
    assert Space(target).manifest.is_file() and oct(target.stat().st_mode & 0o777) == "0o755"


def _bad_views(tmp_path):
    bad = tmp_path / "views.yaml"
    bad.write_text(build.PUBLIC_VIEWS.read_text().replace("tables: [lung]", "tables: [lungs]"))
    return bad


def test_a_failed_build_leaves_nothing(open_tmp, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "PUBLIC_VIEWS", _bad_views(tmp_path))
    target = open_tmp / "new"
    with pytest.raises(WorkbenchUserError, match=r"views.yaml, line \d+: view 'lung_survival'"):
        build.init_space(target, patients=0, echo=lambda _l: None)
    assert not target.exists() and not _leftovers(open_tmp)


def test_a_failed_forced_build_keeps_the_old_space(open_tmp, tmp_path, monkeypatch):
    target = open_tmp / "old"
    build.init_space(target, patients=0, echo=lambda _l: None)
    before = sorted(str(p) for p in target.rglob("*"))
    monkeypatch.setattr(build, "PUBLIC_VIEWS", _bad_views(tmp_path))
    with pytest.raises(WorkbenchUserError):
        build.init_space(target, patients=0, force=True, echo=lambda _l: None)
    assert sorted(str(p) for p in target.rglob("*")) == before
    assert not _leftovers(open_tmp)


def test_a_malformed_data_file_names_file_row_and_field(open_tmp, monkeypatch):
    def broken_lung():
        frame = public.LUNG.load()
        frame["age"] = frame["age"].astype(object)
        frame.loc[5, "age"] = "seventy"  # row 5 (0-based) of the source, institution 11
        return frame

    spec = public.PublicDataset(**{**public.LUNG.__dict__, "load": broken_lung})
    monkeypatch.setattr(public, "PUBLIC_DATASETS", (spec, public.GBSG2))
    target = open_tmp / "space"
    with pytest.raises(WorkbenchUserError) as caught:
        build.init_space(target, patients=0, echo=lambda _l: None)
    message = str(caught.value)
    assert "holders/ncctg-inst-" in message and "lung.parquet" in message
    assert "field 'age'" in message and "row " in message
    assert "seventy" not in message  # never a value: it could be patient data
    assert not target.exists() and not _leftovers(open_tmp)


def test_a_raw_table_without_national_id_is_refused(open_tmp, monkeypatch):
    real = synth.generate_chunks

    def without_ids(*args, **kwargs):
        for chunk in real(*args, **kwargs):
            chunk.tables["insurer"] = {k: v.drop(columns=["national_id"])
                                       for k, v in chunk.tables["insurer"].items()}
            yield chunk

    monkeypatch.setattr(synth, "generate_chunks", without_ids)
    target = open_tmp / "space"
    expected = "source 'insurer', table '.*': field 'national_id'"
    with pytest.raises(WorkbenchUserError, match=expected):
        build.init_space(target, patients=50, echo=lambda _l: None)
    assert not target.exists() and not _leftovers(open_tmp)


def test_malformed_catalog_entries_name_the_file_and_field(public_only_space):
    folder = public_only_space.catalog / "datasets"
    good = (folder / "gbsg.gbsg2.json").read_text()
    (folder / "gbsg.gbsg2.json").write_text(good.replace('"rows": 686', '"rows": "many"'))
    with pytest.raises(WorkbenchUserError, match=r"gbsg.gbsg2.json: field 'rows'"):
        Catalog.load(public_only_space)
    (folder / "gbsg.gbsg2.json").write_text(good[:-40])
    with pytest.raises(WorkbenchUserError, match=r"gbsg.gbsg2.json: .*line \d+"):
        Catalog.load(public_only_space)
    result = CliRunner().invoke(cli, ["catalog", "list", "--data-dir",
                                      str(public_only_space.root)])
    assert result.exit_code != 0 and "gbsg.gbsg2.json" in str(result.exception)


def test_no_data_dir_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("WORKBENCH_DATA_DIR", raising=False)
    result = CliRunner().invoke(cli, ["init", "--patients", "0"])
    assert isinstance(result.exception, WorkbenchUserError)
    assert "--data-dir" in str(result.exception)


def test_a_file_in_the_way_is_refused(open_tmp):
    (open_tmp / "file").write_text("x")
    with pytest.raises(WorkbenchUserError, match="not a directory"):
        build.init_space(open_tmp / "file", patients=0, echo=lambda _l: None)
    assert os.listdir(open_tmp) == ["file"]


def _dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_builds_are_cleaned_up(open_tmp):
    pid = _dead_pid()
    stale = open_tmp / f".space.building-{pid}-abc123"
    (stale / "holders").mkdir(parents=True)
    live = open_tmp / f".space.building-{os.getpid()}-def456"  # a build still running
    live.mkdir()
    build.init_space(open_tmp / "space", patients=0, echo=lambda _l: None)
    assert not stale.exists() and live.exists()


def test_a_space_renamed_away_by_a_killed_forced_build_is_put_back(open_tmp):
    old = open_tmp / f".space.old-{_dead_pid()}-abc123"
    (old / "space").mkdir(parents=True)
    (old / "space" / "marker").write_text("the previous space")
    with pytest.raises(WorkbenchUserError, match="not empty"):
        build.init_space(open_tmp / "space", patients=0, echo=lambda _l: None)
    assert (open_tmp / "space" / "marker").is_file() and not old.exists()


@pytest.mark.slow
def test_sigterm_during_a_build_leaves_nothing(open_tmp):
    target = open_tmp / "space"
    process = subprocess.Popen(
        [sys.executable, "-c", "from workbench.cli import main; main()", "init", "--data-dir",
         str(target), "--patients", "200000", "--chunk-size", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if "chunk 1/" in line:
                break
        assert any(".building-" in p.name for p in open_tmp.iterdir())
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert not target.exists() and not _leftovers(open_tmp)
