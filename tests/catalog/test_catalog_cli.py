"""Catalog commands on a small full space: list, search, show, export."""

import json

import pytest
from click.testing import CliRunner

from workbench.catalog.search import search
from workbench.catalog.store import Catalog
from workbench.cli import cli
from workbench.errors import WorkbenchUserError


def run(space, *args):
    return CliRunner().invoke(cli, ["catalog", *args, "--data-dir", str(space.root)])


@pytest.fixture(scope="module")
def catalog(built_space):
    return Catalog.load(built_space)


@pytest.mark.parametrize("query, expected", [
    ("breast", {"gbsg.gbsg2", "gbsg2_survival"}),                    # title / description
    ("karnof", {"actg.actg175", "actg175_trial"}),                    # column name
    ("oestrogen receptor", {"gbsg.gbsg2", "gbsg2_survival"}),         # column description
    ("HIV validation", {"actg.actg175"}),                             # tags, every word
    ("ncctg_inst_33", {"ncctg_inst_33.lung"}),                        # id
    ("drug_exposure", {"hospital_a.drug_exposure", "pharma.drug_exposure"}),
])
def test_search_finds_records_by_every_field(catalog, query, expected):
    found = {hit.id for hit in search(catalog, query)}
    assert expected <= found, found


def test_search_needs_every_word_and_ranks_ids_first(catalog):
    assert search(catalog, "breast hiv") == []
    assert search(catalog, "   ") == []
    hits = search(catalog, "lung_survival")
    assert hits[0].id == "lung_survival" and hits[0].kind == "view"


def test_search_command(built_space):
    result = run(built_space, "search", "breast")
    assert result.exit_code == 0 and "gbsg.gbsg2" in result.output and "matched:" in result.output
    assert "nothing matches" in run(built_space, "search", "zzzz-nothing").output


def test_list(built_space, catalog):
    result = run(built_space, "list")
    assert result.exit_code == 0
    for dataset_id in catalog.datasets:
        assert dataset_id in result.output
    listed = json.loads(run(built_space, "list", "--json").output)
    assert len(listed["datasets"]) == len(catalog.datasets)
    assert {v["id"] for v in listed["views"]} == set(catalog.views)


def test_show_dataset_and_view(built_space, catalog):
    result = run(built_space, "show", "gbsg.gbsg2")
    assert result.exit_code == 0
    dataset = catalog.datasets["gbsg.gbsg2"]
    for text in ("rows     686", dataset.version, "quality", "completeness", "cens", "sensitive",
                 "quasi_identifier", "oestrogen receptor"):
        assert text in result.output
    result = run(built_space, "show", "lung_survival")
    assert result.exit_code == 0 and "ncctg-inst-01" in result.output and "SELECT" in result.output
    result = run(built_space, "show", "no_such_thing")
    assert isinstance(result.exception, WorkbenchUserError)
    assert "no dataset or view 'no_such_thing'" in str(result.exception)


def test_dcat_export(built_space, catalog, tmp_path):
    out = tmp_path / "catalog.jsonld"
    assert run(built_space, "export", "--format", "dcat", "--out", str(out)).exit_code == 0
    document = json.loads(out.read_text())
    assert document["@type"] == "dcat:Catalog"
    assert document["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    datasets = {d["dct:identifier"]: d for d in document["dcat:dataset"]}
    assert set(datasets) == set(catalog.datasets)
    gbsg = datasets["gbsg.gbsg2"]
    assert gbsg["dcat:version"] == catalog.datasets["gbsg.gbsg2"].version
    assert gbsg["dqv:hasQualityMeasurement"]["dqv:value"]["@value"] == \
        catalog.datasets["gbsg.gbsg2"].quality_score
    columns = {c["csvw:name"]: c for c in gbsg["csvw:tableSchema"]["csvw:column"]}
    assert columns["cens"]["wb:sensitivity"] == "sensitive"
    services = {s["dct:identifier"]: s for s in document["dcat:service"]}
    assert len(services["lung_survival"]["dcat:servesDataset"]) == 19
    assert json.loads(run(built_space, "export").output) == document


def test_commands_outside_a_space_say_how_to_build_one(open_tmp):
    result = CliRunner().invoke(cli, ["catalog", "list", "--data-dir", str(open_tmp)])
    assert isinstance(result.exception, WorkbenchUserError)
    assert "workbench init" in str(result.exception)


def test_dcat_export_is_valid_json_ld(built_space, catalog):
    """Parsed as RDF, the export holds one dcat:Dataset per dataset, with its quality value."""
    from rdflib import Graph, Literal, Namespace
    from rdflib.namespace import DCAT, DCTERMS, RDF

    graph = Graph().parse(data=run(built_space, "export").output, format="json-ld")
    datasets = set(graph.subjects(RDF.type, DCAT.Dataset))
    assert len(datasets) == len(catalog.datasets)
    assert len(set(graph.subjects(RDF.type, DCAT.DataService))) == len(catalog.views)
    dqv = Namespace("http://www.w3.org/ns/dqv#")
    (subject,) = graph.subjects(DCTERMS.identifier, Literal("gbsg.gbsg2"))
    measurement = graph.value(subject, dqv.hasQualityMeasurement)
    score = graph.value(measurement, dqv.value).toPython()
    assert score == catalog.datasets["gbsg.gbsg2"].quality_score


def test_search_properties(catalog):
    """Every record is found by its own id; adding a word never adds hits."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    records = sorted([*catalog.datasets, *catalog.views])
    words = st.sampled_from(["lung", "survival", "age", "cost", "hiv", "date", "x", "person"])

    @settings(max_examples=60, deadline=None)
    @given(st.sampled_from(records), st.lists(words, min_size=1, max_size=3), words)
    def check(record_id, query, extra):
        assert record_id in {h.id for h in search(catalog, record_id)}
        fewer = {h.id for h in search(catalog, " ".join(query))}
        more = {h.id for h in search(catalog, " ".join([*query, extra]))}
        assert more <= fewer

    check()
