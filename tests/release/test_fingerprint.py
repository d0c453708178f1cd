"""The rounded fingerprint the airlock records next to a release request's digest: equal for
two real wb.secure Cox fits that differ only by CKKS noise, different as soon as a released
number changes in its first four significant digits."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines.datasets import load_lung

from workbench.release.outputs import rounded_fingerprint
from workbench.release.serialize import from_payload, to_payload
from workbench.secure import Federation


def _fingerprint(obj) -> str:
    return rounded_fingerprint(from_payload(to_payload(obj, view="lung_survival")))[0]


def test_secure_cox_fits_share_a_fingerprint():
    lung = load_lung().dropna(subset=["inst"]).reset_index(drop=True)
    parts = {name: lung.iloc[i::3] for i, name in enumerate(("hospital", "insurer", "pharma"))}
    fed = Federation(parts, min_cell_count=10)
    fits = [fed.cox_ph("time", "status", covariates=["age", "sex"]) for _ in range(4)]
    # CKKS noise usually makes their exact digests differ; their fingerprint must not
    assert len({_fingerprint(f) for f in fits}) == 1
    spread = max((f.summary - fits[0].summary).abs().max().max() for f in fits)
    assert spread < 1e-6


def test_a_changed_number_or_count_changes_the_fingerprint():
    table = pd.DataFrame({"tki": ["a", "b"], "n": [40, 35], "mean_age": [51.23456, 60.5]})
    base = _fingerprint(table)
    assert _fingerprint(table.assign(mean_age=[51.23457, 60.5])) == base  # noise-sized
    assert _fingerprint(table.assign(mean_age=[51.29, 60.5])) != base
    assert _fingerprint(table.assign(n=[40, 36])) != base
    assert _fingerprint(table.assign(tki=["a", "c"])) != base
    signed = pd.DataFrame({"x": [0.0, np.nan]})
    assert _fingerprint(signed) == _fingerprint(pd.DataFrame({"x": [-0.0, np.nan]}))
