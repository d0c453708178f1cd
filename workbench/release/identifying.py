"""Rules for the text in a table (a security boundary): a table does not need a number to disclose.

A table of pseudonyms, one row per patient, or free-text notes has no count column for the
threshold rules to look at. These rules read the label columns instead:

- ``identifier-column`` (fail, any table): a column named like an identifier (``id``,
  ``pseudonym``, ``mrn`` ...), or a column of mostly distinct code-like values (hex digests,
  ``P00123``, long digit strings): one row per person;
- ``free-text`` (fail, tables without numbers): a value longer than a short label;
- ``row-level-table`` (fail, tables without numbers): more rows than a list of category levels has
  (DataSHIELD's ``nfilter.levels.max`` = 40), a value or a row repeated (a list of levels names
  each once; repeats mean one row per person or event), or a column of distinct values beside a
  column with repeats (a key next to attributes);
- ``label-list`` (review, tables without numbers): what is left, a plain list of category labels,
  still says that each label occurs in the data; the reviewers judge it.

Messages name columns and sizes, never a value.
"""

from __future__ import annotations

import re

import pandas as pd

from workbench.release.outputs import label_columns

MAX_LEVELS = 40  # DataSHIELD nfilter.levels.max: a factor with more levels is not a category
MAX_LABEL_CHARS = 40  # longer than a category label: free text
IDENTIFIER_TOKENS = frozenset({"id", "ids", "pid", "mrn", "ssn", "nhs", "bsn", "pseudonym",
                               "pseudonyms", "pseudo", "email", "phone", "address", "postcode",
                               "zipcode", "dob", "birthdate", "uuid", "guid"})
PERSON_TOKENS = frozenset({"patient", "person", "subject", "participant", "individual",
                           "member", "case"})
CODE_LIKE = re.compile(r"^(?:[0-9a-fA-F]{12,}|\d{6,}|[A-Za-z]{1,4}[-_]?\d{3,}"
                       r"|(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{8,})$")


def _tokens(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return {t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t}


def _distinct_share(values: pd.Series) -> float:
    values = values.dropna()
    return values.nunique() / len(values) if len(values) else 0.0


def _identifier_columns(table: pd.DataFrame, labels: list[str]) -> list[str]:
    found = []
    for col in labels:
        values = table[col].dropna().astype(str)
        tokens = _tokens(col)
        mostly_distinct = len(values) >= 3 and _distinct_share(values) >= 0.8
        code_like = len(values) and values.str.fullmatch(CODE_LIKE).mean() >= 0.5
        if tokens & IDENTIFIER_TOKENS or (tokens & PERSON_TOKENS and mostly_distinct) \
                or (code_like and mostly_distinct):
            found.append(col)
    return found


def _row_level_reasons(table: pd.DataFrame, labels: list[str]) -> list[str]:
    reasons = []
    if len(table) > MAX_LEVELS:
        reasons.append(f"{len(table)} rows, more than the {MAX_LEVELS} levels a list of "
                       "categories may have")
    if table[labels].duplicated().any() or (len(labels) == 1
                                            and table[labels[0]].duplicated().any()):
        reasons.append("rows repeat, as records of people or events do")
    distinct = [c for c in labels if len(table) > 1 and _distinct_share(table[c]) == 1.0]
    repeating = [c for c in labels if table[c].dropna().duplicated().any()]
    if distinct and repeating:
        reasons.append(f"column {distinct[0]} is distinct in every row beside column "
                       f"{repeating[0]}, whose values repeat: a key next to attributes")
    return reasons


def text_rules(table: pd.DataFrame, has_numbers: bool, result) -> list:
    """The rules above for ``table``; ``result`` builds a RuleResult (rule, verdict, message)."""
    labels = label_columns(table)
    if not labels:
        return []
    out = []
    identifiers = _identifier_columns(table, labels)
    if identifiers:
        out.append(result(
            "identifier-column", "fail",
            f"column(s) {', '.join(identifiers)} look like identifiers or pseudonyms (by name, "
            "or mostly distinct code-like values): an output may not list people; release "
            "counts per group instead"))
    if has_numbers:
        return out
    longest = max((table[c].dropna().astype(str).str.len().max() or 0) for c in labels)
    if longest > MAX_LABEL_CHARS:
        out.append(result(
            "free-text", "fail",
            f"a value is longer than {MAX_LABEL_CHARS} characters: free text (notes, "
            "descriptions of a case) can identify a person; release category labels only"))
    reasons = _row_level_reasons(table, labels)
    if reasons:
        out.append(result(
            "row-level-table", "fail",
            "this table has no counts and looks like one row per person or event ("
            + "; ".join(reasons) + "): release counts per group instead"))
    if not out:
        out.append(result(
            "label-list", "review",
            "a table of labels without counts still says that each label occurs in the data: "
            "the reviewers must judge that no label is rare enough to point at a person"))
    return out
