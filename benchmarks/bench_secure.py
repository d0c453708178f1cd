"""Secure computation benchmarks (issue 6): 3 holders, a synthetic cohort on 1,826 daily bins.

Every ratio is against a baseline timed in the same run, alternating with it (the median of the
per-pair ratios; one pair for Cox at 1e6): lifelines on the pooled plaintext rows, or the HE
floor (the holders' public-key encryptions plus one decryption at the same parameters).
Each row says how the holders ran: in sequence in one process, or in parallel, one process per
holder (``holder_processes=True``). The key holder runs in-process (the socket service adds one
local round trip per decryption).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd

BINS = 1826
HOLDERS = ("hospital", "insurer", "pharma")


def cohort(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    hazard = np.exp(x @ np.array([0.3, -0.2, 0.1, 0.0, 0.25]))
    t = rng.exponential(900 / hazard)
    c = rng.uniform(0, BINS * 1.3, n)
    days = np.minimum(np.minimum(t, c), BINS - 1).astype(int)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    df["days"] = days
    df["event"] = ((t <= c) & (t < BINS - 1)).astype(int)
    df["arm"] = rng.integers(0, 2, n)
    df["cost"] = rng.gamma(2.0, 500.0, n)
    df.loc[0, "days"] = BINS - 1  # the grid always spans 1,826 daily bins
    return df


def split(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each holder's own table: a third of the (i.i.d.) rows, copied out of the pooled frame as a
    holder's extract would be (a strided view would make every holder copy its columns)."""
    edges = np.linspace(0, len(df), len(HOLDERS) + 1).astype(int)
    return {h: df.iloc[a:b].reset_index(drop=True)
            for h, a, b in zip(HOLDERS, edges[:-1], edges[1:], strict=True)}


def paired(fn, baseline, repeat: int, warm_up: bool = True) -> dict:
    """Run ``fn`` and ``baseline`` alternately (after one warm-up each, unless ``warm_up`` is
    False), so both see the same machine load; the ratio is the median of the per-pair ratios."""
    out, base_out = (fn(), baseline()) if warm_up else (None, None)
    mine, base = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        mine.append(time.perf_counter() - start)
        start = time.perf_counter()
        base_out = baseline()
        base.append(time.perf_counter() - start)
    return {"ratio": statistics.median(m / b for m, b in zip(mine, base, strict=True)),
            "ms": statistics.median(mine) * 1e3, "baseline_ms": statistics.median(base) * 1e3,
            "out": out, "baseline_out": base_out}


def _floor_once(keys, secret, count: int) -> float:
    """Public-key encryption of the same number of ciphertexts by each holder + one decryption
    (no serialization, no glue): what any public-key HE pipeline must pay."""
    import tenseal as ts

    vec = list(range(4096))
    start = time.perf_counter()
    for _ in range(len(HOLDERS) * count):
        ct = ts.bfv_vector(keys.bfv, vec)
    for _ in range(count):
        ct.decrypt(secret.secret_key())
    return time.perf_counter() - start


# KM, log-rank and Cox run the product's path (simulated key parties: every ciphertext
# threshold-decrypted). The floor and byte rows, and one Cox row, run the single-key path
# (``single_key.py``, kept in benchmarks/ only) for which those goals were set (the floor
# decrypts with its one key); bench_threshold compares the two decryptions directly.
SINGLE, JOINT = True, False


def federation(partitions, single: bool, **kwargs):
    """A ``Federation`` on the single-key baseline, or the product's (simulated key parties)."""
    if single:
        from single_key import federation as single_key_federation

        return single_key_federation(partitions, **kwargs)
    from workbench.secure import Federation

    return Federation(partitions, **kwargs)


