"""Raw synthetic sources with pseudonyms in place of national ids, for the harmonisation tests."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.space.linkage import pseudonym
from workbench.synth import generate

LINKAGE_KEY = bytes(range(32, 64))


def pseudonymise(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: frame.drop(columns=["national_id"]).assign(
        person_id=pseudonym(LINKAGE_KEY, frame["national_id"])) for name, frame in tables.items()}


@pytest.fixture(scope="session")
def raw_sources() -> dict[str, dict[str, pd.DataFrame]]:
    """holder -> raw table -> DataFrame (still carrying national_id)."""
    return generate(15_000, 21).tables


@pytest.fixture(scope="session")
def pseudonymised(raw_sources) -> dict[str, dict[str, pd.DataFrame]]:
    return {holder: pseudonymise(tables) for holder, tables in raw_sources.items()}
