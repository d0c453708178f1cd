"""Real signed results (an in-process Federation's key holder, study context cml-tki) through
the airlock: a secure curve, counts and a Cox fit are verified, rebuilt from their signatures
and checked; the same results edited in the kernel still go out with the signed numbers."""

from __future__ import annotations

import pytest
from lifelines.datasets import load_lung

from workbench.release.airlock import Context
from workbench.release.serialize import to_payload
from workbench.secure import Federation

ALICE = Context("alice", "cml-tki", kernel_id="k-1", msg_id="m-1")
RITA = Context("rita")


@pytest.fixture(scope="module")
def federation():
    lung = load_lung().dropna(subset=["inst"]).reset_index(drop=True)
    parts = {name: lung.iloc[i::3] for i, name in enumerate(("hospital", "insurer", "pharma"))}
    fed = Federation(parts, min_cell_count=10, context={"study": "cml-tki",
                                                         "request_id": "sr-test"})
    yield fed
    fed.close()


@pytest.fixture
def signed_airlock(airlock, space, federation):
    space.he.mkdir(parents=True, exist_ok=True)
    (space.he / "release.pub").write_bytes(
        bytes(federation.coordinator.keyholder.release_key.verify_key))
    return airlock


def _check(airlock, obj, name):
    req = airlock.create(ALICE, to_payload(obj, view="cml_cohort"), name, "secure result")
    return req, airlock.detail(RITA, req["id"])["evidence"]


def test_a_secure_curve_is_verified_and_passes(signed_airlock, federation):
    km = federation.kaplan_meier("time", "status", by="sex")
    req, evidence = _check(signed_airlock, km, "km")
    assert req["verified"] and req["verdict"] == "pass", req
    assert evidence["counts"]["TOTAL::n"] == sum(fit.n for fit in km.values())


def test_secure_counts_and_a_cox_fit_are_verified(signed_airlock, federation):
    counts = federation.count(by="sex")
    counts.iloc[0] = 3  # the kernel's copy, edited: the signed counts are what is checked
    req, evidence = _check(signed_airlock, counts, "by_sex")
    assert req["verified"] and "minimum-threshold" not in req["failed_rules"], req
    assert 3 not in evidence["counts"].values()
    cox = federation.cox_ph("time", "status", covariates=["age", "sex"])
    req, evidence = _check(signed_airlock, cox, "cox")
    assert req["verified"] and req["verdict"] == "pass", req
    assert evidence["counts"]["TOTAL::n"] == cox.n


def test_a_result_signed_by_another_key_holder_is_refused(airlock, space, federation):
    from nacl.signing import SigningKey

    from workbench.errors import WorkbenchUserError

    space.he.mkdir(parents=True, exist_ok=True)
    (space.he / "release.pub").write_bytes(bytes(SigningKey.generate().verify_key))
    with pytest.raises(WorkbenchUserError) as refused:
        _check(airlock, federation.kaplan_meier("time", "status"), "km")
    assert refused.value.reason == "unverified-result"


def test_a_cox_fit_with_the_kernels_own_coefficients_is_refused(signed_airlock, federation):
    from workbench.errors import WorkbenchUserError

    cox = federation.cox_ph("time", "status", covariates=["age", "sex"])
    cox.params_.iloc[1] = -2.0  # a stronger effect than the signed round gives
    cox.summary.loc["sex", "coef"] = -2.0
    with pytest.raises(WorkbenchUserError) as err:
        _check(signed_airlock, cox, "cox_edited")
    assert "coefficients differ" in str(err.value)


def test_a_result_signed_for_another_view_is_refused(signed_airlock, federation):
    from workbench.errors import WorkbenchUserError

    coordinator = federation.coordinator  # the same key holder, asked for another view
    saved = coordinator.context
    coordinator.context = saved | {"view": "lung_survival", "request_id": "sr-view"}
    try:
        km = federation.kaplan_meier("time", "status")
    finally:
        coordinator.context = saved
    with pytest.raises(WorkbenchUserError) as err:
        _check(signed_airlock, km, "km_other_view")  # the request names cml_cohort
    assert "another view" in str(err.value)


def test_a_private_curve_passes_on_its_epsilon_not_on_count_thresholds(airlock, space,
                                                                        federation):
    fed = Federation(federation.coordinator.partitions, min_cell_count=10,
                     context={"study": "cml-tki", "request_id": "sr-dp"},
                     privacy={"epsilon_budget": 5.0, "epsilon_per_release": 1.0})
    keyholder = fed.coordinator.keyholder  # its own key parties and release key
    space.he.mkdir(parents=True, exist_ok=True)
    (space.he / "release.pub").write_bytes(bytes(keyholder.release_key.verify_key))
    km = fed.kaplan_meier("time", "status")
    assert km.privacy["epsilon"] == pytest.approx(1.0)
    req, evidence = _check(airlock, km, "km_private")
    assert req["verified"] and req["verdict"] == "pass", req
    rules_seen = {r["rule"] for r in evidence["rules"]}
    assert "differential-privacy" in rules_seen and "survival-step" not in rules_seen
