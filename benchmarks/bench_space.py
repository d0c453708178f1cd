"""`workbench init` throughput and peak memory, against generating the same synthetic sources
alone (the baseline, same run): the ratio is what pseudonymising, harmonising, writing parquet,
quality reports, catalog records and certificates cost on top of generation."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

GENERATE_ONLY = """
import json, resource, sys, time
from workbench import synth
n = int(sys.argv[1]); started = time.perf_counter(); rows = 0
for chunk in synth.generate_chunks(n, 42):
    rows += chunk.rows
print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

INIT = """
import json, resource, sys, time
from workbench.space.build import init_space
n, target = int(sys.argv[1]), sys.argv[2]; started = time.perf_counter()
init_space(target, patients=n, seed=42, echo=lambda _l: None)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(full: bool) -> list[dict]:
    rows = []
    for patients in ([100_000, 1_000_000] if full else [20_000]):
        base = _run(GENERATE_ONLY, str(patients))
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            init = _run(INIT, str(patients), str(Path(tmp) / "space"))
        rows.append({
            "name": f"init {patients} patients vs generation alone",
            "ratio": init["seconds"] / base["seconds"],
            "goal": None,
            "init_seconds": round(init["seconds"], 1),
            "generate_seconds": round(base["seconds"], 1),
            "source_rows_per_s": round(base["rows"] / init["seconds"]),
            "init_peak_mb": round(init["peak_mb"]),
            "generate_peak_mb": round(base["peak_mb"]),
            "peak_under_4gb": init["peak_mb"] < 4096,
        })
    return rows
