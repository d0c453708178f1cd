"""``wb.secure``: the researcher's secure analyses on a granted view, from a study kernel.

Each call asks the gateway (``POST /secure/{op}`` over the study socket) to run the operation; the
gateway checks the grant, the holders encrypt, the key holder releases only what the study's
disclosure rules allow, and the released JSON is rebuilt into lifelines-shaped objects here.
"""

from __future__ import annotations

from workbench.secure import results


def _call(op: str, view: str, **params):
    from workbench.client import request_json  # the gateway client (owned by the gateway)

    params = {k: v for k, v in params.items() if v is not None}
    columns = []
    for key in ("column", "index", "columns", "duration_col", "event_col", "group_col", "by",
                "strata", "outcome_col", "covariates"):
        value = params.get(key)
        columns += [value] if isinstance(value, str) else list(value or [])
    payload = request_json("POST", f"/secure/{op}", {
        "view": view, "params": params, "columns": list(dict.fromkeys(columns))})
    return results.build(payload)


def count(view: str, by=None):
    """Number of rows (or a Series per level of ``by``), with small cells refused."""
    return _call("count", view, by=by)


def crosstab(view: str, index: str, columns: str):
    return _call("crosstab", view, index=index, columns=columns)


def histogram(view: str, column: str, bins=None, range=None):  # noqa: A002 - numpy's name
    """Counts on the column's public grid (declared in the catalog; see ``wb.describe``),
    adjacent bins merged until each holds the study's minimum. Caller-chosen edges are refused:
    they could bisect a value."""
    return _call("histogram", view, column=column, bins=bins,
                 range=list(range) if range is not None else None)


def sum(view: str, column: str, by=None):  # noqa: A001 - the statistic's name
    return _call("sum", view, column=column, by=by)


def mean(view: str, column: str, by=None):
    return _call("mean", view, column=column, by=by)


def var(view: str, column: str, by=None):
    return _call("var", view, column=column, by=by)


def _survival_columns(duration_col, event_col, time, event) -> tuple[str, str]:
    """``time=``/``event=`` are accepted as short names for ``duration_col``/``event_col``."""
    duration_col, event_col = duration_col or time, event_col or event
    if not duration_col or not event_col:
        from workbench.errors import WorkbenchUserError

        raise WorkbenchUserError("name the duration and event columns: duration_col='days', "
                                 "event_col='died'.", reason="bad-request")
    return duration_col, event_col


def kaplan_meier(view: str, duration_col: str | None = None, event_col: str | None = None,
                 by=None, resolution: float = 1.0, alpha: float = 0.05, *, time=None,
                 event=None):
    """Kaplan–Meier curve(s): ``survival_function_``, ``confidence_interval_``,
    ``median_survival_time_``, ``event_table``, ``plot()``; one per level of ``by``.
    ``duration_col`` must be the view's time column and ``event_col`` its event column;
    ``resolution`` a whole multiple of the time granularity. Released rows merge adjacent
    time steps until each holds 0 or at least the study's minimum of events and of
    censorings: the curve is that of the durations rounded up to the released times."""
    duration_col, event_col = _survival_columns(duration_col, event_col, time, event)
    return _call("kaplan_meier", view, duration_col=duration_col, event_col=event_col, by=by,
                 resolution=resolution, alpha=alpha)


def logrank_test(view: str, duration_col: str | None = None, event_col: str | None = None,
                 group_col: str | None = None, resolution: float = 1.0, *, time=None,
                 event=None):
    duration_col, event_col = _survival_columns(duration_col, event_col, time, event)
    return _call("logrank_test", view, duration_col=duration_col, event_col=event_col,
                 group_col=group_col, resolution=resolution)


def cox_ph(view: str, duration_col: str | None = None, event_col: str | None = None,
           covariates: list[str] = (), strata=None, resolution: float = 1.0,
           alpha: float = 0.05, *, time=None, event=None):
    """Cox proportional hazards (Efron ties): ``params_``, ``standard_errors_``,
    ``confidence_intervals_``, ``log_likelihood_``, ``summary``."""
    duration_col, event_col = _survival_columns(duration_col, event_col, time, event)
    return _call("cox_ph", view, duration_col=duration_col, event_col=event_col,
                 covariates=list(covariates), strata=strata, resolution=resolution, alpha=alpha)


def logistic_regression(view: str, outcome_col: str, covariates: list[str], alpha: float = 0.05):
    return _call("logistic_regression", view, outcome_col=outcome_col,
                 covariates=list(covariates), alpha=alpha)
