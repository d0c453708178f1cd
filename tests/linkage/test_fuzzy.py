"""Bloom-filter (CLK) fuzzy linkage on name and birth date (workbench/linkage/fuzzy.py) against
the synthetic generator's truth (workbench/synth/identities.py)."""

from __future__ import annotations

import datetime
import json
import os

import pandas as pd
import pytest
from click.testing import CliRunner

from workbench.linkage import fuzzy
from workbench.linkage.cli import group
from workbench.linkage.fuzzy_report import clk_pairs, exact_pairs, quality
from workbench.synth.identities import ErrorRates, linkage_sources

SECRET = bytes(range(32))
PERSON = {"first_name": "Katharina", "last_name": "Schneider", "birth_date": "1961-09-08"}


def clk(secret=SECRET, **fields):
    return fuzzy.encode([{**PERSON, **fields}], secret)[0]


@pytest.fixture(scope="module")
def sources():
    return linkage_sources(2000, seed=7)


def truth_of(src):
    return set(zip(src.truth.a_record, src.truth.b_record, strict=True))


def test_same_input_same_clk_and_the_secret_matters():
    assert clk() == clk()
    assert len(clk()) == fuzzy.BITS
    assert clk() != clk(secret=bytes(32))
    assert fuzzy.dice(clk(), clk(secret=bytes(32))) < 0.6
    with pytest.raises(ValueError):
        fuzzy.encode([PERSON], b"short")


def test_one_typo_scores_high_other_people_low():
    for typo in ({"first_name": "Katarina"}, {"last_name": "Schnieder"},
                 {"last_name": "Schneder"}, {"birth_date": "1961-08-09"}):
        assert fuzzy.dice(clk(), clk(**typo)) >= fuzzy.THRESHOLD, typo
    for other in ({"first_name": "Thomas", "last_name": "Müller", "birth_date": "1975-03-21"},
                  {"first_name": "Maria", "last_name": "Wagner", "birth_date": "1988-12-01"}):
        # unrelated people share the date's century bigrams: about 0.5 (0.53 at most over 20
        # random secrets, under double hashing as under random hashing)
        assert fuzzy.dice(clk(), clk(**other)) < 0.55, other
    # same names, another birth date: below the threshold too (namesakes are common)
    assert fuzzy.dice(clk(), clk(birth_date="1972-04-30")) < fuzzy.THRESHOLD


def test_swapped_names_case_and_accents_give_the_same_clk():
    assert clk(first_name="Schneider", last_name="Katharina") == clk()
    assert clk(first_name=" KATHARINA ", birth_date="19610908") == clk()
    assert clk(last_name="Müller") == clk(last_name="Muller")
    assert clk(birth_date=pd.Timestamp("1961-09-08")) == clk()
    assert clk(birth_date=datetime.date(1961, 9, 8)) == clk()
    assert clk(birth_date=pd.NaT) == clk(birth_date=None)


def test_a_missing_field_sets_no_bits():
    empty = fuzzy.encode([{"first_name": None, "last_name": float("nan"), "birth_date": ""}],
                         SECRET)[0]
    assert empty.count() == 0
    assert clk(last_name=None).count() < clk().count()


def test_serialized_clks_round_trip_and_bad_ones_are_refused():
    clks = fuzzy.encode([PERSON, {**PERSON, "first_name": "Anna"}], SECRET)
    assert fuzzy.deserialize(fuzzy.serialize(clks)) == clks
    with pytest.raises(ValueError, match="CLK 0"):
        fuzzy.deserialize(["AAAA"])


def test_linkage_quality_against_the_truth(sources):
    truth = truth_of(sources)
    assert len(truth) == 1000 and len(sources.a) == len(sources.b) == 1500
    fuzzy_q = quality(clk_pairs(sources, os.urandom(32)), truth)
    exact_q = quality(exact_pairs(sources), truth)
    assert fuzzy_q["recall"] >= 0.9 and fuzzy_q["precision"] >= 0.95, fuzzy_q
    # exact matching on the fields as written misses every record with an error in either source
    assert exact_q["recall"] <= fuzzy_q["recall"] - 0.2, (exact_q, fuzzy_q)
    # a lower threshold links more, true and false
    low = quality(clk_pairs(sources, SECRET, threshold=0.6), truth)
    assert low["recall"] >= fuzzy_q["recall"] and low["precision"] < fuzzy_q["precision"]


