"""A synthetic release on disk: each holder's harmonised tables as Parquet files."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.harmonise import harmonise
from workbench.space.linkage import pseudonym
from workbench.synth import generate

PATIENTS, SEED = 30_000, 13
LINKAGE_KEY = bytes(range(64, 96))


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Path:
    """``<dir>/<holder>/<table>.parquet`` as the space builder lays them out."""
    root = tmp_path_factory.mktemp("release")
    print(f"synthetic release: {PATIENTS} patients, seed {SEED}")
    for holder, tables in generate(PATIENTS, SEED).tables.items():
        pseudonymised = {
            name: frame.drop(columns=["national_id"]).assign(
                person_id=pseudonym(LINKAGE_KEY, frame["national_id"]))
            for name, frame in tables.items()}
        (root / holder).mkdir()
        for table, frame in harmonise(holder, pseudonymised).items():
            frame.to_parquet(root / holder / f"{table}.parquet", index=False)
    return root
