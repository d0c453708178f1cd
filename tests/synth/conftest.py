"""A harmonised synthetic space in memory, shared by the synth tests: generated, pseudonymised
with the space's real keyed pseudonyms, harmonised with the packaged mappings, and bound in DuckDB
the way the view engine binds logical tables (union over holders plus a 'holder' column)."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from workbench.harmonise import harmonise
from workbench.space.linkage import pseudonym
from workbench.synth import generate

PATIENTS, SEED = 30_000, 7
LINKAGE_KEY = bytes(range(32))


def pseudonymise(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {}
    for name, frame in tables.items():
        ids = pseudonym(LINKAGE_KEY, frame["national_id"])
        out[name] = frame.drop(columns=["national_id"]).assign(person_id=ids)
    return out


@pytest.fixture(scope="session")
def harmonised() -> dict[str, dict[str, pd.DataFrame]]:
    print(f"synthetic space: {PATIENTS} patients, seed {SEED}")
    chunk = generate(PATIENTS, SEED)
    return {holder: harmonise(holder, pseudonymise(tables))
            for holder, tables in chunk.tables.items()}


def bind_logical_tables(harmonised: dict) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    names = {table for tables in harmonised.values() for table in tables}
    for name in sorted(names):
        parts = [tables[name].assign(holder=holder) for holder, tables in harmonised.items()
                 if name in tables]
        con.register(name, pd.concat(parts, ignore_index=True))
    return con


@pytest.fixture(scope="session")
def logical(harmonised) -> duckdb.DuckDBPyConnection:
    return bind_logical_tables(harmonised)
