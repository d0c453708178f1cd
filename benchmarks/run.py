"""Run every benchmark in this folder: ``make bench`` (``BENCH_ARGS="--only gateway"`` for one).

Each ``bench_*.py`` module exposes ``run(full: bool) -> list[dict]``; every dict is one measured
row with at least ``name``, ``ratio`` (against a baseline measured in the same run), ``goal`` (the
ratio the issue asks for, or None) and free-form details. Wall-clock numbers are only reported,
never asserted: these machines are noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="run only bench_<ONLY>.py")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = parser.parse_args()
    results = []
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and path.stem != f"bench_{args.only}":
            continue
        print(f"== {path.stem}", flush=True)
        started = time.perf_counter()
        for row in _load(path).run(full=not args.quick):
            goal = row.get("goal")
            verdict = "" if goal is None else ("  ok" if row["ratio"] <= goal else "  MISSED")
            details = {k: v for k, v in row.items() if k not in ("name", "ratio", "goal")}
            print(f"  {row['name']}: ratio {row['ratio']:.3g}"
                  f"{'' if goal is None else f' (goal <= {goal})'}{verdict}  {details}", flush=True)
            results.append({"bench": path.stem, **row})
        print(f"  ({time.perf_counter() - started:.1f}s)")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"results written to {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
