"""The airlock's view of an output: what will be released and the counts that stand behind it.

An ``Output`` is built by the airlock from the serialised request (never from a live Python object
of the kernel) and is the only thing the disclosure rules look at.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
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
    table: pd.DataFrame | None = None  # tables; a figure's data (see with_data)
    count_columns: tuple[str, ...] = ()
    curves: list[SurvivalCurve] = field(default_factory=list)
    model: ModelFit | None = None
    figure: bytes | None = None
    figure_format: str | None = None  # "png" or "svg"
    view: str | None = None
    # Set only by the airlock, for numbers it rebuilt from the release checker's signed result
    # (op, request_id, key_id, spec_sha256); None: the numbers are the kernel's word.
    attested: dict | None = None


def with_data(figure: Output, data: Output | None) -> Output:
    """A figure carrying the numbers it draws (``wb.release.request(fig, ..., data=km)``): the
    data's table, curves or model become the figure's, so every rule and the differencing index
    see them as if they were released themselves. ``data`` is decoded (and, when signed,
    rebuilt from its signature) by the caller."""
    if data is None:
        return figure
    if data.kind == "figure":
        from workbench.errors import WorkbenchUserError

        raise WorkbenchUserError("a figure's data must be the numbers it draws (a table, a "
                                 "Kaplan-Meier fit or a model), not another figure",
                                 reason="bad-request")
    figure.table, figure.count_columns = data.table, data.count_columns
    figure.curves, figure.model = data.curves, data.model
    figure.view = figure.view or data.view
    return figure


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


def row_labels(table: pd.DataFrame) -> list[str]:
    """``col=value|col=value`` per row (for reviewers' evidence), ``row i`` without labels."""
    labels = label_columns(table)
    if not labels:
        return [f"row {i + 1}" for i in range(len(table))]
    columns = [[f"{c}={v}" for v in table[c].tolist()] for c in labels]
    return ["|".join(parts) for parts in zip(*columns, strict=True)]


def released_table(output: Output) -> pd.DataFrame | None:
    """The table as it will be written to the outbox: evidence columns removed."""
    if output.table is None:
        return None
    keep = [c for c in output.table.columns if not str(c).endswith(MAGNITUDE_SUFFIXES)]
    return output.table[keep]


FINGERPRINT_DIGITS = 4


def _rounded(value, digits: int):
    if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value)
                         and pd.isna(value)):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Number):
        number = float(value)
        if not math.isfinite(number):
            return str(number)
        return float(f"{number:.{digits}g}") + 0.0  # + 0.0: no "-0.0"
    return str(value)


def _frame(table: pd.DataFrame | None, digits: int):
    if table is None:
        return None
    return {"columns": [str(c) for c in table.columns],
            "rows": [[_rounded(v, digits) for v in row]
                     for row in table.itertuples(index=False, name=None)]}


def rounded_fingerprint(output: Output, digits: int = FINGERPRINT_DIGITS) -> tuple[str, int]:
    """SHA-256 (and size) of the output's content with every number rounded to ``digits``
    significant digits: equal for two computations that differ only by floating-point noise
    (wb.secure's fixed-point aggregates repeat exactly, but other numbers may not), so `workbench
    rerun` can tell such a release from one whose numbers changed. Figures count by their exact
    (cleaned) bytes."""
    content = {
        "kind": output.kind, "view": output.view, "count_columns": list(output.count_columns),
        "table": _frame(output.table, digits),
        "curves": [{"group": c.group, "table": _frame(c.table, digits)} for c in output.curves],
        "model": None if output.model is None else {
            "family": output.model.family, "n_obs": output.model.n_obs,
            "n_params": output.model.n_params, "n_events": output.model.n_events,
            "params": _frame(output.model.params, digits)},
        "figure": None if output.figure is None else hashlib.sha256(output.figure).hexdigest(),
        "figure_format": output.figure_format}
    text = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest(), len(text)
