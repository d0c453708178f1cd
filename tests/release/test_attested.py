"""Signed secure results in the airlock (security boundary: workbench/release/attested.py): the
signature is verified with the space's he/release.pub, the study must match, and the numbers the
rules check (and the airlock releases) are rebuilt from the signed body, not the kernel's copy."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from nacl.signing import SigningKey

from workbench.errors import WorkbenchUserError
from workbench.release.airlock import Context
from workbench.release.serialize import to_payload
from workbench.secure.attest import sign
from workbench.secure.results import KaplanMeierGroups, KaplanMeierResult, RegressionResult

ALICE = Context("alice", "cml-tki", kernel_id="k-1", msg_id="m-1")
RITA, REMY = Context("rita"), Context("remy")


@pytest.fixture
def release_key(space):
    """The key holder's signing key; the airlock reads only its public half (0644)."""
    key = SigningKey.generate()
    space.he.mkdir(parents=True, exist_ok=True)
    (space.he / "release.pub").write_bytes(bytes(key.verify_key))
    (space.he / "release.pub").chmod(0o644)
    return key


def _body(op, result, study="cml-tki"):
    return {"study": study, "request_id": "sr-1", "op": op, "kind": "survival",
            "spec_sha256": "0" * 64, "result": result,
            "checks": {"thresholds": {"min_cell_count": 10}, "rules": op}}


def _km_result(observed=(12, 15), censored=(10, 10)):
    def group(label, n):
        return {"label": label, "n": n, "times": [30.0, 60.0],
                "at_risk": [n, n - observed[0] - censored[0]], "observed": list(observed),
                "censored": list(censored),
                "removed": [o + c for o, c in zip(observed, censored, strict=True)]}
    return {"groups": [group("tki=imatinib", 80), group("tki=nilotinib", 60)], "by": "tki",
            "alpha": 0.05}


def _km_object(result, attestation):
    km = KaplanMeierGroups({g["label"].split("=", 1)[1]: KaplanMeierResult(g, 0.05)
                            for g in result["groups"]})
    km.attestation = attestation
    return km


def _request(airlock, obj, name="km"):
    return airlock.create(ALICE, to_payload(obj, view="cml_cohort"), name, "signed result")


def _evidence(airlock, req):
    return airlock.detail(RITA, req["id"])["evidence"]


def test_a_signed_curve_is_checked_and_released_from_its_signed_numbers(airlock, release_key,
                                                                        space):
    result = _km_result()
    km = _km_object(result, sign(release_key, _body("kaplan_meier", result)))
    km["imatinib"].event_table["at_risk"] = 5000  # the kernel's copy says something else
    req = _request(airlock, km)
    assert req["verdict"] == "pass" and req["verified"] and req["review_rules"] == []
    evidence = _evidence(airlock, req)
    assert evidence["counts"]["tki=imatinib::n"] == 80 and evidence["counts"]["TOTAL::n"] == 140
    assert evidence["attestation"]["request_id"] == "sr-1"
    assert next(r for r in evidence["rules"] if r["rule"] == "verified-result")["verdict"] \
        == "pass"
    airlock.decide(RITA, req["id"], "approve")
    assert airlock.decide(REMY, req["id"], "approve")["state"] == "released"
    released = pd.read_csv(space.outbox("cml-tki") / req["id"] / "km.csv")
    assert 5000 not in released["at_risk"].tolist()
    assert released.groupby("group")["at_risk"].max().to_dict() == {"tki=imatinib": 80,
                                                                     "tki=nilotinib": 60}


def test_signed_small_steps_fail_whatever_the_kernel_sends(airlock, release_key):
    result = _km_result(observed=(3, 15), censored=(10, 10))
    km = _km_object(result, sign(release_key, _body("kaplan_meier", result)))
    for fit in km.values():  # the kernel "fixes" its copy so that it would pass
        fit.event_table["observed"] = 20
    req = _request(airlock, km)
    assert req["state"] == "draft" and "survival-step" in req["failed_rules"]


def _refused(airlock, obj) -> WorkbenchUserError:
    with pytest.raises(WorkbenchUserError) as refused:
        _request(airlock, obj)
    assert refused.value.reason == "unverified-result"
    assert "\n" not in str(refused.value) and "unverified-result" in str(refused.value)
    assert airlock.list(RITA) == []  # nothing submitted, nothing downgraded
    return refused.value


def test_forged_and_tampered_signatures_are_refused_never_downgraded(airlock, release_key):
    result = _km_result()
    forged = sign(SigningKey.generate(), _body("kaplan_meier", result))
    _refused(airlock, _km_object(result, forged))

    tampered = sign(release_key, _body("kaplan_meier", result))
    tampered["body"]["result"]["groups"][0]["observed"] = [20, 20]
    _refused(airlock, _km_object(result, tampered))

    relabelled = copy.deepcopy(sign(release_key, _body("kaplan_meier", result)))
    relabelled["signature"] = relabelled["signature"][:-4] + "AAA="
    _refused(airlock, _km_object(result, relabelled))

    for broken in ({"body": "x"}, {"signature": "%%"}, "not a dict"):
        payload = to_payload(_km_object(result, None), view="cml_cohort")
        payload["attestation"] = broken
        with pytest.raises(WorkbenchUserError) as refused:
            airlock.create(ALICE, payload, "km", "d")
        assert refused.value.reason == "unverified-result"


