"""OPRF linkage (workbench/linkage): pseudonyms per second per core, against the plain keyed
pseudonyms (HMAC-SHA-256, ``workbench.space.linkage.pseudonym``) measured in the same run.

The linkage service runs as its own process on its Unix socket, as ``make demo`` would run it;
the node's side (hash to the group, blind, unblind, finalize) runs in this process. CPU time is
counted on both sides (this process's, and the service's from /proc), so "per core" is distinct
ids / (node CPU s + service CPU s), whatever the machine's other load does to wall time.

Rows (ratio: lower is better):
- oprf-per-core-b<B>: CPU seconds per OPRF pseudonym / (1 / 2,000): the issue's goal of >= 2,000
  pseudonyms per second per core, as a ratio (goal 1.0); B is the batch size (ids per request).
- oprf-vs-hmac: CPU seconds per OPRF pseudonym / seconds per HMAC pseudonym (no goal: what an
  oblivious evaluation costs over a key the node would hold itself).
- clk-encode-vs-hmac: CPU seconds per Bloom-filter encoding (CLK of name and birth date,
  workbench/linkage/fuzzy.py) at a holder / seconds per HMAC pseudonym (no goal).
- clk-match-vs-encode: the linkage unit's CPU seconds to link two sources (anonlink: Dice of every
  pair, greedy one-to-one) / the holders' CPU seconds to encode them (no goal; grows with n, as
  every pair is compared: no blocking).
- clk-service-vs-inprocess: the same match through the running linkage service (holder A's CLKs
  uploaded as the reference index with pseudonyms, holder B's CLKs matched against it; node and
  service CPU) / the in-process match (no goal: what the wire, the parts and the per-pseudonym
  bookkeeping cost); reports CLK matches per second (B's CLKs / wall, and per core).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from workbench.linkage import fuzzy
from workbench.linkage.client import pseudonyms
from workbench.linkage.process import start_linkage
from workbench.paths import Space
from workbench.space.linkage import new_key, pseudonym
from workbench.synth.identities import linkage_sources

GOAL_PER_CORE = 2000
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """user + system CPU seconds of ``pid`` (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _ids(n: int) -> list[str]:
    return [f"{secrets.randbelow(10**9):09d}" for _ in range(n)]


def run(full: bool = True) -> list[dict]:
    n = 40_000 if full else 8_000
    batches = (256, 1024, 4096) if full else (4096,)
    root = Path(tempfile.mkdtemp(prefix="wb-bench-linkage-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = Space(root)
    rows = []
    try:
        with start_linkage(space, max_batch=max(batches), per_minute=10**9,
                           per_day=10**9) as service:
            pseudonyms(space, _ids(100))  # warm: imports, the connection path
            for batch in batches:
                ids = _ids(n)
                node0, service0, wall0 = time.process_time(), _cpu(service.pid), \
                    time.perf_counter()
                out = pseudonyms(space, ids, batch=batch)
                node = time.process_time() - node0
                served = _cpu(service.pid) - service0
                wall = time.perf_counter() - wall0
                assert len(out) == n
                per_core = n / (node + served)
                rows.append({"name": f"oprf-per-core-b{batch}",
                             "ratio": GOAL_PER_CORE / per_core, "goal": 1.0,
                             "batch_size": batch, "ids": n,
                             "pseudonyms_per_s_per_core": round(per_core),
                             "node_cpu_s": round(node, 2), "service_cpu_s": round(served, 2),
                             "wall_pseudonyms_per_s": round(n / wall)})
        key, ids = new_key(), _ids(n)
        started = time.process_time()
        pseudonym(key, ids)
        hmac_s = (time.process_time() - started) / n
        best = max(rows, key=lambda row: row["pseudonyms_per_s_per_core"])
        rows.append({"name": "oprf-vs-hmac",
                     "ratio": (1 / best["pseudonyms_per_s_per_core"]) / hmac_s, "goal": None,
                     "batch_size": best["batch_size"],
                     "hmac_pseudonyms_per_s": round(1 / hmac_s)})
        with start_linkage(space, per_minute=10**9, per_day=10**9) as service:
            rows += _clk_rows(10_000 if full else 2_000, hmac_s, space, service)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def _clk_rows(n_persons: int, hmac_s: float, space: Space, service) -> list[dict]:
    from workbench.linkage import clk

    src = linkage_sources(n_persons, seed=0)
    secret = secrets.token_bytes(fuzzy.SECRET_BYTES)
    started = time.process_time()
    a = fuzzy.encode(src.a.to_dict("records"), secret)
    b = fuzzy.encode(src.b.to_dict("records"), secret)
    encode_s = time.process_time() - started
    started = time.process_time()
    links = fuzzy.match(a, b)
    match_s = time.process_time() - started
    per_clk = encode_s / (len(a) + len(b))
    names = [secrets.token_hex(12) for _ in a]
    clk.upload_reference(space, names, a)
    node0, service0, wall0 = time.process_time(), _cpu(service.pid), time.perf_counter()
    matched, _, _ = clk.match(space, b)
    node, served = time.process_time() - node0, _cpu(service.pid) - service0
    wall = time.perf_counter() - wall0
    return [{"name": "clk-service-vs-inprocess", "ratio": (node + served) / match_s,
             "goal": None, "reference": len(a), "clks": len(b),
             "matched": sum(m is not None for m in matched), "matched_inprocess": len(links),
             "clk_matches_per_s": round(len(b) / wall),
             "clk_matches_per_s_per_core": round(len(b) / (node + served)),
             "node_cpu_s": round(node, 2), "service_cpu_s": round(served, 2)},
            {"name": "clk-encode-vs-hmac", "ratio": per_clk / hmac_s, "goal": None,
             "records": len(a) + len(b), "clks_per_s": round(1 / per_clk)},
            {"name": "clk-match-vs-encode", "ratio": match_s / encode_s, "goal": None,
             "records_a": len(a), "records_b": len(b), "links": len(links),
             "threshold": fuzzy.THRESHOLD,
             "comparisons_per_s": round(len(a) * len(b) / match_s), "match_cpu_s":
             round(match_s, 2)}]
