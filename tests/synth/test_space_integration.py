"""End to end through the real builder and view engine: ``workbench init`` writes the synthetic
space, the view engine serves ``cml_cohort`` partitions, and the pooled Cox fit still recovers
the documented hazard ratios; the quality reports in the catalog see the injected defects."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from lifelines import CoxPHFitter

from workbench.paths import Space
from workbench.synth import GROUND_TRUTH, TRUE_LOG_HR

pytestmark = pytest.mark.slow
PATIENTS, SEED = 30_000, 7


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
    cost = json.loads((quality / "insurer.cost.json").read_text())
    missing = [c for c in measurement["checks"] if c["check"] == "missing-values"
               and c["columns"] == ["value_as_number"]][0]
    repeated = [c for c in cost["checks"] if c["check"] == "repeated-record"][0]
    assert missing["rate"] == pytest.approx(
        GROUND_TRUTH["defects"]["missing_lab_value"]["rate"], abs=0.005)
    assert repeated["rate"] == pytest.approx(
        GROUND_TRUTH["defects"]["duplicate_claim"]["rate"], abs=0.003)
    assert 0 < measurement["score"] < 1
