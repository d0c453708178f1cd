"""A malformed mapping fails with the file, line and field named, and never echoes data."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from workbench.errors import WorkbenchUserError
from workbench.harmonise import harmonise, load_mapping

GOOD = textwrap.dedent("""\
    source: test
    description: a small EHR
    tables:
      person:
        - from: patients
          columns:
            gender: {column: sex, codes: {F: F, M: M}}
            year_of_birth: {column: born, cast: year}
      visit_occurrence:
        - from: visits
          where: {column: kind, in: [OP]}
          columns:
            visit_occurrence_id: {column: visit_no, cast: string}
            visit_concept: {value: outpatient}
            visit_start_date: {column: day, cast: date}
    """)
RAW = {
    "patients": pd.DataFrame({"person_id": ["p1", "p2"], "sex": ["F", "M"],
                              "born": pd.to_datetime(["1970-05-01", "1980-01-02"])}),
    "visits": pd.DataFrame({"person_id": ["p1", "p2"], "visit_no": [1, 2], "kind": ["OP", "IP"],
                            "day": pd.to_datetime(["2020-01-01", "2021-02-03"])}),
}


def write(tmp_path, text):
    path = tmp_path / "test.yaml"
    path.write_text(text)
    return path


def error_of(path, raw=None) -> str:
    with pytest.raises(WorkbenchUserError) as info:
        if raw is None:
            load_mapping(path)
        else:
            harmonise("test", raw, mapping=path)
    assert info.value.reason == "bad-mapping"
    message = str(info.value)
    assert str(path) in message
    return message


def test_the_good_mapping_works(tmp_path):
    out = harmonise("test", RAW, mapping=write(tmp_path, GOOD))
    assert list(out["person"]["year_of_birth"]) == [1970, 1980]
    assert list(out["visit_occurrence"]["visit_occurrence_id"]) == ["1"]  # IP filtered out
    assert list(out["visit_occurrence"]["visit_start_date"].astype(str)) == ["2020-01-01"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = GOOD.replace("gender: {column: sex, codes: {F: F, M: M}}",
                        "gender: {column: sex, codes: {F: F, M: M}")
    assert "line 8" in error_of(write(tmp_path, text))


def test_misspelt_key_names_line_and_field(tmp_path):
    text = GOOD.replace("year_of_birth: {column: born", "year_of_birth: {colum: born")
    message = error_of(write(tmp_path, text))
    assert "line 8" in message and "tables.person.0.columns.year_of_birth" in message
    assert "colum" in message


def test_unknown_cast_names_line_and_field(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("cast: year}", "cast: yaer}")))
    assert "line 8" in message and "year_of_birth" in message and "cast" in message


def test_unknown_target_column_names_line(tmp_path):
    text = GOOD.replace("visit_concept: {value: outpatient}", "visit_kind: {value: outpatient}")
    message = error_of(write(tmp_path, text))
    assert "line 14" in message and "'visit_kind' is not a column of 'visit_occurrence'" in message


def test_unknown_table_names_line(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("  visit_occurrence:", "  visits_table:")))
    assert "line 9" in message and "visits_table" in message


def test_column_and_value_together_are_refused(tmp_path):
    text = GOOD.replace("visit_concept: {value: outpatient}",
                        "visit_concept: {value: outpatient, column: kind}")
    message = error_of(write(tmp_path, text))
    assert "line 14" in message and "exactly one of 'column'" in message


def test_missing_top_level_field(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("description: a small EHR\n", "")))
    assert "description" in message and "line 1" in message


def test_direct_identifier_cannot_be_mapped(tmp_path):
    text = GOOD.replace("gender: {column: sex", "gender: {column: national_id")
    message = error_of(write(tmp_path, text))
    assert "line 7" in message and "direct identifier" in message


def test_person_id_cannot_be_remapped(tmp_path):
    text = GOOD.replace("        gender:", "        person_id: sex\n        gender:")
    assert "person_id is copied" in error_of(write(tmp_path, text))


def test_missing_raw_column_names_mapping_line_and_table(tmp_path):
    raw = {**RAW, "patients": RAW["patients"].rename(columns={"born": "birth"})}
    message = error_of(write(tmp_path, GOOD), raw)
    assert "line 8" in message and "raw table 'patients' has no column 'born'" in message


def test_missing_raw_table_names_the_from_line(tmp_path):
    raw = {"patients": RAW["patients"]}
    message = error_of(write(tmp_path, GOOD), raw)
    assert "line 10" in message and "no raw table 'visits'" in message


def test_failed_cast_does_not_echo_the_value(tmp_path):
    secret = "PATIENT-VALUE-4711"
    raw = {**RAW, "patients": RAW["patients"].assign(born=[secret, "x"])}
    message = error_of(write(tmp_path, GOOD), raw)
    assert "year_of_birth" in message and "line 8" in message
    assert secret not in message and "4711" not in message


@pytest.mark.parametrize("cast", ["yyyymmdd", "int", "float", "date", "year"])
def test_every_failing_cast_is_a_named_error_without_the_value(tmp_path, cast):
    secret = "PATIENT-VALUE-4711"
    text = GOOD.replace("year_of_birth: {column: born, cast: year}",
                        f"year_of_birth: {{column: born, cast: [{cast}, int]}}")
    raw = {**RAW, "patients": RAW["patients"].assign(born=[secret, None])}
    try:
        out = harmonise("test", raw, mapping=write(tmp_path, text))
    except WorkbenchUserError as exc:
        assert "line 8" in str(exc) and secret not in str(exc) and "4711" not in str(exc)
    else:  # lenient casts turn what they cannot read into missing values
        assert out["person"]["year_of_birth"].isna().all()


def test_tables_still_identified_are_refused(tmp_path):
    raw = {**RAW, "patients": RAW["patients"].assign(national_id=["1", "2"])}
    with pytest.raises(WorkbenchUserError) as info:
        harmonise("test", raw, mapping=write(tmp_path, GOOD))
    assert info.value.reason == "identified-data"


def test_raw_table_without_pseudonym_is_refused(tmp_path):
    raw = {**RAW, "patients": RAW["patients"].drop(columns=["person_id"])}
    assert "no 'person_id' column" in error_of(write(tmp_path, GOOD), raw)


def test_unknown_source_has_no_mapping():
    with pytest.raises(WorkbenchUserError) as info:
        harmonise("no-such-holder", RAW)
    assert info.value.reason == "no-mapping"
