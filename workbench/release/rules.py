"""Statistical disclosure rules the airlock runs on every output (a security boundary).

Table rules reuse SACRO's checker (``acro.sdcchecks.SDCChecks``) on evidence tables built here:
minimum threshold, zeros, n,k dominance and p% dominance, residual degrees of freedom. The survival
rules acro lacks (at-risk >= k at every released time point, >= k leaving the risk set between
released points, events behind a Cox fit) and the differencing rule are written here; the rules
for a table's text are in ``identifying.py``, the index of released counts in
``differencing.py``. Every output first gets ``provenance_rule``: ``verified-result`` when the
airlock rebuilt its numbers from a signed secure result (``attested.py``), else
``unverified-output`` (review: the numbers are the kernel's word).

Every rule returns a ``RuleResult``; the request's verdict is the worst of them
(``fail`` > ``review`` > ``pass``). Evidence holds aggregate counts only, never a row.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.policy.model import Thresholds  # the one definition, from the study's policy
from workbench.release.differencing import SortedReleases, count_cells, multiset_sha256
from workbench.release.identifying import text_rules
from workbench.release.outputs import (
    MAGNITUDE_SUFFIXES,
    Output,
    guess_count_columns,
    is_value_column,
    row_labels,
)

VERDICT_ORDER = {"pass": 0, "review": 1, "fail": 2}


@dataclass
class RuleResult:
    rule: str
    verdict: str
    message: str
    threshold: Any = None
    acro_check: str | None = None
    cells: list[dict] = field(default_factory=list)  # flagged cells: label, count(s), verdict

    def as_dict(self) -> dict:
        return asdict(self)


def worst(verdicts) -> str:
    return max(verdicts, key=VERDICT_ORDER.__getitem__, default="pass")


# -- acro glue ------------------------------------------------------------------------------------

class _TableModel:
    """The few attributes of acro's TableModelDetails its table checks read."""

    model_type = "table"

    def __init__(self, shape_like: pd.DataFrame):
        self._shape_like = shape_like

    def get_allfalse_table(self) -> pd.DataFrame:
        return pd.DataFrame(False, index=self._shape_like.index, columns=self._shape_like.columns)

    def get_dimension_names(self) -> list[str]:
        return [str(c) for c in self._shape_like.columns]


def _acro(thresholds: Thresholds):
    from acro import sdc_agg_funcs

    sdc_agg_funcs.NK_N = thresholds.dominance_n  # acro reads n from this module global
    return _acro_checker(thresholds)


@functools.lru_cache(maxsize=64)
def _acro_checker(thresholds: Thresholds):
    """SDCChecks reads its ontology files on construction: one checker per threshold set."""
    from acro.sdcchecks import SDCChecks

    return SDCChecks(thresholds.acro_risk_appetite())


def _evidence(**tables: pd.DataFrame):
    from acro.sdcchecks import SDCEvidence

    return SDCEvidence(interim_tables=dict(tables))


def _flagged(mask: pd.DataFrame, counts: pd.DataFrame, rows: list[str], verdict: str) -> list[dict]:
    out = []
    positions = np.argwhere(np.asarray(mask.fillna(False).to_numpy(), dtype=bool))
    for r, c in positions:
        value = counts.iat[r, c]
        out.append({"label": f"{rows[r]}::{counts.columns[c]}",
                    "count": None if pd.isna(value) else _num(value), "verdict": verdict})
    return out


def _num(value):
    value = float(value)
    return int(value) if value.is_integer() else value


# -- tables ---------------------------------------------------------------------------------------

