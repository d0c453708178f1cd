"""Lifelines-shaped result objects rebuilt from the released JSON (same in-process and remote).

Fitted values end in ``_`` and carry lifelines' names where the concept is the same.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import stats as sps

from workbench.secure import stats


@functools.lru_cache(maxsize=64)
def _columns(*names: str) -> pd.Index:
    """Column labels as one shared (immutable) Index: a list costs pandas a type inference on
    every frame."""
    return pd.Index(names)


class KaplanMeierResult:
    """One released Kaplan–Meier curve. Each released row merges adjacent time steps until it
    holds 0 or at least the study's minimum of events and of censorings; its time is the end of
    that interval, so the curve equals lifelines' on the durations rounded up to the released
    times. A row at time 0 (everyone at risk, nothing observed) starts the curve, as in
    lifelines."""

    def __init__(self, group: dict, alpha: float, label: str = "KM_estimate"):
        self.label, self.alpha = label, alpha
        self.group_label = group["label"]
        self.n = group["n"]
        self.intervals = group.get("intervals", [])
        self.truncated_after = group.get("truncated_after")  # a private curve cut by noise
        times = np.asarray(group["times"], dtype=float)
        at_risk = np.asarray(group.get("at_risk", []), dtype=np.int64)
        observed = np.asarray(group.get("observed", []), dtype=np.int64)
        removed = np.asarray(group.get("removed", []), dtype=float)
        censored = np.asarray(group.get("censored", []), dtype=float)
        if len(times) and times[0] > 0:
            times, at_risk = np.r_[0.0, times], np.r_[group["n"], at_risk]
            observed, removed, censored = np.r_[0, observed], np.r_[0.0, removed], \
                np.r_[0.0, censored]
        entrance = np.zeros(len(times), dtype=np.int64)
        entrance[:1] = group["n"]
        index = pd.Index(times, name="timeline")
        self.event_table = pd.DataFrame({
            "removed": removed, "observed": observed, "censored": censored,
            "entrance": entrance, "at_risk": at_risk}, index=index.rename("event_at"),
            copy=False)  # the arrays are this object's own
        self.timeline = times
        survival, lower, upper = stats.kaplan_meier(at_risk, observed, alpha)
        self.survival_function_ = pd.DataFrame(survival[:, None], index=index,
                                               columns=_columns(label))
        level = f"{1 - alpha:g}"
        self.confidence_interval_ = pd.DataFrame(
            np.column_stack([lower, upper]), index=index,
            columns=_columns(f"{label}_lower_{level}", f"{label}_upper_{level}"))
        half = np.flatnonzero(survival <= 0.5)  # times increase: the first is the median
        self.median_survival_time_ = float(times[half[0]]) if len(half) else float("inf")

    def plot(self, ax=None, at_risk_counts: bool = True, **kwargs):
        """The curve with its confidence band, the time axis labelled from the catalog (the
        duration column's description, hence its unit) and, below it, the number at risk at
        each tick (``at_risk_counts=False`` leaves it out)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        self._draw(ax, **kwargs)
        label_time_axis(ax, self)
        if at_risk_counts:
            add_at_risk_counts(ax, [self])
        return ax

    def _draw(self, ax, **kwargs):
        sf = self.survival_function_.iloc[:, 0]
        ci = self.confidence_interval_
        label = kwargs.pop("label", self.group_label if self.group_label != "all rows"
                           else self.label)
        line = ax.step(sf.index, sf.values, where="post", label=label, **kwargs)[0]
        ax.fill_between(ci.index, ci.iloc[:, 0], ci.iloc[:, 1], step="post", alpha=0.25,
                        color=line.get_color())
        ax.set_ylabel("survival probability")
        ax.set_ylim(0, 1.02)
        ax.legend()
        return line

    def at_risk(self, times) -> list[int | None]:
        """Number at risk at each of ``times`` on the released curve: the durations are
        rounded up to the released times, so at ``t`` it is the at-risk count of the first
        released time at or after ``t`` (None past the curve's end)."""
        at_risk = self.event_table["at_risk"].to_numpy()
        index = np.searchsorted(self.timeline, np.asarray(times, dtype=float), side="left")
        return [int(at_risk[i]) if i < len(at_risk) else None for i in index]

    def __repr__(self) -> str:
        return (f"<workbench.secure.KaplanMeierResult: {self.group_label}, n={self.n}, "
                f"{len(self.timeline)} released times>")

    def _repr_html_(self) -> str:
        return _curves_html([self])


def _curves_html(curves: list[KaplanMeierResult]) -> str:
    """What a notebook shows for released curves: one line per curve, not only reprs."""
    table = pd.DataFrame({
        "n": [c.n for c in curves],
        "events": [int(c.event_table["observed"].sum()) for c in curves],
        "released times": [len(c.timeline) for c in curves],
        "median survival": [f"{c.median_survival_time_:g}" if np.isfinite(
            c.median_survival_time_) else "not reached" for c in curves]},
        index=pd.Index([c.group_label for c in curves], name="curve"))
    return ("<p>Kaplan-Meier curves pooled under HE (.plot() draws them; "
            ".survival_function_ and .event_table hold the numbers)</p>"
            + table.to_html(float_format=lambda v: f"{v:g}"))


class KaplanMeierGroups(dict):
    """``kaplan_meier(..., by=col)``: one ``KaplanMeierResult`` per level of ``col``."""

    def _repr_html_(self) -> str:
        return _curves_html(list(self.values()))

    def plot(self, ax=None, at_risk_counts: bool = True, **kwargs):
        """One curve per level, one at-risk row per level under the axis."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        drawn = [result for result in self.values() if len(result.timeline)]
        for result in drawn:
            result._draw(ax, **kwargs)
        label_time_axis(ax, self)
        if at_risk_counts and drawn:
            add_at_risk_counts(ax, drawn)
        return ax


def time_column(attestation) -> tuple[str | None, str | None]:
    """(view, duration column) of a signed survival result, from the public spec it carries."""
    body = (attestation or {}).get("body") if isinstance(attestation, dict) else None
    if not isinstance(body, dict):
        return None, None

    def find(spec):
        if isinstance(spec, dict):
            if isinstance(spec.get("duration_col"), str):
                return spec["duration_col"]
            spec = list(spec.values())
        if isinstance(spec, list):
            return next((c for c in map(find, spec) if c), None)
        return None

    return body.get("view") or None, find(body.get("spec"))


_UNITS = ("days", "weeks", "months", "years", "hours")


def time_axis_label(view: str | None, column: str | None) -> str:
    """The catalog's words for the time axis, unit included: the duration column's description
    ("days to the endpoint or censoring"), or its name and public time step when the
    description names no unit."""
    if column is None:
        return "time"
    description, step = None, None
    if view:
        from workbench.errors import WorkbenchError
        try:
            from workbench.client import describe

            info = next((c for c in describe(view)["columns"] if c["name"] == column), {})
            description, step = info.get("description"), info.get("granularity")
        except (WorkbenchError, KeyError, TypeError):  # no gateway here: the name alone
            pass
    return format_time_label(column, description, step)


def format_time_label(column: str, description: str | None, step: float | None) -> str:
    """The axis label from a duration column's name, catalog description and public step."""
    if description and any(unit in description.lower() for unit in _UNITS):
        return description[0].upper() + description[1:]
    unit = next((u for u in _UNITS if u in column.lower()), None)
    if unit:
        return column if column.lower() == unit else f"{column} ({unit})"
    return f"{column} (time steps of {step:g})" if step else column


def label_time_axis(ax, result) -> None:
    attestation = getattr(result, "attestation", None)
    cached = getattr(result, "_time_label", None)
    if cached is None:
        cached = time_axis_label(*time_column(attestation))
        try:
            result._time_label = cached  # one gateway description per result
        except AttributeError:
            pass
    ax.set_xlabel(cached)


def add_at_risk_counts(ax, results: list[KaplanMeierResult]) -> None:
    """The number at risk at each x tick, one row per curve, under the axis (as lifelines'
    ``add_at_risk_counts``); the figure's bottom margin grows to hold it."""
    from matplotlib.transforms import blended_transform_factory

    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    below = blended_transform_factory(ax.transData, ax.transAxes)
    first = -3.2  # line heights under the axis: below the tick labels and the axis label
    ax.annotate("Number at risk", xy=(0, 0), xycoords="axes fraction",
                xytext=(0, first * 12), textcoords="offset points", ha="right", va="top",
                fontsize="small", fontweight="bold", annotation_clip=False)
    for row, result in enumerate(results, start=1):
        offset = (first - 1.2 * row) * 12
        name = result.group_label if result.group_label != "all rows" else result.label
        ax.annotate(name, xy=(0, 0), xycoords="axes fraction", xytext=(-6, offset),
                    textcoords="offset points", ha="right", va="top", fontsize="small",
                    annotation_clip=False)
        for tick, count in zip(ticks, result.at_risk(ticks), strict=True):
            if count is not None:
                ax.annotate(str(count), xy=(tick, 0), xycoords=below, xytext=(0, offset),
                            textcoords="offset points", ha="center", va="top",
                            fontsize="small", annotation_clip=False)
    figure = ax.figure
    needed = (-first + 1.2 * len(results) + 1) * 12 / 72 / figure.get_figheight()
    if figure.subplotpars.bottom < needed + 0.05:
        figure.subplots_adjust(bottom=min(0.6, needed + 0.05))


class LogRankResult:
    def __init__(self, data: dict):
        self.test_statistic = data["test_statistic"]
        self.p_value = data["p_value"]
        self.degrees_of_freedom = data["degrees_of_freedom"]
        self.groups = data["groups"]
        self.summary = pd.DataFrame({"test_statistic": [self.test_statistic],
                                     "p": [self.p_value],
                                     "-log2(p)": [-np.log2(self.p_value) if self.p_value > 0
                                                  else np.inf]})

    def __repr__(self) -> str:
        return (f"<workbench.secure.LogRankResult: test_statistic={self.test_statistic:.4g}, "
                f"p_value={self.p_value:.4g}, df={self.degrees_of_freedom}>")

    def _repr_html_(self) -> str:
        return (f"<p>log-rank test, {self.degrees_of_freedom} degree(s) of freedom</p>"
                + self.summary.to_html(index=False, float_format=lambda v: f"{v:.4g}"))


class RegressionResult:
    """Cox PH or logistic regression fitted by Newton steps on HE-aggregated statistics."""

    def __init__(self, data: dict, kind: str):
        self.kind = kind
        names = pd.Index(data["covariates"], name="covariate")
        self.params_ = pd.Series(data["params"], index=names, name="coef")
        self.variance_matrix_ = pd.DataFrame(data["covariance"], index=names, columns=names)
        self.standard_errors_ = pd.Series(np.sqrt(np.diag(self.variance_matrix_)), index=names,
                                          name="se(coef)")
        alpha = data.get("alpha", 0.05)
        z = sps.norm.ppf(1 - alpha / 2)
        pct = round(100 * (1 - alpha))
        lower = self.params_ - z * self.standard_errors_
        upper = self.params_ + z * self.standard_errors_
        self.confidence_intervals_ = pd.DataFrame(
            {f"{pct}% lower-bound": lower, f"{pct}% upper-bound": upper}, index=names)
        self.log_likelihood_ = data["loglik"]
        self.n = data["n"]
        self.events = data["events"]
        self.iterations = data["iterations"]
        zs = self.params_ / self.standard_errors_
        p = 2 * sps.norm.sf(np.abs(zs))
        with np.errstate(divide="ignore"):
            log2p = -np.log2(p)
        self.summary = pd.DataFrame({
            "coef": self.params_, "exp(coef)": np.exp(self.params_),
            "se(coef)": self.standard_errors_,
            f"coef lower {pct}%": lower, f"coef upper {pct}%": upper,
            f"exp(coef) lower {pct}%": np.exp(lower), f"exp(coef) upper {pct}%": np.exp(upper),
            "z": zs, "p": p, "-log2(p)": log2p}, index=names)

    def __repr__(self) -> str:
        return (f"<workbench.secure.{self.kind}: n={self.n}, "
                f"{len(self.params_)} coefficients, log-likelihood={self.log_likelihood_:.4f}>")

    def _header(self) -> str:
        what = "events" if self.kind == "CoxPHResult" else "positive outcomes"
        holders = getattr(self, "holders", None)
        pooled = f"pooled across {len(holders)} holders under HE" if holders else "pooled under HE"
        return (f"{self.kind}: n={self.n}, {what}={self.events}, "
                f"log-likelihood={self.log_likelihood_:.4f}, {self.iterations} Newton steps, "
                f"{pooled}")

    def print_summary(self, decimals: int = 4) -> None:
        """The fit and its coefficient table as text (lifelines' name)."""
        print(self._header())
        print(self.summary.to_string(float_format=lambda v: f"{v:.{decimals}g}"))

    def _repr_html_(self) -> str:
        """In a notebook the fit shows as its coefficient table, not only its repr."""
        from html import escape

        return (f"<p>{escape(self._header())}</p>"
                + self.summary.to_html(float_format=lambda v: f"{v:.4g}"))


class Histogram:
    def __init__(self, data: dict):
        self.counts = np.asarray(data["counts"], dtype=np.int64)
        self.edges = np.asarray(data["edges"], dtype=float)
        self.column = data["column"]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"low": self.edges[:-1], "high": self.edges[1:],
                             "count": self.counts})

    def __repr__(self) -> str:
        return f"<workbench.secure.Histogram of {self.column}: {len(self.counts)} bins>"


