"""The common data model: an OMOP-like subset shared by every holder.

Concepts are source-neutral codes rather than OMOP integer concept ids: conditions in ICD-10 with
the dot (``C92.1``) plus the workbench-local ``CML-BP`` (CML progression to blast phase), drugs in
ATC, measurements by short names in one unit each (``MEASUREMENT_UNITS``). Sensitivity tags follow
the catalog's vocabulary: pseudonyms, birth years, dates and regions are quasi-identifiers; lab
values and money are ``sensitive`` (reachable only through the secure-computation path).
"""

from __future__ import annotations

import pyarrow as pa

from workbench.catalog.models import Column

Q, S, G = "quasi_identifier", "sensitive", "general"


def _c(name: str, type_: str, description: str, sensitivity: str = G) -> Column:
    return Column(name=name, type=type_, description=description, sensitivity=sensitivity)


PERSON_ID = _c("person_id", "string", "keyed pseudonym of the patient (same across holders)", Q)

OMOP_SCHEMA: dict[str, tuple[Column, ...]] = {
    "person": (
        PERSON_ID,
        _c("gender", "string", "'F' or 'M'; null when unknown", Q),
        _c("year_of_birth", "int64", "calendar year of birth", Q),
        _c("region", "string", "region of residence: north, north_east, ..., north_west", Q),
    ),
    "observation_period": (
        PERSON_ID,
        _c("observation_period_start_date", "date", "first day the holder observes the person", Q),
        _c("observation_period_end_date", "date",
           "last day observed: last contact, death or the data cutoff (censoring)", Q),
        _c("period_type", "string", "'ehr' (hospital record) or 'enrolment' (insurance)"),
    ),
    "visit_occurrence": (
        PERSON_ID,
        _c("visit_occurrence_id", "string", "the holder's encounter or claim id"),
        _c("visit_concept", "string", "'outpatient', 'inpatient' or 'emergency'"),
        _c("visit_start_date", "date", "admission or service date", Q),
        _c("visit_end_date", "date", "discharge or last service date", Q),
    ),
    "condition_occurrence": (
        PERSON_ID,
        _c("condition_concept", "string",
           "ICD-10 code with the dot (e.g. 'C92.1', 'E10.9', 'J84.1'); 'CML-BP' = CML blast phase"),
        _c("condition_start_date", "date", "diagnosis, claim or adverse-event onset date", Q),
        _c("condition_type", "string", "'ehr_diagnosis', 'claim_diagnosis' or 'adverse_event'"),
        _c("visit_occurrence_id", "string", "the visit it was recorded at, if any"),
        _c("related_drug_concept", "string", "ATC code of the suspected drug (adverse events)"),
    ),
    "drug_exposure": (
        PERSON_ID,
        _c("drug_concept", "string", "ATC code, e.g. 'L01EA01' imatinib"),
        _c("drug_name", "string", "generic name in lower case, e.g. 'imatinib'"),
        _c("drug_exposure_start_date", "date", "order start, dispensing or claim date", Q),
        _c("drug_exposure_end_date", "date", "order stop or start + days supply", Q),
        _c("days_supply", "int64", "days of supply dispensed (dispensing and claims)"),
        _c("quantity", "float64", "units dispensed"),
        _c("drug_type", "string", "'prescription', 'dispensing' or 'pharmacy_claim'"),
    ),
    "measurement": (
        PERSON_ID,
        _c("measurement_concept", "string",
           "haemoglobin, creatinine, hba1c, kl6, wbc or sokal_score"),
        _c("measurement_date", "date", "date the sample was taken", Q),
        _c("value_as_number", "float64", "result in the unit of MEASUREMENT_UNITS", S),
        _c("unit", "string", "unit of value_as_number"),
    ),
    "death": (
        PERSON_ID,
        _c("death_date", "date", "date of death", Q),
        _c("death_source", "string", "'ehr' or 'insurer'"),
    ),
    "cost": (
        PERSON_ID,
        _c("cost_id", "string", "the claim id"),
        _c("cost_event_date", "date", "service or dispensing date of the claim", Q),
        _c("cost_domain", "string", "'visit' or 'drug'"),
        _c("cost_concept", "string", "ICD-10 code (visits) or ATC code (drugs) of the claim"),
        _c("total_charge", "float64", "amount billed (EUR)", S),
        _c("total_paid", "float64", "amount paid by the insurer (EUR)", S),
    ),
    "payer_plan_period": (
        PERSON_ID,
        _c("payer_plan_period_start_date", "date", "first day of cover", Q),
        _c("payer_plan_period_end_date", "date", "last day of cover", Q),
        _c("plan_concept", "string", "'basic' or 'plus'"),
    ),
}

MEASUREMENT_UNITS = {
    "haemoglobin": "g/dL", "creatinine": "mg/dL", "hba1c": "%", "kl6": "U/mL",
    "wbc": "10^9/L", "sokal_score": "score",
}

_ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
          "date": pa.date32(), "timestamp": pa.timestamp("s"), "bool": pa.bool_()}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow (and Parquet) schema of a common-model table."""
    return pa.schema([pa.field(c.name, _ARROW[c.type]) for c in OMOP_SCHEMA[table]])
