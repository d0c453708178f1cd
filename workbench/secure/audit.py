"""Query auditing: the release checker remembers what each study was given (security boundary).

Thresholds on each result alone fail against tracker attacks: two allowed results whose
difference is one person (Denning 1979). So the key holder keeps, per study and view version,
every person count it released as a *linear query*: the set of people it counts, written as a
predicate over the view's columns (a category's levels, an interval of a time or grid column,
the event flag), and the count. Before releasing more it asks: together with everything released
before, does any set of people have a count that is determined and lies in 1..k-1?

How: the columns' values split the people into *atoms* (a level, or an interval between two
released boundaries, or "missing / off the grid"); every released count is a sum over atoms.
Atoms that no released count tells apart form one *region*; a set of people can only be pinned
down if it is a union of regions, and its count is determined exactly when its indicator lies in
the row space of the released counts (then every solution of the released equations gives it
the same value, so the least-squares one does). Checked: every union of regions when there are at
most ``EXHAUSTIVE`` regions, otherwise every region and every union of two (up to ``MAX_PAIRS``
regions; beyond, every region). Past ``MAX_REGIONS`` regions the check falls back to counts nested
in one another differing by 1..k-1 (weaker; the limit is stated in docs/secure.md). Counts
bounded but not determined (inequalities from non-negativity) are not audited: a stated limit.

The memory is a SQLite file in the key holder's state directory; what it holds are the released
numbers and public predicates, nothing a released result did not already show.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from workbench.secure.release import ReleaseRefused

EXHAUSTIVE = 16
MAX_PAIRS = 128
MAX_REGIONS = 1500  # past this, the linear algebra would take seconds: the nested fallback
# Releases safe by construction on their own (every cell, row and remainder 0 or >= k): the
# first of a study needs no linear algebra. A model's n and events are not: n - events may be
# small.
SAFE_ALONE = frozenset({"count", "crosstab", "histogram", "sum", "mean", "var", "kaplan_meier"})
MISSING = "\x00missing"  # the atom of rows outside every level or off the grid


def cells_of(op: str, spec: dict, result: dict) -> list[tuple[dict, int]]:
    """The person counts a release shows, as (predicate, count). A predicate maps a column to
    ``["in", [levels]]`` or ``["range", [lo, inclusive], [hi, inclusive]]`` (a ``None`` value:
    unbounded)."""
    axes = spec.get("by", [])
    groups = [dict(zip([a["column"] for a in axes], combo, strict=True))
              for combo in itertools.product(*[_axis_values(a) for a in axes])] or [{}]
    if op in ("count", "crosstab"):
        return [(g, n) for g, n in zip(groups, result["counts"], strict=True)]
    if op == "histogram":
        edges, column = result["edges"], axes[0]["column"]
        last = len(edges) - 2
        return [({column: ["range", [edges[i], True], [edges[i + 1], i == last]]}, n)
                for i, n in enumerate(result["counts"])]
    if op in ("sum", "mean", "var"):
        return [(g, n) for g, n in zip(groups, result["n"], strict=True)]
    if op == "kaplan_meier":
        time, event = spec["duration_col"], spec["event_col"]
        out = []
        for g, group in zip(groups, result["groups"], strict=True):
            out.append((g, group["n"]))
            ends = group.get("times", [])  # each row runs from the previous row's end
            spans = group.get("intervals") or [[0 if i == 0 else ends[i - 1], end]
                                                for i, end in enumerate(ends)]
            rows = list(zip(spans, group["observed"], group["censored"], strict=True))
            for i, ((lo, hi), d, c) in enumerate(rows):
                # (lo, hi]; the first row [0, hi]; the last takes everyone past the horizon too
                span = ["range", [lo, i == 0], [None if i == len(rows) - 1 else hi, True]]
                out += [(g | {time: span, event: ["in", ["1"]]}, d),
                        (g | {time: span, event: ["in", ["0"]]}, c)]
        return out
    if op == "cox_ph":  # every Newton round shows n and the events (the same each round)
        return [({}, result["n"]), ({spec["event_col"]: ["in", ["1"]]}, result["events"])]
    if op == "logistic_regression":
        return [({}, result["n"]), ({spec["outcome_col"]: ["in", ["1"]]}, result["events"])]
    return []  # log-rank: a statistic, and the group sizes it needs are not released


def _axis_values(axis: dict) -> list:
    if "levels" in axis:
        return [["in", [str(v)]] for v in axis["levels"]]
    e = axis["edges"]
    return [["range", [e[i], True], [e[i + 1], i == len(e) - 2]] for i in range(len(e) - 1)]


class _Atoms:
    """Each column's atoms: levels (plus missing) or intervals between released boundaries."""

    def __init__(self, predicates: list[dict]):
        self.levels: dict[str, list] = {}
        self.points: dict[str, list] = {}
        for predicate in predicates:
            for column, cond in predicate.items():
                if cond[0] == "in":
                    known = self.levels.setdefault(column, [MISSING])
                    known += [v for v in cond[1] if v not in known]
                else:
                    self.points.setdefault(column, [])
                    for bound in (cond[1], cond[2]):
                        if bound[0] is not None:
                            self.points[column].append(_point(bound, bound is cond[2]))
        for column in self.points:
            self.points[column] = sorted(set(self.points[column]))
        self.columns = sorted(self.levels) + sorted(self.points)
        self.sizes = [len(self.levels[c]) if c in self.levels else len(self.points[c]) + 2
                      for c in self.columns]

    def mask(self, column: str, cond) -> np.ndarray:
        """Which of the column's atoms the condition keeps (None: every atom)."""
        if cond is None:
            return np.ones(self.sizes[self.columns.index(column)], dtype=bool)
        if cond[0] == "in":
            return np.isin(np.array(self.levels[column], dtype=object), cond[1])
        points = self.points[column]  # atom 0: missing; atom i + 1: between points i-1 and i
        keep = np.zeros(len(points) + 2, dtype=bool)
        lo = 0 if cond[1][0] is None else points.index(_point(cond[1], False)) + 1
        hi = len(points) if cond[2][0] is None else points.index(_point(cond[2], True))
        keep[1 + lo:1 + hi + 1] = True
        return keep


