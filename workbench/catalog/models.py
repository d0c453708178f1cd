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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Sensitivity = Literal["direct_identifier", "quasi_identifier", "sensitive", "general"]
ColumnType = Literal["int64", "float64", "string", "date", "timestamp", "bool"]
# What a column may be used as in a secure operation (workbench/secure/plan.py decides). A column
# without a role takes part in none: a caller cannot turn a covariate into a time axis or an
# outcome into a grouping.
Role = Literal["identifier", "time", "event", "categorical", "covariate"]
MAX_LEVELS = 40  # DataSHIELD's nfilter.levels.max: more levels than this is not a category
MAX_TIME_BINS = 20000  # horizon / granularity: the largest public time grid a view may declare
MAX_GRID_EDGES = 201

SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
HOLDER = re.compile(r"^[a-z][a-z0-9-]*$")
DATA_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.parquet$")


def holder_schema(holder: str) -> str:
    """SQL schema name of a holder (``hospital-a`` -> ``hospital_a``)."""
    return holder.replace("-", "_")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Model):
    """One output column. Its role and public grid are what secure operations may use: the time
    grid (granularity, horizon), the levels of a category and the histogram edges are declared
    here, never taken from the data or from the caller."""

    name: str
    type: ColumnType
    description: str
    sensitivity: Sensitivity = "general"
    role: Role | None = Field(default=None, description="use in secure operations; none = no use")
    levels: tuple[str, ...] | None = Field(
        default=None, description="categorical: every level, in order (public)")
    granularity: float | None = Field(
        default=None, gt=0, description="time: the finest time step a result may show")
    horizon: float | None = Field(
        default=None, gt=0, description="time: end of the public time grid; later times are "
                                        "censored there (administrative censoring)")
    grid: tuple[float, ...] | None = Field(
        default=None, description="covariate or time: the public histogram edges")
    derived_from: str | None = Field(
        default=None, description="set by the catalog's checks: the sensitive column this "
                                  "column's values reveal (the column is then sensitive)")

    @model_validator(mode="after")
    def _role_facts(self) -> Column:
        role = self.role
        if (self.levels is not None) != (role == "categorical"):
            raise ValueError("'levels' is required for, and only for, role 'categorical'")
        if role == "categorical" and not (1 <= len(self.levels) <= MAX_LEVELS
                                          and len(set(self.levels)) == len(self.levels)):
            raise ValueError(f"a categorical column lists 1 to {MAX_LEVELS} distinct levels")
        if (self.granularity is not None or self.horizon is not None) and role != "time":
            raise ValueError("'granularity' and 'horizon' belong to role 'time'")
        if role == "time":
            if self.granularity is None or self.horizon is None:
                raise ValueError("a time column declares 'granularity' and 'horizon'")
            if self.horizon / self.granularity > MAX_TIME_BINS:
                raise ValueError(f"horizon / granularity may be at most {MAX_TIME_BINS}")
        if role in ("time", "event", "covariate") and self.type not in ("int64", "float64",
                                                                       "bool"):
            raise ValueError(f"a '{role}' column must be numeric")
        if self.grid is not None:
            if role not in ("covariate", "time"):
                raise ValueError("'grid' belongs to a covariate or time column")
            edges = self.grid
            if not 2 <= len(edges) <= MAX_GRID_EDGES or any(
                    b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"'grid' is 2 to {MAX_GRID_EDGES} increasing edges")
        return self


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

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

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
