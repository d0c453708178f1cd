"""Differential privacy for studies that set an ε budget (issue 22 item 5).

Unit of privacy: one patient added to or removed from the pooled data (unbounded DP). Mechanism:
OpenDP's ``make_laplace`` on integer vectors, i.e. the discrete Laplace ("geometric") mechanism,
pure ε-DP, sampled by OpenDP's own CSPRNG. The ε of a release is what the OpenDP measurement's
``map(sensitivity)`` says, never a hand-computed ratio. Accounting is basic sequential composition:
a study's spent ε is the sum of its releases' ε, kept in a durable ledger (``PrivacyBudget``).

Sensitivities (L1, one patient added or removed):
- count / crosstab / histogram: the cells partition the rows, so a patient of one row is in exactly
  one cell: 1 (m for a view with up to m rows per patient: ``rows_per_patient``).
- kaplan_meier: every group's per-bin event counts d and censoring counts c on the public time grid
  (later times censored at its horizon). A patient is one exit: an event or a censoring, in one bin
  of one group: 1. The group sizes n are then the sums of the noisy exits and the at-risk counts
  n - cumulative exits (a patient is in the at-risk count of every bin up to their exit, so these
  are never noised directly): post-processing, no ε. Only when the exact rules withheld a curve's
  tail is its n noised too (its tail's exits are not in the vector): then 2.
Everything after the noise (clamping, monotone fits, cutting the curve where the noisy at-risk
falls below ``min_cell_count``, dropping bins without exits) only reads noisy values: also free.

What ε does NOT cover: anything decided on exact counts before ``privatize`` sees the result --
refusals by the exact release rules, which cells or rows the exact rules kept, and grids taken from
the data (levels, the survival horizon ``n_bins``). See docs/secure.md "Differential privacy".
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

COUNT_OPS = frozenset({"count", "counts", "crosstab", "histogram"})
SUPPORTED = COUNT_OPS | {"kaplan_meier"}
MECHANISM = "discrete Laplace (OpenDP make_laplace, pure ε-DP)"
_SLACK = 1e-9  # float sums of ε: a budget spent exactly in tenths must not refuse its last tenth


class PrivacySettings(BaseModel):
    """A study's ``privacy:`` block in the policy. Without one, a study has no DP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon_budget: float = Field(gt=0, allow_inf_nan=False,
                                  description="total ε the study may spend in its life")
    epsilon_per_release: float = Field(default=0.5, gt=0, allow_inf_nan=False,
                                       description="ε spent by each release")
    mechanism: Literal["laplace"] = "laplace"

    @model_validator(mode="after")
    def _fits(self) -> PrivacySettings:
        if self.epsilon_per_release > self.epsilon_budget:
            raise ValueError("epsilon_per_release cannot exceed epsilon_budget")
        return self


def supports(op: str) -> bool:
    """Whether ``op`` has a DP release. Sums, means, variances, log-rank and model fits have none
    here (their sensitivity is unbounded without clipping): a DP study must refuse them."""
    return op in SUPPORTED


