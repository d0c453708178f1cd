"""The generator: deterministic by seed, the agreed shape, sane arguments."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchUserError
from workbench.synth import GROUND_TRUTH, HOLDERS, generate, generate_chunks

HOSPITAL_PERSON_TABLES = {"hospital-a": "patients", "hospital-b": "pat"}
PAYER_PERSON_TABLES = {"insurer": "members", "insurer-b": "insured"}


def assert_same(a, b):
    assert a.tables.keys() == b.tables.keys()
    for holder in a.tables:
        assert a.tables[holder].keys() == b.tables[holder].keys()
        for name in a.tables[holder]:
            pd.testing.assert_frame_equal(a.tables[holder][name], b.tables[holder][name])


def test_same_seed_gives_the_same_data():
    assert_same(generate(3000, 11), generate(3000, 11))


def test_another_seed_gives_other_data():
    a = generate(3000, 11).tables["hospital-a"]["patients"]
    b = generate(3000, 12).tables["hospital-a"]["patients"]
    for column in ("national_id", "birth_date"):
        assert list(a[column][:100]) != list(b[column][:100]), column


def test_chunked_generation_is_deterministic_and_ids_stay_unique():
    first = list(generate_chunks(2500, 3, chunk_size=1000))
    second = list(generate_chunks(2500, 3, chunk_size=1000))
    assert [c.n_patients for c in first] == [1000, 1000, 500]
    for a, b in zip(first, second, strict=True):
        assert_same(a, b)
    for holder, table, column in (("insurer", "claims", "claim_id"),
                                  ("insurer-b", "cases", "case_no"),
                                  ("insurer-b", "prescriptions", "rx_no")):
        ids = pd.concat([c.tables[holder][table][column] for c in first])
        assert ids.is_unique, (holder, table)
    nids = pd.concat([c.tables[h][t]["national_id"] for c in first
                      for h, t in HOSPITAL_PERSON_TABLES.items()])
    assert nids.is_unique and len(nids) == 2500


def test_holders_tables_and_direct_identifier():
    chunk = generate(2000, 1)
    assert tuple(chunk.tables) == HOLDERS == ("hospital-a", "hospital-b", "insurer", "insurer-b",
                                              "pharma")
    assert set(chunk.tables["hospital-a"]) == {"patients", "encounters", "diagnoses", "labs",
                                               "medication_orders"}
    assert set(chunk.tables["hospital-b"]) == {"pat", "episodes", "problems", "results", "orders"}
    assert set(chunk.tables["insurer"]) == {"members", "enrolment", "claims"}
    assert set(chunk.tables["insurer-b"]) == {"insured", "insurance_periods", "cases",
                                              "prescriptions"}
    assert set(chunk.tables["pharma"]) == {"dispensing", "adverse_events"}
    for tables in chunk.tables.values():
        for frame in tables.values():
            assert pd.api.types.is_string_dtype(frame["national_id"])
            assert frame["national_id"].str.fullmatch(r"[0-9]{10}").all()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**31))
def test_every_patient_is_in_exactly_one_hospital(n, seed):
    chunk = generate(n, seed)
    ids = pd.concat([chunk.tables[h][t]["national_id"] for h, t in HOSPITAL_PERSON_TABLES.items()])
    assert ids.is_unique and len(ids) == n, f"seed {seed}"
    known = set(ids)
    for holder, tables in chunk.tables.items():
        for name, frame in tables.items():
            assert set(frame["national_id"]) <= known, f"{holder}.{name}, seed {seed}"


def test_each_insured_patient_has_one_payer_at_the_documented_shares():
    n = 40_000
    chunk = generate(n, 9)
    members = {h: chunk.tables[h][t]["national_id"] for h, t in PAYER_PERSON_TABLES.items()}
    both = pd.concat(members.values())
    assert both.is_unique  # nobody is insured twice
    coverage = GROUND_TRUTH["coverage"]
    assert sum(coverage["payer_shares"].values()) == pytest.approx(1.0)
    expected = {"insured": coverage["insured_share"]} | {
        payer: coverage["insured_share"] * share
        for payer, share in coverage["payer_shares"].items()}
    measured = {"insured": len(both) / n} | {h: len(ids) / n for h, ids in members.items()}
    for name, share in expected.items():
        assert abs(measured[name] - share) < 4 * np.sqrt(share * (1 - share) / n), name
    # A payer's claims and enrolment concern its own members only.
    for holder, ids in members.items():
        for name, frame in chunk.tables[holder].items():
            assert set(frame["national_id"]) <= set(ids), (holder, name)


def test_the_second_payer_has_its_own_source_format():
    raw = generate(5000, 4).tables["insurer-b"]
    dmy = r"(0[1-9]|[12][0-9]|3[01])\.(0[1-9]|1[0-2])\.(19|20)[0-9]{2}"
    for table, columns in (("insured", ["birth_date", "deceased_on"]),
                           ("insurance_periods", ["valid_from", "valid_to"]),
                           ("cases", ["admitted", "discharged"]),
                           ("prescriptions", ["dispensed"])):
        for column in columns:
            values = raw[table][column].dropna()
            assert len(values) and values.str.fullmatch(dmy).all(), (table, column)
    assert raw["insured"]["birth_date"].notna().all()
    assert 0 < raw["insured"]["deceased_on"].notna().mean() < 0.5
    assert set(raw["insured"]["sex"]) == {"W", "M"}
    assert raw["insured"]["region"].str.fullmatch(r"R0[1-8]").all()
    assert set(raw["cases"]["setting"]) == {"AMB", "STAT", "NOTF"}
    icd = raw["cases"]["icd"]
    assert icd.str.fullmatch(r"[A-Z][0-9]{2}(\.[0-9])?").all() and (icd == "C92.1").any()
    assert raw["prescriptions"]["product_no"].str.fullmatch(r"[0-9]{8}").all()
    for table in ("cases", "prescriptions"):  # integer cents, never more paid than charged
        frame = raw[table]
        assert pd.api.types.is_integer_dtype(frame["charged_cents"])
        assert (frame["reimbursed_cents"] <= frame["charged_cents"]).all()
        assert (frame["reimbursed_cents"] > 0).all()


def test_cohort_sizes_follow_the_stated_shares():
    n = 60_000
    chunk = generate(n, 5)
    dx = pd.concat([chunk.tables["hospital-a"]["diagnoses"].rename(columns={"icd10": "code"}),
                    chunk.tables["hospital-b"]["problems"]])
    for codes, share in ((["C92.1", "C921"], GROUND_TRUTH["cohort_shares"]["cml"]),
                         (["E10.9", "E109"], GROUND_TRUTH["cohort_shares"]["t1d"]),
                         (["J84.1", "J841", "J84.9", "J849"], GROUND_TRUTH["cohort_shares"]["ip"])):
        cases = dx.loc[dx["code"].isin(codes), "national_id"].nunique()
        tolerance = 4 * np.sqrt(share * (1 - share) / n)
        assert abs(cases / n - share) < tolerance, codes


@pytest.mark.parametrize("args", [(0, 1), (-5, 1), (10, -1), (2.5, 1), (10, 1, 0)])
def test_bad_arguments_are_user_errors(args):
    with pytest.raises(WorkbenchUserError):
        next(iter(generate_chunks(*args)))


def _traced_peak(n_patients: int, chunk_size: int) -> int:
    tracemalloc.start()
    try:
        rows = 0
        for chunk in generate_chunks(n_patients, 2, chunk_size=chunk_size):
            rows += chunk.rows
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_chunk_not_the_population():
    """Streaming: four times the patients in the same chunk size needs about the same peak."""
    small, large = _traced_peak(10_000, 5_000), _traced_peak(40_000, 5_000)
    assert large < 1.3 * small, (small, large)