def test_a_result_signed_for_another_study_is_refused(airlock, release_key):
    result = _km_result()
    message = str(_refused(airlock, _km_object(
        result, sign(release_key, _body("kaplan_meier", result, study="other")))))
    assert "another study" in message


def test_a_hand_made_survival_payload_is_unverified_and_its_small_counts_fail(airlock):
    km = _km_object(_km_result(observed=(3, 15), censored=(2, 10)), None)
    req = _request(airlock, km)
    assert req["verified"] is False and "unverified-output" in req["review_rules"]
    assert "survival-step" in req["failed_rules"]


def test_signed_counts_replace_the_kernels_series(airlock, release_key):
    result = {"counts": [40, 35], "labels": ["tki=imatinib", "tki=nilotinib"], "by": "tki"}
    series = pd.Series([400, 350], index=pd.Index(["imatinib", "nilotinib"], name="tki"),
                       name="count")
    series.attrs["attestation"] = sign(release_key, _body("count", result))
    req = _request(airlock, series, "by_tki")
    assert req["verdict"] == "pass" and req["verified"]
    assert _evidence(airlock, req)["counts"] == {"cell=tki=imatinib::n": 40,
                                                 "cell=tki=nilotinib::n": 35, "TOTAL::n": 75}


def test_a_signed_small_count_still_fails_and_a_logrank_needs_no_count_column(airlock,
                                                                             release_key):
    small = {"counts": [40, 4], "labels": ["tki=a", "tki=b"], "by": "tki"}
    series = pd.Series([40, 40], index=pd.Index(["a", "b"], name="tki"), name="count")
    series.attrs["attestation"] = sign(release_key, _body("count", small))
    assert "minimum-threshold" in _request(airlock, series, "small")["failed_rules"]

    class LogRank:
        summary = pd.DataFrame({"test_statistic": [4.2], "p": [0.04]})

    logrank = LogRank()
    logrank.attestation = sign(release_key, _body("logrank_test", {
        "test_statistic": 4.2, "p_value": 0.04, "degrees_of_freedom": 1,
        "groups": ["tki=a", "tki=b"]}))
    req = _request(airlock, logrank, "logrank")
    assert req["verdict"] == "pass", req


def _cox(n, events, hessian, attestation):
    covariance = np.linalg.inv(-np.asarray(hessian))
    fit = RegressionResult({"covariates": ["age", "tki"], "params": [0.1, -0.4],
                            "covariance": covariance.tolist(), "loglik": -100.0, "n": n,
                            "events": events, "iterations": 5}, "CoxPHResult")
    fit.attestation = attestation
    return fit


HESSIAN = [[-100.0, 5.0], [5.0, -25.0]]


def test_a_signed_model_takes_n_and_events_from_its_signed_round(airlock, release_key):
    round_ = {"loglik": -100.0, "gradient": [1e-6, -2e-6], "hessian": HESSIAN, "n": 140,
              "events": 6, "covariate_means": [60.0, 0.4]}
    att = sign(release_key, _body("cox_ph", round_))
    req = _request(airlock, _cox(500, 200, HESSIAN, att), "cox")  # the kernel claims 200 events
    assert "model-events" in req["failed_rules"]
    assert _evidence(airlock, req)["counts"] == {"TOTAL::n": 140, "TOTAL::events": 6}


def test_a_model_whose_standard_errors_are_not_the_signed_ones_is_refused(airlock, release_key):
    round_ = {"loglik": -100.0, "gradient": [0.0, 0.0], "hessian": HESSIAN, "n": 140,
              "events": 45}
    att = sign(release_key, _body("cox_ph", round_))
    _refused(airlock, _cox(140, 45, [[-10.0, 0.0], [0.0, -4.0]], att))
    ok = _request(airlock, _cox(140, 45, HESSIAN, att), "cox")
    assert ok["verified"] and ok["verdict"] == "pass"


def test_the_kernel_payload_carries_the_attestation_unchanged(release_key):
    result = _km_result()
    att = sign(release_key, _body("kaplan_meier", result))
    payload = to_payload(_km_object(result, att), view="cml_cohort")
    assert json.loads(json.dumps(payload))["attestation"] == att


def test_signed_means_carry_their_signed_counts_and_the_key_holders_dominance_check(
        airlock, release_key):
    result = {"n": [40, 35], "mean": [51.5, None], "labels": ["tki=a", "tki=b"], "by": "tki",
              "column": "age"}
    means = pd.Series([99.0, 98.0], index=pd.Index(["a", "b"], name="tki"), name="mean")
    means.attrs["attestation"] = sign(release_key, _body("mean", result))
    req = _request(airlock, means, "mean_age")
    assert req["verdict"] == "pass" and req["verified"], req
    evidence = _evidence(airlock, req)
    assert evidence["counts"]["TOTAL::n"] == 75
    assert next(r for r in evidence["rules"] if r["rule"] == "dominance")["verdict"] == "pass"
    payload = airlock.detail(RITA, req["id"])["payload"]
    assert payload["attestation"]["body"]["result"]["mean"] == [51.5, None]
