"""The gateway's path: run_secure_op with the real key holder process and collector, its
he-operation provenance, JSON results and the light researcher import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from workbench.errors import WorkbenchUserError
from workbench.secure import results
from workbench.secure.release import ReleaseRefused
from workbench.secure.service import run_secure_op

from .conftest import provenance_records, split_round_robin

pytestmark = pytest.mark.slow
THRESHOLDS = {"min_cell_count": 10, "dominance": {"n": 2, "k": 0.9}}


def _context(request_id: str) -> dict:
    return {"study": "recidivism", "view": "rossi_view", "view_version": "v1", "user": "alice",
            "kernel_id": "k-1", "msg_id": "m-1", "request_id": request_id}


def test_kaplan_meier_over_the_service_path(he_space, rossi):
    space, collector, _ = he_space
    payload = run_secure_op("kaplan_meier", split_round_robin(rossi),
                            {"duration_col": "week", "event_col": "arrest"}, THRESHOLDS,
                            collector.client(), _context("svc-km"))
    payload = json.loads(json.dumps(payload, allow_nan=False))  # what the gateway sends back
    km = results.build(payload)
    kmf = KaplanMeierFitter().fit(rossi["week"], rossi["arrest"])
    ref = kmf.survival_function_["KM_estimate"].reindex(km.survival_function_.index)
    assert np.abs(ref - km.survival_function_["KM_estimate"]).max() <= 1e-12
    (op,) = [r["fields"] for r in provenance_records(space, "he-operation")
             if r["fields"].get("request_id") == "svc-km"]
    assert op["status"] == "ok" and op["op"] == "kaplan_meier"
    assert op["holders"] == ["hospital", "insurer", "pharma"]
    assert op["scheme"] == "bfv" and op["view"] == "rossi_view" and op["kernel_id"] == "k-1"
    assert op["params"]["path"] == "secure-he"
    assert op["params"]["bfv.plain_modulus"] >= 2**30
    assert op["params"]["error_bound"].startswith("exact")
    assert op["columns"] == ["week", "arrest"]
    decryptions = [r["fields"] for r in provenance_records(space, "he-decryption")
                   if r["fields"].get("request_id") == "svc-km"]
    assert [d["decision"] for d in decryptions] == ["decrypted"]


def test_cox_over_the_service_path_records_every_round(he_space, rossi):
    space, collector, _ = he_space
    payload = run_secure_op("cox_ph", split_round_robin(rossi),
                            {"duration_col": "week", "event_col": "arrest",
                             "covariates": ["fin", "age", "prio"]},
                            THRESHOLDS, collector.client(), _context("svc-cox"))
    fit = results.build(json.loads(json.dumps(payload)))
    assert list(fit.params_.index) == ["fin", "age", "prio"]
    (op,) = [r["fields"] for r in provenance_records(space, "he-operation")
             if r["fields"].get("request_id") == "svc-cox"]
    assert op["scheme"] == "bfv-fixed-point" and op["iteration"] == payload["meta"]["rounds"] >= 3
    assert "fixed point" in op["params"]["error_bound"]
    decryptions = [r for r in provenance_records(space, "he-decryption")
                   if r["fields"].get("request_id") == "svc-cox"]
    assert len(decryptions) == payload["meta"]["rounds"]


def test_refused_operation_is_recorded_and_raised(he_space, rossi):
    space, collector, _ = he_space
    df = rossi.copy()
    df["tiny"] = np.where(np.arange(len(df)) < 4, "few", "many")
    with pytest.raises(ReleaseRefused):
        run_secure_op("count", split_round_robin(df), {"by": "tiny"}, THRESHOLDS,
                      collector.client(), _context("svc-refused"))
    (op,) = [r["fields"] for r in provenance_records(space, "he-operation")
             if r["fields"].get("request_id") == "svc-refused"]
    assert op["status"] == "denied" and op["reason"] == "release-refused"


def test_bad_requests_are_user_errors(he_space, rossi):
    _, collector, _ = he_space
    parts = split_round_robin(rossi)
    with pytest.raises(WorkbenchUserError) as err:
        run_secure_op("export_rows", parts, {}, THRESHOLDS, collector.client(), _context("x1"))
    assert err.value.reason == "not-found"
    with pytest.raises(WorkbenchUserError) as err:
        run_secure_op("mean", parts, {"column": "age", "limit": 3}, THRESHOLDS,
                      collector.client(), _context("x2"))
    assert "does not take limit" in str(err.value)
    with pytest.raises(WorkbenchUserError) as err:
        run_secure_op("mean", parts, {}, THRESHOLDS, collector.client(), _context("x3"))
    assert "needs column" in str(err.value)
    with pytest.raises(WorkbenchUserError) as err:
        run_secure_op("mean", parts, {"column": "nope"}, THRESHOLDS, collector.client(),
                      _context("x4"))
    assert err.value.reason == "no-such-column"


def test_importing_wb_secure_stays_light():
    code = ("import sys, workbench.secure as s; s.kaplan_meier; s.Federation; "
            "print('tenseal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
