"""The release policy applied by the key holder to decrypted POOLED aggregates (security boundary).

Each rule either lets a result out or raises ``ReleaseRefused`` naming the rule and what to change.
Safe by construction where it can be: Kaplan-Meier rows are adjacent time bins merged until every
row holds 0 or at least ``min_cell_count`` events and censorings (``survival_rows``), histogram
bins of the public grid merged until each holds k people. Refused otherwise: fewer than
``min_holders`` (>= 2) holders; a released cell, group or stratum with 1..k-1 people or rows of
one holder; rows outside every cell (missing or undeclared values) numbering 1..k-1 (a subset
and its complement must both reach k); the (n, k) dominance and p% rules on sums; model fits
with fewer than k events (and, for logistic, k of each outcome class).
A refusal names the rule, how many cells failed and what to do: never a cell label, a count
below a threshold or a size that depends on the data; an empty selection and a small one are
refused alike (``too_few``).
"""

from __future__ import annotations

import itertools

import numpy as np
from pydantic import ValidationError

from workbench.errors import WorkbenchUserError
from workbench.policy.model import Thresholds
from workbench.secure import stats
from workbench.secure.ops import AT_RISK_SHIFT


class ReleaseRefused(WorkbenchUserError):
    def __init__(self, rule: str, message: str):
        super().__init__(f"Release refused by rule '{rule}': {message}", reason="release-refused")
        self.rule = rule


def thresholds_from(data: dict | None, floor: int = 1) -> Thresholds:
    """The study's thresholds as the gateway passes them (the policy's ``Thresholds``, dumped),
    with ``min_cell_count`` never below the key holder's floor."""
    try:
        return Thresholds.model_validate(dict(data or {})).at_least(max(floor, 1))
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "thresholds"
        raise WorkbenchUserError(f"the study's thresholds are invalid ({field}): fix the policy "
                                 "file.", reason="bad-thresholds") from None