def table_rules(output: Output, t: Thresholds) -> list[RuleResult]:
    table = output.table
    counts_cols = list(output.count_columns or guess_count_columns(table))
    has_numbers = any(is_value_column(table[c]) for c in table.columns)
    results: list[RuleResult] = text_rules(table, has_numbers, RuleResult)
    rows = row_labels(table)
    stat_cols = [c for c in table.columns
                 if is_value_column(table[c]) and str(c) not in counts_cols
                 and not str(c).endswith(MAGNITUDE_SUFFIXES)]
    # a signed test statistic (log-rank) has no count column: the key holder checked its groups
    if stat_cols and not counts_cols and output.attested is None:
        results.append(RuleResult(
            "statistics-need-counts", "fail",
            f"columns {', '.join(map(str, stat_cols))} hold statistics but no column says how many "
            "people stand behind each row: add a count column 'n' or pass counts=[...]"))
    if not counts_cols:
        return results
    counts = table[counts_cols].apply(pd.to_numeric, errors="coerce").reset_index(drop=True)
    bad = counts.isna() | (counts < 0) | (counts % 1 != 0)
    if bad.to_numpy().any():
        results.append(RuleResult(
            "counts-are-counts", "fail",
            "count columns must hold whole, non-negative numbers",
            cells=_flagged(bad, counts, rows, "fail")))
        counts = counts.where(~bad, 0)
    checker = _acro(t)
    model = _TableModel(counts)
    ev = _evidence(count_table=counts)
    _status, _summary, below = checker.check_min_threshold("table", ev, model)
    below = below & (counts != 0)  # zeros are the zero rule's business
    results.append(RuleResult(
        "minimum-threshold", "fail" if below.to_numpy().any() else "pass",
        f"every released count must be 0 or at least {t.min_cell_count}",
        threshold=t.min_cell_count, acro_check="MinimumThresholdCheck",
        cells=_flagged(below, counts, rows, "fail")))
    _status, _summary, zeros = checker.check_presence_of_zero("table", ev, model)
    results.append(RuleResult(
        "zeros", "fail" if zeros.to_numpy().any() else "pass",
        "zero cells can disclose that nobody in a group has a trait (class disclosure)"
        if t.zeros_are_disclosive else "zeros are not disclosive under this study's policy",
        threshold=t.zeros_are_disclosive, acro_check="PresenceOfZeroCheck",
        cells=_flagged(zeros, counts, rows, "fail")))
    results.extend(_dominance_rules(output, rows, stat_cols, checker, t))
    return results


def _dominance_rules(output, rows, stat_cols, checker, t: Thresholds) -> list[RuleResult]:
    table = output.table
    if stat_cols and output.attested is not None:
        return [RuleResult(
            "dominance", "pass",
            "the key holder applied the (n, k) dominance rule to every cell before it signed "
            "these statistics", threshold={"n": t.dominance_n, "k": t.dominance_k})]
    magnitude = sorted({str(c)[: -len("__sum")] for c in table.columns if str(c).endswith("__sum")})
    if not magnitude:
        if stat_cols:
            return [RuleResult(
                "dominance", "review",
                "no per-cell contributions were sent with these statistics, so n,k and p% "
                "dominance could not be computed: the reviewers must judge it (build the table "
                "with wb.release.magnitude_table to have it checked)",
                threshold={"n": t.dominance_n, "k": t.dominance_k, "p": t.p_percent})]
        return []
    out = []
    for col in magnitude:
        def part(suffix, col=col):
            part = table[[f"{col}{suffix}"]].reset_index(drop=True)
            return part.set_axis([col], axis=1).astype(float)
        ev = _evidence(sum=part("__sum"), max=part("__max"), top_2_sum=part("__top2"),
                       top_n_sum=part("__topn"), num_negative=part("__neg"))
        for name, check, acro_name, thr in (
            ("dominance-nk", checker.check_nk_dominance, "NKCheck",
             {"n": t.dominance_n, "k": t.dominance_k}),
            ("dominance-p-percent", checker.check_ppercent_dominance, "PPercentCheck",
             {"p": t.p_percent}),
        ):
            status, summary, mask = check("table", ev, None)
            verdict = "fail" if mask.to_numpy().any() else "pass"
            if status == "review":
                verdict = "review"
            out.append(RuleResult(
                name, verdict, f"{col}: {summary.strip()}", threshold=thr, acro_check=acro_name,
                cells=_flagged(mask, part("__sum"), rows, verdict)))
    return out