def _measurement(epsilon: float, sensitivity: int):
    """OpenDP's discrete Laplace on i64 vectors whose privacy loss at ``sensitivity`` is at most
    ``epsilon`` (equal for most ε; a float-rounding step above it is searched away)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")

    def make(scale: float):
        return space >> dp.m.then_laplace(scale=scale)

    scale = sensitivity / epsilon
    if make(scale).map(sensitivity) > epsilon:
        scale = dp.binary_search_param(make, d_in=sensitivity, d_out=epsilon)
    return make(scale), scale


def _noisy(values: list[int], epsilon: float, sensitivity: int) -> tuple[np.ndarray, dict]:
    m, scale = _measurement(epsilon, sensitivity)
    noisy = np.asarray(m([int(v) for v in values]), dtype=np.int64) if values else \
        np.zeros(0, dtype=np.int64)
    info = {"epsilon": float(m.map(sensitivity)), "mechanism": MECHANISM, "scale": float(scale),
            "sensitivity": sensitivity, "unit": "one patient added or removed",
            "accounting": "basic sequential composition (ε add up per study)"}
    return noisy, info


def privatize(op: str, result: dict, epsilon: float, min_cell_count: int, *,
              spec: dict | None = None, rows_per_patient: int = 1) -> dict:
    """The released ``result`` of ``op`` with discrete Laplace noise of privacy loss ``epsilon``
    and a ``privacy`` field stating it; the input is not modified. Counts assume at most
    ``rows_per_patient`` rows of one patient in the view (its L1 sensitivity; 1 for a cohort
    view, more for event-level views such as claims). For ``kaplan_meier``, ``spec``
    (``resolution``, ``n_bins``) lets the curve be noised on the whole public time grid; without
    it only the released rows are noised and which times carry exits is not covered by ε (prefer
    ``privatize_survival`` on the exact per-bin arrays)."""
    if not supports(op):
        raise ValueError(f"no differentially private release for {op!r}")
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    if op in COUNT_OPS:
        if int(rows_per_patient) < 1:
            raise ValueError("rows_per_patient must be at least 1")
        noisy, info = _noisy(result["counts"], epsilon, int(rows_per_patient))
        return {**result, "counts": np.maximum(noisy, 0).tolist(), "privacy": info}
    spec = spec or {}
    resolution = float(spec["resolution"]) if spec.get("resolution") else None
    n_bins = int(spec["n_bins"]) if spec.get("n_bins") else None
    curves = [_from_release(g, resolution, n_bins) for g in result["groups"]]
    return {**result, **_km(curves, epsilon, min_cell_count)}


def privatize_survival(at_risk, events, labels: list[str], resolution: float, epsilon: float,
                       min_cell_count: int) -> dict:
    """A DP Kaplan-Meier release straight from the exact pooled per-(group, bin) at-risk and
    event counts on the public grid (``release._survival_arrays``): nothing in it depends on
    exact thresholds. Same result shape as ``release_kaplan_meier`` plus ``privacy``."""
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    at_risk, events = np.asarray(at_risk, np.int64), np.asarray(events, np.int64)
    curves = []
    for n, d, label in zip(at_risk, events, labels, strict=True):
        exits = n - np.append(n[1:], 0)
        curves.append({"label": label, "n": int(n[0]), "d": d, "c": exits - d, "hidden": False,
                       "complete": True, "times": np.arange(len(n)) * float(resolution),
                       "extra": {}})
    return _km(curves, epsilon, min_cell_count)


# -- Kaplan-Meier ----------------------------------------------------------------------------------
def _from_release(group: dict, resolution: float | None, n_bins: int | None) -> dict:
    """One released group back on its grid of exact per-bin events ``d`` and censorings ``c``:
    the public grid when the resolution is known (bins between released rows have no exits; up
    to ``n_bins`` when nobody is left at risk after the last row), else the released rows."""
    times = np.asarray(group.get("times", []), dtype=float)
    d = np.asarray(group.get("observed", []), dtype=np.int64)
    cens = group.get("censored", [])
    hidden = bool(len(cens)) and cens[-1] is None  # withheld by the exact rules: stays withheld
    c = np.asarray([0 if v is None else v for v in cens], dtype=np.int64)
    extra = {key: value for key, value in group.items()  # e.g. merged rows' intervals
             if key not in _KM_ROW_FIELDS and isinstance(value, list) and len(value) == len(times)}
    # complete: every patient's exit is in a released row (nobody left at risk after the last)
    complete = not hidden and (not len(times) or
                               int(group["at_risk"][-1]) - int(d[-1]) - int(c[-1]) == 0)
    if resolution and not extra:
        bins = np.rint(times / resolution).astype(np.int64)
        last = int(bins[-1]) if len(bins) else 0
        size = max(n_bins if n_bins and complete else 0, last + 1)
        dd, cc = np.zeros(size, np.int64), np.zeros(size, np.int64)
        dd[bins], cc[bins] = d, c
        times, d, c, extra = np.arange(size) * resolution, dd, cc, {}
    elif not len(times):
        times, d, c, extra = np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.int64), {}
    return {"label": group["label"], "n": int(group["n"]), "d": d, "c": c, "hidden": hidden,
            "complete": complete, "times": times, "extra": extra}


_KM_ROW_FIELDS = {"times", "at_risk", "observed", "censored", "removed"}


def _monotone_counts(noisy: np.ndarray) -> np.ndarray:
    """Per-bin counts from noisy ones: the cumulative sum fitted non-decreasing and >= 0
    (isotonic regression), then differenced. Clamping each bin at 0 instead would add about
    scale/2 of spurious events per empty bin; the fit keeps the totals nearly unbiased."""
    from scipy.optimize import isotonic_regression

    if not len(noisy):
        return noisy
    fit = isotonic_regression(np.cumsum(noisy).astype(float)).x
    cum = np.rint(np.maximum(fit, 0)).astype(np.int64)
    return np.diff(cum, prepend=0)


def _km(curves: list[dict], epsilon: float, min_cell_count: int) -> dict:
    k = max(int(min_cell_count), 1)
    # One vector, one measurement: every group's [d..., c...], and its n where some exits are
    # not in the vector (a tail withheld by the exact rules). A patient is one d or c cell
    # (sensitivity 1), plus one n when any curve is incomplete (2); a complete curve's n is the
    # sum of its noisy exits (post-processing).
    vector, layout = [], []
    for cv in curves:
        cs = cv["c"][:-1] if cv["hidden"] else cv["c"]
        head = [] if cv["complete"] else [cv["n"]]
        layout.append((len(vector), len(head), len(cv["d"]), len(cs)))
        vector += [*head, *cv["d"].tolist(), *cs.tolist()]
    noisy, info = _noisy(vector, epsilon, 1 if all(cv["complete"] for cv in curves) else 2)
    groups = []
    for cv, (at, nh, nd, nc) in zip(curves, layout, strict=True):
        raw = noisy[at + nh:at + nh + nd + nc]
        d, c = _monotone_counts(raw[:nd]), _monotone_counts(raw[nd:])
        # n from the raw noisy exits (unbiased; the fits' totals are biased upward, their last
        # value being the largest mean of a suffix)
        n = max(int(raw.sum()) if cv["complete"] else int(noisy[at]), 0)
        if cv["hidden"]:
            c = np.append(c, 0)
        # a consistent table: events <= at risk, censorings <= what remains
        at_risk, left = np.zeros(len(d), np.int64), n
        for i in range(len(d)):
            at_risk[i] = left
            d[i] = min(d[i], left)
            c[i] = min(c[i], left - d[i])
            left -= d[i] + c[i]
        keep = int(np.sum(at_risk >= k))  # at-risk is non-increasing: a prefix
        if keep == 0:
            groups.append({"label": cv["label"], "n": n, "times": []})
            continue
        index, last = np.arange(keep), len(d) - 1  # rows with exits, the first, a withheld last
        rows = np.nonzero((d[:keep] + c[:keep] > 0) | (index == 0)
                          | (cv["hidden"] & (index == last)))[0]
        censored, removed = c[rows].tolist(), (d + c)[rows].tolist()
        if cv["hidden"] and rows[-1] == last:
            censored[-1] = removed[-1] = None
        # cut with patients still (noisily) at risk after it, or cut already by the exact rules
        cut = (keep < len(d) and at_risk[keep] > 0) or cv["hidden"]
        group = {"label": cv["label"], "n": n, "times": cv["times"][rows].tolist(),
                 "at_risk": at_risk[rows].tolist(), "observed": d[rows].tolist(),
                 "censored": censored, "removed": removed,
                 "truncated_after": float(cv["times"][keep - 1]) if cut else None}
        groups.append(group | {key: [value[i] for i in rows]
                               for key, value in cv["extra"].items()})
    return {"groups": groups, "privacy": info}


# -- the ledger ------------------------------------------------------------------------------------
class PrivacyBudget:
    """Durable per-study ε ledger in SQLite (synchronous=FULL: a spend is on disk before
    ``spend`` returns). The check and the insert are one IMMEDIATE transaction, so two threads or
    processes cannot both spend the last of a budget."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        db = self._connect()
        try:
            db.execute("CREATE TABLE IF NOT EXISTS spends (id INTEGER PRIMARY KEY, study TEXT "
                       "NOT NULL, epsilon REAL NOT NULL, request_id TEXT NOT NULL, at REAL "
                       "NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS spends_study ON spends (study)")
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        return db

    @staticmethod
    def _sum(db: sqlite3.Connection, study: str) -> float:
        return float(db.execute("SELECT COALESCE(SUM(epsilon), 0) FROM spends WHERE study = ?",
                                (study,)).fetchone()[0])

    def spent(self, study: str) -> float:
        with self._lock:
            db = self._connect()
            try:
                return self._sum(db, study)
            finally:
                db.close()

    def spend(self, study: str, epsilon: float, budget: float, request_id: str) -> float:
        """Record ``epsilon`` against ``study``; returns the ε left. Refuses (recording nothing)
        when the study's budget cannot pay for it."""
        from workbench.secure.release import ReleaseRefused

        if not (epsilon > 0 and budget > 0):
            raise ValueError("epsilon and budget must be positive")
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                spent = self._sum(db, study)
                if spent + epsilon > budget * (1 + _SLACK):
                    db.execute("ROLLBACK")
                    raise ReleaseRefused(
                        "privacy-budget",
                        f"study {study!r} has spent ε = {spent:.4g} of its budget of {budget:g}; "
                        f"this release needs ε = {epsilon:g} and only {max(budget - spent, 0):.4g}"
                        " is left. Nothing was released or spent. Ask the data access committee "
                        "to raise the study's epsilon_budget, or reuse results already released.")
                db.execute("INSERT INTO spends (study, epsilon, request_id, at) VALUES "
                           "(?, ?, ?, ?)", (study, float(epsilon), str(request_id), time.time()))
                db.execute("COMMIT")
                return max(budget - spent - epsilon, 0.0)
            finally:
                db.close()