def _point(bound, upper: bool) -> tuple:
    """A boundary as a sortable cut: (v, 0) just before v, (v, 1) just after it. A lower bound
    [v cuts before v and (v after it; an upper bound v] cuts after v and v) before it."""
    value, inclusive = bound
    return (float(value), int(inclusive == upper))


def _regions(cells: list[tuple[dict, int]], atoms: _Atoms) -> np.ndarray | None:
    """Cells x regions (bool): the distinct membership patterns of the atoms, built column by
    column (a pattern is the AND of each column's atom pattern), never enumerating the product
    of every column's atoms. None past ``MAX_REGIONS``."""
    m = len(cells)
    patterns = np.packbits(np.ones((1, m), dtype=bool), axis=1)
    for column in atoms.columns:
        masks = np.array([atoms.mask(column, p.get(column)) for p, _ in cells])  # m x atoms
        classes = np.unique(np.packbits(masks.T, axis=1), axis=0)
        combined = (patterns[:, None, :] & classes[None, :, :]).reshape(-1, patterns.shape[1])
        patterns = np.unique(combined[combined.any(axis=1)], axis=0)  # in no cell: no matter
        if len(patterns) > MAX_REGIONS:
            return None
    return np.unpackbits(patterns, axis=1, count=m).T.astype(bool)


def _nested_differences(cells: list[tuple[dict, int]], k: int) -> bool:
    """The fallback past ``MAX_REGIONS``: a count nested in another (its predicate implies the
    other's) may not differ from it by 1..k-1."""
    atoms = _Atoms([p for p, _ in cells])
    masks = [np.concatenate([atoms.mask(c, p.get(c)) for c in atoms.columns]) for p, _ in cells]
    for (i, (_, a)), (j, (_, b)) in itertools.combinations(enumerate(cells), 2):
        inside = np.all(masks[i] <= masks[j]) or np.all(masks[j] <= masks[i])
        if inside and 0 < abs(a - b) < k:
            return True
    return False


def isolated(cells: list[tuple[dict, int]], k: int) -> bool:
    """True when the released counts pin down a set of 1..k-1 people."""
    atoms = _Atoms([p for p, _ in cells])
    if not atoms.columns:
        return any(0 < n < k for _, n in cells)
    regions = _regions(cells, atoms)
    if regions is None:
        return _nested_differences(cells, k)
    regions = regions.astype(float)
    counts = np.array([n for _, n in cells], dtype=float)
    y = np.linalg.lstsq(regions, counts, rcond=None)[0]
    _, s, vt = np.linalg.svd(regions)
    rank = int(np.sum(s > 1e-9 * max(s.max(initial=0), 1)))
    null = vt[rank:].T  # a union x is determined iff x is orthogonal to the null space
    r = regions.shape[1]
    if r <= EXHAUSTIVE:
        unions = ((np.arange(1, 2 ** r)[:, None] >> np.arange(r)) & 1).astype(float)
    elif r <= MAX_PAIRS:
        pairs = [np.eye(r)[i] + np.eye(r)[j] for i, j in itertools.combinations(range(r), 2)]
        unions = np.vstack([np.eye(r), *pairs])
    else:
        unions = np.eye(r)
    determined = np.all(np.abs(unions @ null) < 1e-7, axis=1) if null.size else \
        np.ones(len(unions), dtype=bool)
    values = np.rint(unions[determined] @ y)
    return bool(np.any((values > 0) & (values < k)))


