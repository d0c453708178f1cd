import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.space import linkage

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
id_text = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # well-formed
ids = st.lists(st.text(id_text, min_size=1, max_size=20), min_size=1, max_size=200, unique=True)
studies = st.from_regex(r"[a-z][a-z0-9-]{0,29}", fullmatch=True)


def test_pseudonym_is_keyed_hmac_and_treats_ids_as_text():
    out = linkage.pseudonym(KEY, [123, "123", None, "456"])
    assert out[0] == out[1] and out[2] is None and out[0] != out[3]
    assert len(out[0]) == linkage.PSEUDONYM_HEX and int(out[0], 16) >= 0
    assert linkage.pseudonym(OTHER_KEY, ["123"])[0] != out[0]
    assert "123" not in out[0]


@pytest.mark.parametrize("malformed", [["\x00", "\x000"], ["\ud800a", "\ud800b"]])
def test_malformed_identifiers_are_refused_not_merged(malformed):
    # Found by Hypothesis: pandas' hash table merged "\x00" and "\x000" into one person.
    with pytest.raises(WorkbenchUserError, match="NUL character or invalid Unicode") as caught:
        linkage.pseudonym(KEY, malformed)
    assert malformed[0] not in str(caught.value)


@given(ids)
def test_pseudonyms_are_deterministic_and_distinct(values):
    first = linkage.pseudonym(KEY, values)
    again = linkage.pseudonym(KEY, list(reversed(values)))[::-1]
    assert list(first) == list(again)
    assert len(set(first)) == len(values)


@settings(max_examples=50)
@given(ids, studies, studies)
def test_study_ids_are_stable_within_a_study_and_unlinkable_across(values, study_a, study_b):
    person_ids = linkage.pseudonym(KEY, values)
    in_a = linkage.study_pseudonyms(KEY, study_a, person_ids)
    assert list(in_a) == list(linkage.study_pseudonyms(KEY, study_a, person_ids))
    assert len(set(in_a)) == len(values)
    assert not set(in_a) & set(person_ids)  # never the space-wide id itself
    if study_a != study_b:
        in_b = linkage.study_pseudonyms(KEY, study_b, person_ids)
        # two studies joining their outputs on patient id find nobody in common
        assert not set(in_a) & set(in_b)


def test_study_ids_need_a_study_and_keep_missing_ids_missing():
    with pytest.raises(WorkbenchError):
        linkage.study_pseudonyms(KEY, "", ["a"])
    assert linkage.study_pseudonyms(KEY, "s1", [None])[0] is None


def test_linkage_report_counts_overlaps_and_missing_identifiers():
    tally = linkage.LinkageTally()
    people = linkage.pseudonym(KEY, [str(i) for i in range(100)])
    tally.add("hospital-a", people[:80])
    tally.add("hospital-a", np.concatenate([people[:10], [None, None]]))  # repeats and no-ids
    tally.add("insurer", people[40:])
    report = tally.report()
    assert report["persons_total"] == 100
    assert report["holders"]["hospital-a"]["persons"] == 80
    assert report["holders"]["hospital-a"]["records_missing_identifier"] == 2
    (pair,) = report["pairs"]
    assert (pair["a"], pair["b"], pair["persons_in_both"]) == ("hospital-a", "insurer", 40)
    assert pair["share_of_a_found_in_b"] == 0.5
    assert pair["share_of_b_found_in_a"] == pytest.approx(40 / 60, abs=1e-6)
    json.dumps(report)  # serialisable as written to catalog/linkage.json


def test_read_key_refuses_a_wrong_sized_key(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(b"short")
    with pytest.raises(WorkbenchError, match="not a 32-byte key"):
        linkage.read_key(path)
