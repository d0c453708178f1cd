"""The real clinical datasets that ship with lifelines, registered as validation datasets.

Each is split across holders by its site column where it has one (NCCTG ``lung.inst``: one holder
per institution, rows with no institution to ``ncctg-inst-unknown``); a dataset without a site
goes to one holder of its own. Every row gets a ``person_id`` (keyed pseudonym of the dataset's
row or trial id) so views can re-key it per study; the trial's own patient number is dropped.

lifelines ships ACTG175 as ``ACTG175.csv`` without a ``load_*`` function; it is read with the
package's own ``_load_dataset``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from lifelines import datasets as ll

from workbench.catalog.models import Column
from workbench.space.linkage import pseudonym

PERSON_ID = Column(
    name="person_id", type="string", sensitivity="quasi_identifier",
    description="keyed pseudonym of the participant (HMAC-SHA-256 under the space's linkage key); "
                "re-keyed per study before it leaves the gateway",
)


def _c(name: str, type_: str, description: str, sensitivity: str = "general") -> Column:
    return Column(name=name, type=type_, description=description, sensitivity=sensitivity)


@dataclass(frozen=True)
class PublicDataset:
    table: str  # logical table name shared by every holder of this dataset
    title: str
    description: str
    source: str
    load: Callable[[], pd.DataFrame]
    rename: dict[str, str]  # source column -> our column (snake_case)
    columns: tuple[Column, ...]  # without person_id, in file order
    holder_of: Callable[[pd.DataFrame], pd.Series]  # holder id per row
    person_key: Callable[[pd.DataFrame], pd.Series]  # text that the person_id is keyed on
    drop: tuple[str, ...] = ()  # direct identifiers and row numbers of the source
    tags: tuple[str, ...] = ()
    usage_terms: str = "public dataset; cite the reference given in the description"


def _lung_holder(df: pd.DataFrame) -> pd.Series:
    inst = df["inst"]
    names = inst.map(lambda v: f"ncctg-inst-{int(v):02d}", na_action="ignore")
    return names.fillna("ncctg-inst-unknown")


LUNG = PublicDataset(
    table="lung",
    title="NCCTG advanced lung cancer survival",
    description=(
        "Survival of patients with advanced lung cancer in the North Central Cancer Treatment "
        "Group, with performance scores (Loprinzi et al., J Clin Oncol 1994). Split by "
        "institution: one holder per NCCTG site."
    ),
    source="lifelines:lung",
    load=ll.load_lung,
    rename={"ph.ecog": "ph_ecog", "ph.karno": "ph_karno", "pat.karno": "pat_karno",
            "meal.cal": "meal_cal", "wt.loss": "wt_loss"},
    columns=(
        _c("inst", "int64", "institution code of the NCCTG site"),
        _c("time", "int64", "survival time in days", "sensitive"),
        _c("status", "int64", "1 = died, 0 = censored", "sensitive"),
        _c("age", "int64", "age in years", "quasi_identifier"),
        _c("sex", "int64", "1 = male, 2 = female", "quasi_identifier"),
        _c("ph_ecog", "float64", "ECOG performance score rated by the physician (0 = good)"),
        _c("ph_karno", "float64", "Karnofsky performance score rated by the physician"),
        _c("pat_karno", "float64", "Karnofsky performance score rated by the patient"),
        _c("meal_cal", "float64", "calories consumed at meals"),
        _c("wt_loss", "float64", "weight loss in pounds in the last six months"),
    ),
    holder_of=_lung_holder,
    person_key=lambda df: "lung:" + pd.Series(df.index, index=df.index).astype(str),
    tags=("public", "oncology", "lung cancer", "survival", "validation"),
)

GBSG2 = PublicDataset(
    table="gbsg2",
    title="German Breast Cancer Study Group 2 trial",
    description=(
        "Recurrence-free survival of 686 women with node-positive breast cancer in the GBSG2 "
        "randomised 2x2 trial of hormonal treatment (Schumacher et al., J Clin Oncol 1994)."
    ),
    source="lifelines:gbsg2",
    load=ll.load_gbsg2,
    rename={"horTh": "hormonal_therapy"},
    columns=(
        _c("hormonal_therapy", "string", "hormonal therapy given: yes / no"),
        _c("age", "int64", "age in years", "quasi_identifier"),
        _c("menostat", "string", "menopausal status: Pre / Post"),
        _c("tsize", "int64", "tumour size in mm"),
        _c("tgrade", "string", "tumour grade: I / II / III"),
        _c("pnodes", "int64", "number of positive lymph nodes"),
        _c("progrec", "int64", "progesterone receptor in fmol"),
        _c("estrec", "int64", "oestrogen receptor in fmol"),
        _c("time", "int64", "recurrence-free survival time in days", "sensitive"),
        _c("cens", "int64", "1 = recurrence or death, 0 = censored", "sensitive"),
    ),
    holder_of=lambda df: pd.Series("gbsg", index=df.index),
    person_key=lambda df: "gbsg2:" + pd.Series(df.index, index=df.index).astype(str),
    tags=("public", "oncology", "breast cancer", "survival", "trial", "validation"),
)

ACTG175 = PublicDataset(
    table="actg175",
    title="AIDS Clinical Trials Group study 175",
    description=(
        "Randomised trial of zidovudine, zidovudine + didanosine, zidovudine + zalcitabine and "
        "didanosine in adults with HIV-1 and CD4 counts of 200-500 (Hammer et al., N Engl J Med "
        "1996): baseline covariates, CD4/CD8 counts and time to the composite endpoint."
    ),
    source="lifelines:ACTG175.csv",
    load=lambda: ll._load_dataset("ACTG175.csv"),  # shipped without a load_* function
    rename={},
    columns=(
        _c("age", "int64", "age in years at baseline", "quasi_identifier"),
        _c("wtkg", "float64", "weight in kg at baseline", "quasi_identifier"),
        _c("hemo", "int64", "haemophilia: 1 = yes"),
        _c("homo", "int64", "homosexual activity: 1 = yes", "sensitive"),
        _c("drugs", "int64", "history of intravenous drug use: 1 = yes", "sensitive"),
        _c("karnof", "int64", "Karnofsky score (0-100)"),
        _c("oprior", "int64", "non-zidovudine antiretroviral therapy before: 1 = yes"),
        _c("z30", "int64", "zidovudine in the 30 days before: 1 = yes"),
        _c("zprior", "int64", "zidovudine before treatment: 1 = yes"),
        _c("preanti", "int64", "days of antiretroviral therapy before"),
        _c("race", "int64", "0 = white, 1 = non-white", "quasi_identifier"),
        _c("gender", "int64", "0 = female, 1 = male", "quasi_identifier"),
        _c("str2", "int64", "antiretroviral history: 0 = naive, 1 = experienced"),
        _c("strat", "int64", "antiretroviral history stratum (1-3)"),
        _c("symptom", "int64", "symptomatic indicator: 1 = symptomatic"),
        _c("treat", "int64", "0 = zidovudine only, 1 = other therapies"),
        _c("offtrt", "int64", "off treatment before 96 +/- 5 weeks: 1 = yes"),
        _c("cd40", "int64", "CD4 count at baseline"),
        _c("cd420", "int64", "CD4 count at 20 +/- 5 weeks"),
        _c("cd496", "float64", "CD4 count at 96 +/- 5 weeks (missing when not measured)"),
        _c("r", "int64", "CD4 count at 96 weeks present: 1 = yes"),
        _c("cd80", "int64", "CD8 count at baseline"),
        _c("cd820", "int64", "CD8 count at 20 +/- 5 weeks"),
        _c("cens", "int64", "1 = composite endpoint reached, 0 = censored", "sensitive"),
        _c("days", "int64", "days to the endpoint or censoring", "sensitive"),
        _c("arms", "int64", "0 = ZDV, 1 = ZDV+ddI, 2 = ZDV+Zal, 3 = ddI"),
    ),
    holder_of=lambda df: pd.Series("actg", index=df.index),
    person_key=lambda df: "actg175:" + df["pidnum"].astype(str),
    drop=("Unnamed: 0", "pidnum"),
    tags=("public", "hiv", "infectious disease", "trial", "survival", "validation"),
)

PUBLIC_DATASETS: tuple[PublicDataset, ...] = (LUNG, GBSG2, ACTG175)


def split_by_holder(spec: PublicDataset, linkage_key: bytes) -> dict[str, pd.DataFrame]:
    """The dataset as each holder stores it: pseudonymised, renamed, in catalog column order."""
    raw = spec.load().reset_index(drop=True)
    holders = spec.holder_of(raw)
    person_ids = pseudonym(linkage_key, spec.person_key(raw))
    frame = raw.drop(columns=list(spec.drop)).rename(columns=spec.rename)
    frame.insert(0, "person_id", person_ids)
    ordered = frame[[PERSON_ID.name, *(c.name for c in spec.columns)]]
    return {
        holder: part.reset_index(drop=True)
        for holder, part in ordered.groupby(holders, sort=True)
    }


def columns_of(spec: PublicDataset) -> tuple[Column, ...]:
    return (PERSON_ID, *spec.columns)
