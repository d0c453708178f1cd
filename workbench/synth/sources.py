"""Render a simulated population into each holder's raw tables, in that holder's own shape, and
inject the documented defects.

- hospital-a: an EHR export (patients, encounters, diagnoses, labs in conventional units,
  medication_orders by generic name); dates as dates, lab times as timestamps.
- hospital-b: another EHR (pat, episodes, problems with dotless ICD-10 and local codes, results as
  text with LOINC codes in SI units, orders by brand name); timestamps everywhere.
- insurer: a claims extract (members with numeric sex and region codes, enrolment, claims); dates
  as integers YYYYMMDD, 0 for none.
- insurer-b: another fund (insured, insurance_periods, medical cases apart from prescriptions);
  sex W/M, dates as day-first text DD.MM.YYYY, drugs by national product number, amounts in
  cents. Both payers draw their claims the same way (same prices, same paid share).
- pharma: dispensing by ATC code and adverse-event reports coded in MedDRA.
Every table carries the direct identifier ``national_id`` (replaced by a pseudonym before any
store).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from workbench.synth.population import (
    BACKGROUND_DX,
    CHRONIC_DRUGS,
    CREA,
    HBA1C,
    HGB,
    KL6,
    SOKAL,
    WBC,
    Population,
)
from workbench.synth.truth import GROUND_TRUTH, PAYERS, TKI_ATC, TKIS, day

DEFECTS = {name: spec["rate"] for name, spec in GROUND_TRUTH["defects"].items()}
REGIONS_A = ("North", "North East", "East", "South East", "South", "South West", "West",
             "North West")
REGIONS_B = ("NO", "NE", "EA", "SE", "SO", "SW", "WE", "NW")
# Diagnosis codes: background (0..7), cohort (100 + dx_code), progression (200).
COHORT_DX = ("C92.1", "E10.9", "J84.1", "J84.9")
DRUG_ATC = (*(TKI_ATC[t] for t in TKIS), "A10AB01", *CHRONIC_DRUGS)
DRUG_GENERIC = (*TKIS, "insulin human", "metformin", "atorvastatin", "amlodipine", "ramipril")
# insurer-b's national product numbers (8 digits, synthetic), in the order of DRUG_ATC.
PRODUCT_NUMBERS = ("04588712", "00458190", "04305215", "01563862", "02378953", "03867271",
                   "00678243", "01038459")
DRUG_BRAND = ("Glivec", "Sprycel", "Tasigna", "Actrapid", "Glucophage", "Lipitor", "Norvasc",
              "Tritace")
# Labs: hospital-a code and unit (conventional), hospital-b LOINC/local code, unit and factor.
LAB_A = {HGB: ("HGB", "g/dL"), CREA: ("CREA", "mg/dL"), HBA1C: ("HBA1C", "%"),
         KL6: ("KL6", "U/mL"), WBC: ("WBC", "10^9/L"), SOKAL: ("SOKAL", "score")}
LAB_B = {HGB: ("718-7", "g/L", 10.0, 0.0, 0), CREA: ("14682-9", "umol/L", 88.4, 0.0, 0),
         HBA1C: ("59261-8", "mmol/mol", 10.929, -23.5, 0), KL6: ("KL6", "U/mL", 1.0, 0.0, 0),
         WBC: ("6690-2", "10^9/L", 1.0, 0.0, 1), SOKAL: ("SOKAL", "score", 1.0, 0.0, 2)}
AE_MEDDRA = (*(GROUND_TRUTH["cml"]["adverse_events"][t][:2] for t in TKIS),
             ("10022611", "Interstitial lung disease"))
AE_SUSPECT = (*(TKI_ATC[t] for t in TKIS), "L04AX03")  # IP: methotrexate
FUTURE = day("2035-01-01")


# -- column builders --------------------------------------------------------------------------
def strings(vocab, codes: np.ndarray) -> pd.arrays.ArrowStringArray:
    """Strings from a small vocabulary by code (-1 = missing), Arrow-backed to keep memory low."""
    return pd.array(list(vocab), dtype="string[pyarrow]").take(codes, allow_fill=True)


def dates(days: np.ndarray, unit: str = "D") -> np.ndarray:
    """Float days since 1970 (NaN = none) as datetime64 (NaT = none)."""
    out = np.full(days.shape, np.datetime64("NaT"), dtype="datetime64[s]")
    ok = ~np.isnan(days)
    out[ok] = (days[ok] * 86400).astype("int64").astype("datetime64[s]")
    return out


def yyyymmdd(days: np.ndarray) -> np.ndarray:
    """Float days as claims-style integers YYYYMMDD, 0 for none."""
    ok = ~np.isnan(days)
    d = np.where(ok, days, 0).astype("int64").astype("datetime64[D]")
    years = d.astype("datetime64[Y]")
    months = d.astype("datetime64[M]")
    value = ((years.astype(np.int64) + 1970) * 10000
             + (months - years.astype("datetime64[M]")).astype(np.int64) * 100 + 100
             + (d - months.astype("datetime64[D]")).astype(np.int64) + 1)
    return np.where(ok, value, 0)


_DMY_FIRST = day("1900-01-01")


@functools.cache
def _dmy_vocabulary() -> pd.arrays.ArrowStringArray:
    """Every day 1900-2050 as DD.MM.YYYY: formatting once and taking is ~20x faster than
    strftime per row."""
    days = np.arange(_DMY_FIRST, day("2051-01-01")).astype("datetime64[D]")
    return pd.arrays.ArrowStringArray(pc.strftime(pa.array(days), format="%d.%m.%Y"))


def dmy(days: np.ndarray) -> pd.arrays.ArrowStringArray:
    """Float days as day-first text DD.MM.YYYY, null for none."""
    vocabulary = _dmy_vocabulary()
    index = np.where(np.isnan(days), -1, days - _DMY_FIRST).astype(np.int64)
    if ((index < -1) | (index >= len(vocabulary))).any():
        raise ValueError("a synthetic date lies outside 1900-2050")  # a generator bug
    return vocabulary.take(index, allow_fill=True)


def _dx_codes(codes: np.ndarray, progression_code: str, dotless: bool):
    """Diagnosis strings: background (0..7), cohort (100 + dx_code), progression (200)."""
    vocab = [*BACKGROUND_DX, *COHORT_DX, progression_code]
    if dotless:
        vocab = [c.replace(".", "") for c in vocab]
    index = np.where(codes >= 200, len(vocab) - 1,
                     np.where(codes >= 100, len(BACKGROUND_DX) + codes - 100, codes))
    return strings(vocab, index)


def nullable_int(values: np.ndarray, present: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(present, values, 0).astype(np.int64), ~present)


# -- defects ----------------------------------------------------------------------------------
def _lab_defects(rng, value: np.ndarray) -> np.ndarray:
    u = rng.random(value.size)
    missing = u < DEFECTS["missing_lab_value"]
    out_of_range = ~missing & (u < DEFECTS["missing_lab_value"] + DEFECTS["out_of_range_lab"])
    value = np.where(out_of_range, -value, value)  # negative: outside every plausible range
    return np.where(missing, np.nan, value)


def _visit_defects(rng, start: np.ndarray, end: np.ndarray):
    u = rng.random(start.size)
    backwards = u < DEFECTS["visit_end_before_start"]
    future = ~backwards & (u < DEFECTS["visit_end_before_start"] + DEFECTS["future_dated_visit"])
    end = np.where(backwards, start - rng.integers(1, 31, start.size), end)
    # Far enough ahead (2035-2044) to be after any plausible report date as well.
    shifted = FUTURE + rng.integers(0, 3650, start.size)
    return np.where(future, shifted, start), np.where(future, shifted, end)


def _death_defects(rng, pop: Population, persons: np.ndarray) -> np.ndarray:
    """Death dates of ``persons``, 2 % of those with a diagnosis moved before the first one."""
    death = pop.persons["death"][persons].copy()
    first_dx = np.full(pop.persons["cohort"].size, np.nan)
    v = pop.visits
    np.fmin.at(first_dx, v["person"], v["start"])
    first = first_dx[persons]
    eligible = ~np.isnan(death) & ~np.isnan(first)
    hit = eligible & (rng.random(persons.size) < DEFECTS["death_before_diagnosis"])
    return np.where(hit, first - rng.integers(1, 366, persons.size), death)


# -- holders ----------------------------------------------------------------------------------
class _Renderer:
    def __init__(self, rng, pop: Population, national_id, id_base: int):
        self.rng, self.pop, self.nid, self.id_base = rng, pop, national_id, id_base

    def ids(self, n: int) -> np.ndarray:
        return self.id_base + np.arange(n, dtype=np.int64)

    def hospital(self, holder: str) -> dict[str, pd.DataFrame]:
        rng, pop, p = self.rng, self.pop, self.pop.persons
        in_b = holder == "hospital-b"
        persons = np.flatnonzero(p["hospital_b"] == in_b)
        birth = np.where(rng.random(persons.size) < DEFECTS["missing_year_of_birth"], np.nan,
                         p["birth"][persons])
        death = _death_defects(rng, pop, persons)
        v = pop.visits
        vrows = np.flatnonzero(p["hospital_b"][v["person"]] == in_b)
        visit_id = self.ids(vrows.size)
        start, end = _visit_defects(rng, v["start"][vrows], v["end"][vrows])
        v_nid = self.nid.take(v["person"][vrows])
        lab = pop.labs
        lrows = np.flatnonzero(p["hospital_b"][lab["person"]] == in_b)
        value = _lab_defects(rng, lab["value"][lrows])
        test = lab["test"][lrows]
        # Labs are linked to the encounter they were drawn at (-1: none, e.g. the risk score).
        lab_visit = np.full(lrows.size, -1, dtype=np.int64)
        linked = lab["visit"][lrows] >= 0
        position = np.searchsorted(vrows, lab["visit"][lrows][linked])
        lab_visit[linked] = visit_id[position]
        cml = np.flatnonzero((p["hospital_b"] == in_b) & (p["tki"] >= 0))
        if not in_b:
            return self._hospital_a(persons, birth, death, vrows, visit_id, start, end, v_nid,
                                    lrows, test, value, lab_visit, cml)
        return self._hospital_b(persons, birth, death, vrows, visit_id, start, end, v_nid,
                                lrows, test, value, lab_visit, cml)

    def _hospital_a(self, persons, birth, death, vrows, visit_id, start, end, v_nid, lrows,
                    test, value, lab_visit, cml):
        rng, pop, p = self.rng, self.pop, self.pop.persons
        v, lab = pop.visits, pop.labs
        codes = np.array([LAB_A[t][0] for t in range(6)])
        units = np.array([LAB_A[t][1] for t in range(6)])
        seconds = rng.integers(7 * 3600, 19 * 3600, lrows.size)
        return {
            "patients": pd.DataFrame({
                "national_id": self.nid.take(persons),
                "sex": strings(("F", "M"), np.where(p["female"][persons], 0, 1)),
                "birth_date": dates(birth),
                "region": strings(REGIONS_A, p["region"][persons]),
                "registered_on": dates(p["first_seen"][persons]),
                "last_contact": dates(p["last_seen"][persons]),
                "date_of_death": dates(death),
            }),
            "encounters": pd.DataFrame({
                "national_id": v_nid,
                "encounter_id": visit_id,
                "encounter_type": strings(("OP", "IP", "ED"), v["kind"][vrows]),
                "admit_date": dates(start),
                "discharge_date": dates(end),
            }),
            "diagnoses": pd.DataFrame({
                "national_id": v_nid,
                "encounter_id": visit_id,
                "icd10": _dx_codes(v["code"][vrows], "X-CML-BP", dotless=False),
                "diagnosis_date": dates(v["start"][vrows]),
            }),
            "labs": pd.DataFrame({
                "national_id": self.nid.take(lab["person"][lrows]),
                "encounter_id": nullable_int(lab_visit, lab_visit >= 0),
                "lab_code": strings(codes, test),
                "result_value": value,
                "unit": strings(units, test),
                "collected_at": dates(lab["date"][lrows]) + seconds.astype("timedelta64[s]"),
            }),
            "medication_orders": pd.DataFrame({
                "national_id": self.nid.take(cml),
                "drug_name": strings([t.capitalize() for t in TKIS], p["tki"][cml]),
                "start_date": dates(p["tki_start"][cml]),
                "stop_date": dates(p["tki_end"][cml]),
            }),
        }

    def _hospital_b(self, persons, birth, death, vrows, visit_id, start, end, v_nid, lrows,
                    test, value, lab_visit, cml):
        rng, pop, p = self.rng, self.pop, self.pop.persons
        v, lab = pop.visits, pop.labs
        scale = np.array([LAB_B[t][2] for t in range(6)])[test]
        offset = np.array([LAB_B[t][3] for t in range(6)])[test]
        decimals = np.array([LAB_B[t][4] for t in range(6)])[test]
        local = value * scale + offset
        # Negative (defective) values stay negative in SI units so the defect survives mapping.
        local = np.where(value < 0, -np.abs(local), local)
        rounded = np.select([decimals == 0, decimals == 1], [np.round(local), np.round(local, 1)],
                            np.round(local, 2))
        text = pd.arrays.ArrowStringArray(pa.array(rounded, from_pandas=True).cast(pa.string()))
        hour = rng.integers(0, 24 * 3600, vrows.size).astype("timedelta64[s]")
        yob = np.where(np.isnan(birth), 0,
                       dates(np.nan_to_num(birth)).astype("datetime64[Y]").astype(np.int64) + 1970)
        is_local = v["code"][vrows] >= 200
        return {
            "pat": pd.DataFrame({
                "national_id": self.nid.take(persons),
                "gender": strings(("female", "male"), np.where(p["female"][persons], 0, 1)),
                "yob": nullable_int(yob, ~np.isnan(birth)),
                "region": strings(REGIONS_B, p["region"][persons]),
                "first_seen": dates(p["first_seen"][persons]),
                "last_seen": dates(p["last_seen"][persons]),
                "dod": dates(death),
            }),
            "episodes": pd.DataFrame({
                "national_id": v_nid,
                "episode_no": visit_id,
                "kind": strings(("outpatient", "inpatient", "emergency"), v["kind"][vrows]),
                "start_ts": dates(start) + hour,
                "end_ts": dates(end) + hour,
            }),
            "problems": pd.DataFrame({
                "national_id": v_nid,
                "episode_no": visit_id,
                "code_system": strings(("ICD10", "LOCAL"), is_local.astype(np.int8)),
                "code": _dx_codes(v["code"][vrows], "CMLBLAST", dotless=True),
                "noted_on": dates(v["start"][vrows]) + hour,
            }),
            "results": pd.DataFrame({
                "national_id": self.nid.take(lab["person"][lrows]),
                "test": strings([LAB_B[t][0] for t in range(6)], test),
                "value_text": text,
                "units": strings([LAB_B[t][1] for t in range(6)], test),
                "result_date": dates(lab["date"][lrows]),
            }),
            "orders": pd.DataFrame({
                "national_id": self.nid.take(cml),
                "medication": strings(DRUG_BRAND[:3], p["tki"][cml]),
                "order_start": dates(p["tki_start"][cml]),
                "order_end": dates(p["tki_end"][cml]),
            }),
        }

    def _claims(self, payer: int) -> dict[str, np.ndarray]:
        """What a payer knows of its members, format-free: enrolment periods (with the
        end-before-start defect) and claims (with resubmitted duplicates appended)."""
        rng, pop, p = self.rng, self.pop, self.pop.persons
        member = p["payer"] == payer
        persons = np.flatnonzero(member)
        cover_start = np.maximum.reduce([
            np.full(persons.size, float(day(GROUND_TRUTH["window_start"]))), p["birth"][persons],
            p["first_seen"][persons] - rng.integers(0, 366, persons.size)])
        cover_end = p["last_seen"][persons].copy()
        backwards = rng.random(persons.size) < DEFECTS["enrolment_end_before_start"]
        cover_end[backwards] = cover_start[backwards] - rng.integers(1, 366, int(backwards.sum()))

        v = pop.visits
        vrows = np.flatnonzero(member[v["person"]])
        kind = v["kind"][vrows]
        los = v["end"][vrows] - v["start"][vrows]
        billed_visit = np.select([kind == 1, kind == 2],
                                 [1500.0 * np.maximum(los, 1), 400.0], 120.0)
        billed_visit = billed_visit * rng.lognormal(0, 0.3, vrows.size)
        d = pop.dispensings
        drows = np.flatnonzero(member[d["person"]])
        price = np.array([GROUND_TRUTH["cml"]["price_per_day"][t] for t in TKIS]
                         + [4.0, 0.3, 0.4, 0.2, 0.2])[d["drug"][drows]]
        billed_rx = price * d["days_supply"][drows] * rng.uniform(0.95, 1.05, drows.size)
        n_v, n_d = vrows.size, drows.size
        billed = np.round(np.concatenate([billed_visit, billed_rx]), 2)
        paid_share = np.concatenate([rng.uniform(0.6, 0.9, n_v),
                                     np.full(n_d, GROUND_TRUTH["cml"]["paid_share"])])
        claims = {
            "person": np.concatenate([v["person"][vrows], d["person"][drows]]),
            "type": np.concatenate([kind, np.full(n_d, 3, dtype=np.int8)]),  # O, I, E, Rx
            "dx": np.concatenate([v["code"][vrows], np.full(n_d, -1)]),
            "drug": np.concatenate([np.full(n_v, -1), d["drug"][drows]]),
            "supply": np.concatenate([np.zeros(n_v, np.int64), d["days_supply"][drows]]),
            "start": np.concatenate([v["start"][vrows], d["date"][drows]]),
            "end": np.concatenate([v["end"][vrows], d["date"][drows]]),
            "billed": billed,
            "paid": np.round(billed * paid_share, 2),
        }
        # Resubmitted claims: exact copies under a new claim id, appended to the extract.
        share = DEFECTS["duplicate_claim"]
        n = claims["person"].size
        rows = np.concatenate([np.arange(n), np.flatnonzero(rng.random(n) < share / (1 - share))])
        claims = {name: values[rows] for name, values in claims.items()}
        return {"persons": persons, "cover_start": cover_start, "cover_end": cover_end,
                "plus_plan": rng.random(persons.size) < 0.3, "claims": claims}

    def insurer(self) -> dict[str, pd.DataFrame]:
        """Claims extract: sex 1/2, region 1-8, dates as integers YYYYMMDD (0 = none), one claims
        table with dotless ICD-10 and ATC codes, amounts in EUR."""
        facts = self._claims(PAYERS.index("insurer"))
        persons, c = facts["persons"], facts["claims"]
        p = self.pop.persons
        drug = c["drug"]
        return {
            "members": pd.DataFrame({
                "national_id": self.nid.take(persons),
                "gender": np.where(p["female"][persons], 2, 1).astype(np.int8),
                "dob": yyyymmdd(p["birth"][persons]),
                "region_code": (p["region"][persons] + 1).astype(np.int8),
                "date_of_death": yyyymmdd(p["death"][persons]),
            }),
            "enrolment": pd.DataFrame({
                "national_id": self.nid.take(persons),
                "plan_code": strings(("BASIC", "PLUS"), facts["plus_plan"].astype(np.int8)),
                "coverage_start": yyyymmdd(facts["cover_start"]),
                "coverage_end": yyyymmdd(facts["cover_end"]),
            }),
            "claims": pd.DataFrame({
                "national_id": self.nid.take(c["person"]),
                "claim_id": self.ids(c["person"].size) + 500_000_000,
                "claim_type": strings(("O", "I", "E", "R"), c["type"]),
                "service_from": yyyymmdd(c["start"]),
                "service_to": yyyymmdd(c["end"]),
                # Claims cannot code a progression: the admission is billed under C92.1.
                "dx1": _dx_codes(c["dx"], "C92.1", dotless=True),
                "atc": strings(DRUG_ATC, drug),
                "days_supply": nullable_int(c["supply"], drug >= 0),
                "billed_amount": c["billed"],
                "paid_amount": c["paid"],
            }),
        }

    def insurer_b(self) -> dict[str, pd.DataFrame]:
        """Another fund's extract: sex W/M, region R01-R08, dates as day-first text DD.MM.YYYY
        (null = none), medical cases (dotted ICD-10) apart from prescriptions (national product
        numbers, no ATC), amounts in integer euro cents."""
        facts = self._claims(PAYERS.index("insurer-b"))
        persons, c = facts["persons"], facts["claims"]
        p = self.pop.persons
        claim_no = self.ids(c["person"].size) + 600_000_000
        case, rx = np.flatnonzero(c["type"] < 3), np.flatnonzero(c["type"] == 3)
        cents = {name: np.rint(c[name] * 100).astype(np.int64) for name in ("billed", "paid")}
        return {
            "insured": pd.DataFrame({
                "national_id": self.nid.take(persons),
                "sex": strings(("W", "M"), np.where(p["female"][persons], 0, 1)),
                "birth_date": dmy(p["birth"][persons]),
                "region": strings([f"R{i:02d}" for i in range(1, 9)], p["region"][persons]),
                "deceased_on": dmy(p["death"][persons]),
            }),
            "insurance_periods": pd.DataFrame({
                "national_id": self.nid.take(persons),
                "tariff": strings(("STANDARD", "PREMIUM"), facts["plus_plan"].astype(np.int8)),
                "valid_from": dmy(facts["cover_start"]),
                "valid_to": dmy(facts["cover_end"]),
            }),
            "cases": pd.DataFrame({
                "national_id": self.nid.take(c["person"][case]),
                "case_no": claim_no[case],
                "setting": strings(("AMB", "STAT", "NOTF"), c["type"][case]),
                "admitted": dmy(c["start"][case]),
                "discharged": dmy(c["end"][case]),
                "icd": _dx_codes(c["dx"][case], "C92.1", dotless=False),
                "charged_cents": cents["billed"][case],
                "reimbursed_cents": cents["paid"][case],
            }),
            "prescriptions": pd.DataFrame({
                "national_id": self.nid.take(c["person"][rx]),
                "rx_no": claim_no[rx],
                "product_no": strings(PRODUCT_NUMBERS, c["drug"][rx]),
                "dispensed": dmy(c["start"][rx]),
                "supply_days": c["supply"][rx],
                "charged_cents": cents["billed"][rx],
                "reimbursed_cents": cents["paid"][rx],
            }),
        }

    def pharma(self) -> dict[str, pd.DataFrame]:
        pop, p = self.pop, self.pop.persons
        d = pop.dispensings
        drows = np.flatnonzero(p["in_pharma"][d["person"]])
        drug = d["drug"][drows]
        ae = pop.adverse_events
        arows = np.flatnonzero(p["in_pharma"][ae["person"]])
        kind = ae["kind"][arows]
        return {
            "dispensing": pd.DataFrame({
                "national_id": self.nid.take(d["person"][drows]),
                "dispense_id": self.ids(drows.size) + 700_000_000,
                "atc_code": strings(DRUG_ATC, drug),
                "product_name": strings(DRUG_BRAND, drug),
                "dispensed_on": dates(d["date"][drows]),
                "quantity": np.where(drug == 3, 10, d["days_supply"][drows]).astype(np.int64),
                "days_supply": d["days_supply"][drows],
            }),
            "adverse_events": pd.DataFrame({
                "national_id": self.nid.take(ae["person"][arows]),
                "report_id": self.ids(arows.size) + 900_000_000,
                "meddra_pt_code": strings([m[0] for m in AE_MEDDRA], kind),
                "meddra_pt": strings([m[1] for m in AE_MEDDRA], kind),
                "onset_date": dates(ae["date"][arows]),
                "serious": ae["serious"][arows],
                "suspect_atc": strings(AE_SUSPECT, kind),
            }),
        }


def render(rng, pop: Population, national_id, id_base: int) -> dict[str, dict[str, pd.DataFrame]]:
    renderer = _Renderer(rng, pop, national_id, id_base)
    return {
        "hospital-a": renderer.hospital("hospital-a"),
        "hospital-b": renderer.hospital("hospital-b"),
        "insurer": renderer.insurer(),
        "insurer-b": renderer.insurer_b(),
        "pharma": renderer.pharma(),
    }
