"""The view engine's protections: allow-list, sensitive columns, pseudonyms, dates, min_rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError
from workbench.views import ViewEngine
from workbench.views.protect import MAX_SHIFT_DAYS
from workbench.views.sample import build_sample_space


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return ViewEngine(build_sample_space(tmp_path_factory.mktemp("space"), rows=300))


def raw_rows(engine) -> pa.Table:
    """The stored rows of both holders, read directly (what must never leave unprotected)."""
    parts = [pq.read_table(engine.catalog.dataset_path(engine.space, d))
             for d in engine.catalog.holders_of("visit")]
    return pa.concat_tables(parts)


def test_default_read_returns_plaintext_columns_only(engine):
    result = engine.read("s1", "visits")
    assert result.columns == ("person_id", "visit_date", "age", "diagnosis", "holder")
    assert "cost" not in result.table.column_names and "mrn" not in result.table.column_names
    assert result.rows == 300
    assert result.rows_by_holder == {"hospital-a": 100, "insurer-b": 200}


@pytest.mark.parametrize("column,reason", [("cost", "sensitive-column"),
                                           ("mrn", "sensitive-column"),
                                           ("nope", "unknown-column")])
def test_sensitive_and_unknown_columns_refused(engine, column, reason):
    with pytest.raises(WorkbenchUserError) as info:
        engine.read("s1", "visits", columns=["age", column])
    assert info.value.reason == reason and column in str(info.value)


def test_sensitive_values_never_appear_in_any_plain_read(engine):
    raw = raw_rows(engine)
    secret = {str(v) for v in raw["cost"].to_pylist()} | set(raw["mrn"].to_pylist())
    for view in ("visits", "visits_monthly"):
        table = engine.read("s1", view).table
        for name in table.column_names:
            assert not secret & {str(v) for v in table[name].to_pylist()}, (view, name)


def test_pseudonyms_are_rekeyed_per_study(engine):
    raw = set(raw_rows(engine)["person_id"].to_pylist())
    one = engine.read("s1", "visits", columns=["person_id"]).table["person_id"].to_pylist()
    again = engine.read("s1", "visits", columns=["person_id"]).table["person_id"].to_pylist()
    other = engine.read("s2", "visits", columns=["person_id"]).table["person_id"].to_pylist()
    assert one == again                     # deterministic within a study
    assert not raw & set(one)               # never the space-wide pseudonym
    assert not set(one) & set(other)        # unlinkable across studies
    assert len(set(one)) == len(set(other)) == len(raw)  # same people, one id each


def test_dates_shift_per_person_consistently(engine):
    raw = raw_rows(engine)
    shifted = engine.read("s1", "visits", columns=["person_id", "visit_date"]).table
    days = pc.subtract(shifted["visit_date"].cast(pa.int32()),
                       raw["visit_date"].cast(pa.int32())).to_pylist()
    assert all(abs(d) <= MAX_SHIFT_DAYS for d in days)
    assert any(d != 0 for d in days)
    by_person: dict[str, set] = {}
    for person, d in zip(shifted["person_id"].to_pylist(), days, strict=True):
        by_person.setdefault(person, set()).add(d)
    assert all(len(offsets) == 1 for offsets in by_person.values())  # intervals are preserved
    other = engine.read("s2", "visits", columns=["visit_date"]).table["visit_date"]
    assert other.to_pylist() != shifted["visit_date"].to_pylist()  # per-study offsets


def test_dates_coarsened_to_month(engine):
    dates = engine.read("s1", "visits_monthly", columns=["visit_date"]).table["visit_date"]
    assert {d.day for d in dates.to_pylist()} == {1}


def test_min_rows_refuses_small_views_even_with_a_limit(engine):
    for limit in (None, 3):
        with pytest.raises(WorkbenchUserError) as info:
            engine.read("s1", "elderly", limit=limit)
        assert info.value.reason == "too-few-rows"


def test_limit_and_column_choice(engine):
    result = engine.read("s1", "visits", columns=["age", "age", "holder"], limit=7)
    assert result.table.column_names == ["age", "holder"] and result.rows == 7
    assert sum(result.rows_by_holder.values()) == 7


def test_unknown_view_and_raw_tables_are_not_views(engine):
    for name in ("nope", "visit", "hospital_a.visit"):
        with pytest.raises(WorkbenchUserError) as info:
            engine.read("s1", name)
        assert info.value.reason == "unknown-view"


def test_partitions_split_by_holder_with_sensitive_columns(engine):
    parts = engine.partitions("s1", "visits", ["person_id", "cost"])
    raw = raw_rows(engine)
    assert sorted(parts) == ["hospital-a", "insurer-b"]
    assert sum(len(p) for p in parts.values()) == raw.num_rows
    assert sorted(pd_cost for p in parts.values() for pd_cost in p["cost"]) == \
        sorted(raw["cost"].to_pylist())
    plain = set(engine.read("s1", "visits", columns=["person_id"]).table["person_id"].to_pylist())
    assert set(parts["hospital-a"]["person_id"]) <= plain  # same study ids as a plain read
    with pytest.raises(WorkbenchUserError):
        engine.partitions("s1", "visits", ["mrn"])  # direct identifiers never, not even here


def test_describe_has_schema_sensitivity_quality_and_version(engine):
    info = engine.describe("visits")
    assert {c["name"]: c["sensitivity"] for c in info["columns"]}["cost"] == "sensitive"
    assert {c["name"]: c["plaintext"] for c in info["columns"]}["cost"] is False
    assert info["holders"] == ["hospital-a", "insurer-b"]
    assert set(info["quality"]) == {"hospital_a.visit", "insurer_b.visit"}
    assert len(info["version"]) == 16


def test_version_changes_when_data_changes(tmp_path):
    space = build_sample_space(tmp_path / "a", rows=50)
    before = ViewEngine(space).versions["visits"]
    catalog = Catalog.load(space)
    dataset = catalog.datasets["hospital_a.visit"]
    Catalog.write(space, dataset.model_copy(update={"version": "0" * 64}))
    assert ViewEngine(space).versions["visits"] != before


def _hashes(values):
    """DuckDB's hash of each id, as the engine computes it (null for a null id)."""
    import duckdb
    con = duckdb.connect()
    con.register("ids", pa.table({"p": pa.array(values, pa.string())}))
    return con.sql("SELECT CASE WHEN p IS NULL THEN NULL ELSE hash(p) END FROM ids") \
        .to_arrow_table().column(0)


