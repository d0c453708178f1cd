"""The documented ground truth is recoverable from the harmonised data through the views."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter
from scipy import stats

from workbench.synth import GROUND_TRUTH, TRUE_LOG_HR
from workbench.synth.views import synthetic_views

pytestmark = pytest.mark.slow
VIEWS = {v.id: v for v in synthetic_views()}


def view(logical, view_id):
    return logical.execute(VIEWS[view_id].sql).df()


def clipped_normal_mean(spec):
    a, b = (spec["min"] - spec["mean"]) / spec["sd"], (spec["max"] - spec["mean"]) / spec["sd"]
    return stats.truncnorm(a, b, loc=spec["mean"], scale=spec["sd"]).mean()


def test_cml_hazard_ratios_inside_the_95_ci(logical):
    cohort = view(logical, "cml_cohort")
    assert set(cohort["holder"]) == {"hospital-a", "hospital-b"}
    data = cohort.assign(dasatinib=(cohort["tki"] == "dasatinib").astype(int),
                         nilotinib=(cohort["tki"] == "nilotinib").astype(int))
    cph = CoxPHFitter().fit(data[["days", "progressed", "dasatinib", "nilotinib", "age_at_start",
                                  "risk_score"]], duration_col="days", event_col="progressed")
    summary = cph.summary
    for covariate, truth in (("dasatinib", TRUE_LOG_HR["dasatinib"]),
                             ("nilotinib", TRUE_LOG_HR["nilotinib"]),
                             ("age_at_start", TRUE_LOG_HR["age_per_year"]),
                             ("risk_score", TRUE_LOG_HR["risk_score"])):
        low, high = summary.loc[covariate, ["coef lower 95%", "coef upper 95%"]]
        assert low <= truth <= high, (covariate, truth, low, high)
    # Enough events for the test to mean something, and the censoring is administrative only.
    assert cohort["progressed"].sum() > 300
    assert (cohort["days"] > 0).all()


def test_cml_cohort_has_the_power_to_reject_a_wrong_effect(logical):
    """The CI check above can fail: the opposite drug effect lies far outside the CI."""
    cohort = view(logical, "cml_cohort")
    data = cohort.assign(dasatinib=(cohort["tki"] == "dasatinib").astype(int))
    data = data[cohort["tki"] != "nilotinib"]
    cph = CoxPHFitter().fit(data[["days", "progressed", "dasatinib"]], "days", "progressed")
    low, high = cph.summary.loc["dasatinib", ["coef lower 95%", "coef upper 95%"]]
    assert not low <= -TRUE_LOG_HR["dasatinib"] <= high


def test_cml_costs_per_person_year(logical):
    """Both payers' claims (two source formats) give the documented annual paid cost, each
    alone and pooled; every insured CML patient appears once, under their own payer."""
    costs = view(logical, "cml_costs")
    assert set(costs["holder"]) == {"insurer", "insurer-b"}
    assert costs["person_id"].is_unique
    for payer, rows in [*costs.groupby("holder"), ("pooled", costs)]:
        totals = rows.groupby("tki")[["cost", "person_years"]].sum()
        per_year = totals["cost"] / totals["person_years"]
        for drug, truth in GROUND_TRUTH["cml"]["annual_paid_cost"].items():
            assert per_year[drug] == pytest.approx(truth, rel=0.01), (payer, drug)
    shares = costs["holder"].value_counts(normalize=True)
    expected = GROUND_TRUTH["coverage"]["payer_shares"]["insurer-b"]
    assert abs(shares["insurer-b"] - expected) < 4 * np.sqrt(expected * (1 - expected) / len(costs))


def test_type_1_diabetes_facts(logical):
    t1d = view(logical, "t1d_cohort")
    truth = GROUND_TRUTH["t1d"]
    share = t1d["hba1c_at_or_above_7"].sum() / t1d["hba1c_results"].sum()
    assert share == pytest.approx(truth["hba1c_at_or_above_7_share"], abs=0.02)
    n = len(t1d)
    assert abs((t1d["sex"] == "F").mean() - truth["female_share"]) < 4 * np.sqrt(0.25 / n)
    assert t1d["age_at_diagnosis"].mean() == pytest.approx(
        clipped_normal_mean(truth["age_at_diagnosis"]), abs=1.0)
    assert set(t1d["age_band"].dropna()) <= {"0-9", "10-19", "20-29", "30+"}


def test_interstitial_pneumonia_facts(logical):
    ip = view(logical, "ip_cohort")
    truth = GROUND_TRUTH["ip"]
    n = len(ip)
    share = ip["kl6_at_or_above_500"].sum() / ip["kl6_results"].sum()
    assert share == pytest.approx(truth["kl6_at_or_above_500_share"], abs=0.02)
    assert abs((ip["sex"] == "F").mean() - truth["female_share"]) < 4 * np.sqrt(0.25 / n)
    assert abs((ip["ip_code"] == "J84.1").mean() - truth["j84_1_share"]) < 4 * np.sqrt(0.25 / n)
    assert ip["age_at_diagnosis"].mean() == pytest.approx(
        clipped_normal_mean(truth["age_at_diagnosis"]), abs=1.5)


def test_adverse_event_rates_through_linkage(logical):
    """Pharma's reports joined to the hospitals' TKI patients by pseudonym recover the rates."""
    rates = logical.execute("""
        WITH tki AS (
          SELECT DISTINCT person_id, drug_name FROM drug_exposure
          WHERE drug_type = 'prescription'
        ), ae AS (
          SELECT DISTINCT person_id, related_drug_concept FROM condition_occurrence
          WHERE condition_type = 'adverse_event'
        )
        SELECT drug_name, avg(CASE WHEN ae.person_id IS NULL THEN 0 ELSE 1 END) AS share,
               count(*) AS n
        FROM tki LEFT JOIN ae ON ae.person_id = tki.person_id
        GROUP BY drug_name""").df().set_index("drug_name")
    for drug, (_code, _term, share) in GROUND_TRUTH["cml"]["adverse_events"].items():
        n = rates.loc[drug, "n"]
        assert abs(rates.loc[drug, "share"] - share) < 4 * np.sqrt(share * (1 - share) / n), drug
