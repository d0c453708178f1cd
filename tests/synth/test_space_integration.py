"""End to end through the real builder and view engine: ``workbench init`` writes the synthetic
space, the view engine serves ``cml_cohort`` partitions, and the pooled Cox fit still recovers
the documented hazard ratios; the quality reports in the catalog see the injected defects on both
payers; and the insurers' TKI cost per patient-year, summed under HE over the two payers'
partitions of ``cml_costs`` by the real key holder, equals the pooled plaintext figure and the
documented truth, while one payer alone is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from workbench.paths import Space
from workbench.secure import results
from workbench.secure.release import ReleaseRefused
from workbench.secure.service import run_secure_op
from workbench.synth import GROUND_TRUTH, TRUE_LOG_HR

pytestmark = pytest.mark.slow
PATIENTS, SEED = 30_000, 7
CML_TKI_THRESHOLDS = {"min_cell_count": 10, "dominance": {"n": 2, "k": 0.9}}  # policy.yaml
# CKKS (scale 2^40) error relative to the sums here (~1e7-1e8 EUR): measured ~1e-10, within the
# documented bound (secure/coordinator.py ERROR_BOUND: 1e-6 + 1e-12 x the largest value in the
# ciphertext, here the sum of squared costs).
CKKS_RELATIVE_ERROR = 1e-8
PRICE_NOISE_SD = 0.1 / np.sqrt(12)  # sd of the U(0.95, 1.05) factor on each TKI claim


@pytest.fixture(scope="module")
def space(space_dir):
    root = space_dir / "space"
    workbench = Path(sys.executable).parent / "workbench"
    subprocess.run([str(workbench), "init", "--data-dir", str(root),
                    "--patients", str(PATIENTS), "--seed", str(SEED)],
                   check=True, capture_output=True, text=True, timeout=600)
    return Space.at(root)


@pytest.fixture(scope="module")
def space_dir():
    path = Path(tempfile.mkdtemp(prefix="wb-synth-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_cox_through_the_view_engine_recovers_the_hazard_ratios(space):
    from workbench.views.engine import ViewEngine

    engine = ViewEngine(space)
    assert "cml_cohort" in engine.views, engine.problems
    parts = engine.partitions("synth-check", "cml_cohort",
                              ("tki", "age_at_start", "risk_score", "days", "progressed"))
    assert set(parts) == {"hospital-a", "hospital-b"}
    pooled = pd.concat(parts.values(), ignore_index=True)
    data = pooled.assign(dasatinib=(pooled["tki"] == "dasatinib").astype(int),
                         nilotinib=(pooled["tki"] == "nilotinib").astype(int))
    cph = CoxPHFitter().fit(data[["days", "progressed", "dasatinib", "nilotinib", "age_at_start",
                                  "risk_score"]], "days", "progressed")
    for covariate, truth in (("dasatinib", TRUE_LOG_HR["dasatinib"]),
                             ("nilotinib", TRUE_LOG_HR["nilotinib"]),
                             ("age_at_start", TRUE_LOG_HR["age_per_year"]),
                             ("risk_score", TRUE_LOG_HR["risk_score"])):
        low, high = cph.summary.loc[covariate, ["coef lower 95%", "coef upper 95%"]]
        assert low <= truth <= high, covariate


def test_catalog_quality_reports_see_the_defects(space):
    quality = space.catalog / "quality"
    measurement = json.loads((quality / "hospital_a.measurement.json").read_text())
    missing = [c for c in measurement["checks"] if c["check"] == "missing-values"
               and c["columns"] == ["value_as_number"]][0]
    assert missing["rate"] == pytest.approx(
        GROUND_TRUTH["defects"]["missing_lab_value"]["rate"], abs=0.005)
    assert 0 < measurement["score"] < 1
    for payer in ("insurer", "insurer_b"):
        cost = json.loads((quality / f"{payer}.cost.json").read_text())
        repeated = [c for c in cost["checks"] if c["check"] == "repeated-record"][0]
        assert repeated["rate"] == pytest.approx(
            GROUND_TRUTH["defects"]["duplicate_claim"]["rate"], abs=0.003), payer


@pytest.fixture(scope="module")
def services(space):
    """The space's provenance collector, HE key holder and aggregator, as the gateway uses them."""
    from workbench.provenance.service import start_collector
    from workbench.secure.process import start_aggregator, start_keyholder

    collector = start_collector(space)
    keyholder = start_keyholder(space)
    aggregator = start_aggregator(space)
    try:
        yield collector
    finally:
        aggregator.stop()
        keyholder.stop()
        collector.stop()


def _secure_sum(collector, parts, column: str) -> pd.Series:
    payload = run_secure_op("sum", parts, {"column": column, "by": "tki"}, CML_TKI_THRESHOLDS,
                            collector.client(), {"study": "cml-tki", "view": "cml_costs"})
    return results.build(json.loads(json.dumps(payload)))  # as the gateway sends it back


def test_cost_per_patient_year_pools_both_payers_under_he(space, services):
    from workbench.views.engine import ViewEngine

    parts = ViewEngine(space).partitions("cml-tki", "cml_costs",
                                         ("tki", "cost", "person_years"))
    assert set(parts) == {"insurer", "insurer-b"}
    cost = _secure_sum(services, parts, "cost")
    years = _secure_sum(services, parts, "person_years")
    plain = pd.concat(parts.values()).groupby("tki")[["cost", "person_years"]].sum()
    truth = GROUND_TRUTH["cml"]["annual_paid_cost"]
    assert sorted(cost.index) == sorted(plain.index) == sorted(truth)
    for secure, exact in ((cost, plain["cost"]), (years, plain["person_years"])):
        assert (np.abs(secure - exact) / exact).max() <= CKKS_RELATIVE_ERROR
    # Person-years are the 90-day supply of each claim, so cost / person-years is the documented
    # annual paid cost times the mean price factor over the drug's claims: 4 standard errors.
    claims = years * 365.25 / GROUND_TRUTH["cml"]["dispensing_interval_days"]
    for drug, annual in truth.items():
        tolerance = 4 * PRICE_NOISE_SD / np.sqrt(claims[drug])
        assert cost[drug] / years[drug] == pytest.approx(annual, rel=tolerance), drug


@pytest.mark.parametrize("payer", ["insurer", "insurer-b"])
def test_one_payer_alone_is_refused(space, services, payer):
    from workbench.views.engine import ViewEngine

    parts = ViewEngine(space).partitions("cml-tki", "cml_costs", ("tki", "cost"))
    with pytest.raises(ReleaseRefused) as refused:
        _secure_sum(services, {payer: parts[payer]}, "cost")
    assert refused.value.rule == "min-holders"
