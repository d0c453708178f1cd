"""What the quality report checks per common-model table (tables it does not know get the
generic checks only: completeness and repeated rows)."""

from __future__ import annotations

# Plausible result ranges in the common model's units (harmonise.MEASUREMENT_UNITS): values
# outside are recording or unit errors, not clinical extremes.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "haemoglobin": (3.0, 25.0),     # g/dL
    "creatinine": (0.1, 20.0),      # mg/dL
    "hba1c": (3.0, 20.0),           # %
    "kl6": (10.0, 50000.0),         # U/mL
    "wbc": (0.1, 500.0),            # 10^9/L
    "sokal_score": (0.01, 10.0),
}

REGIONS = "north|north_east|east|south_east|south|south_west|west|north_west"
CODE_RULES: dict[str, dict[str, tuple[str, str]]] = {
    "person": {
        "gender": ("F|M", "'F' or 'M'"),
        "region": (REGIONS, "a region of the space"),
    },
    "visit_occurrence": {
        "visit_concept": ("outpatient|inpatient|emergency", "a visit kind"),
    },
    "condition_occurrence": {
        "condition_concept": (r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?|CML-BP",
                              "ICD-10 codes (or CML-BP)"),
        "related_drug_concept": (r"[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}", "ATC codes"),
    },
    "drug_exposure": {
        "drug_concept": (r"[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}", "ATC codes"),
    },
    "cost": {
        "cost_domain": ("visit|drug", "'visit' or 'drug'"),
    },
}

# Columns that are empty by design for some rows (a dispensing has no visit).
OPTIONAL_COLUMNS: dict[str, set[str]] = {
    "condition_occurrence": {"visit_occurrence_id", "related_drug_concept"},
    "drug_exposure": {"days_supply", "quantity"},
}

DATE_ORDER: dict[str, tuple[str, str]] = {
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "observation_period": ("observation_period_start_date", "observation_period_end_date"),
    "payer_plan_period": ("payer_plan_period_start_date", "payer_plan_period_end_date"),
    "drug_exposure": ("drug_exposure_start_date", "drug_exposure_end_date"),
}

# The column naming a record: repeated content under a new id is a resubmission.
RECORD_IDS: dict[str, str] = {
    "visit_occurrence": "visit_occurrence_id",
    "cost": "cost_id",
}

TIMELINESS_DATE: dict[str, str] = {
    "observation_period": "observation_period_start_date",
    "visit_occurrence": "visit_start_date",
    "condition_occurrence": "condition_start_date",
    "drug_exposure": "drug_exposure_start_date",
    "measurement": "measurement_date",
    "death": "death_date",
    "cost": "cost_event_date",
    "payer_plan_period": "payer_plan_period_start_date",
}
