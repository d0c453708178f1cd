"""Harmonisation of each holder's raw source tables into the common (OMOP-like) model.

``harmonise(holder, tables)`` applies the declarative mapping ``mappings/<holder>.yaml`` to the
holder's raw tables (whose ``national_id`` has already been replaced by the pseudonym
``person_id``) and returns common-model tables, each with ``person_id`` and the columns of
``OMOP_SCHEMA[table]`` as Arrow-backed DataFrames. A malformed mapping fails with the file, line
and field named. See docs/data-model.md.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from workbench.errors import WorkbenchUserError
from workbench.harmonise.engine import empty_frame, harmonise_with
from workbench.harmonise.mapping import LoadedMapping, load_mapping, mapping_path
from workbench.harmonise.schema import MEASUREMENT_UNITS, OMOP_SCHEMA, arrow_schema

__all__ = ["MEASUREMENT_UNITS", "OMOP_SCHEMA", "arrow_schema", "empty_frame", "harmonise",
           "load_mapping"]


@lru_cache(maxsize=16)
def _cached(path: Path, mtime: float) -> LoadedMapping:
    return load_mapping(path)


def harmonise(holder: str, tables: dict[str, pd.DataFrame],
              mapping: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Common-model tables of one holder from its raw tables (pseudonymised: ``person_id``).

    ``mapping`` overrides the packaged ``mappings/<holder>.yaml``.
    """
    path = Path(mapping) if mapping else mapping_path(holder)
    if not path.exists():
        raise WorkbenchUserError(
            f"No harmonisation mapping for source '{holder}' ({path}). Write one (see "
            "docs/data-model.md) or pass mapping=PATH.", reason="no-mapping")
    if any("national_id" in df.columns for df in tables.values()):
        raise WorkbenchUserError(
            f"The raw tables of '{holder}' still carry national_id: replace it with the keyed "
            "pseudonym person_id before harmonising.", reason="identified-data")
    loaded = _cached(path.resolve(), path.stat().st_mtime)
    return harmonise_with(loaded, tables)
