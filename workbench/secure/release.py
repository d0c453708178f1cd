"""The release policy applied by the key holder to decrypted POOLED aggregates (security boundary).

Each rule either lets a result out or raises ``ReleaseRefused`` naming the rule and what to change.
Rules: at least ``min_holders`` (>= 2) holders contributed rows; every released count cell and every
released at-risk count is >= ``min_cell_count`` (zero cells may be shown); for magnitude tables the
(n, k) dominance rule: the n largest contributions may not exceed k of the cell total. Survival
curves are cut where the at-risk count falls below ``min_cell_count``. Model fits need
``min_cell_count`` rows, events and (for logistic) outcomes of each class.
Messages name columns, levels and thresholds, never a patient-level value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchUserError
from workbench.secure import stats
from workbench.secure.ops import AT_RISK_SHIFT


class ReleaseRefused(WorkbenchUserError):
    def __init__(self, rule: str, message: str):
        super().__init__(f"Release refused by rule '{rule}': {message}", reason="release-refused")
        self.rule = rule


@dataclass(frozen=True)
class Thresholds:
    min_cell_count: int = 10
    dominance_n: int = 2
    dominance_k: float = 0.85
    min_holders: int = 2

    @classmethod
    def from_dict(cls, data: dict | None, floor: int = 1) -> Thresholds:
        data = dict(data or {})
        n, k = dominance_pair(data.get("dominance"))
        if k > 1:  # given as a percentage
            k /= 100.0
        if not (n >= 1 and 0 < k <= 1):
            raise WorkbenchUserError("dominance must be (n, k) with n >= 1 and 0 < k <= 1 "
                                     "(or k a percentage).", reason="bad-thresholds")
        return cls(max(int(data.get("min_cell_count", 10)), floor, 1), n, k,
                   max(int(data.get("min_holders", 2)), 2))

    def to_dict(self) -> dict:
        return {"min_cell_count": self.min_cell_count,
                "dominance": [self.dominance_n, self.dominance_k], "min_holders": self.min_holders}


def dominance_pair(value) -> tuple[int, float]:
    """(n, k) from a pair or from the policy's {"n": .., "k": ..}."""
    if value is None:
        return 2, 0.85
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


def check_holders(pooled_flag: float, contributors: int, t: Thresholds) -> int:
    holders = int(round(pooled_flag))
    if abs(pooled_flag - holders) > 1e-3 or not 0 <= holders <= contributors:
        raise WorkbenchUserError(
            "the decrypted aggregate is inconsistent with its contributors: the ciphertexts were "
            "not made under this space's public key (or were tampered with). Re-encrypt with the "
            "space's he/public.ctx.", reason="wrong-context")
    if holders < t.min_holders:
        raise ReleaseRefused(
            "min-holders", f"only {holders} holder(s) have rows in this selection; a secure "
                           f"result needs at least {t.min_holders}, so that no single holder's "
                           "contribution is ever decrypted. Widen the selection or the view.")
    return holders


