"""Simulate one chunk of patients and their clinical histories, source-independent.

Everything is a column of numpy arrays (time in float days since 1970, NaN = none) so a chunk of
100 000 patients is a handful of vectorised draws. ``sources.py`` renders these facts into each
holder's own raw tables and injects the defects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.synth.truth import (
    DATA_CUTOFF,
    GROUND_TRUTH,
    PAYERS,
    TKIS,
    TRUE_LOG_HR,
    WINDOW_START,
    day,
)

YEAR = 365.25
START, CUTOFF = day(WINDOW_START), day(DATA_CUTOFF)
BACKGROUND, CML_, T1D_, IP_ = 0, 1, 2, 3
NAN = np.nan

# Background diagnoses (ICD-10) and chronic drugs (ATC), with the visit share of each.
BACKGROUND_DX = ("I10", "E11.9", "J18.9", "M54.5", "J06.9", "K21.9", "F32.9", "N39.0")
CHRONIC_DRUGS = ("A10BA02", "C10AA05", "C08CA01", "C09AA05")  # metformin, atorvastatin, ...
# Internal lab ids; units and codes per source are in sources.py.
HGB, CREA, HBA1C, KL6, WBC, SOKAL = range(6)


@dataclass
class Population:
    """One chunk of simulated patients (arrays indexed by position 0..n-1) and their events."""

    persons: dict[str, np.ndarray]
    visits: dict[str, np.ndarray]
    labs: dict[str, np.ndarray]
    dispensings: dict[str, np.ndarray]
    adverse_events: dict[str, np.ndarray]


def _clipped_normal(rng, spec: dict, n: int) -> np.ndarray:
    return np.clip(rng.normal(spec["mean"], spec["sd"], n), spec["min"], spec["max"])


def _uniform_days(rng, low, high) -> np.ndarray:
    return np.floor(low + rng.random(np.shape(low)) * (np.asarray(high) - low))


def _persons(rng, n: int) -> dict[str, np.ndarray]:
    truth = GROUND_TRUTH
    shares = truth["cohort_shares"]
    p = [1 - sum(shares.values()), shares["cml"], shares["t1d"], shares["ip"]]
    cohort = rng.choice(4, size=n, p=p).astype(np.int8)
    u = rng.random(n)
    female_share = np.select(
        [cohort == CML_, cohort == T1D_, cohort == IP_],
        [truth["cml"]["female_share"], truth["t1d"]["female_share"], truth["ip"]["female_share"]],
        0.51,
    )
    female = u < female_share

    # Background: ages 0-95 at the cutoff; first seen within five years of the window start.
    age_at_cutoff = 0.1 + rng.random(n) * 95
    birth = np.floor(CUTOFF - age_at_cutoff * YEAR)
    first_seen = np.minimum(np.maximum(START, birth) + _uniform_days(rng, np.zeros(n), 5 * YEAR),
                            CUTOFF - 30)
    p_death = np.clip((age_at_cutoff - 50) / 45, 0, 1) * 0.35
    dies = rng.random(n) < p_death
    death = np.where(dies, _uniform_days(rng, first_seen, CUTOFF), NAN)
    dx = np.full(n, NAN)

    risk = np.full(n, NAN)
    tki = np.full(n, -1, dtype=np.int8)
    tki_start = np.full(n, NAN)
    progression = np.full(n, NAN)
    dx_code = np.full(n, -1, dtype=np.int8)  # 0 C92.1, 1 E10.9, 2 J84.1, 3 J84.9

    # CML on a TKI: Weibull PH progression-or-death, administratively censored at the cutoff.
    cml = np.flatnonzero(cohort == CML_)
    spec = truth["cml"]
    lo, hi = (day(d) for d in spec["diagnosis_years"])
    dx[cml] = _uniform_days(rng, np.full(cml.size, lo), hi)
    age = _clipped_normal(rng, spec["age_at_diagnosis"], cml.size)
    birth[cml] = np.floor(dx[cml] - age * YEAR)
    first_seen[cml] = np.maximum(START, dx[cml] - _uniform_days(rng, np.zeros(cml.size), 2 * YEAR))
    rs = spec["risk_score"]
    risk[cml] = np.round(rng.lognormal(np.log(rs["lognormal_median"]), rs["lognormal_sigma"],
                                       cml.size), 2)
    tki[cml] = rng.choice(3, size=cml.size, p=[spec["tki_shares"][t] for t in TKIS])
    tki_start[cml] = dx[cml] + rng.integers(0, 31, cml.size)
    lp = (np.select([tki[cml] == 1, tki[cml] == 2],
                    [TRUE_LOG_HR["dasatinib"], TRUE_LOG_HR["nilotinib"]], 0.0)
          + TRUE_LOG_HR["age_per_year"] * (age - 55) + TRUE_LOG_HR["risk_score"] * (risk[cml] - 1))
    years = (rng.exponential(1.0, cml.size) / (spec["baseline_rate_per_year"] * np.exp(lp))) ** (
        1 / spec["weibull_shape"])
    event_day = np.floor(tki_start[cml] + years * YEAR)
    happened = event_day <= CUTOFF
    is_death = rng.random(cml.size) < spec["death_share_of_events"]
    later_death = np.floor(event_day + rng.exponential(
        spec["death_after_progression_mean_years"], cml.size) * YEAR)
    progression[cml] = np.where(happened & ~is_death, event_day, NAN)
    cml_death = np.where(happened & is_death, event_day,
                         np.where(happened & (later_death <= CUTOFF), later_death, NAN))
    death[cml] = cml_death
    dx_code[cml] = 0

    # Type 1 diabetes and interstitial pneumonia: diagnosed inside the window, exponential death.
    for code, label in ((T1D_, "t1d"), (IP_, "ip")):
        idx = np.flatnonzero(cohort == code)
        spec = truth[label]
        dx[idx] = _uniform_days(rng, np.full(idx.size, START), CUTOFF - 60)
        age = _clipped_normal(rng, spec["age_at_diagnosis"], idx.size)
        birth[idx] = np.floor(dx[idx] - age * YEAR)
        lookback = 1 * YEAR if code == T1D_ else 3 * YEAR
        first_seen[idx] = np.maximum(START, dx[idx] - _uniform_days(rng, np.zeros(idx.size),
                                                                     lookback))
        first_seen[idx] = np.maximum(first_seen[idx], birth[idx])
        d = np.floor(dx[idx] + rng.exponential(1 / spec["death_rate_per_year"], idx.size) * YEAR)
        death[idx] = np.where(d <= CUTOFF, d, NAN)
        if code == T1D_:
            dx_code[idx] = 1
        else:
            dx_code[idx] = np.where(rng.random(idx.size) < spec["j84_1_share"], 2, 3)

    last_seen = np.where(np.isnan(death), CUTOFF, death)
    coverage = truth["coverage"]
    pharma_share = np.select(
        [cohort == CML_, cohort == T1D_, cohort == IP_],
        [coverage["pharma_share"][k] for k in ("cml", "t1d", "ip")],
        coverage["pharma_share"]["background"],
    )
    # Draw order kept as before the second payer, so the hospitals' data stay the same.
    region = rng.integers(0, 8, n).astype(np.int8)
    hospital_b = rng.random(n) < coverage["hospital_b_share"]
    # One draw decides insurance and payer: u < insured_share * share of the first payer -> 0.
    u = rng.random(n)
    payer = np.full(n, -1, dtype=np.int8)  # index into PAYERS, -1 = not insured
    bound = 0.0
    for index, name in enumerate(PAYERS):
        share = coverage["payer_shares"][name]
        payer[(u >= bound) & (u < bound + share * coverage["insured_share"])] = index
        bound += share * coverage["insured_share"]
    return {
        "cohort": cohort, "female": female, "birth": birth, "first_seen": first_seen,
        "last_seen": last_seen, "death": death, "dx": dx, "dx_code": dx_code, "risk": risk,
        "tki": tki, "tki_start": tki_start, "progression": progression,
        "tki_end": np.where(np.isnan(tki_start), NAN,
                            np.fmin(np.fmin(progression, death), CUTOFF)),
        "region": region,
        "hospital_b": hospital_b,
        "payer": payer,
        "in_pharma": rng.random(n) < pharma_share,
    }


def _visits(rng, people: dict) -> dict[str, np.ndarray]:
    cohort = people["cohort"]
    span = people["last_seen"] - people["first_seen"]
    rate = np.array([0.5, 4.0, 3.0, 3.0])[cohort]
    count = np.minimum(rng.poisson(rate * span / YEAR), 200)
    person = np.repeat(np.arange(cohort.size), count)
    start = _uniform_days(rng, people["first_seen"][person], people["last_seen"][person] + 1)
    dx = people["dx"][person]
    # After diagnosis, 60 % of a cohort patient's visits are coded with the cohort diagnosis.
    cohort_coded = (start >= dx) & (rng.random(person.size) < 0.6)
    code = np.where(cohort_coded, 100 + people["dx_code"][person],
                    rng.integers(0, len(BACKGROUND_DX), person.size))

    # Fixed visits: the diagnosis visit of every cohort patient, the progression admission.
    has_dx = np.flatnonzero(~np.isnan(people["dx"]))
    prog = np.flatnonzero(~np.isnan(people["progression"]))
    person = np.concatenate([person, has_dx, prog])
    start = np.concatenate([start, people["dx"][has_dx], people["progression"][prog]])
    code = np.concatenate([code, 100 + people["dx_code"][has_dx], np.full(prog.size, 200)])
    order = np.lexsort((start, person))
    person, start, code = person[order], start[order], code[order]

    kind = rng.choice(3, size=person.size, p=[0.8, 0.12, 0.08]).astype(np.int8)  # OP, IP, ED
    kind[code == 200] = 1
    los = np.where(kind == 1, 1 + rng.geometric(0.25, person.size), 0)
    end = np.fmin(start + los, people["last_seen"][person])
    return {"person": person, "start": start, "end": end, "kind": kind, "code": code}


def _labs(rng, people: dict, visits: dict) -> dict[str, np.ndarray]:
    cohort = people["cohort"]
    v_person, v_start = visits["person"], visits["start"]
    v_cohort = cohort[v_person]
    after_dx = v_start >= people["dx"][v_person]
    parts = []
    # Background panel: one lab at 80 % of visits, haemoglobin or creatinine.
    take = rng.random(v_person.size) < 0.8
    test = np.where(rng.random(v_person.size) < 0.55, HGB, CREA)
    parts.append((np.flatnonzero(take), test[take]))
    for code, test, share in ((T1D_, HBA1C, 1.0), (IP_, KL6, 0.7), (CML_, WBC, 1.0)):
        idx = np.flatnonzero((v_cohort == code) & after_dx & (rng.random(v_person.size) < share))
        parts.append((idx, np.full(idx.size, test)))
    visit = np.concatenate([p[0] for p in parts])
    test = np.concatenate([p[1] for p in parts]).astype(np.int8)
    person = v_person[visit]
    date = v_start[visit]
    female = people["female"][person]
    value = np.empty(person.size)
    gt = GROUND_TRUTH
    kl6 = gt["ip"]["kl6_u_per_ml"]
    draws = {
        HGB: lambda k, f: np.clip(rng.normal(13.6 - 1.3 * f, 1.3), 6, 19),
        CREA: lambda k, f: np.clip(rng.lognormal(np.log(0.9), 0.25, k), 0.3, 8),
        HBA1C: lambda k, f: np.clip(rng.normal(gt["t1d"]["hba1c_percent"]["mean"],
                                               gt["t1d"]["hba1c_percent"]["sd"], k), 4.5, 15),
        KL6: lambda k, f: np.clip(rng.lognormal(np.log(kl6["lognormal_median"]),
                                                kl6["lognormal_sigma"], k), 100, 10000),
        WBC: lambda k, f: np.clip(rng.lognormal(np.log(6.0), 0.3, k), 1, 100),
    }
    for t, draw in draws.items():
        sel = test == t
        value[sel] = draw(int(sel.sum()), female[sel])
    # The Sokal risk score, recorded once at diagnosis.
    cml = np.flatnonzero(cohort == CML_)
    person = np.concatenate([person, cml])
    date = np.concatenate([date, people["dx"][cml]])
    test = np.concatenate([test, np.full(cml.size, SOKAL, dtype=np.int8)])
    value = np.concatenate([value, people["risk"][cml]])
    visit = np.concatenate([visit, np.full(cml.size, -1)])
    return {"person": person, "date": date, "test": test, "value": value, "visit": visit}


def _repeat_every(start, end, interval):
    """Dates start, start+interval, ... <= end for each row; returns (row index, dates)."""
    count = np.where(np.isnan(start), 0, np.floor((end - start) / interval) + 1).astype(np.int64)
    count = np.maximum(count, 0)
    row = np.repeat(np.arange(start.size), count)
    first = np.repeat(np.cumsum(count) - count, count)
    step = np.arange(row.size) - first
    return row, start[row] + step * interval


def _dispensings(rng, people: dict) -> dict[str, np.ndarray]:
    n = people["cohort"].size
    interval = GROUND_TRUTH["cml"]["dispensing_interval_days"]
    drug = np.full(n, -1, dtype=np.int16)
    start = np.full(n, NAN)
    end = np.full(n, NAN)
    cml = people["cohort"] == CML_
    drug[cml] = people["tki"][cml]  # 0..2 = TKIS
    start[cml] = people["tki_start"][cml]
    end[cml] = people["tki_end"][cml]
    t1d = people["cohort"] == T1D_
    drug[t1d] = 3  # insulin
    start[t1d] = np.maximum(people["dx"][t1d], people["first_seen"][t1d])
    end[t1d] = people["last_seen"][t1d]
    # A quarter of everybody else takes a chronic drug for 3-24 months.
    other = ~(cml | t1d) & (rng.random(n) < 0.25)
    drug[other] = 4 + rng.integers(0, len(CHRONIC_DRUGS), int(other.sum()))
    start[other] = _uniform_days(rng, people["first_seen"][other], people["last_seen"][other])
    end[other] = np.fmin(start[other] + _uniform_days(rng, np.full(int(other.sum()), 90.0), 730),
                         people["last_seen"][other])
    row, date = _repeat_every(start, end, interval)
    return {"person": row, "date": date, "drug": drug[row],
            "days_supply": np.full(row.size, interval, dtype=np.int64)}


def _adverse_events(rng, people: dict) -> dict[str, np.ndarray]:
    spec = GROUND_TRUTH["cml"]["adverse_events"]
    cml = np.flatnonzero(people["cohort"] == CML_)
    share = np.array([spec[t][2] for t in TKIS])[people["tki"][cml]]
    cml = cml[rng.random(cml.size) < share]
    onset = np.fmin(people["tki_start"][cml] + rng.integers(30, 700, cml.size),
                    people["tki_end"][cml])
    ip = np.flatnonzero(people["cohort"] == IP_)
    ip = ip[rng.random(ip.size) < GROUND_TRUTH["ip"]["drug_induced_share"]]
    person = np.concatenate([cml, ip])
    kind = np.concatenate([people["tki"][cml], np.full(ip.size, 3)]).astype(np.int8)
    onset = np.concatenate([onset, people["dx"][ip]])
    return {"person": person, "date": onset, "kind": kind,
            "serious": rng.random(person.size) < 0.3}


def simulate(rng: np.random.Generator, n: int) -> Population:
    people = _persons(rng, n)
    visits = _visits(rng, people)
    return Population(
        persons=people,
        visits=visits,
        labs=_labs(rng, people, visits),
        dispensings=_dispensings(rng, people),
        adverse_events=_adverse_events(rng, people),
    )