def test_study_keys_learn_incrementally_and_keep_nulls():
    from workbench.space.linkage import study_pseudonyms
    from workbench.views.protect import StudyKeys

    key = bytes(range(32))
    keys = StudyKeys(key)
    ids = ["x", None, "y"]
    first, first_offsets = keys.lookup("s", pa.array(ids), _hashes(ids))
    ids2 = ["z", "x", None]
    second, second_offsets = keys.lookup("s", pa.chunked_array([ids2[:2], ids2[2:]]),
                                         _hashes(ids2))
    assert first[1].as_py() is None and second[2].as_py() is None
    assert first_offsets[1].as_py() is None
    assert first[0] == second[1] and first_offsets[0] == second_offsets[1]
    assert first[0].as_py() == study_pseudonyms(key, "s", ["x"])[0]  # the space's function
    assert keys.lookup("t", pa.array(["x"]), _hashes(["x"]))[0][0] != first[0]
    empty, _ = keys.lookup("u", pa.array([None, None], pa.string()), _hashes([None, None]))
    assert empty.null_count == 2


def test_study_keys_survive_hash_collisions():
    from workbench.space.linkage import study_pseudonyms
    from workbench.views.protect import StudyKeys

    key = bytes(range(32))
    keys = StudyKeys(key)
    same = pa.array([7, 7, 7], pa.uint64())  # three different people, one (forced) hash
    names, _ = keys.lookup("s", pa.array(["a", "b", "a"]), same)
    assert names.to_pylist() == list(study_pseudonyms(key, "s", ["a", "b", "a"]))
    names, _ = keys.lookup("s", pa.array(["c", "b"]), pa.array([7, 7], pa.uint64()))
    assert names.to_pylist() == list(study_pseudonyms(key, "s", ["c", "b"]))