def _by_index(by, labels: list[str]):
    names = [by] if isinstance(by, str) else list(by)
    parts = [[kv.split("=", 1)[1] for kv in label.split(", ")] for label in labels]
    if len(names) == 1:
        return pd.Index([p[0] for p in parts], name=names[0])
    return pd.MultiIndex.from_tuples([tuple(p) for p in parts], names=names)


class ReleasedInt(int):
    """A released count: an int that keeps the release checker's ``attestation``."""


class ReleasedFloat(float):
    """A released sum or mean: a float that keeps the release checker's ``attestation``."""


def build(payload: dict):
    """The user-facing object for a released secure result (JSON from the coordinator). It
    keeps the release checker's signature (``attestation``: an attribute, or ``.attrs`` for
    pandas objects) so the airlock can verify its numbers instead of trusting the kernel."""
    obj = _build(payload)
    attestation = payload.get("attestation")
    meta = payload.get("meta") or {}
    privacy = meta.get("privacy")  # the epsilon it spent, if any
    holders = meta.get("holders")  # exactly the holders whose contributions are in it
    if isinstance(obj, (pd.Series, pd.DataFrame)):
        obj.attrs.update(attestation=attestation, privacy=privacy, holders=holders)
    else:
        obj.attestation, obj.privacy, obj.holders = attestation, privacy, holders
    return obj


