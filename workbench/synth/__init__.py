"""Synthetic three-source real-world data with documented ground truth.

``generate_chunks(n_patients, seed, chunk_size)`` yields ``SourceChunk``s: each holds, per holder
(``hospital-a``, ``hospital-b``, the payers ``insurer`` and ``insurer-b``, ``pharma``), that
holder's raw source tables in its own shape, every table with the direct identifier
``national_id``. Patients are simulated chunk by chunk with a random stream keyed by (seed, chunk
index), so output is deterministic for the same arguments and memory stays bounded by the chunk
size. ``generate`` concatenates the chunks (for small sizes). ``GROUND_TRUTH`` states every
parameter the data is drawn from: cohort shares, who each holder sees (one hospital per patient,
one payer per insured patient), the CML Weibull proportional-hazards model and its true hazard
ratios, T1D and interstitial pneumonia facts, and the injected defect rates. See
docs/data-model.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from workbench.errors import WorkbenchUserError
from workbench.synth.population import simulate
from workbench.synth.sources import render
from workbench.synth.truth import GROUND_TRUTH, HOLDERS, TRUE_LOG_HR

__all__ = ["GROUND_TRUTH", "HOLDERS", "TRUE_LOG_HR", "SourceChunk", "generate", "generate_chunks"]

# National ids: a bijection of the patient index onto 10-digit numbers, offset by the seed, so
# ids are unique within a space and differ between seeds.
_ID_SPACE = 10**10
_ID_MULTIPLIER = 6_364_136_223  # odd and not divisible by 5: invertible modulo 10**10


@dataclass
class SourceChunk:
    """Raw source tables of a range of patients: ``tables[holder][source_table] -> DataFrame``."""

    first_patient: int
    n_patients: int
    tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(len(df) for t in self.tables.values() for df in t.values())


def national_ids(first: int, n: int, seed: int) -> pd.arrays.ArrowStringArray:
    index = np.arange(first, first + n, dtype=np.uint64)
    offset = np.uint64((seed * 2_654_435_761) % _ID_SPACE)
    with np.errstate(over="ignore"):
        # uint64 products wrap modulo 2**64, so reduce the multiplier step by step instead.
        number = (index * np.uint64(_ID_MULTIPLIER % _ID_SPACE)) % np.uint64(_ID_SPACE)
    number = (number + offset) % np.uint64(_ID_SPACE)
    text = pc.utf8_lpad(pa.array(number).cast(pa.string()), 10, "0")
    return pd.arrays.ArrowStringArray(text)


def _check(n_patients: int, seed: int, chunk_size: int) -> None:
    if not isinstance(n_patients, int) or n_patients < 1:
        raise WorkbenchUserError("The number of patients must be a positive integer, e.g. 20000.",
                                 reason="bad-size")
    if n_patients > 10**8:
        raise WorkbenchUserError("At most 100 000 000 patients can be generated.",
                                 reason="bad-size")
    if not isinstance(seed, int) or seed < 0:
        raise WorkbenchUserError("The seed must be a non-negative integer.", reason="bad-seed")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise WorkbenchUserError("The chunk size must be a positive integer.", reason="bad-size")


def generate_chunks(n_patients: int, seed: int, chunk_size: int = 100_000) -> Iterator[SourceChunk]:
    """Yield the synthetic sources chunk by chunk (deterministic for the same arguments)."""
    _check(n_patients, seed, chunk_size)
    for index, first in enumerate(range(0, n_patients, chunk_size)):
        n = min(chunk_size, n_patients - first)
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        population = simulate(rng, n)
        nid = national_ids(first, n, seed)
        # Row ids (encounters, claims, ...) are unique across chunks: 10**9 per chunk.
        yield SourceChunk(first, n, render(rng, population, nid, id_base=index * 10**9))


def generate(n_patients: int, seed: int) -> SourceChunk:
    """All chunks of ``generate_chunks`` concatenated into one ``SourceChunk`` (small sizes)."""
    chunks = list(generate_chunks(n_patients, seed))
    if len(chunks) == 1:
        return chunks[0]
    tables = {
        holder: {
            name: pd.concat([c.tables[holder][name] for c in chunks], ignore_index=True)
            for name in chunks[0].tables[holder]
        }
        for holder in HOLDERS
    }
    return SourceChunk(0, n_patients, tables)
