"""Reading commands and exports: timeline, PROV-JSON (loads back with prov), Five Safes RO-Crate,
heads export; exports refuse a log that fails verification."""

from __future__ import annotations

import json
import sqlite3

import prov.model as pm
import pytest
from click.testing import CliRunner

from workbench.cli import cli
from workbench.errors import WorkbenchUserError
from workbench.provenance import export
from workbench.provenance.reader import ProvenanceReader
from workbench.provenance.service import start_collector
from workbench.provenance.store import SQLITE_FILE

H1, H2, H3 = "11" * 32, "22" * 32, "33" * 32
PATIENT_CODE = "df[df.patient_id == 'P-000042']"  # code may name a value; exports carry its hash


@pytest.fixture
def study_log(space):
    with start_collector(space) as handle:
        client = handle.client()
        client.append("cell-execution", {
            "study": "cml-tki", "user": "alice", "kernel_id": "k1", "msg_id": "m1",
            "cell_id": "c1", "notebook_path": "km.ipynb", "code": PATIENT_CODE,
            "code_sha256": H1, "status": "ok", "started": "2026-11-25T13:00:00Z",
            "ended": "2026-11-25T13:00:02Z", "outputs": [{"sha256": H2, "size": 512}]})
        client.append("view-read", {"study": "cml-tki", "user": "alice", "kernel_id": "k1",
                                    "view": "cml_cohort", "view_version": "2", "rows": 812})
        client.append("he-operation", {"study": "cml-tki", "user": "alice", "op": "kaplan_meier",
                                       "view": "cml_cohort", "holders": ["hospital_a",
                                                                         "insurer_b"]})
        client.append("release-request", {"study": "cml-tki", "user": "alice",
                                          "request_id": "rel1",
                                          "files": [{"name": "km.png", "sha256": H3,
                                                     "size": 2048}]})
        client.append("release-decision", {"study": "cml-tki", "request_id": "rel1",
                                           "reviewer": "carol", "decision": "approved"})
        client.append("login", {"user": "dan", "event": "login"})
        client.append("view-read", {"study": "other", "user": "dan", "view": "secret_view"})
    return space


def test_prov_json_loads_back_with_prov(study_log):
    with ProvenanceReader(study_log) as reader:
        text = export.export(reader, "cml-tki", "prov-json")
    document = pm.ProvDocument.deserialize(content=text, format="json")
    ids = {str(record.identifier) for record in document.get_records() if record.identifier}
    assert "wb:user/alice" in ids and "wb:view/cml_cohort/2" in ids
    assert f"wb:code/{H1}" in ids and f"wb:output/{H2}" in ids and "wb:holder/hospital_a" in ids
    assert "wb:cell-execution/1" in ids
    generated = [r for r in document.get_records(pm.ProvGeneration)]
    assert any(str(r.formal_attributes[0][1]) == f"wb:output/{H2}" for r in generated)
    assert "secret_view" not in text and "dan" not in text  # only this study
    assert PATIENT_CODE not in text


def test_ro_crate_is_a_five_safes_crate(study_log):
    with ProvenanceReader(study_log) as reader:
        crate = json.loads(export.export(reader, "cml-tki", "ro-crate"))
    graph = {entity["@id"]: entity for entity in crate["@graph"]}
    assert crate["@context"].startswith("https://w3id.org/ro/crate/")
    assert graph["ro-crate-metadata.json"]["about"] == {"@id": "./"}
    root = graph["./"]
    assert root["conformsTo"] == {"@id": export.FIVE_SAFES_PROFILE}
    assert root["sourceOrganization"] == {"@id": "#project-cml-tki"}
    actions = [graph[m["@id"]] for m in root["mentions"]]
    assert {a["@type"] for a in actions} == {"CreateAction", "AssessAction"}
    check = next(a for a in actions if a["@type"] == "AssessAction")
    assert check["additionalType"] == {"@id": "https://w3id.org/shp#DisclosureCheck"}
    assert graph[check["agent"]["@id"]]["name"] == "carol"
    assert graph[f"#sha256-{H3}"]["contentSize"] == 2048
    for entity in crate["@graph"]:  # every reference resolves inside the crate
        for value in entity.values():
            for ref in value if isinstance(value, list) else [value]:
                if isinstance(ref, dict) and ref.get("@id", "").startswith("#"):
                    assert ref["@id"] in graph, ref
    assert PATIENT_CODE not in json.dumps(crate)


