"""Helpers that shape an output so it can pass the disclosure rules (they run in the kernel; the
airlock re-checks whatever they produce)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def magnitude_table(df: pd.DataFrame, by: str | list[str], value: str, stat: str = "sum",
                    top_n: int = 2) -> pd.DataFrame:
    """Sum (or mean) of ``value`` per group with the number of people and the per-cell
    contributions the dominance rules need (``<value>__sum``, ``__max``, ``__top2``, ``__topn``,
    ``__neg``). The airlock checks n,k and p% dominance on these and drops them from the file."""
    if stat not in ("sum", "mean"):
        raise ValueError("stat is 'sum' or 'mean'")
    groups = df.groupby(by, observed=True)[value]

    def top(values: pd.Series, n: int) -> float:
        return float(values.nlargest(n).sum())

    out = pd.DataFrame({
        "n": groups.size().astype("int64"),
        value: groups.agg(stat),
        f"{value}__sum": groups.sum().astype(float),
        f"{value}__max": groups.max().astype(float),
        f"{value}__top2": groups.apply(lambda v: top(v, 2)),
        f"{value}__topn": groups.apply(lambda v: top(v, top_n)),
        f"{value}__neg": groups.apply(lambda v: float((v < 0).sum())),
    })
    return out.reset_index()


@dataclass
class SurvivalTable:
    """Kaplan-Meier curves coarsened for release: ``event_tables`` maps group -> event table
    (index time; columns at_risk, observed, censored, survival)."""

    event_tables: dict[str, pd.DataFrame]
    view: str | None = None

    def _repr_html_(self) -> str:
        parts = [f"<h4>{g}</h4>{t.to_html()}" for g, t in self.event_tables.items()]
        return "".join(parts)


def _curve_tables(obj) -> dict[str, pd.DataFrame]:
    """{group: event table} of a lifelines fitter, a wb.secure ``KaplanMeierResult`` or a
    ``by=`` dict of them (``KaplanMeierGroups``: keyed by the group's level)."""
    tables = getattr(obj, "event_tables", None)
    if isinstance(tables, dict):
        return {str(g): t for g, t in tables.items()}
    if isinstance(obj, dict) and obj:
        curves = {str(g): getattr(fit, "event_table", None) for g, fit in obj.items()}
        if all(isinstance(t, pd.DataFrame) for t in curves.values()):
            return curves
    table = getattr(obj, "event_table", None)
    if isinstance(table, pd.DataFrame):
        label = (getattr(obj, "group_label", None) or getattr(obj, "label", None)
                 or getattr(obj, "_label", None) or "all")
        return {str(label): table}
    raise TypeError("coarsen_survival needs a Kaplan-Meier fit (wb.secure, its by= result, or "
                    "lifelines)")


def _coarsen_one(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """Merge consecutive time points until each released step has 0 or >= k events and 0 or >= k
    censorings, and stop before fewer than k people are at risk (SACRO's survival rounding,
    stricter: events and censorings are each held to k).

    A withheld count (NaN: wb.secure withholds the censorings of the last row of a cut curve) is
    never filled in: the step that holds it is released with its censorings withheld (NaN) if its
    events pass, and the curve ends there, since the at-risk count after it is unknown."""
    columns = ["time", "at_risk", "observed", "censored", "survival"]
    if table.empty:
        return pd.DataFrame(columns=columns).set_index("time")
    tab = table.sort_index()
    times = tab.index.to_numpy(dtype=float)
    at_risk = tab["at_risk"].to_numpy(dtype=float)
    observed = tab["observed"].to_numpy(dtype=float)
    censored = tab["censored"].to_numpy(dtype=float)
    rows = [{"time": float(times[0]), "at_risk": int(at_risk[0]), "observed": 0,
             "censored": 0, "survival": 1.0}]
    survival = 1.0
    start = 0  # first time point of the step being merged
    events_sum = censor_sum = 0.0
    for i in range(len(times)):
        if np.isnan(at_risk[i]) or np.isnan(observed[i]):
            break  # nothing known from here on
        events_sum += observed[i]
        censor_sum += censored[i]  # NaN once a withheld count is in the step
        withheld = bool(np.isnan(censor_sum))
        ok = (events_sum == 0 or events_sum >= k) and (
            withheld or censor_sum == 0 or censor_sum >= k)
        if not ok or (events_sum == 0 and censor_sum == 0):
            if withheld:
                break  # the step cannot be released and nothing after it is known
            continue
        current = at_risk[start]  # at risk when the step begins (as published, no arithmetic)
        if current < k:
            break
        survival *= 1.0 - events_sum / current
        row = {"time": float(times[i]), "at_risk": int(current), "observed": int(events_sum),
               "censored": np.nan if withheld else int(censor_sum), "survival": survival}
        if row["time"] == rows[0]["time"]:
            rows[0] = row  # events at the first time point: S(t0) already includes them
        else:
            rows.append(row)
        if withheld:
            break
        start, events_sum, censor_sum = i + 1, 0.0, 0.0
        if start < len(times) and at_risk[start] < k:
            break
    out = pd.DataFrame(rows, columns=columns)
    out = out[out["at_risk"] >= k]
    if out["censored"].notna().all():
        out["censored"] = out["censored"].astype("int64")
    return out.set_index("time")


def coarsen_survival(fit, k: int = 10) -> SurvivalTable:
    """A Kaplan-Meier fit (lifelines, wb.secure, or a wb.secure ``by=`` result) reduced to time
    points the survival rules accept (``k`` = the study's minimum cell count). Counts that
    wb.secure withheld stay withheld (NaN)."""
    tables = {g: _coarsen_one(t, k) for g, t in _curve_tables(fit).items()}
    return SurvivalTable(tables, view=getattr(fit, "view", None))