def _crypto_vs_floor(fed, kind: str, spec: dict, repeat: int = 9) -> tuple[float, dict]:
    """The HE part of one round (holders encrypt, serialize and sign; the aggregator checks the
    signatures, deserializes and adds; the key holder verifies the signatures, deserializes,
    decrypts and applies the release policy; binning excluded), timed alternately with its floor
    so both see the same machine load. Returns medians."""
    from workbench.secure import ops
    from workbench.secure.nodes import seal
    from workbench.secure.signing import new_nonce

    coord = fed.coordinator
    vectors = {h.name: ops.holder_vectors(kind, spec, h.frame) for h in coord.holders}
    op = {"survival": "kaplan_meier", "moments": "mean"}[kind]

    def once():  # holders encrypt and sign; the aggregator checks, adds and forwards
        nonce = new_nonce()
        parts = [seal(coord.keys, h.signer, kind, spec, nonce, vectors[h.name])
                 for h in coord.holders]
        coord.aggregator.submit({"kind": kind, "op": op, "spec": spec,
                                 "thresholds": coord.thresholds, "context": {},
                                 "fingerprint": coord.keys.fingerprint, "nonce": nonce}, parts)
        return len(parts[0].blobs), {p.contributors[0]: p.nbytes for p in parts}

    ciphertexts, nbytes = once()
    crypto, floor = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        once()
        crypto.append(time.perf_counter() - start)
        floor.append(_floor_once(coord.keys, coord.keyholder.secret, ciphertexts))
    return statistics.median(crypto), {"ciphertexts": ciphertexts, "bytes": nbytes,
                                       "floor": statistics.median(floor),
                                       "ratio": statistics.median(
                                           c / f for c, f in zip(crypto, floor, strict=True))}


def run(full: bool) -> list[dict]:
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test


    rows = []
    sizes = [10_000, 100_000, 1_000_000] if full else [2_000, 10_000]
    km_goals = {10_000: 1.0, 100_000: 0.5, 1_000_000: 0.2}
    common, seq, par = COMMON, SEQ, PAR
    for n in sizes:
        df = cohort(n)
        variants = [(False, seq), (True, par)]
        for processes, how in variants:
            fed = federation(split(df), JOINT, min_cell_count=10,
                             holder_processes=processes)
            run = paired(lambda fed=fed: fed.kaplan_meier("days", "event"),
                         lambda df=df: KaplanMeierFitter().fit(df["days"], df["event"]),
                         15 if n < 1_000_000 else 7)
            fed.close()
            mine = run["out"].survival_function_["KM_estimate"]
            err = float(np.abs(run["baseline_out"].survival_function_["KM_estimate"]
                               .reindex(mine.index) - mine).max())
            rows.append({"name": f"KM end-to-end / lifelines KaplanMeierFitter, n={n:.0e}",
                         "ratio": run["ratio"], "goal": km_goals.get(n), "he_ms": run["ms"],
                         "lifelines_ms": run["baseline_ms"], "max_abs_dS": err,
                         **JOINT_PARAMS, **how})
        if n == sizes[1]:  # the HE part does not depend on n: measured once
            fed = federation(split(df), SINGLE, min_cell_count=10)
            spec = fed.coordinator.schema.time_grid("days", 1.0) | {"event_col": "event",
                                                                    "by": []}
            crypto, info = _crypto_vs_floor(fed, "survival", spec)
            floor = info["floor"]
            rows.append({"name": "KM crypto cost per curve / its floor (paired median)",
                         "ratio": info["ratio"], "goal": 2.0, "crypto_ms": crypto * 1e3,
                         "floor_ms": floor * 1e3, "ciphertexts": info["ciphertexts"], **common,
                         **seq})
            per_holder = max(info["bytes"].values())
            rows.append({"name": "KM bytes sent per holder per curve / 90 KB",
                         "ratio": per_holder / (90 * 1024), "goal": 1.0,
                         "bytes": per_holder, **common, **seq})
            mean_fed = federation(split(df), SINGLE, min_cell_count=10)
            spec_m = {"by": [], "column": "cost", "dominance_n": 2}
            agg, info_m = _crypto_vs_floor(mean_fed, "moments", spec_m)
            floor_m = info_m["floor"]
            he_mean = mean_fed.mean("cost")
            rel = abs(he_mean - df["cost"].mean()) / abs(df["cost"].mean())
            he_var = mean_fed.var("cost")
            rel_var = abs(he_var - df["cost"].var()) / df["cost"].var()
            rows.append({"name": "secure aggregation round (mean) / its floor (paired median)",
                         "ratio": info_m["ratio"], "n": n, "goal": 2.0, "round_ms": agg * 1e3,
                         "floor_ms": floor_m * 1e3, "mean_rel_error": float(rel),
                         "var_rel_error": float(rel_var), "ciphertexts": info_m["ciphertexts"],
                         **common, **seq})
    # log-rank at 1e5 (quick: 1e4)
    n = 100_000 if full else 10_000
    df = cohort(n, seed=1)
    fed = federation(split(df), JOINT, min_cell_count=10)
    a, b = df[df["arm"] == 0], df[df["arm"] == 1]
    run = paired(lambda: fed.logrank_test("days", "event", "arm"),
                 lambda: logrank_test(a["days"], b["days"], a["event"], b["event"]), 15)
    rows.append({"name": f"log-rank / lifelines logrank_test, n={n:.0e}", "ratio": run["ratio"],
                 "goal": 0.8 if n == 100_000 else None, "he_ms": run["ms"],
                 "lifelines_ms": run["baseline_ms"],
                 "chi2_abs_error": float(abs(run["out"].test_statistic
                                             - run["baseline_out"].test_statistic)),
                 **JOINT_PARAMS, **seq})
    return rows + cox_rows([100_000, 1_000_000] if full else [10_000])