def _spec_part(spec: dict) -> dict:
    """What ``cells_of`` reads of a spec."""
    return {"by": spec.get("by", []), **{k: spec[k] for k in ("duration_col", "event_col",
                                                              "outcome_col") if k in spec}}


class ReleaseAudit:
    """Per study and view version, every release's person counts (SQLite in the key holder's
    state directory, the cells of a study's releases cached in memory once read).
    ``check(...)`` refuses a release that isolates fewer than k people together with the
    earlier ones, and records it when it passes."""

    def __init__(self, path: str | Path):
        self.path, self._lock = Path(path), threading.Lock()
        self._cells: dict[str, list] = {}  # scope -> the cells of its releases, once read
        # one connection, used under the lock: opening one per release costs more than the audit
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        # WAL: one fsync per commit (a rollback journal takes several), still durable
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._lock, self._db as db:
            # unique on a digest of the release: an index on its text would copy every
            # release into the index
            db.execute("CREATE TABLE IF NOT EXISTS released (scope TEXT NOT NULL, "
                       "digest TEXT NOT NULL, op TEXT NOT NULL, spec TEXT NOT NULL, "
                       "result TEXT NOT NULL, UNIQUE (scope, digest))")
            db.execute("CREATE TABLE IF NOT EXISTS rounds (study TEXT NOT NULL, day TEXT NOT "
                       "NULL, n INTEGER NOT NULL, PRIMARY KEY (study, day))")

    def _earlier(self, scope: str) -> list:
        if scope not in self._cells:
            cells = []
            for op, spec, result in self._db.execute(
                    "SELECT op, spec, result FROM released WHERE scope = ?", (scope,)):
                cells += cells_of(op, json.loads(spec), json.loads(result))
            self._cells[scope] = cells
        return self._cells[scope]

    def check(self, scope: str, op: str, spec: dict, result: dict, k: int, *,
              encoded: bytes | None = None) -> None:
        """``encoded``: the result's JSON if the caller has it already (stored as it is)."""
        encoded = encoded if encoded is not None else json.dumps(result).encode()
        part = json.dumps(_spec_part(spec), sort_keys=True)
        digest = hashlib.sha256(b"\0".join([op.encode(), part.encode(), encoded])).hexdigest()
        with self._lock, self._db as db:
            if db.execute("SELECT 1 FROM released WHERE scope = ? AND digest = ?",
                          (scope, digest)).fetchone():
                return  # the same numbers again (a repeated query)
            earlier = self._earlier(scope)
            if earlier or op not in SAFE_ALONE:
                new = [(p, int(n)) for p, n in cells_of(op, spec, result)]
                seen = {json.dumps(c, sort_keys=True) for c in earlier}
                fresh = [c for c in new if json.dumps(list(c), sort_keys=True) not in seen]
                if fresh and isolated(earlier + fresh, k):
                    raise ReleaseRefused(
                        "query-audit", "together with what this study was already given, "
                                       "this result would single out fewer than "
                                       f"{k} people. Ask for a coarser grouping, or reuse "
                                       "results already released.")
                if not fresh:  # nothing new (a Newton round's n and events again)
                    return
                earlier += fresh
            else:  # the study's first release, safe alone: its cells are read when needed
                self._cells.pop(scope, None)
            db.execute("INSERT INTO released (scope, digest, op, spec, result) VALUES "
                       "(?, ?, ?, ?, ?)", (scope, digest, op, part, encoded.decode()))

    def count_round(self, study: str, limit: int) -> None:
        """One more decrypted round for ``study`` today (UTC), or ``round-budget`` past
        ``limit``: repetition, the raw material of differencing, is capped."""
        day = datetime.now(UTC).date().isoformat()
        with self._lock:
            # a counter: kept across a process crash without an fsync of its own (WAL,
            # NORMAL); the next release's FULL commit makes it durable on disk too
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._db as db:
                    row = db.execute("SELECT n FROM rounds WHERE study = ? AND day = ?",
                                     (study, day)).fetchone()
                    if row and row[0] >= limit:
                        raise ReleaseRefused(
                            "round-budget", f"this study has had its {limit} secure rounds for "
                                            "today (UTC). Reuse released results, or ask the "
                                            "admin to raise max_rounds_per_day.")
                    db.execute("INSERT INTO rounds (study, day, n) VALUES (?, ?, 1) ON "
                               "CONFLICT (study, day) DO UPDATE SET n = n + 1", (study, day))
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def released(self, scope: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM released WHERE scope = ?",
                                        (scope,)).fetchone()[0])


def scope_of(context: dict) -> str:
    return json.dumps([str(context.get("study") or "in-process"), str(context.get("view") or ""),
                       str(context.get("view_version") or "")])

