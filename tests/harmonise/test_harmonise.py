"""The packaged mappings turn every holder's raw sources into the common model."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.harmonise import MEASUREMENT_UNITS, OMOP_SCHEMA, arrow_schema, harmonise
from workbench.harmonise.engine import _cast
from workbench.harmonise.mapping import MAPPINGS_DIR, load_mapping
from workbench.quality.rules import CODE_RULES
from workbench.synth import HOLDERS


@pytest.fixture(scope="module")
def common(pseudonymised):
    return {holder: harmonise(holder, tables) for holder, tables in pseudonymised.items()}


def test_every_packaged_mapping_loads():
    names = sorted(p.stem for p in MAPPINGS_DIR.glob("*.yaml"))
    assert names == sorted(HOLDERS)
    for name in names:
        assert load_mapping(MAPPINGS_DIR / f"{name}.yaml").mapping.source == name


def test_output_follows_the_common_schema(common):
    for holder, tables in common.items():
        assert tables, holder
        for table, frame in tables.items():
            assert list(frame.columns) == [c.name for c in OMOP_SCHEMA[table]], (holder, table)
            assert pa.Table.from_pandas(frame, preserve_index=False).schema.equals(
                arrow_schema(table)), (holder, table)
            assert frame["person_id"].notna().all(), (holder, table)
    assert set(common["insurer"]) >= {"cost", "payer_plan_period", "person", "death"}
    assert set(common["hospital-a"]) >= {"person", "measurement", "visit_occurrence"}


def test_no_direct_identifier_reaches_the_common_model(raw_sources, common):
    national_ids = set()
    for tables in raw_sources.values():
        for frame in tables.values():
            national_ids.update(frame["national_id"])
    for holder, tables in common.items():
        for table, frame in tables.items():
            assert "national_id" not in frame.columns
            for column in frame.columns:
                if pd.api.types.is_string_dtype(frame[column].dtype) or \
                        frame[column].dtype == pd.ArrowDtype(pa.string()):
                    assert national_ids.isdisjoint(set(frame[column].dropna())), (holder, table)


def test_row_counts_are_preserved(pseudonymised, common):
    raw_a, raw_b, ins = pseudonymised["hospital-a"], pseudonymised["hospital-b"], \
        pseudonymised["insurer"]
    assert len(common["hospital-a"]["measurement"]) == len(raw_a["labs"])
    assert len(common["hospital-b"]["condition_occurrence"]) == len(raw_b["problems"])
    assert len(common["insurer"]["cost"]) == len(ins["claims"])
    medical = ins["claims"]["claim_type"].isin(["O", "I", "E"]).sum()
    assert len(common["insurer"]["visit_occurrence"]) == medical
    assert len(common["hospital-a"]["death"]) == raw_a["patients"]["date_of_death"].notna().sum()


def test_the_same_person_links_across_holders(common):
    hospital = set(common["hospital-a"]["person"]["person_id"]) | set(
        common["hospital-b"]["person"]["person_id"])
    insurer_a = set(common["insurer"]["person"]["person_id"])
    insurer_b = set(common["insurer-b"]["person"]["person_id"])
    insured = insurer_a | insurer_b
    dispensed = set(common["pharma"]["drug_exposure"]["person_id"])
    assert insured <= hospital and dispensed <= hospital
    assert not insurer_a & insurer_b  # one payer per insured patient
    assert 0.8 < len(insured) / len(hospital) < 0.9


def test_units_agree_between_hospitals_after_harmonisation(common):
    def means(holder):
        m = common[holder]["measurement"]
        m = m[m["value_as_number"] > 0]  # leave out the injected negative values
        return m.groupby("measurement_concept")["value_as_number"].mean()
    a, b = means("hospital-a"), means("hospital-b")
    for concept, tolerance in (("haemoglobin", 0.1), ("creatinine", 0.02), ("hba1c", 0.1),
                               ("kl6", 60), ("wbc", 0.2)):
        assert a[concept] == pytest.approx(b[concept], abs=tolerance), concept
    for holder in ("hospital-a", "hospital-b"):
        m = common[holder]["measurement"]
        expected = m["measurement_concept"].map(MEASUREMENT_UNITS)
        assert (m["unit"].astype(str) == expected.astype(str)).all(), holder


def test_hba1c_ifcc_to_ngsp_conversion():
    raw = {"results": pd.DataFrame({
        "person_id": ["p1", "p2", "p3", "p4"],
        "test": ["59261-8", "59261-8", "718-7", "14682-9"],
        "value_text": ["53", "<5", "135", "88.4"],
        "units": ["mmol/mol", "mmol/mol", "g/L", "umol/L"],
        "result_date": pd.to_datetime(["2020-01-01"] * 4)})}
    m = harmonise("hospital-b", {"pat": pd.DataFrame(columns=["person_id", "gender", "yob",
                                                              "region", "first_seen",
                                                              "last_seen", "dod"]),
                                 "episodes": pd.DataFrame(columns=["person_id", "episode_no",
                                                                   "kind", "start_ts",
                                                                   "end_ts"]),
                                 "problems": pd.DataFrame(columns=["person_id", "episode_no",
                                                                   "code_system", "code",
                                                                   "noted_on"]),
                                 "orders": pd.DataFrame(columns=["person_id", "medication",
                                                                 "order_start", "order_end"]),
                                 **raw})["measurement"]
    values = m["value_as_number"].tolist()
    assert values[0] == pytest.approx(7.0, abs=0.01)  # 53 mmol/mol is 7.0 %
    assert pd.isna(values[1])  # text that is not a number becomes missing, not an error
    assert values[2] == pytest.approx(13.5)
    assert values[3] == pytest.approx(1.0, abs=1e-4)
    assert m["measurement_concept"].tolist() == ["hba1c", "hba1c", "haemoglobin", "creatinine"]


def test_condition_and_drug_codes_are_harmonised(common):
    icd = CODE_RULES["condition_occurrence"]["condition_concept"][0]
    atc = CODE_RULES["drug_exposure"]["drug_concept"][0]
    for holder, tables in common.items():
        if "condition_occurrence" in tables:
            codes = tables["condition_occurrence"]["condition_concept"].astype(str)
            assert codes.str.fullmatch(icd).all(), holder
        if "drug_exposure" in tables:
            drugs = tables["drug_exposure"]
            assert drugs["drug_concept"].astype(str).str.fullmatch(atc).all(), holder
            assert drugs["drug_name"].notna().all(), holder
    progression = pd.concat([common[h]["condition_occurrence"] for h in ("hospital-a",
                                                                         "hospital-b")])
    assert (progression["condition_concept"] == "CML-BP").sum() > 0
    for payer in ("insurer", "insurer-b"):
        claims = common[payer]["condition_occurrence"]["condition_concept"]
        assert (claims == "CML-BP").sum() == 0 and (claims == "C92.1").sum() > 0, payer


@pytest.mark.parametrize("holder", ["pharma", "insurer", "insurer-b"])
def test_dispensing_end_is_start_plus_supply(common, holder):
    d = common[holder]["drug_exposure"]
    days = (pd.to_datetime(d["drug_exposure_end_date"].astype(str))
            - pd.to_datetime(d["drug_exposure_start_date"].astype(str))).dt.days
    assert len(d) and (days == d["days_supply"].astype(int)).all()


def test_the_second_payer_lands_in_the_same_tables_as_the_first(pseudonymised, common):
    """insurer-b's own format (day-first text dates, product numbers, cents, separate case and
    prescription tables) harmonises into what insurer's claims give: every row, no date lost."""
    raw, ours, theirs = pseudonymised["insurer-b"], common["insurer-b"], common["insurer"]
    assert set(ours) == set(theirs)
    assert len(ours["person"]) == len(raw["insured"])
    assert len(ours["death"]) == raw["insured"]["deceased_on"].notna().sum()
    assert len(ours["visit_occurrence"]) == len(ours["condition_occurrence"]) == len(raw["cases"])
    assert len(ours["drug_exposure"]) == len(raw["prescriptions"])
    assert len(ours["cost"]) == len(raw["cases"]) + len(raw["prescriptions"])
    for table, frame in ours.items():
        for column in frame.columns:
            if column.endswith("_date"):
                assert frame[column].notna().all(), (table, column)
    cost = ours["cost"]
    paid_cents = pd.concat([raw["cases"]["reimbursed_cents"],
                            raw["prescriptions"]["reimbursed_cents"]], ignore_index=True)
    assert cost["total_paid"].to_numpy() == pytest.approx(paid_cents.to_numpy() / 100)
    assert set(cost["cost_domain"]) == {"visit", "drug"}
    assert cost["cost_concept"].notna().all()
    for table, column in (("person", "gender"), ("person", "region"),
                          ("visit_occurrence", "visit_concept"),
                          ("payer_plan_period", "plan_concept")):
        assert set(ours[table][column]) == set(theirs[table][column]), (table, column)
    assert set(ours["drug_exposure"]["drug_name"]) == set(theirs["drug_exposure"]["drug_name"])
    tki = ours["drug_exposure"][ours["drug_exposure"]["drug_concept"] == "L01EA02"]
    assert len(tki) and set(tki["drug_name"]) == {"dasatinib"}
    # The same people, read by both payers' formats, are born in the same years on average.
    assert ours["person"]["year_of_birth"].mean() == pytest.approx(
        theirs["person"]["year_of_birth"].mean(), abs=1.0)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_day_first_text_dates_are_read_exactly(day):
    text = f"{day.day:02d}.{day.month:02d}.{day.year}"
    out = _cast(pa.array([text, None, "2020-01-31", "31.02.2020"]), "dmy")
    assert out.to_pylist() == [day, None, None, None]  # other formats and non-days -> null


def test_cents_become_currency_units():
    assert _cast(pa.array([12345, 0, None]), "cents").to_pylist() == [123.45, 0.0, None]


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_claims_integer_dates_are_read_exactly(day):
    value = day.year * 10000 + day.month * 100 + day.day
    out = _cast(pa.array(np.array([value, 0, 20230229, 20240431], dtype=np.int64)), "yyyymmdd")
    assert out.to_pylist() == [day, None, None, None]  # no 29 Feb 2023, no 31 April


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[A-Z][0-9]{2}[0-9A-Z]{1,3}", fullmatch=True))
def test_dotless_icd10_gets_its_dot(code):
    from workbench.harmonise.engine import _column
    from workbench.harmonise.mapping import ColumnRule

    frame = pd.DataFrame({"code": [code]})
    out = _column(frame, ColumnRule(column="code", transform="icd10_dot"), pa.string())
    assert out.to_pylist() == [f"{code[:3]}.{code[3:]}"]
