"""Declarative source mappings (``mappings/<source>.yaml``): loading and validation.

A mapping says, for each common-model table, which raw table(s) feed it and how each output
column is made: a renamed source column, a constant, a type cast, a code map, a unit conversion.
Mistakes fail at load with the file, line and field named. The mapping cannot name the direct
identifier ``national_id``: only the pseudonym ``person_id`` (copied implicitly) reaches the model.

Example::

    source: hospital-a
    description: EHR export of Hospital A
    tables:
      person:
        - from: patients                      # raw table
          where: {column: sex, not_null: true} # optional row filter: in / not_in / not_null
          columns:
            gender: {column: sex, codes: {F: F, M: M}}
            year_of_birth: {column: birth_date, cast: year}
            region: region                    # plain rename
            period_type: {value: ehr}         # constant
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from workbench.errors import WorkbenchUserError
from workbench.harmonise.schema import OMOP_SCHEMA
from workbench.yamlfile import YamlFile, YamlSyntaxError, field_name

MAPPINGS_DIR = Path(__file__).parent / "mappings"
DIRECT_IDENTIFIERS = frozenset({"national_id"})
FIX = "Fix the mapping file (see docs/data-model.md for its format)."

# date: ISO text or a timestamp; yyyymmdd: claims integers (0 = none); dmy: day-first text
# DD.MM.YYYY; cents: integer cents -> currency units.
Cast = Literal["date", "yyyymmdd", "dmy", "year", "int", "float", "cents", "number_text",
               "string"]
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class UnitConversion(_Strict):
    """value * scale + offset, per code of another column (codes not listed are kept as is)."""

    by: str = Field(description="source column holding the code, e.g. the lab test")
    factors: dict[str, tuple[float, float]] = Field(description="code -> [scale, offset]")


class ColumnRule(_Strict):
    # Code keys may be written unquoted (insurer region 1..8): compare them as text.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    column: str | None = None
    value: Scalar | None = None
    cast: Cast | list[Cast] | None = None
    codes: dict[str, Scalar | None] | None = None
    unmapped: Literal["keep", "null"] = "null"
    transform: Literal["lower", "upper", "icd10_dot"] | None = None
    plus_days: str | None = Field(default=None, description="add this integer column as days")
    units: UnitConversion | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ColumnRule:
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of 'column' (a source column) or 'value' "
                             "(a constant)")
        return self

    @property
    def casts(self) -> tuple[str, ...]:
        if self.cast is None:
            return ()
        return (self.cast,) if isinstance(self.cast, str) else tuple(self.cast)

    def source_columns(self) -> list[str]:
        names = [self.column, self.plus_days, self.units.by if self.units else None]
        return [n for n in names if n]


class Where(_Strict):
    column: str
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    not_null: bool = False


class Block(_Strict):
    from_: str = Field(alias="from", description="raw source table")
    where: Where | None = None
    columns: dict[str, ColumnRule]

    @field_validator("columns", mode="before")
    @classmethod
    def _renames(cls, value):
        """``target: source`` is short for ``target: {column: source}``."""
        if isinstance(value, dict):
            return {k: {"column": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def rules(self) -> dict[str, ColumnRule]:
        return dict(self.columns)


class Linkage(_Strict):
    """How the source's rows are linked to the space's persons (docs/linkage.md).

    ``by: national_id`` (the default, also without a ``linkage`` entry): every raw table has a
    ``national_id``, turned into the space-wide pseudonym by the OPRF service; with ``from`` and
    the name fields, the node also uploads its persons' CLKs of name and birth date (from that
    raw table) with their pseudonyms to the linkage unit's reference index.
    ``by: name_and_birth_date``: the source has no national id; every raw table the mapping reads
    carries the name and birth-date columns, which the node encodes into CLKs that the linkage
    unit matches against the reference index."""

    by: Literal["national_id", "name_and_birth_date"] = "national_id"
    from_: str | None = Field(default=None, alias="from",
                              description="by national_id: the raw table with the names")
    first_name: str | None = None
    last_name: str | None = None
    birth_date: str | None = None
    birth_date_format: Literal["iso", "yyyymmdd", "dmy"] = "iso"

    @model_validator(mode="after")
    def _complete(self) -> Linkage:
        names = (self.first_name, self.last_name, self.birth_date)
        if self.by == "name_and_birth_date":
            if None in names:
                raise ValueError("linkage by name_and_birth_date needs the columns "
                                 "'first_name', 'last_name' and 'birth_date'")
            if self.from_ is not None:
                raise ValueError("'from' is for a source with a national id (the raw table "
                                 "whose names go to the reference index); here every raw table "
                                 "carries the name columns")
        elif any(n is not None for n in names) or self.from_ is not None:
            if None in names or self.from_ is None:
                raise ValueError("a source with a national id that gives names to the "
                                 "reference index needs 'from', 'first_name', 'last_name' and "
                                 "'birth_date'")
        if len({n for n in names if n is not None}) < len([n for n in names if n is not None]):
            raise ValueError("'first_name', 'last_name' and 'birth_date' must be three "
                             "different columns")
        return self

    @property
    def by_names(self) -> bool:
        return self.by == "name_and_birth_date"

    @property
    def columns(self) -> dict[str, str]:
        """CLK field -> source column (empty for a source without names)."""
        fields = {"first_name": self.first_name, "last_name": self.last_name,
                  "birth_date": self.birth_date}
        return {f: c for f, c in fields.items() if c is not None}


class Mapping(_Strict):
    source: str
    description: str
    linkage: Linkage = Field(default_factory=Linkage)
    tables: dict[str, list[Block]]


class LoadedMapping:
    """A validated mapping with the YAML nodes kept, so later data errors can name a line."""

    def __init__(self, path: Path, mapping: Mapping, doc: YamlFile):
        self.path, self.mapping, self.doc = path, mapping, doc

    def error(self, loc: tuple, message: str) -> WorkbenchUserError:
        return _bad(self.path, self.doc.line(loc), field_name(loc), message)


def _bad(path: Path, line: int | None, field: str | None, message: str) -> WorkbenchUserError:
    where = str(path) + (f", line {line}" if line else "") + (f", field '{field}'" if field else "")
    return WorkbenchUserError(f"{where}: {message}. {FIX}", reason="bad-mapping")


def load_mapping(path: str | Path) -> LoadedMapping:
    """Load and check one mapping file; raise WorkbenchUserError naming file, line and field."""
    path = Path(path)
    try:
        doc = YamlFile.parse(path.read_text())
    except FileNotFoundError:
        raise _bad(path, None, None, "no such mapping file") from None
    except YamlSyntaxError as exc:
        raise _bad(path, exc.problem.line, None, exc.problem.message) from None
    if not isinstance(doc.data, dict):
        raise _bad(path, 1, None, "expected a mapping with 'source', 'description' and 'tables'")
    try:
        problems = doc.duplicate_keys()
        mapping = Mapping.model_validate(doc.data)
    except ValidationError as exc:
        problems += doc.problems(exc)
    if problems:
        raise _bad(path, problems[0].line, problems[0].field, problems[0].message)
    loaded = LoadedMapping(path, mapping, doc)
    _check_against_schema(loaded)
    return loaded


def _check_against_schema(loaded: LoadedMapping) -> None:
    linkage = loaded.mapping.linkage
    names = {linkage.first_name, linkage.last_name} - {None}
    if linkage.from_ is not None and linkage.from_ not in {
            b.from_ for blocks in loaded.mapping.tables.values() for b in blocks}:
        raise loaded.error(("linkage", "from"), f"'{linkage.from_}' is not a raw table the "
                           "mapping reads (a 'from' of its tables)")
    if linkage.by_names and "national_id" in linkage.columns.values():
        raise loaded.error(("linkage", "by"), "a source linked by name and birth date has no "
                           "national id column to name")
    for table, blocks in loaded.mapping.tables.items():
        if table not in OMOP_SCHEMA:
            raise loaded.error(("tables", table), f"'{table}' is not a common-model table; "
                               f"use one of {', '.join(OMOP_SCHEMA)}")
        allowed = {c.name for c in OMOP_SCHEMA[table]}
        for i, block in enumerate(blocks):
            for name, rule in block.rules().items():
                loc = ("tables", table, i, "columns", name)
                if name == "person_id":
                    raise loaded.error(loc, "person_id is copied from the source's pseudonym "
                                       "column and cannot be mapped")
                if name not in allowed:
                    raise loaded.error(loc, f"'{name}' is not a column of '{table}'; use one "
                                       f"of {', '.join(sorted(allowed - {'person_id'}))}")
                if DIRECT_IDENTIFIERS & set(rule.source_columns()):
                    raise loaded.error(loc, "a direct identifier (national_id) may never be "
                                       "mapped into the common model")
                if names & set(rule.source_columns()):
                    raise loaded.error(loc, "a name the linkage reads is a direct identifier "
                                       "and may never be mapped into the common model")
            if block.where and block.where.column in DIRECT_IDENTIFIERS | names:
                raise loaded.error(("tables", table, i, "where"),
                                   "rows cannot be filtered on a direct identifier")


def mapping_path(source: str) -> Path:
    return MAPPINGS_DIR / f"{source}.yaml"
