"""Cost of the airlock's disclosure checks, against the cost of moving the same output from the
kernel to the airlock (serialise + deserialise), measured in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.release import rules
from workbench.release.serialize import from_payload, to_payload
from workbench.release.store import AirlockStore

CELLS_PER_RELEASE = 20


def _store_with_releases(directory: Path, count: int, rng) -> AirlockStore:
    """An airlock store holding ``count`` released 20-cell tables of one study and view."""
    store = AirlockStore(directory / f"airlock-{count}.sqlite")
    with store.transaction():
        for i in range(count):
            rid = f"rq-{i}"
            store.insert_request({
                "id": rid, "study": "s", "view": "v", "name": rid, "description": "d",
                "author": "a", "kind": "table", "state": "released", "verdict": "pass",
                "created_at": "t", "updated_at": "t", "payload": "{}", "evidence": "{}"})
            values = rng.integers(10, 100_000, CELLS_PER_RELEASE)
            cells = {f"g{j}::n": float(v) for j, v in enumerate(values)}
            store.add_released(rid, "s", "v", cells, [], "t")
    return store


def _differencing_scaling(rng) -> dict:
    """The airlock's differencing check against 1, 100 and 1000 earlier releases (its store's
    value index): the cost should grow with log(releases), not with their number."""
    t = rules.Thresholds()
    new = {f"h{j}::n": float(v) for j, v in enumerate(rng.integers(10, 100_000,
                                                                    CELLS_PER_RELEASE))}
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (1, 100, 1000):
            store = _store_with_releases(Path(tmp), count, rng)
            index = store.released_index("s", "v")
            times[count] = _best(lambda index=index: rules.differencing_rule(new, index, t),
                                 repeat=20)
            store.close()
    return {"name": "differencing check: 1000 earlier releases vs 1 (store index)",
            "ratio": times[1000] / times[1], "goal": 3.0,
            "one_s": round(times[1], 6), "hundred_s": round(times[100], 6),
            "thousand_s": round(times[1000], 6),
            "ratio_100_vs_1": round(times[100] / times[1], 2)}


def _best(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(full: bool) -> list[dict]:
    rows = 2000 if full else 200
    rng = np.random.default_rng(7)
    table = pd.DataFrame({"group": [f"g{i}" for i in range(rows)],
                          "n": rng.integers(0, 200, rows).astype("int64")})
    payload = to_payload(table)
    output = from_payload(payload)
    t = rules.Thresholds()
    move = _best(lambda: from_payload(to_payload(table)))
    check = _best(lambda: rules.run_rules(output, t, []))
    return [
        {"name": f"rules vs transfer ({rows}-row table)", "ratio": check / move, "goal": None,
         "rules_s": round(check, 4), "transfer_s": round(move, 4)},
        _differencing_scaling(rng),
    ]