def dominance_pair(value) -> tuple[int, float]:
    """(n, k) from a pair or from the policy's {"n": .., "k": ..}."""
    if value is None:
        return Thresholds().dominance_n, Thresholds().dominance_k
    try:
        if isinstance(value, dict):
            return int(value["n"]), float(value["k"])
        return int(value[0]), float(value[1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise WorkbenchUserError("dominance must be (n, k) or {'n': n, 'k': k}.",
                                 reason="bad-thresholds") from None


def cell_labels(spec: dict) -> list[str]:
    axes = []
    for axis in spec.get("by", []):
        if "levels" in axis:
            axes.append([f"{axis['column']}={v}" for v in axis["levels"]])
        else:
            e = axis["edges"]
            close = [")"] * (len(e) - 2) + ["]"]
            axes.append([f"{axis['column']} in [{e[i]:g}, {e[i + 1]:g}{close[i]}"
                         for i in range(len(e) - 1)])
    if not axes:
        return ["all rows"]
    return [", ".join(combo) for combo in itertools.product(*axes)]


def too_few() -> str:
    """The one refusal for a selection with too few people or holders, empty or not, so that a
    refusal is no oracle for emptiness or for how many holders have rows."""
    return ("this selection holds too few people, or rows of too few holders, for a result "
            "to be released. Widen the selection, group by fewer or coarser columns, or use a "
            "view with more holders.")


def check_holders(pooled_flag: float, contributors: int, t: Thresholds) -> int:
    holders = int(round(pooled_flag))
    if abs(pooled_flag - holders) > 1e-3 or not 0 <= holders <= contributors:
        raise WorkbenchUserError(
            "the decrypted aggregate is inconsistent with its contributors: the ciphertexts were "
            "not made under this space's public key (or were tampered with). Re-encrypt with the "
            "space's he/public.ctx.", reason="wrong-context")
    if holders < t.min_holders:
        raise ReleaseRefused("min-holders", too_few())
    return holders


def check_cells(v: dict, counts, t: Thresholds, what: str, fix: str) -> None:
    """Every released cell is 0 or holds at least ``min_cell_count`` people pooled from at least
    ``min_holders`` holders; the rows in no cell (missing or undeclared values, values off the
    grid) are 0 or at least ``min_cell_count`` too, so that a subset and its complement both
    reach k (DataSHIELD's subset rule). The refusal says how many cells failed, never which."""
    counts = np.asarray(counts)
    holders = np.rint(v["cell_holders"]).astype(np.int64)
    bad = int(((counts > 0) & ((counts < t.min_cell_count) | (holders < t.min_holders))).sum())
    if bad and len(counts) == 1:  # the whole selection: refused as an empty one is
        raise ReleaseRefused("min-cell-count", too_few())
    if bad:
        raise ReleaseRefused("min-cell-count", f"{bad} {what} hold fewer than "
                                               f"{t.min_cell_count} people or rows of fewer "
                                               f"than {t.min_holders} holders. {fix}")
    _check_outside(v, t)


def _check_outside(v: dict, t: Thresholds) -> None:
    outside = int(round(float(v["outside"][0])))
    if 0 < outside < t.min_cell_count:
        raise ReleaseRefused("subset-complement", "the rows outside every group (missing or "
                                                  "undeclared values, or values off the grid) "
                                                  "are too few to be told apart from the "
                                                  "groups. Group by a column without missing "
                                                  "values, or merge levels.")


def release_counts(op, spec, v, t: Thresholds) -> dict:
    counts = np.rint(v["counts"]).astype(np.int64)
    if (counts < 0).any():
        raise WorkbenchUserError("decrypted counts are negative: the ciphertexts were not made "
                                 "under this space's key.", reason="wrong-context")
    axes = spec.get("by", [])
    if op == "histogram" and len(axes) == 1 and "edges" in axes[0]:
        return _coarsened_histogram(counts, v, axes[0]["edges"], t)
    check_cells(v, counts, t, "cell(s)", "Merge categories or drop a grouping column.")
    return {"counts": counts.tolist(), "labels": cell_labels(spec)}


def _coarsened_histogram(counts, v, edges, t: Thresholds) -> dict:
    """Adjacent bins of the public grid merged until every released bin holds at least k
    people of at least ``min_holders`` holders: coarsen rather than refuse."""
    total = int(counts.sum())
    if 0 < total < t.min_cell_count:
        raise ReleaseRefused("min-cell-count", too_few())
    _check_outside(v, t)
    holders = np.rint(v["cell_holders"]).astype(np.int64)
    closes, run, run_holders = [], 0, 0  # where a released bin may end
    for i, (c, h) in enumerate(zip(counts.tolist(), holders.tolist(), strict=True)):
        # a merged bin pools at least as many holders as its busiest bin
        run, run_holders = run + c, max(run_holders, h)
        if run >= t.min_cell_count and run_holders >= t.min_holders:
            closes.append(i + 1)
            run, run_holders = 0, 0
    cut = [0, *closes[:-1], len(counts)]  # the tail joins the last released bin
    merged = np.add.reduceat(counts, cut[:-1]).tolist()
    return {"counts": merged, "edges": [float(edges[i]) for i in cut],
            "labels": [f"[{edges[a]:g}, {edges[b]:g}{']' if b == len(counts) else ')'}"
                       for a, b in zip(cut, cut[1:], strict=False)]}


def release_moments(op, spec, v, t: Thresholds) -> dict:
    if op == "var" and not spec.get("squares", True):
        raise WorkbenchUserError("a variance needs the holders' sums of squares: the spec must "
                                 "say squares: true.", reason="malformed-message")
    n = np.rint(v["n"]).astype(np.int64)
    check_cells(v, n, t, "cell(s)", "Group by fewer or coarser columns.")
    total = v["abs"]
    dominated = (n > 0) & (v["top"] > t.dominance_k * total + 1e-9 * np.maximum(total, 1))
    if dominated.any():
        raise ReleaseRefused("dominance", f"in {int(dominated.sum())} cell(s) the "
                                          f"{t.dominance_n} largest values make up more than "
                                          f"{t.dominance_k:.0%} of the total. Group more rows "
                                          "together or use a count instead.")
    # p%: what is left after the two largest must be at least p of the largest, or the second
    # largest contributor could estimate the largest within p (bounds from above, as above)
    exposed = (n > 0) & (total - v["top2"] < t.p_percent * v["top1"] - 1e-9 * np.maximum(total, 1))
    if exposed.any():
        raise ReleaseRefused("p-percent", f"in {int(exposed.sum())} cell(s) the values beyond the "
                                          "two largest are too few to hide the largest within "
                                          f"{t.p_percent:.0%}. Group more rows together or use "
                                          "a count instead.")
    center = np.asarray(spec.get("center", [0.0] * len(n)), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, center + v["s1"] / n, np.nan)
        dev = v["s2"] - np.where(n > 0, v["s1"] ** 2 / n, 0.0)
        var = np.where(n > 1, dev / (n - 1), np.nan)
    out = {"n": n.tolist(), "labels": cell_labels(spec)}
    if op == "sum":
        out["sum"] = (v["s1"] + center * n).tolist()
    elif op == "mean":
        out["mean"] = _json_floats(mean)
    else:
        out["mean"], out["var"] = _json_floats(mean), _json_floats(var)
    return out


def _json_floats(a) -> list:
    """Floats for JSON, a withheld or undefined value (NaN) as None."""
    a = np.asarray(a, dtype=float)
    out = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)).tolist():  # few: no object array for them
        out[i] = None
    return out


