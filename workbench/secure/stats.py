"""Plain arithmetic on pooled aggregates: Kaplan–Meier, log-rank, Efron partial likelihood.

These run where decrypted pooled values are (the key holder, for statistics that release less than
their inputs) or on already-released tables (the client, for the survival curve). They follow
lifelines' formulas so results agree with lifelines to rounding.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from scipy import stats as sps


def kaplan_meier(at_risk: np.ndarray, observed: np.ndarray, alpha: float = 0.05):
    """Survival, exponential-Greenwood bounds (lifelines' formula) and Greenwood's sum."""
    at_risk = np.asarray(at_risk, dtype=float)
    observed = np.asarray(observed, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.cumsum(np.log(at_risk - observed) - np.log(at_risk))
        var = observed / (at_risk * (at_risk - observed))
    var[~np.isfinite(var)] = 0.0
    cum_sq = np.cumsum(var)
    survival = np.exp(log_s)
    z = NormalDist().inv_cdf(1 - alpha / 2)  # scipy's norm.ppf costs ~0.1 ms a call
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(survival)
        lower = np.exp(-np.exp(np.log(-v) - z * np.sqrt(cum_sq) / v))
        upper = np.exp(-np.exp(np.log(-v) + z * np.sqrt(cum_sq) / v))
    lower[np.isnan(lower)] = 1.0
    upper[np.isnan(upper)] = 1.0
    return survival, lower, upper


def logrank(at_risk: np.ndarray, events: np.ndarray) -> tuple[float, float, int]:
    """Multi-group log-rank (lifelines' multivariate_logrank_test): arrays are (groups, bins)."""
    n = at_risk.astype(float)
    d = events.astype(float)
    n_tot, d_tot = n.sum(axis=0), d.sum(axis=0)
    keep = (d_tot > 0) & (n_tot > 0)
    n, d, n_tot, d_tot = n[:, keep], d[:, keep], n_tot[keep], d_tot[keep]
    expected = n * (d_tot / n_tot)
    observed_minus_expected = (d - expected).sum(axis=1)
    factor = np.where(n_tot > 1, d_tot * (n_tot - d_tot) / (n_tot * n_tot * np.maximum(n_tot - 1,
                                                                                      1)), 0.0)
    groups = n.shape[0]
    v = np.zeros((groups, groups))
    for i in range(groups):
        for j in range(groups):
            v[i, j] = np.sum(factor * n[i] * ((i == j) * n_tot - n[j]))
    u = observed_minus_expected[:-1]
    stat = float(u @ np.linalg.solve(v[:-1, :-1], u))
    df = groups - 1
    return stat, float(sps.chi2.sf(stat, df)), df


def unpack_tri(values: np.ndarray, p: int) -> np.ndarray:
    """Symmetric matrices from their upper triangles (rows of ``values``)."""
    out = np.zeros(values.shape[:-1] + (p, p))
    iu = np.triu_indices(p)
    out[..., iu[0], iu[1]] = values
    out[..., iu[1], iu[0]] = values
    return out


def efron(d, s0, s1, s2, d0, d1, d2, xsum, beta) -> tuple[float, np.ndarray, np.ndarray]:
    """Efron log partial likelihood, gradient and Hessian from pooled per-bin sums."""
    p = len(beta)
    t = p * (p + 1) // 2
    d = np.rint(d).astype(np.int64)
    rows = np.nonzero(d > 0)[0]
    d, s0, d0 = d[rows], s0[rows], d0[rows]
    s1, d1 = s1.reshape(-1, p)[rows], d1.reshape(-1, p)[rows]
    s2, d2 = s2.reshape(-1, t)[rows], d2.reshape(-1, t)[rows]
    loglik = float(beta @ xsum)
    grad = np.array(xsum, dtype=float)
    second = np.zeros(t)
    outer = np.zeros((p, p))
    for tie in range(int(d.max()) if len(d) else 0):  # l = 0 .. d-1 for each bin with d events
        live = d > tie
        frac = tie / d[live]
        phi = s0[live] - frac * d0[live]
        ratio = (s1[live] - frac[:, None] * d1[live]) / phi[:, None]
        loglik -= float(np.log(phi).sum())
        grad -= ratio.sum(axis=0)
        second += ((s2[live] - frac[:, None] * d2[live]) / phi[:, None]).sum(axis=0)
        outer += ratio.T @ ratio
    hess = -(unpack_tri(second, p) - outer)
    return loglik, grad, hess
