"""Keyed pseudonyms: the only place a direct identifier is turned into a ``person_id``.

Two keys, two jobs (see docs/space.md):
- the **linkage key** (``keys/linkage.key``, root only) turns a national id into the space-wide
  ``person_id`` at build time. Whoever holds it can pseudonymise a guessed national id, so it never
  leaves the builder.
- the **study re-keying key** (``holders/.study-rekey.key``, gateway only) turns a ``person_id``
  into a per-study id before a row leaves the gateway: deterministic within a study, unlinkable
  across studies (each study's ids are an HMAC under a key derived from the study id).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space

KEY_BYTES = 32
PSEUDONYM_HEX = 24  # 96 bits: collisions stay negligible far beyond 1e9 people


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def study_rekey_key_path(space: Space) -> Path:
    """Where the gateway's re-keying key lives (inside the gateway-only ``holders/`` dir)."""
    return space.holders / ".study-rekey.key"


def read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except PermissionError:
        raise WorkbenchError(
            f"{path} is not readable by this account: only its owning service may use it"
        ) from None
    if len(key) != KEY_BYTES:
        raise WorkbenchError(f"{path} is not a {KEY_BYTES}-byte key: rebuild the space")
    return key


def study_rekey_key(space: Space) -> bytes:
    """The key :func:`study_pseudonyms` needs; readable by the gateway account only."""
    return read_key(study_rekey_key_path(space))


def _hmac_hex(key: bytes, values: Iterable[str]) -> list[str]:
    return [hmac.digest(key, v.encode(), "sha256").hex()[:PSEUDONYM_HEX] for v in values]


def _malformed(series: pd.Series) -> bool:
    if series.str.contains("\x00", regex=False).any():
        return True
    # Arrow-backed strings are valid UTF-8 by construction; Python strings may hold surrogates.
    return series.dtype == object and series.str.contains("[\ud800-\udfff]").any()


def _keyed(key: bytes, values) -> np.ndarray:
    """HMAC every distinct value once (hash-based factorize) and map back; missing stays None."""
    series = pd.Series(values, copy=False)
    if not pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
        series = series.map(str, na_action="ignore")  # 123 and "123" are the same identifier
    # pandas' hash table compares strings as C strings in UTF-8: an id with NUL or a lone
    # surrogate could be merged with another person's, so such malformed ids are refused.
    if _malformed(series):
        raise WorkbenchUserError(
            "an identifier contains a NUL character or invalid Unicode, which no valid "
            "identifier has: clean the source's id column before building the space.",
            reason="bad-identifier")
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    hashed = np.array(_hmac_hex(key, (str(u) for u in uniques)) + [None], dtype=object)
    return hashed[codes]  # code -1 (missing) picks the trailing None


def pseudonym(linkage_key: bytes, national_ids) -> np.ndarray:
    """Space-wide pseudonyms for direct identifiers (vectorised; None for a missing id).

    Identifiers are compared as text, so ``123`` and ``"123"`` link to the same person.
    """
    return _keyed(linkage_key, national_ids)


def _study_key(key: bytes, study_id: str) -> bytes:
    if not study_id:
        raise WorkbenchError("a study id is needed to re-key pseudonyms")
    return hmac.digest(key, b"workbench-study:" + study_id.encode(), "sha256")


def study_pseudonyms(key: bytes, study_id: str, person_ids) -> np.ndarray:
    """Per-study ids for ``person_ids``: the same person gets the same id within a study and
    unrelated ids in two studies. ``key`` is :func:`study_rekey_key` (never the linkage key in
    production; any 32-byte secret works)."""
    return _keyed(_study_key(key, study_id), person_ids)


def write_key(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)


# -- linkage quality --------------------------------------------------------------------------
class LinkageTally:
    """Collects the distinct pseudonyms each holder saw (bounded memory: 8 bytes per person) and
    the identifiers that were missing, then reports pairwise match rates."""

    def __init__(self) -> None:
        self._people: dict[str, np.ndarray] = {}
        self._missing: dict[str, int] = {}
        self._records: dict[str, int] = {}

    def add(self, holder: str, person_ids, records: int | None = None,
            missing: int | None = None) -> None:
        """``person_ids`` of one holder's records; or, with ``records`` and ``missing`` (a
        node's own counts), its distinct persons."""
        series = pd.Series(person_ids, copy=False)
        distinct = pd.unique(series.dropna())
        self._records[holder] = self._records.get(holder, 0) + (
            len(series) if records is None else records)
        self._missing[holder] = self._missing.get(holder, 0) + (
            int(series.isna().sum()) if missing is None else missing)
        # the first 16 hex digits as an integer: enough to count overlaps, far smaller than text
        ints = np.fromiter((int(h[:16], 16) for h in distinct), dtype=np.uint64,
                           count=len(distinct))
        known = self._people.get(holder, np.empty(0, dtype=np.uint64))
        self._people[holder] = np.union1d(known, ints)

    def report(self) -> dict:
        people = self._people
        holders = sorted(people)
        per_holder = {
            h: {
                "records": self._records[h],
                "records_missing_identifier": self._missing[h],
                "missing_identifier_rate": round(self._missing[h] / max(self._records[h], 1), 6),
                "persons": int(len(people[h])),
            }
            for h in holders
        }
        pairs = []
        for a, b in combinations(holders, 2):
            both = int(len(np.intersect1d(people[a], people[b], assume_unique=True)))
            pairs.append({
                "a": a,
                "b": b,
                "persons_in_both": both,
                "share_of_a_found_in_b": round(both / max(len(people[a]), 1), 6),
                "share_of_b_found_in_a": round(both / max(len(people[b]), 1), 6),
            })
        everyone = np.unique(np.concatenate(list(people.values()))) if people else []
        return {
            "method": "HMAC-SHA-256 of the national id under the space's linkage key",
            "persons_total": int(len(everyone)),
            "holders": per_holder,
            "pairs": pairs,
        }


def write_report(path: Path, report: dict) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=True))
