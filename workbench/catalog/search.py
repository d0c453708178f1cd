"""Catalog search: every word of the query must occur (case-insensitive) in a record's id, title,
description, tags, column names or column descriptions; hits in ids and titles rank first."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.catalog.models import Dataset, View
from workbench.catalog.store import Catalog

WEIGHTS = {"id": 8, "title": 5, "tags": 4, "column": 3, "description": 2, "column description": 1}


@dataclass(frozen=True)
class Hit:
    kind: str  # 'dataset' or 'view'
    id: str
    title: str
    score: int
    matched: tuple[str, ...]  # where the words were found, e.g. ('title', 'column: age')


def _fields(record: Dataset | View) -> list[tuple[str, str, str]]:
    """(weight key, label, text) of everything searchable in a record."""
    fields = [("id", "id", record.id), ("title", "title", record.title),
              ("description", "description", record.description)]
    fields += [("tags", "tag", tag) for tag in getattr(record, "tags", ())]
    for col in record.columns:
        fields.append(("column", f"column: {col.name}", col.name))
        fields.append(("column description", f"column: {col.name}", col.description))
    return fields


def _score(record: Dataset | View, words: list[str]) -> tuple[int, tuple[str, ...]]:
    fields = [(key, label, text.lower()) for key, label, text in _fields(record)]
    total, matched = 0, []
    for word in words:
        found = [(WEIGHTS[key], label) for key, label, text in fields if word in text]
        if not found:
            return 0, ()
        total += max(weight for weight, _ in found)
        matched += [label for _, label in found if label not in matched]
    return total, tuple(matched)


def search(catalog: Catalog, text: str) -> list[Hit]:
    words = [w for w in text.lower().split() if w]
    if not words:
        return []
    hits = []
    for kind, records in (("dataset", catalog.datasets), ("view", catalog.views)):
        for record in records.values():
            score, matched = _score(record, words)
            if score:
                hits.append(Hit(kind, record.id, record.title, score, matched))
    return sorted(hits, key=lambda h: (-h.score, h.kind, h.id))
