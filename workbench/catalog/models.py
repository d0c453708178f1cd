"""The catalog's records: the shared contract between the space builder, the view engine, the
gateway, the secure-computation library and the dashboards.

A *dataset* is one table held by one data holder (``hospital_a.condition_occurrence``). A *view*
is SQL over *logical* tables (``person``, ``drug_exposure``, ``lung``): the view engine binds each
logical table to the union of every holder's dataset of that name and adds a ``holder`` column, so
a secure operation can split the view's rows by contributing holder.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Sensitivity = Literal["direct_identifier", "quasi_identifier", "sensitive", "general"]
ColumnType = Literal["int64", "float64", "string", "date", "timestamp", "bool"]

SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
HOLDER = re.compile(r"^[a-z][a-z0-9-]*$")
DATA_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.parquet$")


def holder_schema(holder: str) -> str:
    """SQL schema name of a holder (``hospital-a`` -> ``hospital_a``)."""
    return holder.replace("-", "_")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Model):
    name: str
    type: ColumnType
    description: str
    sensitivity: Sensitivity = "general"


class Dataset(_Model):
    """One table of one holder, as released into the space."""

    id: str = Field(description="'<holder schema>.<table>', e.g. 'hospital_a.person'")
    title: str
    description: str
    holder: str = Field(description="holder id, e.g. 'hospital-a'")
    table: str = Field(description="logical table name shared across holders, e.g. 'person'")
    source: str = Field(description="origin, e.g. 'synthetic' or 'lifelines:lung'")
    file: str = Field(description="parquet file relative to the space's holders/<holder>/ dir")
    columns: tuple[Column, ...]
    rows: int
    version: str = Field(description="sha256 over the dataset's file contents")
    quality_score: float = Field(ge=0, le=1)
    usage_terms: str
    created_at: datetime
    tags: tuple[str, ...] = ()

    @field_validator("holder")
    @classmethod
    def _holder(cls, value: str) -> str:
        if not HOLDER.match(value):
            raise ValueError("holder ids are lowercase letters, digits and '-'")
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        # A catalog entry must not point the gateway at a file outside its holder's store.
        if not DATA_FILE.match(value):
            raise ValueError("the data file is a plain '<name>.parquet' inside the holder's folder")
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("table names are lowercase letters, digits and '_'")
        return value

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


DatePolicy = Literal["none", "shift", "month", "year"]


class View(_Model):
    """A study-grantable view: SQL over logical tables plus the restrictions it carries."""

    id: str = Field(description="lowercase slug, e.g. 'cml_cohort'")
    title: str
    description: str
    tables: tuple[str, ...] = Field(description="logical tables the SQL reads")
    sql: str = Field(description="one SELECT over the logical tables; must output 'holder'")
    columns: tuple[Column, ...] = Field(description="the output schema, with sensitivity tags")
    person_column: str | None = Field(
        default=None, description="pseudonym column re-keyed per study before it leaves"
    )
    date_columns: tuple[str, ...] = ()
    date_policy: DatePolicy = "none"
    row_filter: str | None = Field(default=None, description="SQL predicate over the output")
    min_rows: int = Field(default=10, ge=1)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("view ids are lowercase letters, digits and '_'")
        return value

    @property
    def plaintext_columns(self) -> tuple[str, ...]:
        """Columns a plain read may return: everything not tagged sensitive or identifying."""
        return tuple(
            c.name for c in self.columns
            if c.sensitivity not in ("sensitive", "direct_identifier")
        )

    @property
    def sensitive_columns(self) -> tuple[str, ...]:
        """Columns reachable only through wb.secure."""
        return tuple(c.name for c in self.columns if c.sensitivity == "sensitive")