def _build(payload: dict):
    op, data = payload["op"], payload["result"]
    if op == "count":
        if not data.get("by"):
            return ReleasedInt(data["counts"][0])
        return pd.Series(data["counts"], index=_by_index(data["by"], data["labels"]),
                         name="count")
    if op == "crosstab":
        counts = np.asarray(data["counts"]).reshape(len(data["index_levels"]), -1)
        return pd.DataFrame(counts, index=pd.Index(data["index_levels"], name=data["index"]),
                            columns=pd.Index(data["column_levels"], name=data["columns"]))
    if op == "histogram":
        return Histogram(data)
    if op in ("sum", "mean", "var"):
        values = [np.nan if v is None else v for v in data[op]]
        if not data.get("by"):
            return ReleasedFloat(values[0])
        return pd.Series(values, index=_by_index(data["by"], data["labels"]), name=op)
    if op == "kaplan_meier":
        groups = data["groups"]
        if not data.get("by"):
            return KaplanMeierResult(groups[0], data["alpha"])
        return KaplanMeierGroups({g["label"].split("=", 1)[1]: KaplanMeierResult(
            g, data["alpha"], label=g["label"]) for g in groups})
    if op == "logrank_test":
        return LogRankResult(data)
    if op == "cox_ph":
        return RegressionResult(data, "CoxPHResult")
    if op == "logistic_regression":
        return RegressionResult(data, "LogisticRegressionResult")
    raise ValueError(f"unknown op {op}")
