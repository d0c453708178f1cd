"""The quality report finds the injected defects at their injected rates, scores clean data 1,
and carries counts only."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from workbench.errors import WorkbenchUserError
from workbench.quality import DIMENSIONS, rate, report
from workbench.synth import GROUND_TRUTH

AS_OF = date.fromisoformat(GROUND_TRUTH["extraction_date"])
# Which check measures each injected defect.
MEASURED_BY = {
    "missing_year_of_birth": ("missing-values", "year_of_birth"),
    "missing_lab_value": ("missing-values", "value_as_number"),
    "out_of_range_lab": ("out-of-range-value", "value_as_number"),
    "duplicate_claim": ("repeated-record", "total_paid"),
    "death_before_diagnosis": ("death-before-diagnosis", "death_date"),
    "visit_end_before_start": ("end-before-start", "visit_end_date"),
    "enrolment_end_before_start": ("end-before-start", "payer_plan_period_end_date"),
    "future_dated_visit": ("future-dated", "visit_start_date"),
}
CASES = [(name, holder) for name, spec in GROUND_TRUTH["defects"].items()
         for holder in spec["holders"]]


def find(rep, check, column):
    for c in rep["checks"]:
        if c["check"] == check and column in c["columns"]:
            return c
    raise AssertionError(f"no {check} check on {column}")


@pytest.mark.parametrize(("defect", "holder"), CASES)
def test_injected_defect_found_at_its_rate(release, defect, holder):
    spec = GROUND_TRUTH["defects"][defect]
    table = spec["table"]
    rep = report(f"{holder}.{table}", release / holder / f"{table}.parquet", table, as_of=AS_OF)
    check = find(rep, *MEASURED_BY[defect])
    # Binomial tolerance: four standard errors of the measured share (plus rounding).
    tolerance = 4 * np.sqrt(spec["rate"] * (1 - spec["rate"]) / check["checked"]) + 1e-4
    assert check["checked"] > 500
    assert abs(check["rate"] - spec["rate"]) < tolerance, (defect, holder, check["rate"])


@pytest.mark.parametrize(("holder", "table"), [("pharma", "drug_exposure"),
                                               ("insurer", "person"),
                                               ("insurer-b", "person"),
                                               ("insurer-b", "death"),
                                               ("hospital-a", "observation_period")])
def test_tables_without_injected_defects_score_near_one(release, holder, table):
    rep = report("x", release / holder / f"{table}.parquet", table, as_of=AS_OF)
    assert rep["score"] > 0.999
    assert all(c["rate"] == 0 for c in rep["checks"]), [c for c in rep["checks"] if c["rate"]]


def test_report_shape_and_score_range(release):
    rep = report("hospital_a.measurement", release / "hospital-a" / "measurement.parquet",
                 "measurement", as_of=AS_OF)
    assert set(rep) == {"dataset_id", "table", "rows", "as_of", "score", "dimensions", "checks",
                        "facts"}
    assert set(rep["dimensions"]) == set(DIMENSIONS)
    assert 0 <= rep["score"] < 1
    assert rep["rows"] == pd.read_parquet(release / "hospital-a" / "measurement.parquet").shape[0]
    assert rate(rep, "out-of-range-value") > 0
    assert rep["facts"]["days_since_latest_record"] >= 31  # data cutoff to extraction date


def test_report_holds_no_patient_values(release):
    path = release / "insurer" / "cost.parquet"
    frame = pd.read_parquet(path)
    text = json.dumps(report("insurer.cost", path, "cost", as_of=AS_OF))
    for value in list(frame["person_id"][:200]) + list(frame["cost_id"][:200]):
        assert str(value) not in text
    for amount in frame["total_paid"][:200]:
        assert f"{amount:.2f}" not in text


def test_more_defects_lower_the_score(tmp_path):
    clean = pd.DataFrame({
        "person_id": [f"p{i}" for i in range(1000)],
        "measurement_concept": ["hba1c"] * 1000,
        "measurement_date": pd.to_datetime(["2020-01-01"] * 1000).date,
        "value_as_number": np.linspace(5, 9, 1000),
        "unit": ["%"] * 1000,
    })
    scores = []
    for broken in (0, 50, 200):
        frame = clean.copy()
        frame.loc[: broken - 1, "value_as_number"] = -1.0
        frame.loc[broken: 2 * broken - 1, "value_as_number"] = None
        path = tmp_path / f"m{broken}.parquet"
        frame.to_parquet(path, index=False)
        rep = report("t", path, "measurement", as_of=AS_OF)
        assert rate(rep, "out-of-range-value") == pytest.approx(broken / 1000)
        assert rate(rep, "missing-values", column="value_as_number") == pytest.approx(
            broken / 1000)
        scores.append(rep["score"])
    assert scores[0] == 1.0 and scores[0] > scores[1] > scores[2]


def test_unknown_tables_get_the_generic_checks(tmp_path):
    frame = pd.DataFrame({"time": [1, 2, 2, None], "status": [1, 0, 0, 1]})
    path = tmp_path / "lung.parquet"
    frame.to_parquet(path, index=False)
    rep = report("site_1.lung", path, "lung")
    assert rate(rep, "missing-values", column="time") == 0.25
    assert rate(rep, "repeated-record") == 0.25
    assert rep["dimensions"]["timeliness"] is None and 0 < rep["score"] < 1


def test_death_check_uses_the_given_conditions_file(tmp_path):
    deaths = pd.DataFrame({"person_id": ["a", "b", "c"], "death_source": ["ehr"] * 3,
                           "death_date": pd.to_datetime(["2020-01-01", "2020-01-01",
                                                         "2020-01-01"]).date})
    conditions = pd.DataFrame({"person_id": ["a", "b"],
                               "condition_start_date": pd.to_datetime(["2019-01-01",
                                                                       "2021-01-01"]).date})
    deaths.to_parquet(tmp_path / "d.parquet", index=False)
    conditions.to_parquet(tmp_path / "conditions.parquet", index=False)
    rep = report("x", tmp_path / "d.parquet", "death",
                 related={"condition_occurrence": tmp_path / "conditions.parquet"})
    check = find(rep, "death-before-diagnosis", "death_date")
    assert (check["checked"], check["failed"]) == (2, 1)
    without = report("x", tmp_path / "d.parquet", "death")
    assert not [c for c in without["checks"] if c["check"] == "death-before-diagnosis"]


def test_missing_or_broken_files_are_user_errors(tmp_path):
    with pytest.raises(WorkbenchUserError) as info:
        report("x", tmp_path / "none.parquet", "person")
    assert "none.parquet" in str(info.value)
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(WorkbenchUserError) as info:
        report("x", bad, "person")
    assert info.value.reason == "bad-data-file"
