"""Cost of the airlock's disclosure checks, against the cost of moving the same output from the
kernel to the airlock (serialise + deserialise), measured in the same run."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from workbench.release import rules
from workbench.release.serialize import from_payload, to_payload


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
    cells = rules.count_cells(output)
    released = [{"id": f"rq-{i}", "cells": cells} for i in range(100)]
    one = _best(lambda: rules.differencing_rule(cells, released[:1], t))
    many = _best(lambda: rules.differencing_rule(cells, released, t))
    return [
        {"name": f"rules vs transfer ({rows}-row table)", "ratio": check / move, "goal": None,
         "rules_s": round(check, 4), "transfer_s": round(move, 4)},
        {"name": "differencing 100 releases vs 1", "ratio": many / one, "goal": None,
         "one_s": round(one, 5), "hundred_s": round(many, 4)},
    ]
