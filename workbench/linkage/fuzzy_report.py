"""Linkage quality of the CLK linkage against the synthetic generator's truth.

Precision (share of linked pairs that are one person), recall (share of the persons in both
sources that were linked) and F1 at each similarity threshold, beside exact matching on the raw
fields (what linkage on name and birth date without the Bloom filters would find).
"""

from __future__ import annotations

import os

import pandas as pd

from workbench.linkage import fuzzy
from workbench.linkage.fuzzy import FIELDS
from workbench.synth.identities import ErrorRates, LinkageSources, linkage_sources

SWEEP = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def quality(predicted: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"linked": len(predicted), "true_links": tp, "false_links": len(predicted) - tp,
            "missed": len(truth) - tp, "precision": precision, "recall": recall, "f1": f1}


def exact_pairs(src: LinkageSources) -> set[tuple[str, str]]:
    """One-to-one links of records equal on every field as written (None never equals)."""
    def keyed(df: pd.DataFrame) -> dict:
        full = df.dropna(subset=list(FIELDS))
        key = full[list(FIELDS)].astype(str).agg("|".join, axis=1)
        return dict(zip(key, full["record_id"], strict=True))  # a repeated key keeps one record
    a, b = keyed(src.a), keyed(src.b)
    return {(a[key], b[key]) for key in a.keys() & b.keys()}


def clk_pairs(src: LinkageSources, secret_a: bytes, secret_b: bytes | None = None,
              threshold: float = fuzzy.THRESHOLD) -> set[tuple[str, str]]:
    """Each holder encodes its own records; the linkage unit gets the serialized CLKs only."""
    sent_a = fuzzy.serialize(fuzzy.encode(src.a.to_dict("records"), secret_a))
    sent_b = fuzzy.serialize(fuzzy.encode(src.b.to_dict("records"),
                                          secret_b if secret_b is not None else secret_a))
    links = fuzzy.match(fuzzy.deserialize(sent_a), fuzzy.deserialize(sent_b), threshold)
    return {(src.a.record_id[i], src.b.record_id[j]) for i, j, _ in links}


def report(n_persons: int = 2000, seed: int = 0, rates: ErrorRates | None = None,
           thresholds=SWEEP) -> pd.DataFrame:
    """One row per method: exact matching, then CLK linkage at each threshold."""
    src = linkage_sources(n_persons, seed, rates=rates)
    truth = set(zip(src.truth.a_record, src.truth.b_record, strict=True))
    secret = os.urandom(fuzzy.SECRET_BYTES)  # the holders' shared secret, new for each report
    a = fuzzy.encode(src.a.to_dict("records"), secret)
    b = fuzzy.encode(src.b.to_dict("records"), secret)
    rows = [{"method": "exact fields", "threshold": None, **quality(exact_pairs(src), truth)}]
    for threshold in thresholds:
        links = fuzzy.match(a, b, threshold)
        predicted = {(src.a.record_id[i], src.b.record_id[j]) for i, j, _ in links}
        rows.append({"method": "CLK (Dice)", "threshold": threshold,
                     **quality(predicted, truth)})
    return pd.DataFrame(rows)


def render(table: pd.DataFrame, chosen: float = fuzzy.THRESHOLD) -> str:
    lines = [f"{'method':<13} {'threshold':>9} {'linked':>7} {'true':>6} {'false':>6} "
             f"{'missed':>6} {'precision':>9} {'recall':>7} {'F1':>6}"]
    for row in table.itertuples():
        mark = " <" if row.threshold == chosen else ""
        threshold = "-" if pd.isna(row.threshold) else f"{row.threshold:.2f}"
        lines.append(f"{row.method:<13} {threshold:>9} {row.linked:>7} {row.true_links:>6} "
                     f"{row.false_links:>6} {row.missed:>6} {row.precision:>9.3f} "
                     f"{row.recall:>7.3f} {row.f1:>6.3f}{mark}")
    return "\n".join(lines)
