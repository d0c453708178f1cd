"""Synthetic generator: throughput and peak memory (issue 2, item 3).

Each measurement runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own.
Rows per size (quick: 1e4 patients; full: 1e5 and 1e6):

- ``generate-<n>-peak-memory``: ratio = peak RSS of generating every chunk / 4 GiB (goal <= 1.0).
- ``generate-<n>-throughput``: ratio = generator seconds / baseline seconds. The **baseline** draws
  the same number of table cells (rows x columns of every raw table of every chunk) as float64
  with numpy's ``default_rng().random`` alone, chunk by chunk, in its own subprocess: the cost of
  producing that much random data with no structure at all. Reported, no goal.
- full only, ``generate+harmonise-<n>-peak-memory`` at the largest size: the builder's path
  (generate, then harmonise each holder's chunk; pseudonymisation is a column swap here).
- ``quality-report-<n>`` (1e4 quick, 1e5 full): ratio = seconds of ``quality.report`` over every
  table of the release / seconds of the baseline, one DuckDB scan of every column of every file
  (``SELECT count(*), count(c1), count(c2), ... FROM read_parquet(f)``). Reported, no goal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

GIB4 = 4 * 1024**3
CHUNK = 100_000

GENERATE = textwrap.dedent("""
    import json, resource, sys, time
    from workbench.synth import generate_chunks
    from workbench.harmonise import harmonise
    n, harmonised, chunk_size = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
    rows = 0; cells = []
    start = time.perf_counter()
    for chunk in generate_chunks(n, 1, chunk_size=chunk_size):
        cells.append(sum(df.shape[0] * df.shape[1] for t in chunk.tables.values()
                         for df in t.values()))
        rows += chunk.rows
        if harmonised:
            for holder, tables in chunk.tables.items():
                harmonise(holder, {k: v.rename(columns={"national_id": "person_id"})
                                   for k, v in tables.items()})
        del chunk
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": rows, "cells": cells, "seconds": seconds, "peak": peak}))
""")

BASELINE = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    cells = json.loads(sys.argv[1])
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for count in cells:
        block = rng.random(count)
        del block
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak}))
""")


QUALITY = textwrap.dedent("""
    import json, pathlib, resource, shutil, sys, tempfile, time
    import duckdb
    from workbench import quality
    from workbench.harmonise import harmonise
    from workbench.synth import generate_chunks
    n = int(sys.argv[1])
    root = pathlib.Path(tempfile.mkdtemp(prefix="wb-bench-"))
    for chunk in generate_chunks(n, 1):
        for holder, tables in chunk.tables.items():
            out = harmonise(holder, {k: v.rename(columns={"national_id": "person_id"})
                                     for k, v in tables.items()})
            (root / holder).mkdir(exist_ok=True)
            for table, frame in out.items():
                frame.to_parquet(root / holder / f"{table}.parquet", index=False)
    files = sorted(root.glob("*/*.parquet"))
    start = time.perf_counter()
    for f in files:
        quality.report(f"{f.parent.name}.{f.stem}", f, f.stem)
    report_s = time.perf_counter() - start
    con = duckdb.connect()
    start = time.perf_counter()
    rows = 0
    for f in files:
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{f}')").fetchall()]
        counts = ", ".join(f'count("{c}")' for c in cols)
        rows += con.execute(f"SELECT count(*), {counts} FROM read_parquet('{f}')").fetchone()[0]
    scan_s = time.perf_counter() - start
    shutil.rmtree(root)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"files": len(files), "rows": rows, "report": report_s, "scan": scan_s,
                      "peak": peak}))
""")


def _child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, timeout=3600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(full: bool) -> list[dict]:
    sizes = [100_000, 1_000_000] if full else [10_000]
    results = []
    for n in sizes:
        gen = _child(GENERATE, str(n), "0", str(CHUNK))
        base = _child(BASELINE, json.dumps(gen["cells"]))
        cells = sum(gen["cells"])
        results.append({
            "name": f"generate-{n}-peak-memory", "ratio": gen["peak"] / GIB4, "goal": 1.0,
            "peak_mib": round(gen["peak"] / 2**20), "chunk_size": CHUNK,
        })
        results.append({
            "name": f"generate-{n}-throughput", "ratio": gen["seconds"] / base["seconds"],
            "goal": None, "rows": gen["rows"], "rows_per_s": round(gen["rows"] / gen["seconds"]),
            "cells": cells, "seconds": round(gen["seconds"], 2),
            "baseline": "numpy default_rng().random of the same cell count, same chunks",
            "baseline_seconds": round(base["seconds"], 3),
            "baseline_cells_per_s": round(cells / base["seconds"]),
        })
    n = 100_000 if full else 10_000
    q = _child(QUALITY, str(n))
    results.append({
        "name": f"quality-report-{n}", "ratio": q["report"] / q["scan"], "goal": None,
        "files": q["files"], "rows": q["rows"], "seconds": round(q["report"], 2),
        "baseline": "one DuckDB scan counting every column of every file",
        "baseline_seconds": round(q["scan"], 3), "rows_per_s": round(q["rows"] / q["report"]),
    })
    if full:
        n = sizes[-1]
        both = _child(GENERATE, str(n), "1", str(CHUNK))
        results.append({
            "name": f"generate+harmonise-{n}-peak-memory", "ratio": both["peak"] / GIB4,
            "goal": 1.0, "peak_mib": round(both["peak"] / 2**20),
            "rows_per_s": round(both["rows"] / both["seconds"]),
            "seconds": round(both["seconds"], 2),
        })
    return results
