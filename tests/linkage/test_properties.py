"""Pseudonyms from the real service for arbitrary text ids (Hypothesis): the same id (as text,
surrounding whitespace aside) gives the same pseudonym, different ids different ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.linkage.client import pseudonyms

MISSING = ("", "nan", "<NA>", "NaT", "None")  # how pandas' missing values print
# text as a source file can hold it: no NUL and no lone surrogate (both are refused with a
# one-line error instead, tests/space/test_linkage.py)
ids = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
              max_size=12)


@settings(max_examples=25, deadline=None)
@given(st.lists(ids | st.integers(0, 10**12).map(str), min_size=1, max_size=30))
def test_same_text_same_pseudonym_and_different_text_different(service, values):
    got = pseudonyms(service.space, values)
    keys = [v.strip() for v in values]
    for key, pseudonym in zip(keys, got, strict=True):
        assert (pseudonym is None) == (key in MISSING)
    named = {k: p for k, p in zip(keys, got, strict=True) if p is not None}
    for key, pseudonym in zip(keys, got, strict=True):
        if pseudonym is not None:
            assert named[key] == pseudonym
    assert len(set(named.values())) == len(named)