def test_without_errors_exact_matching_finds_everyone_and_clks_agree():
    src = linkage_sources(300, seed=3, rates=ErrorRates(0, 0, 0, 0, 0))
    truth = truth_of(src)
    assert quality(exact_pairs(src), truth)["recall"] == 1.0
    assert clk_pairs(src, SECRET, threshold=1.0) == truth


def as_truth(src, which):
    """The records of one source beside the true identity of their person."""
    return src.__dict__[which].merge(src.records, on="record_id").merge(
        src.persons, on="person", suffixes=("", "_true"))


def test_errors_are_injected_at_the_stated_rates():
    rates = ErrorRates(typo=0.2, date_swap=0.1, date_typo=0, name_swap=0, missing=0.1)
    src = linkage_sources(8000, seed=1, rates=rates)
    rec = as_truth(src, "b")
    assert len(rec) == len(src.b) == 6000
    assert all(abs(rec[f].isna().mean() - 0.1) < 0.015 for f in fuzzy.FIELDS)
    full = rec.dropna(subset=list(fuzzy.FIELDS))
    for name in ("first_name", "last_name"):  # a typo can give the same text (a letter for itself)
        assert 0.18 < (full[name] != full[f"{name}_true"]).mean() < 0.215
    y, m, d = full.birth_date_true.str.split("-", expand=True).T.values
    can_swap = (d.astype(int) <= 12) & (d != m)
    swapped = full.birth_date == y + "-" + d + "-" + m
    assert abs(swapped[can_swap].mean() - 0.1) < 0.02
    assert (full.birth_date == full.birth_date_true)[~can_swap].all()

    src = linkage_sources(8000, seed=1, rates=ErrorRates(0, 0, 0, name_swap=0.1, missing=0))
    rec = as_truth(src, "a")
    swapped = (rec.first_name == rec.last_name_true) & (rec.last_name == rec.first_name_true)
    assert abs(swapped.mean() - 0.1) < 0.015
    assert ((rec.first_name == rec.first_name_true) | swapped).all()
    # the truth of pairs is the persons' truth
    pairs = src.truth.merge(src.records, left_on="a_record", right_on="record_id").merge(
        src.records, left_on="b_record", right_on="record_id")
    assert (pairs.person_x == pairs.person_y).all() and len(pairs) == 4000
    assert linkage_sources(500, seed=1).a.equals(linkage_sources(500, seed=1).a)
    assert not linkage_sources(500, seed=1).a.equals(linkage_sources(500, seed=2).a)


def test_the_clks_contain_no_field_value(sources):
    sent = json.dumps(fuzzy.serialize(fuzzy.encode(sources.a.to_dict("records"), SECRET)))
    raw = b"".join(fuzzy.encode(sources.a.to_dict("records"), SECRET))
    values = {(col, v) for col in fuzzy.FIELDS for v in sources.a[col].dropna()}
    forms = {f for col, v in values for f in (v, v.casefold(), fuzzy._normal(col, v))
             if f and len(f) >= 6}
    assert len(forms) > 500
    clear = sources.a.to_csv()
    assert all(v in clear for _, v in values)  # the search finds the values where they are
    assert [f for f in forms if f in sent] == []
    assert [f for f in forms if f.encode() in raw] == []


def test_a_wrong_shared_secret_links_nothing(sources):
    assert clk_pairs(sources, SECRET, bytes(32)) == set()
    a = fuzzy.encode(sources.a.head(200).to_dict("records"), SECRET)
    b = fuzzy.encode(sources.a.head(200).to_dict("records"), bytes(32))
    assert max(fuzzy.dice(x, y) for x, y in zip(a, b, strict=True)) < 0.6


def test_fuzzy_report_command(tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(group, ["fuzzy-report", "--persons", "400", "--seed", "2",
                                        "--threshold", "0.82", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert rows[0]["method"] == "exact fields"
    chosen = next(r for r in rows if r["threshold"] == 0.82)
    assert f"{chosen['precision']:.3f}" in next(
        line for line in result.output.splitlines() if line.endswith("<"))
    src = linkage_sources(400, 2)
    assert rows[0]["true_links"] == quality(exact_pairs(src), truth_of(src))["true_links"]
    bad = CliRunner().invoke(group, ["fuzzy-report", "--persons", "50",
                                     "--json", str(tmp_path / "no" / "r.json")])
    assert bad.exit_code == 1 and "cannot write" in bad.output

