"""The documented ground truth of the synthetic data space.

Every number the generator draws from is stated here once; the generator reads its parameters from
``GROUND_TRUTH`` so the documentation cannot drift from the data. Tests recover these truths from
the harmonised data (Cox hazard ratios, cohort facts, defect rates); see docs/data-model.md.
"""

from __future__ import annotations

import math

import numpy as np

PAYERS = ("insurer", "insurer-b")  # health insurers; each insured patient has exactly one
HOLDERS = ("hospital-a", "hospital-b", *PAYERS, "pharma")

# Calendar of the synthetic extract (ISO dates).
WINDOW_START = "2010-01-01"  # first day any source observes
DATA_CUTOFF = "2024-12-31"  # administrative censoring: no event after this day is recorded
EXTRACTION_DATE = "2025-01-31"  # the release date; a later date in a record is a timeliness defect

TKIS = ("imatinib", "dasatinib", "nilotinib")
TKI_ATC = {"imatinib": "L01EA01", "dasatinib": "L01EA02", "nilotinib": "L01EA03"}

_LOG = math.log

GROUND_TRUTH: dict = {
    "holders": HOLDERS,
    "window_start": WINDOW_START,
    "data_cutoff": DATA_CUTOFF,
    "extraction_date": EXTRACTION_DATE,
    # Cohort shares of the population (enriched far above real prevalence so that a 20k-patient
    # space has enough cases for the study cohorts); the rest is background population.
    "cohort_shares": {"cml": 0.04, "t1d": 0.03, "ip": 0.02},
    # Which patients each holder sees. Every patient is treated in exactly one hospital, and an
    # insured patient is insured by exactly one payer: 85 % are insured, 60 % of them by
    # 'insurer' and 40 % by 'insurer-b' (51 % and 34 % of all patients).
    "coverage": {
        "hospital_b_share": 0.45,
        "insured_share": 0.85,
        "payer_shares": {"insurer": 0.6, "insurer-b": 0.4},
        "pharma_share": {"cml": 1.0, "t1d": 0.9, "ip": 0.5, "background": 0.6},
    },
    "cml": {
        "description": (
            "Chronic myeloid leukaemia (ICD-10 C92.1) treated first-line with a tyrosine-kinase "
            "inhibitor started 0-30 days after diagnosis. Progression-free survival (event: "
            "progression to blast phase, or death, whichever first) follows a Weibull "
            "proportional-hazards model, cumulative hazard H(t) = rate * t**shape * exp(lp), t in "
            "years from TKI start, lp = log_hr[drug] + log_hr_age_per_10y * (age - 55) / 10 + "
            "log_hr_risk_per_unit * (risk_score - 1). Administrative censoring at the data cutoff; "
            "no other censoring."
        ),
        "diagnosis_years": ("2011-01-01", "2023-12-31"),
        "age_at_diagnosis": {"mean": 57.0, "sd": 13.0, "min": 18.0, "max": 90.0},
        "female_share": 0.45,
        "tki_shares": {"imatinib": 0.5, "dasatinib": 0.25, "nilotinib": 0.25},
        "risk_score": {"name": "Sokal score", "lognormal_median": 0.9, "lognormal_sigma": 0.35},
        "weibull_shape": 1.2,
        "baseline_rate_per_year": 0.06,
        "hazard_ratios": {
            "dasatinib_vs_imatinib": 0.60,
            "nilotinib_vs_imatinib": 0.75,
            "per_10_years_age": 1.35,
            "per_unit_risk_score": 2.0,
        },
        "death_share_of_events": 0.3,
        "death_after_progression_mean_years": 3.0,
        # Both payers are billed this much per day of a dispensed TKI (x U(0.95, 1.05) noise per
        # claim) and pay 85 % of it.
        "price_per_day": {"imatinib": 30.0, "dasatinib": 150.0, "nilotinib": 130.0},
        "paid_share": 0.85,
        "dispensing_interval_days": 90,
        "adverse_events": {  # share of patients with one pharma adverse-event report
            "imatinib": ("10030095", "Oedema", 0.15),
            "dasatinib": ("10035598", "Pleural effusion", 0.25),
            "nilotinib": ("10014387", "Electrocardiogram QT prolonged", 0.10),
        },
    },
    "t1d": {
        "description": "Type 1 diabetes (ICD-10 E10.9), insulin dispensed every 90 days.",
        "age_at_diagnosis": {"mean": 14.0, "sd": 8.0, "min": 1.0, "max": 60.0},
        "female_share": 0.47,
        "hba1c_percent": {"mean": 7.8, "sd": 1.1},
        # P(N(7.8, 1.1) >= 7.0): share of HbA1c results at or above the 7 % target.
        "hba1c_at_or_above_7_share": 0.7665,
        "death_rate_per_year": 0.004,
    },
    "ip": {
        "description": (
            "Interstitial pneumonia (ICD-10 J84.1 with fibrosis, J84.9 unspecified), older and "
            "mostly male; KL-6 serum marker measured at most visits."
        ),
        "age_at_diagnosis": {"mean": 69.0, "sd": 9.0, "min": 35.0, "max": 95.0},
        "female_share": 0.38,
        "j84_1_share": 0.6,
        "kl6_u_per_ml": {"lognormal_median": 900.0, "lognormal_sigma": 0.5},
        # P(lognormal(log 900, 0.5) >= 500): share of KL-6 results at or above 500 U/mL.
        "kl6_at_or_above_500_share": 0.8803,
        "death_rate_per_year": 0.15,
        "drug_induced_share": 0.10,  # reported to pharma as 'Interstitial lung disease'
    },
    # Injected data defects: rate, where it is injected, and how the quality report sees it.
    "defects": {
        "missing_year_of_birth": {
            "rate": 0.02, "holders": ("hospital-a", "hospital-b"), "table": "person",
            "measure": "share of person rows with no year_of_birth"},
        "missing_lab_value": {
            "rate": 0.03, "holders": ("hospital-a", "hospital-b"), "table": "measurement",
            "measure": "share of measurement rows with no value_as_number"},
        "out_of_range_lab": {
            "rate": 0.01, "holders": ("hospital-a", "hospital-b"), "table": "measurement",
            "measure": "share of measurement rows whose value is outside the plausible range"},
        "duplicate_claim": {
            "rate": 0.015, "holders": PAYERS, "table": "cost",
            "measure": "share of cost rows that repeat another claim (resubmitted, new claim id)"},
        "death_before_diagnosis": {
            "rate": 0.02, "holders": ("hospital-a", "hospital-b"), "table": "death",
            "measure": "share of deaths (of persons with a diagnosis) dated before the first one"},
        "visit_end_before_start": {
            "rate": 0.01, "holders": ("hospital-a", "hospital-b"), "table": "visit_occurrence",
            "measure": "share of visits ending before they start"},
        "enrolment_end_before_start": {
            "rate": 0.01, "holders": PAYERS, "table": "payer_plan_period",
            "measure": "share of enrolment periods ending before they start"},
        "future_dated_visit": {
            "rate": 0.002, "holders": ("hospital-a", "hospital-b"), "table": "visit_occurrence",
            "measure": "share of visits starting after the extraction date (all in 2035-2044)"},
    },
}

CML = GROUND_TRUTH["cml"]
# True Cox coefficients, named as a model on tki dummies (imatinib reference), age per year and
# risk score per unit would report them.
TRUE_LOG_HR = {
    "dasatinib": _LOG(CML["hazard_ratios"]["dasatinib_vs_imatinib"]),
    "nilotinib": _LOG(CML["hazard_ratios"]["nilotinib_vs_imatinib"]),
    "age_per_year": _LOG(CML["hazard_ratios"]["per_10_years_age"]) / 10,
    "risk_score": _LOG(CML["hazard_ratios"]["per_unit_risk_score"]),
}
GROUND_TRUTH["cml"]["true_log_hr"] = TRUE_LOG_HR
GROUND_TRUTH["cml"]["annual_paid_cost"] = {
    drug: round(price * 365.25 * CML["paid_share"], 2)
    for drug, price in CML["price_per_day"].items()
}


def day(iso: str) -> int:
    """Days since 1970-01-01 of an ISO date: the generator's internal time axis."""
    return int(np.datetime64(iso, "D").astype(np.int64))
