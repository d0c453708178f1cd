"""Disclosure-control benchmarks (issue 22): what the checks cost over the operation they guard.

- KM at n = 1e5 through a view with declared roles, with every check (roles and public grid,
  merged rows, query auditing, the release checker's signature) ÷ the same KM with the audit and
  the signature stubbed out, timed alternately in the same run (goal <= 1.2). Both encode the
  released result once (the provenance record's digest needs it either way). Each checked call
  is a new study: the audit stores the release (a study's first is safe alone; later ones cost
  what the second benchmark reports).
- Query auditing against the number of earlier releases of the study (1, 10, 100, 1000): one
  release's audit ÷ the same audit with one earlier release. Earlier releases are counts and
  cross-tables over six categorical columns and histograms on one grid, as a study makes them.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_secure import cohort, paired, split


def _view():
    from workbench.catalog.models import Column, View

    cols = [Column(name="days", type="int64", description="d", sensitivity="sensitive",
                   role="time", granularity=1, horizon=1826),
            Column(name="event", type="int64", description="e", sensitivity="sensitive",
                   role="event"),
            Column(name="arm", type="int64", description="a", role="categorical",
                   levels=("0", "1"))]
    return View(id="bench", title="bench", description="bench", tables=("t",),
                sql="SELECT * FROM t", columns=tuple(cols))


def _km_checks(n: int, repeat: int) -> dict:
    from workbench.secure import Federation, attest

    parts = split(cohort(n)[["days", "event", "arm"]])
    checked = Federation(parts, min_cell_count=10, view=_view())
    bare = Federation(parts, min_cell_count=10)
    calls = itertools.count()

    def with_checks():
        checked.coordinator.context["study"] = f"bench-{next(calls)}"  # a full audit each time
        return checked.kaplan_meier("days", "event")

    class _NoAudit:
        def check(self, *args, **kwargs):
            pass

        def count_round(self, *args):
            pass

    sign = attest.sign

    def without():
        keyholder = bare.coordinator.keyholder
        keyholder._audit, attest.sign = _NoAudit(), lambda *args: None
        try:
            return bare.kaplan_meier("days", "event")
        finally:
            keyholder._audit, attest.sign = None, sign

    return paired(with_checks, without, repeat)


def _releases(count: int, rng) -> list[tuple[str, dict, dict]]:
    """``count`` distinct releases (op, spec, result) over six columns of three levels and a
    histogram grid of 41 edges, with counts drawn as a study's would be (all >= 10)."""
    columns = [f"c{i}" for i in range(6)]
    out = []
    shapes = [(c,) for c in columns] + list(itertools.combinations(columns, 2))
    while len(out) < count:
        if len(out) % 3 == 2:  # a histogram on merged grid bins: its cut points vary
            cuts = sorted(rng.choice(np.arange(1, 40), size=rng.integers(2, 8), replace=False))
            edges = [0.0, *[float(c) for c in cuts], 40.0]
            spec = {"by": [{"column": "x", "edges": edges}]}
            result = {"edges": edges, "counts": rng.integers(10, 200, len(edges) - 1).tolist()}
            out.append(("histogram", spec, result))
            continue
        shape = shapes[len(out) % len(shapes)]
        spec = {"by": [{"column": c, "levels": ["a", "b", "c"]} for c in shape]}
        result = {"counts": rng.integers(10, 200, 3 ** len(shape)).tolist()}
        out.append(("count" if len(shape) == 1 else "crosstab", spec, result))
    return out


def _audit_cost(earlier: int, repeat: int) -> float:
    from workbench.secure.audit import ReleaseAudit
    from workbench.secure.release import ReleaseRefused

    rng = np.random.default_rng(earlier)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = ReleaseAudit(Path(tmp) / "released.sqlite")
        for op, spec, result in _releases(earlier, rng):
            try:
                ledger.check("s", op, spec, result, 10)
            except ReleaseRefused:
                pass  # random counts can contradict: a refused one is simply not stored
        times = []
        for i in range(repeat):
            op, spec, result = _releases(3, np.random.default_rng(10_000 + i))[i % 2]
            start = time.perf_counter()
            try:
                ledger.check(f"probe-{i}", op, spec, result, 10)  # a scope of its own: timing
                ledger.check("s", op, spec, result, 10)
            except ReleaseRefused:
                pass
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def run(full: bool) -> list[dict]:
    n = 100_000 if full else 10_000
    km = _km_checks(n, repeat=15 if full else 5)
    rows = [{"name": f"KM with disclosure checks / without, n={n:.0e}", "ratio": km["ratio"],
             "goal": 1.2, "ms": round(km["ms"], 2), "baseline_ms": round(km["baseline_ms"], 2)}]
    sizes = (1, 10, 100, 1000) if full else (1, 10, 100)
    one = _audit_cost(1, 7)
    for earlier in sizes:
        cost = one if earlier == 1 else _audit_cost(earlier, 7)
        rows.append({"name": f"query audit with {earlier} earlier releases / with 1",
                     "ratio": cost / one, "goal": None, "ms": round(cost * 1e3, 2)})
    return rows


if __name__ == "__main__":
    for row in run(full=False):
        print(row)
