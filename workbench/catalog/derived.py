"""The catalog's check for plaintext columns that give a sensitive column away.

A view may compute a readable column from a sensitive one (t1d's ``hba1c_category`` is the
patient's mean HbA1c cut at 7 %): every visible row then shows the sensitive value's class. The
space builder, which holds the rows, runs this check on every view and marks such a column
``sensitive`` with ``derived_from`` (``mark_derived``), so the gateway never returns it in
plaintext. A plaintext column counts as derived when it is:
- a category (text, or at most ``MAX_CLASSES`` distinct values) whose classes split a numeric
  sensitive column into ranges that do not overlap (a cut of it), or leave a 0/1 sensitive column
  constant in every class (a relabelling of it);
- a numeric column in lock-step with a sensitive one (|Spearman rho| >= ``LOCKSTEP``).
Columns that identify a person (pseudonyms, identifiers) and the holder are not checked: they are
unique per row and would match anything.
"""

from __future__ import annotations

import pandas as pd

from workbench.catalog.models import View

MAX_CLASSES = 20
MIN_ROWS_PER_CLASS = 3  # a class this small says nothing either way
LOCKSTEP = 0.999


def _cut_of(classes: pd.Series, values: pd.Series) -> bool:
    data = pd.DataFrame({"c": classes, "v": values}).dropna()
    sizes = data.groupby("c")["v"].size()
    data = data[data["c"].isin(sizes[sizes >= MIN_ROWS_PER_CLASS].index)]
    if data["c"].nunique() < 2:
        return False
    ranges = data.groupby("c")["v"].agg(["min", "max"]).sort_values("min")
    if set(data["v"].unique()) <= {0, 1}:  # an indicator: constant within every class
        return bool((ranges["min"] == ranges["max"]).all()) and ranges["min"].nunique() == 2
    return bool((ranges["min"].iloc[1:].to_numpy() > ranges["max"].iloc[:-1].to_numpy()).all())


def derived_columns(view: View, frame: pd.DataFrame) -> dict[str, str]:
    """Plaintext column -> the sensitive column its values reveal, on the view's rows."""
    sensitive = [c.name for c in view.columns if c.sensitivity == "sensitive"
                 and c.type in ("int64", "float64", "bool")]
    found: dict[str, str] = {}
    for column in view.columns:
        if column.name not in view.plaintext_columns or column.name == view.person_column \
                or column.role == "identifier" or column.name not in frame.columns:
            continue
        values = frame[column.name]
        categorical = column.type == "string" or values.nunique() <= MAX_CLASSES
        for name in sensitive:
            target = pd.to_numeric(frame[name], errors="coerce")
            if categorical:
                hit = _cut_of(values, target)
            else:
                pair = pd.DataFrame({"a": pd.to_numeric(values, errors="coerce"),
                                     "b": target}).dropna()
                hit = len(pair) > MIN_ROWS_PER_CLASS and \
                    abs(pair["a"].corr(pair["b"], method="spearman")) >= LOCKSTEP
            if hit:
                found[column.name] = name
                break
    return found


def mark_derived(view: View, frame: pd.DataFrame) -> View:
    """The view with every derived plaintext column made sensitive (``derived_from`` set)."""
    found = derived_columns(view, frame)
    if not found:
        return view
    columns = tuple(c.model_copy(update={"sensitivity": "sensitive", "derived_from": found[c.name]})
                    if c.name in found else c for c in view.columns)
    return view.model_copy(update={"columns": columns})
