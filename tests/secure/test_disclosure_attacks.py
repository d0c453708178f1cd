"""A determined researcher's attempts on the demo space's views, each of which must fail.

The secure operations run as the gateway runs them: the view's per-holder partitions from the
view engine, the catalog's ``View`` (its declared roles and public grids), the key holder's
release rules. Each attack is one the audit of issue 22 carried out with the documented API.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from workbench.errors import WorkbenchUserError
from workbench.secure import Federation, attest
from workbench.secure.release import ReleaseRefused
from workbench.space.build import init_space
from workbench.views.engine import ViewEngine

STUDY = "attack"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    space = init_space(tmp_path_factory.mktemp("attacks") / "space", patients=10_000, seed=42,
                       echo=lambda _line: None)
    return ViewEngine(space)


def federation(engine, view_id: str, k: int = 10) -> Federation:
    view = engine.view(view_id)
    parts = engine.partitions(STUDY, view_id, None)
    return Federation(parts, min_cell_count=k, view=view)


def _no_numbers_but(message: str, allowed: set[str]) -> bool:
    return set(re.findall(r"\d+(?:\.\d+)?", message)) <= allowed


# -- 1. roles -------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    # a visible covariate as the time axis: each released row would be one patient's outcome
    lambda f: f.kaplan_meier("age_at_start", "progressed"),
    lambda f: f.kaplan_meier("risk_score", "progressed", resolution=0.01),
    # a 0/1 covariate as the event
    lambda f: f.kaplan_meier("days", "dasatinib"),
    # the outcome as a grouping, the time as a grouping, strata on a continuous column
    lambda f: f.count(by="progressed"),
    lambda f: f.kaplan_meier("days", "progressed", by="days"),
    lambda f: f.cox_ph("days", "progressed", ["age_at_start"], strata="risk_score"),
    # the pseudonym as anything
    lambda f: f.count(by="person_id"),
    lambda f: f.sum("person_id"),
], ids=["covariate-as-time", "fine-covariate-as-time", "covariate-as-event", "event-as-group",
        "time-as-group", "continuous-strata", "pseudonym-as-group", "pseudonym-summed"])
def test_columns_are_used_only_in_their_declared_role(demo, call):
    fed = federation(demo, "cml_cohort")
    with pytest.raises(WorkbenchUserError) as err:
        call(fed)
    assert err.value.reason in ("bad-role", "bad-request")
    assert not fed.coordinator.log  # refused before any holder computed or encrypted


def test_time_resolution_comes_from_the_grid(demo):
    fed = federation(demo, "cml_cohort")
    with pytest.raises(WorkbenchUserError) as err:
        fed.kaplan_meier("days", "progressed", resolution=0.5)
    assert "whole multiple" in str(err.value)


# -- 2. safe by construction ----------------------------------------------------------------------
def test_every_released_km_row_holds_k_events_and_censorings(demo):
    curves = federation(demo, "cml_cohort").kaplan_meier("days", "progressed", by="tki")
    for curve in curves.values():
        rows = curve.event_table
        for column in ("observed", "censored"):
            assert ((rows[column] == 0) | (rows[column] >= 10)).all(), column
        assert (rows["at_risk"] >= 10).all()
        drops = -np.diff(rows["at_risk"].to_numpy())
        assert ((drops == 0) | (drops >= 10)).all()
        assert curve.timeline[-1] == 5480  # the view's public horizon, not the longest follow-up


def test_two_curves_do_not_difference_to_one_patient(demo):
    """lung-validation's attack: all patients, then all but one group; every released step of
    either curve holds k people, so their difference at any released time holds 0 or >= k."""
    fed = federation(demo, "lung_survival", k=5)
    overall = fed.kaplan_meier("time", "status")
    by_sex = fed.kaplan_meier("time", "status", by="sex")
    for curve in [overall, *by_sex.values()]:
        rows = curve.event_table
        assert ((rows["observed"] == 0) | (rows["observed"] >= 5)).all()
    assert overall.timeline[-1] == 1100 and all(c.timeline[-1] == 1100 for c in by_sex.values())


# -- 3. refusals without data ---------------------------------------------------------------------
def test_refusals_carry_no_labels_counts_or_sizes(demo):
    fed = federation(demo, "t1d_cohort")
    with pytest.raises(ReleaseRefused) as err:
        fed.crosstab("region", "age_band")  # 32 cells of ~290 patients: some are small
    message = str(err.value)
    assert err.value.rule == "min-cell-count"
    levels = ["north", "east", "south", "west", "0-9", "10-19", "20-29", "30+"]
    assert not any(level in message for level in levels)
    # only the threshold, the holder minimum and how many cells failed: no cell's count
    failed = re.search(r"(\d+) cell\(s\)", message).group(1)
    assert _no_numbers_but(message, {"10", "2", failed})


def test_an_empty_and_a_small_selection_are_refused_alike(demo):
    view = demo.view("cml_cohort")
    parts = demo.partitions(STUDY, "cml_cohort", None)
    empty = {h: p.iloc[:0] for h, p in parts.items()}
    small = {h: p.iloc[:2] for h, p in parts.items()}
    messages = []
    for case in (empty, small):
        with pytest.raises(ReleaseRefused) as err:
            Federation({h: p for h, p in case.items() if len(p)}, min_cell_count=10,
                       view=view).count()
        messages.append((err.value.rule, str(err.value)))
    assert messages[0] == messages[1]


# -- bisection, overlapping bins, oversized requests ----------------------------------------------
@pytest.mark.parametrize("bins", [[3, 7.0, 20], [3, 7.01, 20], list(np.linspace(3, 20, 10**6))])
def test_histogram_edges_cannot_be_chosen(demo, bins):
    fed = federation(demo, "t1d_cohort")
    with pytest.raises(WorkbenchUserError) as err:
        fed.histogram("hba1c_mean", bins=bins)
    assert "public grid" in str(err.value) or err.value.reason == "bad-request"
    assert not fed.coordinator.log


def test_the_grid_histogram_merges_bins_until_each_holds_k(demo):
    hist = federation(demo, "t1d_cohort").histogram("hba1c_mean")
    grid = demo.view("t1d_cohort").column("hba1c_mean").grid
    assert set(hist.edges) <= set(grid) and (hist.counts >= 10).all()


def test_an_oversized_request_is_refused_before_any_encryption():
    import pandas as pd

    rng = np.random.default_rng(0)
    parts = {h: pd.DataFrame({"x": rng.normal(size=50)}) for h in ("a", "b")}
    fed = Federation(parts)  # local mode: caller's edges, but sizes still checked first
    with pytest.raises(WorkbenchUserError) as err:
        fed.histogram("x", bins=10_000_000, range=(0, 1))
    assert err.value.reason == "too-many-cells"
    assert not fed.coordinator.log


# -- 4. derived columns ---------------------------------------------------------------------------
def test_a_plaintext_column_derived_from_a_sensitive_one_is_sensitive(demo):
    column = demo.view("t1d_cohort").column("hba1c_category")
    assert column.sensitivity == "sensitive" and column.derived_from == "hba1c_mean"
    with pytest.raises(WorkbenchUserError) as err:
        demo.read(STUDY, "t1d_cohort", ["person_id", "hba1c_category"])
    assert err.value.reason == "sensitive-column"
    # still usable where it belongs, as a grouping of secure aggregates: any refusal is the
    # release checker's (few patients have a mean below 7 %), not the role check's
    try:
        assert federation(demo, "t1d_cohort").count(by="hba1c_category").sum() > 0
    except ReleaseRefused as refused:
        assert refused.rule == "min-cell-count"


# -- 5. the release checker signs what it releases ------------------------------------------------
def test_released_results_carry_the_release_checkers_signature(demo):
    fed = federation(demo, "cml_cohort")
    km = fed.kaplan_meier("days", "progressed")
    key = fed.coordinator.keyholder.release_key.verify_key
    body = attest.verify(km.attestation, key)
    assert body["op"] == "kaplan_meier" and body["result"]["groups"][0]["n"] == km.n
    forged = {**km.attestation, "body": {**body, "result": {"groups": []}}}
    with pytest.raises(WorkbenchUserError) as err:
        attest.verify(forged, key)
    assert err.value.reason == "unverified-result"
    count = fed.count()
    assert attest.verify(count.attestation, key)["result"]["counts"] == [int(count)]


# -- 6. differential privacy where a study wants it ------------------------------------------------
def test_a_private_study_gets_noisy_results_that_state_their_epsilon_and_stops_at_its_budget(
        demo):
    view = demo.view("cml_cohort")
    parts = demo.partitions(STUDY, "cml_cohort", None)
    fed = Federation(parts, min_cell_count=10, view=view, context={"study": "private"},
                     privacy={"epsilon_budget": 1.0, "epsilon_per_release": 0.5})
    exact = federation(demo, "cml_cohort").count(by="tki")
    noisy = fed.count(by="tki")
    assert noisy.attrs["privacy"]["epsilon"] == pytest.approx(0.5)
    assert (noisy >= 0).all() and abs(noisy - exact).max() < 200  # noise of scale 2
    km = fed.kaplan_meier("days", "progressed")
    assert km.privacy["epsilon"] == pytest.approx(0.5)
    assert (km.event_table["at_risk"] >= 10).all()
    with pytest.raises(ReleaseRefused) as err:  # the budget of 1.0 is spent
        fed.count(by="sex")
    assert err.value.rule == "privacy-budget"
    with pytest.raises(ReleaseRefused) as err:  # no private release of a model fit
        fed.cox_ph("days", "progressed", ["age_at_start"])
    assert err.value.rule == "privacy-op"


# -- 7. cost limits before work -------------------------------------------------------------------
def test_a_model_too_large_to_encrypt_is_refused_from_its_spec_before_any_holder_works():
    import pandas as pd

    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(10)})
    frame["days"], frame["event"] = rng.integers(0, 1000, n), rng.integers(0, 2, n)
    frame["site"] = [f"s{i % 40}" for i in range(n)]  # 40 strata x 1000 days x 10 covariates
    fed = Federation({"a": frame.iloc[::2], "b": frame.iloc[1::2]})
    with pytest.raises(WorkbenchUserError) as err:
        fed.cox_ph("days", "event", [f"x{i}" for i in range(10)], strata="site")
    assert err.value.reason == "too-large" and not fed.coordinator.log


def test_a_request_past_its_time_cap_stops_with_one_clear_refusal():
    import pandas as pd

    frame = pd.DataFrame({"a": ["x", "y"] * 20})
    fed = Federation({"h0": frame.iloc[::2], "h1": frame.iloc[1::2]})
    fed.coordinator.max_seconds = 0.0  # every round starts past the cap
    with pytest.raises(WorkbenchUserError) as err:
        fed.count()
    assert err.value.reason == "too-slow" and not fed.coordinator.log