def test_exports_refuse_a_tampered_log(study_log):
    db = sqlite3.connect(study_log.provenance / SQLITE_FILE)
    db.execute("DROP TRIGGER records_no_delete")
    db.execute("DELETE FROM records WHERE seq = 2")
    db.commit()
    db.close()
    with ProvenanceReader(study_log) as reader, pytest.raises(WorkbenchUserError,
                                                              match="fails verification"):
        export.export(reader, "cml-tki", "prov-json")


def test_log_command_shows_the_study_timeline(study_log):
    result = CliRunner().invoke(cli, ["provenance", "log", "--data-dir", str(study_log.root),
                                      "--study", "cml-tki"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 5 and "cell-execution" in lines[0] and "alice" in lines[0]
    assert "read cml_cohort (812 rows)" in lines[1] and "approved rel1" in lines[4]
    as_json = CliRunner().invoke(cli, ["provenance", "log", "--data-dir", str(study_log.root),
                                       "--kind", "login", "--json"])
    assert [json.loads(line)["fields"]["user"] for line in as_json.output.splitlines()] == ["dan"]


def test_export_and_heads_commands(study_log, open_tmp):
    out = open_tmp / "prov.json"
    result = CliRunner().invoke(cli, ["provenance", "export", "--data-dir", str(study_log.root),
                                      "--study", "cml-tki", "--format", "prov-json", "-o",
                                      str(out)])
    assert result.exit_code == 0, result.output
    pm.ProvDocument.deserialize(content=out.read_text(), format="json")
    heads_file = open_tmp / "heads.json"
    result = CliRunner().invoke(cli, ["provenance", "heads", "export", "--data-dir",
                                      str(study_log.root), "-o", str(heads_file)])
    assert result.exit_code == 0, result.output
    exported = json.loads(heads_file.read_text())
    assert exported["heads"][-1]["tree_size"] == 7 and "PUBLIC KEY" in exported["public_key"]
    result = CliRunner().invoke(cli, ["provenance", "verify", "--data-dir", str(study_log.root),
                                      "--anchor", str(heads_file), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True


def test_export_of_an_unknown_study_is_a_user_error(study_log):
    with ProvenanceReader(study_log) as reader, pytest.raises(WorkbenchUserError,
                                                              match="no provenance records"):
        export.export(reader, "nope", "ro-crate")


def test_proof_commands(study_log):
    from workbench.provenance import merkle

    with ProvenanceReader(study_log) as reader:
        record_id = list(reader.records())[2].id
    root = ["provenance", "proof", "--data-dir", str(study_log.root)]
    inclusion = CliRunner().invoke(cli, [*root, record_id])
    assert inclusion.exit_code == 0, inclusion.output
    proof = json.loads(inclusion.output)
    assert merkle.verify_inclusion(proof["leaf_index"], proof["tree_size"],
                                   bytes.fromhex(record_id), [bytes.fromhex(p) for p in
                                                              proof["path"]],
                                   bytes.fromhex(proof["root_hash"]))
    consistency = json.loads(CliRunner().invoke(cli, [*root, "--consistency", "3"]).output)
    assert merkle.verify_consistency(3, 7, bytes.fromhex(consistency["old_root"]),
                                     bytes.fromhex(consistency["new_root"]),
                                     [bytes.fromhex(p) for p in consistency["path"]])
    bad = CliRunner().invoke(cli, [*root, "--consistency", "9"])
    assert bad.exit_code != 0 and isinstance(bad.exception, WorkbenchUserError)