def _survival_arrays(spec, v, with_holders: bool = False):
    """Pooled at-risk and event counts per (group, bin); with ``with_holders`` also how many
    holders pool each at-risk count (packed above bit ``AT_RISK_SHIFT``, see ops.py)."""
    bins = int(spec["n_bins"])
    raw = np.rint(v["at_risk"]).astype(np.int64).reshape(-1, bins)
    events = np.rint(v["events"]).astype(np.int64).reshape(-1, bins)
    holders = raw >> AT_RISK_SHIFT
    at_risk = raw & ((1 << AT_RISK_SHIFT) - 1)
    pooled = int(round(float(v["holders"][0])))
    if (raw < 0).any() or (events < 0).any() or (events > at_risk).any() \
            or (holders > pooled).any() or (np.diff(holders, axis=1) > 0).any() \
            or ((at_risk > 0) != (holders > 0)).any():
        raise WorkbenchUserError("decrypted survival counts are inconsistent: the ciphertexts "
                                 "were not made under this space's key.", reason="wrong-context")
    return (at_risk, events, holders) if with_holders else (at_risk, events)


def survival_rows(events, censored, holders, k: int, min_holders: int) -> list[list[int]]:
    """Adjacent time bins merged into released rows ``[first bin, last bin, events, censored]``
    so that every row's events and censorings are each 0 or at least ``k`` (then the drop in
    at-risk between rows is >= k too) and every row starts with patients of at least
    ``min_holders`` holders: the rule ACRO applies by suppressing rows, met here by coarsening.
    The last row runs to the grid's end (the public horizon) and takes everyone still at risk,
    so no cut-off point or remainder reveals a small number. Empty when no row can pass (the
    whole group has fewer than k events, or fewer than k censorings)."""
    rows: list[list[int]] = []
    start, d, c = 0, 0, 0
    for i, (di, ci) in enumerate(zip(events.tolist(), censored.tolist(), strict=True)):
        d, c = d + di, c + ci
        if d + c and (d == 0 or d >= k) and (c == 0 or c >= k) and holders[start] >= min_holders:
            rows.append([start, i, d, c])
            start, d, c = i + 1, 0, 0
    if d + c:
        rows.append([start, len(events) - 1, d, c])

    def passes(row) -> bool:
        return (row[2] == 0 or row[2] >= k) and (row[3] == 0 or row[3] >= k) \
            and holders[row[0]] >= min_holders

    while len(rows) > 1 and not passes(rows[-1]):  # the tail joins the row before it
        last = rows.pop()
        rows[-1] = [rows[-1][0], last[1], rows[-1][2] + last[2], rows[-1][3] + last[3]]
    if rows:
        rows[-1][1] = len(events) - 1
    return rows if rows and passes(rows[-1]) else []


