"""Ingest at a holder node (issue 20, speed): rows per second and peak memory.

A small space is built and its ``insurer`` enrolled as a node; the synthetic generator's raw
``insurer`` tables (members, enrolment, claims as CSV) are sized so the files hold about 1e6
rows (quick: 1e5). ``workbench node ingest`` then runs as a real process, as root dropping to the
node's account, with the space's HMAC pseudonyms: read, screen, pseudonymise, harmonise, quality
reports, certificates, switch. Rows:

- ``ingest-<n>-throughput``: ratio = ingest seconds / baseline seconds. The **baseline** is plain
  pandas on the same files in its own process: ``read_csv`` then ``to_parquet`` of each file, the
  least any ingest does. Reported with rows/s, no goal.
- ``ingest-<n>-peak-memory``: ratio = the ingest's peak resident memory (the largest of its
  processes, ``RUSAGE_CHILDREN``) / 2 GiB (goal <= 1.0); the baseline's peak is reported beside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

GIB2 = 2 * 1024**3
ROOT = Path(__file__).resolve().parents[1]
ROWS_PER_PATIENT = 6.4  # insurer source rows per simulated patient (members, enrolment, claims)

MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    start = time.perf_counter()
    done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak, "rc": done.returncode,
                      "err": done.stderr[-2000:]}))
""")

BASELINE = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    import pandas as pd
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    start = time.perf_counter()
    for path in sorted(folder.glob("*.csv")):
        pd.read_csv(path, dtype={"national_id": str}).to_parquet(out / f"{path.stem}.parquet")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak}))
""")


def _python(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _setup(root: Path, rows: int) -> tuple:
    from workbench.accounts import ensure_user, holder_node_user, is_root
    from workbench.node.enroll import enroll_node
    from workbench.node.ingest import write_sources
    from workbench.space.build import init_space

    space = init_space(root / "space", patients=200, seed=5, echo=lambda _l: None)
    enroll_node(space, "insurer")
    sources = root / "sources"
    write_sources(sources, "insurer", int(rows / ROWS_PER_PATIENT), 9, "csv")
    if is_root():
        uid, gid = ensure_user(holder_node_user("insurer"))
        for path in [sources, *sources.iterdir()]:
            os.chown(path, uid, gid)
    return space, sources


def _measure(n: int) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="wb-bench-ingest-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        space, sources = _setup(root, n)
        command = [sys.executable, "-m", "workbench.cli", "node", "ingest", "--data-dir",
                   str(space.root), "--holder", "insurer", "--sources", str(sources),
                   "--pseudonyms", "hmac"]
        started = time.perf_counter()
        ingest = _python(MEASURE, json.dumps(command))
        if ingest["rc"] != 0:
            raise RuntimeError(f"the ingest failed: {ingest['err']}")
        from workbench.node.versions import VersionStore

        store = VersionStore(space.node_dir("insurer"), "insurer")
        version = next(v for v in store.versions() if v["id"] == store.current())
        source_rows = sum(s["rows"] for s in version["sources"].values())
        out = root / "baseline"
        out.mkdir()
        baseline = _python(BASELINE, str(sources), str(out))
        label = f"{source_rows:.0e}".replace("+0", "")
        return [
            {"name": f"ingest-{label}-throughput",
             "ratio": ingest["seconds"] / baseline["seconds"], "goal": None,
             "source_rows": source_rows, "rows_per_s": round(source_rows / ingest["seconds"]),
             "seconds": round(ingest["seconds"], 2),
             "baseline_seconds": round(baseline["seconds"], 2),
             "store_rows": version["rows"], "wall_with_setup_s":
                 round(time.perf_counter() - started, 1)},
            {"name": f"ingest-{label}-peak-memory", "ratio": ingest["peak"] / GIB2, "goal": 1.0,
             "peak_mb": round(ingest["peak"] / 2**20),
             "baseline_peak_mb": round(baseline["peak"] / 2**20)},
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(full: bool) -> list[dict]:
    return _measure(1_000_000 if full else 100_000)