# -- survival -------------------------------------------------------------------------------------

def survival_rules(output: Output, t: Thresholds) -> list[RuleResult]:
    k = t.min_cell_count
    at_risk_cells, step_cells = [], []
    for curve in output.curves:
        tab = curve.table
        for _, row in tab.iterrows():
            label = f"{curve.group}::t={_num(row['time'])}"
            if row["at_risk"] < k:
                at_risk_cells.append({"label": label, "count": _num(row["at_risk"]),
                                      "verdict": "fail"})
            for col in ("observed", "censored"):
                value = row[col]
                if 0 < value < k:
                    step_cells.append({"label": f"{label}::{col}", "count": _num(value),
                                       "verdict": "fail"})
        # the drop in at-risk between released points is what a reader can difference
        drops = tab["at_risk"].diff().abs().iloc[1:]
        for time, drop in zip(tab["time"].iloc[1:], drops, strict=True):
            if 0 < drop < k:
                step_cells.append({"label": f"{curve.group}::t={_num(time)}::at_risk-drop",
                                   "count": _num(drop), "verdict": "fail"})
    return [
        RuleResult("survival-at-risk", "fail" if at_risk_cells else "pass",
                   f"at least {k} people must be at risk at every released time point",
                   threshold=k, cells=at_risk_cells),
        RuleResult("survival-step", "fail" if step_cells else "pass",
                   f"events, censorings and the drop in at-risk between released time points must "
                   f"be 0 or at least {k}: coarsen the time bins (wb.release.coarsen_survival)",
                   threshold=k, cells=step_cells),
    ]


# -- models ---------------------------------------------------------------------------------------

def model_rules(output: Output, t: Thresholds) -> list[RuleResult]:
    from acro.sdcchecks import SDCEvidence

    fit = output.model
    dof = int(fit.n_obs - fit.n_params)
    status, summary, _ = _acro(t).check_model_dof("model", SDCEvidence(dof=dof), None)
    results = [RuleResult("residual-dof", status, f"residual degrees of freedom: {summary}",
                          threshold=t.min_dof, acro_check="MinimumDoFCheck",
                          cells=[{"label": "model::dof", "count": dof, "verdict": status}])]
    if fit.n_events is not None:
        k = t.min_cell_count
        cells = [{"label": "model::events", "count": fit.n_events,
                  "verdict": "pass" if fit.n_events >= k else "fail"}]
        if fit.family == "logistic":
            non = fit.n_obs - fit.n_events
            cells.append({"label": "model::non-events", "count": non,
                          "verdict": "pass" if non >= k else "fail"})
        verdict = worst(c["verdict"] for c in cells)
        results.append(RuleResult(
            "model-events", verdict,
            f"a {fit.family} model needs at least {k} events (and {k} non-events for logistic)",
            threshold=k, cells=cells))
    return results


# -- figures --------------------------------------------------------------------------------------

def figure_rules(output: Output, t: Thresholds) -> list[RuleResult]:
    """A picture's numbers cannot be read back by a machine, so a figure is released only with
    the numbers it draws (``data=``: a table, a Kaplan-Meier fit or a model), and those pass the
    same rules as if they were released themselves: a KM figure of a curve that fails
    survival-step fails. The reviewers still check that the picture shows these numbers."""
    has_data = output.table is not None or bool(output.curves) or output.model is not None
    if not has_data:
        return [RuleResult(
            "figure-data", "fail",
            "a figure is released only with the numbers it draws: pass them with data=... (the "
            "table, Kaplan-Meier fit or model the figure plots) so they are checked too")]
    results = [RuleResult(
        "figure-data", "pass", "the numbers the figure draws were sent and checked below"),
        RuleResult("figure-manual", "review",
                   "reviewers: check that the picture shows the numbers checked here and "
                   "nothing more (a machine cannot read a picture back)")]
    if output.table is not None:
        results.extend(table_rules(output, t))
    if output.curves:
        results.extend(survival_rules(output, t))
    if output.model is not None:
        results.extend(model_rules(output, t))
    return results


