"""Secure results against values published from R's ``survival`` package, on the same public
datasets split across three holders (lifelines ships R's ``lung`` and Fox's ``Rossi`` tables).

Each reference is R's printed output, so the bound is half a unit in its last printed digit:

- ``survdiff(Surv(time, status) ~ sex, data = lung)``: (O-E)^2/V = 10.3267, p = 0.00131116
  (Packt, *Machine Learning with R Cookbook*, 2nd ed., "Using the log-rank test").
- ``coxph(Surv(time, status) ~ sex, data = lung)``: coef -0.5310, se 0.1672, z -3.176,
  p 0.00149 (Cross Validated, "Get standard error of exponentiated coefficient in cox
  regression"; the same table is in STHDA's Cox tutorial).
- ``summary(survfit(Surv(time, status) ~ sex, data = lung))``, sex = 1: time, n.risk, n.event
  and survival rows (drkim.quarto.pub, "Non- and semi-parametric survival analysis").
- ``coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi)``:
  J. Fox, *Cox Proportional-Hazards Regression for Survival Data*, appendix to An R and S-PLUS
  Companion to Applied Regression (2002, corrected 2008), four decimals.
"""

from __future__ import annotations

from workbench.secure import Federation

from .conftest import split_round_robin

LUNG_SEX_LOGRANK = {"test_statistic": (10.3267, 5e-5), "p_value": (0.00131116, 5e-9)}
LUNG_SEX_COX = {"coef": (-0.5310, 5e-5), "se(coef)": (0.1672, 5e-5), "z": (-3.176, 5e-4),
                "p": (0.00149, 5e-6)}
# sex = 1 (138 men): time -> (n.risk, n.event, survival)
LUNG_MALE_KM = {11: (138, 3, 0.9783), 53: (128, 2, 0.9130), 88: (119, 2, 0.8478),
                105: (114, 1, 0.8188), 163: (100, 3, 0.7029), 180: (89, 1, 0.6445)}
ROSSI_COX = {  # covariate -> (coef, se(coef))
    "fin": (-0.3794, 0.1914), "age": (-0.0574, 0.0220), "race": (0.3139, 0.3080),
    "wexp": (-0.1498, 0.2122), "mar": (-0.4337, 0.3819), "paro": (-0.0849, 0.1958),
    "prio": (0.0915, 0.0286)}


def test_logrank_equals_r_survdiff(lung_all):
    fed = Federation(split_round_robin(lung_all), min_cell_count=10)
    result = fed.logrank_test(duration_col="time", event_col="status", group_col="sex")
    for name, (published, bound) in LUNG_SEX_LOGRANK.items():
        assert abs(getattr(result, name) - published) <= bound, name
    assert result.degrees_of_freedom == 1


def test_cox_equals_r_coxph_on_lung(lung_all):
    fed = Federation(split_round_robin(lung_all), min_cell_count=10)
    summary = fed.cox_ph(duration_col="time", event_col="status", covariates=["sex"]).summary
    for column, (published, bound) in LUNG_SEX_COX.items():
        assert abs(summary.loc["sex", column] - published) <= bound, column


def test_km_equals_r_survfit_by_sex(lung_all):
    # R's table has a row per event time; at k = 10 the release checker merges adjacent times
    # until each row holds 10 events (release.survival_rows, checked against lifelines on the
    # merged times in test_secure_correctness.py). At k = 1 nothing merges and R's rows stand.
    fed = Federation(split_round_robin(lung_all), min_cell_count=1)
    men = fed.kaplan_meier(duration_col="time", event_col="status", by="sex")["1"]
    assert men.n == 138
    table, curve = men.event_table, men.survival_function_.iloc[:, 0]
    for time, (at_risk, events, survival) in LUNG_MALE_KM.items():
        assert table.loc[time, "at_risk"] == at_risk, time
        assert table.loc[time, "observed"] == events, time
        assert abs(curve.loc[time] - survival) <= 5e-5, time


def test_cox_equals_fox_rossi_table(rossi):
    fed = Federation(split_round_robin(rossi), min_cell_count=10)
    result = fed.cox_ph(duration_col="week", event_col="arrest", covariates=list(ROSSI_COX))
    for covariate, (coef, se) in ROSSI_COX.items():
        assert abs(result.params_[covariate] - coef) <= 5e-5, covariate
        assert abs(result.standard_errors_[covariate] - se) <= 5e-5, covariate
