"""The airlock's view of an output: what will be released and the counts that stand behind it.

An ``Output`` is built by the airlock from the serialised request (never from a live Python object
of the kernel) and is the only thing the disclosure rules look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

OutputKind = Literal["table", "survival", "model", "figure"]

# Column names read as "number of people" when a table mixes counts with other statistics.
COUNT_NAME = re.compile(r"^(n|count|counts|freq|frequency|num|persons|patients)$"
                        r"|^(n|count|num)_.+|.+_(n|count)$", re.IGNORECASE)
# Evidence columns a magnitude table carries for the dominance rules (see magnitude_table()).
MAGNITUDE_SUFFIXES = ("__sum", "__max", "__top2", "__topn", "__neg")


@dataclass
class SurvivalCurve:
    """One Kaplan-Meier curve: the released event table of one group."""

    group: str
    table: pd.DataFrame  # columns: time, at_risk, observed, censored (+ survival, ci ...)


@dataclass
class ModelFit:
    family: str  # "cox", "logistic", "linear", ...
    params: pd.DataFrame  # one row per parameter
    n_obs: int
    n_params: int
    n_events: int | None = None  # Cox: events; logistic: cases (outcome == 1)


@dataclass
class Output:
    kind: OutputKind
    table: pd.DataFrame | None = None  # tables; figures may carry their data here
    count_columns: tuple[str, ...] = ()
    curves: list[SurvivalCurve] = field(default_factory=list)
    model: ModelFit | None = None
    figure: bytes | None = None
    figure_format: str | None = None  # "png" or "svg"
    view: str | None = None


def is_value_column(series: pd.Series) -> bool:
    """Numeric and not boolean: a column of numbers to check, not a label."""
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def guess_count_columns(table: pd.DataFrame) -> tuple[str, ...]:
    """Which numeric columns hold counts: all of them when every value column is an integer
    (a frequency table), else those whose name says so (``n``, ``count``, ``n_treated`` ...)."""
    values = [c for c in table.columns
              if is_value_column(table[c]) and not str(c).endswith(MAGNITUDE_SUFFIXES)]
    if values and all(pd.api.types.is_integer_dtype(table[c]) for c in values):
        return tuple(str(c) for c in values)
    return tuple(str(c) for c in values if COUNT_NAME.match(str(c)))


def label_columns(table: pd.DataFrame) -> list[str]:
    return [str(c) for c in table.columns if not is_value_column(table[c])]


def released_table(output: Output) -> pd.DataFrame | None:
    """The table as it will be written to the outbox: evidence columns removed."""
    if output.table is None:
        return None
    keep = [c for c in output.table.columns if not str(c).endswith(MAGNITUDE_SUFFIXES)]
    return output.table[keep]