COMMON = {"holders": 3, "bins": BINS,
          "params": "single-key baseline (single_key.py): BFV N=4096 [60] t=1073750017; counts "
                    "as integers, real values in fixed point (3 centred digits of 25 bits, "
                    "2^-30)"}
JOINT_PARAMS = {"holders": 3, "bins": BINS,
                "params": "the product's joint key (simulated key parties): BFV N=4096, three "
                          "31-bit primes + a 16-bit key prime, t=1073750017; reals in fixed "
                          "point (3 centred digits of 25 bits, 2^-30)"}
SEQ = {"holders_ran": "in sequence (one process)"}
PAR = {"holders_ran": "in parallel (one process per holder)"}
THRESHOLD = {"holders_ran": "in sequence (one process), simulated key parties: every "
                            "ciphertext threshold-decrypted"}
THRESHOLD_PAR = {"holders_ran": "in parallel (one process per holder), simulated key parties: "
                                "every ciphertext threshold-decrypted"}


def cox_rows(sizes: list[int], variants=None) -> list[dict]:
    """Cox d=5 (Efron) against lifelines: the single key, in sequence and in parallel, and
    (``variants``) the product's threshold path (simulated key parties)."""
    from lifelines import CoxPHFitter


    rows = []
    covariates = [f"x{i}" for i in range(5)]
    cox_goals = {100_000: 3.0, 1_000_000: 0.3}
    for n in sizes:
        df = cohort(n, seed=2)
        data = df[covariates + ["days", "event"]]
        big = n >= 1_000_000  # one pair, no warm-up: lifelines takes ~20 s there
        ref = CoxPHFitter().fit(data, "days", "event", fit_options={"precision": 1e-12})
        for processes, how, parties in variants or ((False, THRESHOLD, JOINT),
                                                    (True, THRESHOLD_PAR, JOINT),
                                                    (False, SEQ, SINGLE)):
            fed = federation(split(df), parties, min_cell_count=10,
                             holder_processes=processes)
            run = paired(lambda fed=fed: fed.cox_ph("days", "event", covariates),
                         lambda data=data: CoxPHFitter().fit(data, "days", "event"),
                         1 if big else 3, warm_up=not big)
            fed.close()
            fit = run["out"]
            rows.append({"name": f"Cox d=5 (Efron) / lifelines CoxPHFitter, n={n:.0e}",
                         "ratio": run["ratio"], "goal": cox_goals.get(n),
                         "he_s": run["ms"] / 1e3, "lifelines_s": run["baseline_ms"] / 1e3,
                         "rounds": len(fed.coordinator.log),
                         "max_abs_beta_diff_vs_lifelines_exact": float(
                             np.abs(fit.params_ - ref.params_).max()),
                         "ciphertexts_per_holder_per_round":
                             fed.coordinator.log[0]["ciphertexts"],
                         "bytes_per_holder_per_round": max(
                             fed.coordinator.log[0]["bytes_per_holder"].values()),
                         **(COMMON if parties is SINGLE else JOINT_PARAMS), **how})
    return rows


if __name__ == "__main__":
    import sys

    if "--cox" in sys.argv:  # Cox d=5 at n=1e5 only: single key and threshold (holders in
        # sequence, and in their own processes as on nodes)
        rows = cox_rows([100_000], ((False, SEQ, SINGLE), (False, THRESHOLD, JOINT),
                                    (True, THRESHOLD_PAR, JOINT)))
    else:
        rows = run(full="--full" in sys.argv)
    for row in rows:
        print(row)
