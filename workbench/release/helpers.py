"""Helpers that shape an output so it can pass the disclosure rules (they run in the kernel; the
airlock re-checks whatever they produce)."""

from __future__ import annotations

from dataclasses import dataclass

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
    tables = getattr(obj, "event_tables", None)
    if isinstance(tables, dict):
        return {str(g): t for g, t in tables.items()}
    table = getattr(obj, "event_table", None)
    if isinstance(table, pd.DataFrame):
        label = getattr(obj, "label", None) or getattr(obj, "_label", None) or "all"
        return {str(label): table}
    raise TypeError("coarsen_survival needs a Kaplan-Meier fit (wb.secure or lifelines)")


def _coarsen_one(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """Merge consecutive time points until each released step has 0 or >= k events and 0 or >= k
    censorings, and stop before fewer than k people are at risk (SACRO's survival rounding,
    stricter: events and censorings are each held to k)."""
    tab = table.sort_index()
    times = tab.index.to_numpy(dtype=float)
    at_risk = tab["at_risk"].to_numpy()
    observed = tab["observed"].to_numpy()
    censored = tab["censored"].to_numpy()
    rows = [{"time": float(times[0]), "at_risk": int(at_risk[0]), "observed": 0, "censored": 0}]
    survival = 1.0
    current = int(at_risk[0])
    events_sum = censor_sum = 0
    for i in range(len(times)):
        events_sum += int(observed[i])
        censor_sum += int(censored[i])
        ok = (events_sum == 0 or events_sum >= k) and (censor_sum == 0 or censor_sum >= k)
        if not ok or (events_sum == 0 and censor_sum == 0):
            continue
        if current < k:
            break
        survival *= 1.0 - events_sum / current
        rows.append({"time": float(times[i]), "at_risk": current, "observed": events_sum,
                     "censored": censor_sum, "survival": survival})
        current -= events_sum + censor_sum
        events_sum = censor_sum = 0
    out = pd.DataFrame(rows)
    out.loc[0, "survival"] = 1.0
    out = out[out["at_risk"] >= k]
    return out.set_index("time")


def coarsen_survival(fit, k: int = 10) -> SurvivalTable:
    """A Kaplan-Meier fit reduced to time points the survival rules accept (``k`` = the study's
    minimum cell count)."""
    tables = {g: _coarsen_one(t, k) for g, t in _curve_tables(fit).items()}
    return SurvivalTable(tables, view=getattr(fit, "view", None))