def check_cell_holders(v: dict, counts, spec: dict, t: Thresholds) -> None:
    """Every released non-empty cell (group, stratum) must pool at least ``min_holders``."""
    holders = np.rint(v["cell_holders"]).astype(np.int64)
    bad = np.nonzero((np.asarray(counts) > 0) & (holders < t.min_holders))[0]
    if len(bad):
        labels = cell_labels(spec)
        shown = "; ".join(labels[i] for i in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise ReleaseRefused("min-holders", f"{len(bad)} cell(s) hold rows of fewer than "
                                            f"{t.min_holders} holders ({shown}): such a cell "
                                            "would be one holder's own figure. Group by "
                                            "columns that every holder shares, or merge levels.")


def _small(counts: np.ndarray, t: Thresholds) -> np.ndarray:
    return (counts > 0) & (counts < t.min_cell_count)


def _refuse_small(counts, spec, t: Thresholds, what: str, fix: str) -> None:
    bad = np.nonzero(_small(np.asarray(counts), t))[0]
    if len(bad):
        labels = cell_labels(spec)
        shown = "; ".join(labels[i] for i in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise ReleaseRefused("min-cell-count", f"{len(bad)} {what} below the minimum of "
                                               f"{t.min_cell_count} ({shown}). {fix}")


def release_counts(op, spec, v, t: Thresholds) -> dict:
    counts = np.rint(v["counts"]).astype(np.int64)
    if (counts < 0).any():
        raise WorkbenchUserError("decrypted counts are negative: the ciphertexts were not made "
                                 "under this space's key.", reason="wrong-context")
    check_cell_holders(v, counts, spec, t)
    _refuse_small(counts, spec, t, "cell(s) have counts",
                  "Merge categories, widen the bins or drop a grouping column.")
    return {"counts": counts.tolist(), "labels": cell_labels(spec)}


def release_moments(op, spec, v, t: Thresholds) -> dict:
    if op == "var" and not spec.get("squares", True):
        raise WorkbenchUserError("a variance needs the holders' sums of squares: the spec must "
                                 "say squares: true.", reason="malformed-message")
    n = np.rint(v["n"]).astype(np.int64)
    check_cell_holders(v, n, spec, t)
    _refuse_small(n, spec, t, "cell(s) have row counts", "Group by fewer or coarser columns.")
    total = v["abs"]
    dominated = (n > 0) & (v["top"] > t.dominance_k * total + 1e-9 * np.maximum(total, 1))
    if dominated.any():
        labels = cell_labels(spec)
        shown = "; ".join(labels[i] for i in np.nonzero(dominated)[0][:3])
        raise ReleaseRefused("dominance", f"in {int(dominated.sum())} cell(s) ({shown}) the "
                                          f"{t.dominance_n} largest values make up more than "
                                          f"{t.dominance_k:.0%} of the total. Group more rows "
                                          "together or use a count instead.")
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


def release_kaplan_meier(op, spec, v, t: Thresholds) -> dict:
    at_risk, events, holders = _survival_arrays(spec, v, with_holders=True)
    check_cell_holders(v, at_risk[:, 0], spec, t)
    _refuse_small(at_risk[:, 0], spec, t, "group(s) have fewer patients",
                  "Drop the grouping column or merge its levels.")
    res, k = float(spec["resolution"]), t.min_cell_count
    groups = []
    for n, d, h, label in zip(at_risk, events, holders, cell_labels(spec), strict=True):
        if n[0] == 0:
            groups.append({"label": label, "n": 0, "times": []})
            continue
        exits = n - np.append(n[1:], 0)
        # at-risk counts and their holder counts are non-increasing: this cuts the tail where
        # fewer than k patients, or patients of fewer than two holders, remain at risk
        keep = (n >= k) & (h >= t.min_holders)
        rows = np.nonzero(keep & ((exits > 0) | (np.arange(len(n)) == 0)))[0]
        last = int(np.nonzero(keep)[0].max())
        censored, removed = (exits - d)[rows].tolist(), exits[rows].tolist()
        # If the curve is cut, the last released row's exits would reveal the first withheld
        # at-risk count: withhold them (rows increase, so only the last row can be that one).
        hide = rows[-1] == last and last + 1 < len(n) and n[last + 1] > 0
        if hide:
            censored[-1] = removed[-1] = None
        groups.append({
            "label": label, "n": int(n[0]), "times": (rows * res).tolist(),
            "at_risk": n[rows].tolist(), "observed": d[rows].tolist(),
            "censored": censored, "removed": removed,
            "truncated_after": float(last * res) if hide else None,
        })
    return {"groups": groups}


def release_logrank(op, spec, v, t: Thresholds) -> dict:
    at_risk, events = _survival_arrays(spec, v)
    present = at_risk[:, 0] > 0
    if present.sum() < 2:
        raise ReleaseRefused("two-groups", "the log-rank test needs at least two groups with "
                                           "rows; check the group column.")
    check_cell_holders(v, at_risk[:, 0], spec, t)
    _refuse_small(at_risk[:, 0], spec, t, "group(s) have fewer patients",
                  "Merge small groups before testing.")
    stat, p, df = stats.logrank(at_risk[present], events[present])
    return {"test_statistic": stat, "p_value": p, "degrees_of_freedom": df,
            "groups": [lab for lab, keep in zip(cell_labels(spec), present, strict=True) if keep]}


def release_cox(op, spec, v, t: Thresholds) -> dict:
    n = np.rint(v["n"]).astype(np.int64)
    check_cell_holders(v, n, spec, t)
    _refuse_small(n, spec, t, "strata have fewer patients", "Merge strata or drop `strata`.")
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