def release_kaplan_meier(op, spec, v, t: Thresholds) -> dict:
    at_risk, events, holders = _survival_arrays(spec, v, with_holders=True)
    check_cells(v, at_risk[:, 0], t, "group(s)", "Drop the grouping column or merge its levels.")
    res, k = float(spec["resolution"]), t.min_cell_count
    groups = []
    for n, d, h, label in zip(at_risk, events, holders, cell_labels(spec), strict=True):
        if n[0] == 0:
            groups.append({"label": label, "n": 0, "times": []})
            continue
        exits = n - np.append(n[1:], 0)
        rows = survival_rows(d, exits - d, h, k, t.min_holders)
        if not rows:
            raise ReleaseRefused("survival-step", "too few events or censorings for every curve "
                                                  f"row to hold 0 or at least {k} of each. Drop "
                                                  "the grouping column or widen the cohort.")
        first = [r[0] for r in rows]
        observed, censored = [r[2] for r in rows], [r[3] for r in rows]
        # whole time units as JSON integers: half the cost of floats to encode, sign and store
        step = int(res) if res.is_integer() else res
        ends = [r[1] * step for r in rows]
        groups.append({
            "label": label, "n": int(n[0]), "times": ends,
            "at_risk": n[first].tolist(), "observed": observed, "censored": censored,
            "removed": [o + c for o, c in zip(observed, censored, strict=True)],
            "intervals": [[0 if i == 0 else ends[i - 1], end] for i, end in enumerate(ends)],
        })
    return {"groups": groups}


def release_logrank(op, spec, v, t: Thresholds) -> dict:
    at_risk, events = _survival_arrays(spec, v)
    present = at_risk[:, 0] > 0
    if present.sum() < 2:
        raise ReleaseRefused("two-groups", "the log-rank test needs at least two groups with "
                                           "rows; check the group column.")
    check_cells(v, at_risk[:, 0], t, "group(s)", "Merge small groups before testing.")
    stat, p, df = stats.logrank(at_risk[present], events[present])
    return {"test_statistic": stat, "p_value": p, "degrees_of_freedom": df,
            "groups": [lab for lab, keep in zip(cell_labels(spec), present, strict=True) if keep]}


def release_cox(op, spec, v, t: Thresholds) -> dict:
    n = np.rint(v["n"]).astype(np.int64)
    check_cells(v, n, t, "strata", "Merge strata or drop `strata`.")
    events = int(round(float(np.sum(v["d"]))))
    if events < t.min_cell_count:
        raise ReleaseRefused("min-events", f"fewer than {t.min_cell_count} events in total: a "
                                           "Cox model needs more events. Widen the cohort.")
    p = len(spec["covariates"])
    loglik, grad, hess = stats.efron(v["d"], v["s0"], v["s1"], v["s2"], v["d0"], v["d1"],
                                     v["d2"], v["xsum"], np.asarray(spec["beta"], dtype=float))
    assert hess.shape == (p, p)
    mean = np.asarray(spec["center"], dtype=float) + v["xall"] / max(int(n.sum()), 1)
    return {"loglik": loglik, "gradient": grad.tolist(), "hessian": hess.tolist(),
            "n": int(n.sum()), "events": events, "covariate_means": mean.tolist()}


def release_logistic(op, spec, v, t: Thresholds) -> dict:
    n, n_pos = int(round(v["n"][0])), int(round(v["n_pos"][0]))
    if min(n_pos, n - n_pos) < t.min_cell_count:
        raise ReleaseRefused("min-cell-count", f"each outcome class needs at least "
                                               f"{t.min_cell_count} rows; one class has fewer. "
                                               "Widen the cohort or choose another outcome.")
    p = len(spec["covariates"]) + 1
    hess = stats.unpack_tri(v["hess"], p)
    return {"loglik": float(v["loglik"][0]), "gradient": v["grad"].tolist(),
            "hessian": (-hess).tolist(), "n": n, "events": n_pos}


RULES = {
    ("counts", "count"): release_counts, ("counts", "crosstab"): release_counts,
    ("counts", "histogram"): release_counts,
    ("moments", "sum"): release_moments, ("moments", "mean"): release_moments,
    ("moments", "var"): release_moments,
    ("survival", "kaplan_meier"): release_kaplan_meier,
    ("survival", "logrank_test"): release_logrank,
    ("cox", "cox_ph"): release_cox, ("logistic", "logistic_regression"): release_logistic,
}