# -- differencing ---------------------------------------------------------------------------------

def differencing_rule(new: dict[str, float], released, t: Thresholds) -> RuleResult:
    """Fail when a new count differs from any count already released for the same study and view
    by fewer than k people: subtracting the two could describe that small group. ``released`` is
    an index of earlier releases (``SortedReleases``, the airlock store's) or a ``[{id, cells}]``
    list. Values are compared, never labels (see ``workbench.release.differencing``)."""
    k = t.min_cell_count
    index = released if hasattr(released, "nearest_within") else SortedReleases(released)
    flagged = []
    earlier = index.count
    if earlier and not index.same_counts_released(multiset_sha256(new)):
        for label, value in new.items():
            if index.released_as(label, value):
                continue
            near = index.nearest_within(value, k)
            if near is not None:
                flagged.append({"label": label, "count": _num(value),
                                "released_count": _num(near.value),
                                "released_label": near.label,
                                "difference": _num(abs(value - near.value)),
                                "released_request": near.request_id, "verdict": "fail"})
    return RuleResult(
        "differencing", "fail" if flagged else "pass",
        f"compared with {earlier} earlier release(s) of the same study and view: no count "
        f"(cell or total, whatever its label) may differ from any released count by 1 to {k - 1}",
        threshold=k, cells=flagged)


UNVERIFIED_MESSAGE = (
    "these numbers come from the study's kernel, not from the release checker: no signed secure "
    "result stands behind them, so the automatic checks only see what the kernel chose to send "
    "(a hand-made table, curve or model summary passes them as easily as a real one). Reviewers: "
    "check in the producing cells where every number comes from, and that it is what the "
    "description says. Two reviewers must approve it.")


def private_rule(output: Output) -> RuleResult:
    """A signed differentially private release: its counts are noisy by construction, so count
    thresholds and differencing say nothing about it; what protects it is the epsilon it spent
    of the study's budget, which the key holder enforced before signing."""
    p = output.attested["privacy"]
    return RuleResult(
        "differential-privacy", "pass",
        f"released under differential privacy by the key holder: epsilon {p.get('epsilon')} "
        f"({p.get('mechanism')}), spent from the study's budget before it was signed; count "
        "thresholds and differencing do not apply to noisy counts",
        threshold={"epsilon": p.get("epsilon")})


def provenance_rule(output: Output) -> RuleResult:
    """Whether the airlock checked signed numbers or the kernel's word."""
    if output.attested is None:
        return RuleResult("unverified-output", "review", UNVERIFIED_MESSAGE)
    a = output.attested
    return RuleResult(
        "verified-result", "pass",
        f"numbers rebuilt from the release checker's signed '{a['op']}' result (request "
        f"{a['request_id']}, key {a['key_id']}), not from the kernel's copy")


def run_rules(output: Output, t: Thresholds, released) -> tuple[str, list[RuleResult]]:
    """All rules for one output, differencing against ``released`` (an index of earlier releases
    or a ``[{id, cells}]`` list) included."""
    by_kind = {"table": table_rules, "survival": survival_rules, "model": model_rules,
               "figure": figure_rules}
    if output.attested is not None and output.attested.get("privacy"):
        return "pass", [provenance_rule(output), private_rule(output)]
    results = [provenance_rule(output), *by_kind[output.kind](output, t)]
    cells = count_cells(output)
    if cells:
        results.append(differencing_rule(cells, released, t))
    return worst(r.verdict for r in results), results
