"""The synthetic twin: the real read's schema, no real value, deterministic, labelled, and made
without any row (it is built here from a catalog View alone, with no engine or space at all)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from workbench.catalog.models import Column, View
from workbench.views import ViewEngine
from workbench.views.sample import build_sample_space
from workbench.views.twin import DEFAULT_ROWS, is_synthetic, synthetic_twin, twin_rows


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return ViewEngine(build_sample_space(tmp_path_factory.mktemp("space"), rows=300))


@pytest.mark.parametrize("view_id", ["visits", "visits_monthly"])
def test_twin_has_the_real_reads_schema_and_none_of_its_values(engine, view_id):
    view = engine.view(view_id)
    real = engine.read("s1", view_id)
    twin = synthetic_twin(view, "s1", view.plaintext_columns, twin_rows(None))
    assert twin.schema.remove_metadata() == real.table.schema.remove_metadata()
    assert twin.num_rows == DEFAULT_ROWS
    assert "cost" not in twin.column_names and "mrn" not in twin.column_names
    real_ids = set(real.table["person_id"].to_pylist())
    twin_ids = set(twin["person_id"].to_pylist())
    assert real_ids and not real_ids & twin_ids
    assert all(i.startswith("synthetic-") for i in twin_ids)
    # the raw space-wide ids are not in it either
    raw = engine.unprotected_frame(view_id, ("person_id",))["person_id"]
    assert not set(raw) & twin_ids
    # categories keep their public levels; dates keep the view's date policy
    assert set(twin["diagnosis"].to_pylist()) <= set(view.column("diagnosis").levels)
    if view.date_policy == "month":
        assert pc.all(pc.equal(pc.day(twin["visit_date"]), 1)).as_py()


def test_twin_is_deterministic_per_study_view_and_seed(engine):
    view = engine.view("visits")
    cols = view.plaintext_columns
    first = synthetic_twin(view, "s1", cols, 200)
    assert first.equals(synthetic_twin(view, "s1", cols, 200))
    assert not first.equals(synthetic_twin(view, "s1", cols, 200, seed=1))
    assert not first.equals(synthetic_twin(view, "s2", cols, 200))
    # a column's values do not depend on which other columns were asked for
    alone = synthetic_twin(view, "s1", ("age",), 200)
    assert alone["age"].equals(first["age"])


def test_twin_is_labelled(engine):
    twin = synthetic_twin(engine.view("visits"), "s1", ("age",), 10)
    assert is_synthetic(twin)
    assert not is_synthetic(engine.read("s1", "visits", ["age"]).table)


def test_twin_follows_the_public_grid_of_survival_columns():
    view = View(id="surv", title="t", description="d", tables=("x",), sql="SELECT 1",
                columns=(Column(name="days", type="float64", description="d", role="time",
                                granularity=7, horizon=700),
                         Column(name="died", type="int64", description="d", role="event"),
                         Column(name="smoker", type="bool", description="d"),
                         Column(name="treated", type="int64", description="d", role="covariate"),
                         Column(name="seen", type="timestamp", description="d"),
                         Column(name="bmi", type="float64", description="d", role="covariate",
                                grid=(15, 25, 35))))
    twin = synthetic_twin(view, "s", tuple(c.name for c in view.columns), 500)
    days = twin["days"].to_numpy()
    assert days.min() >= 7 and days.max() <= 700 and not (days % 7).any()
    assert set(twin["died"].to_pylist()) == {0, 1} == set(twin["treated"].to_pylist())
    assert twin.schema.field("smoker").type == pa.bool_()
    assert twin.schema.field("seen").type == pa.timestamp("us")
    bmi = twin["bmi"].to_numpy()
    assert bmi.min() >= 15 and bmi.max() <= 35
