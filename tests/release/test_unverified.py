"""Outputs on the kernel's word and tables without numbers (security boundary: rules.py,
identifying.py, airlock.py): nothing unverified passes automatically, text tables get rules."""

from __future__ import annotations

import secrets

import numpy as np
import pandas as pd
import pytest

from workbench.release import airlock as airlock_module
from workbench.release import rules
from workbench.release.airlock import Context
from workbench.release.outputs import with_data
from workbench.release.serialize import from_payload, to_payload

ALICE = Context("alice", "cml-tki", kernel_id="k-1", msg_id="m-1")
T = rules.Thresholds(min_cell_count=10)


def _run(obj, **kw):
    verdict, results = rules.run_rules(from_payload(to_payload(obj, **kw)), T, [])
    return verdict, {r.rule: r for r in results}


class HandMadeCurve:
    """What a kernel can type in: an event table that looks like a Kaplan-Meier fit's."""

    def __init__(self, at_risk, observed, censored):
        self.event_table = pd.DataFrame({"at_risk": at_risk, "observed": observed,
                                         "censored": censored},
                                        index=pd.Index([0.0, 30.0, 60.0], name="event_at"))


def test_a_hand_made_table_curve_or_model_is_never_an_automatic_pass():
    from workbench.secure.results import RegressionResult

    table = pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]})
    curve = HandMadeCurve([200, 200, 150], [0, 30, 20], [0, 20, 10])
    model = RegressionResult({"covariates": ["age"], "params": [0.1], "covariance": [[0.01]],
                              "loglik": -100.0, "n": 500, "events": 200, "iterations": 4},
                             "CoxPHResult")
    for obj in (table, curve, model):
        verdict, results = _run(obj)
        assert verdict == "review"
        unverified = results["unverified-output"]
        assert unverified.verdict == "review" and "kernel" in unverified.message
        assert "release checker" in unverified.message


def test_a_hand_made_survival_payload_with_small_counts_fails():
    verdict, results = _run(HandMadeCurve([25, 25, 21], [0, 3, 2], [0, 1, 0]))
    assert verdict == "fail"
    assert results["survival-step"].verdict == "fail"
    assert results["unverified-output"].verdict == "review"


def test_figures_are_unverified_and_manual():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    png = buf.getvalue()
    table = pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]})
    payload = to_payload(png, data=table)
    figure = with_data(from_payload(payload), from_payload(payload["data"]))
    verdict, results = rules.run_rules(figure, T, [])
    assert verdict == "review"
    assert {"unverified-output", "figure-manual", "minimum-threshold"} <= {r.rule for r in results}


def test_an_unverified_output_needs_two_approvals_even_if_the_general_rule_were_relaxed(
        airlock, monkeypatch):
    monkeypatch.setattr(airlock_module, "APPROVALS_NEEDED", 1)
    req = airlock.create(ALICE, to_payload(pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]}),
                                           view="cml_cohort"), "arms", "patients per arm")
    assert req["approvals_needed"] == 2 and req["verified"] is False
    assert airlock.decide(Context("rita"), req["id"], "approve")["state"] == "reviewed"
    assert airlock.decide(Context("remy"), req["id"], "approve")["state"] == "released"
    evidence = airlock.detail(Context("rita"), req["id"])["evidence"]
    assert evidence["verified"] is False and evidence["approvals_needed"] == 2
    reason = next(r for r in evidence["rules"] if r["rule"] == "unverified-output")
    assert reason["verdict"] == "review" and "kernel" in reason["message"]


# -- tables without numbers -----------------------------------------------------------------------

def _pseudonyms(n):
    return [secrets.token_hex(8) for _ in range(n)]


@pytest.mark.parametrize("table, rule", [
    (pd.DataFrame({"pseudonym": _pseudonyms(30), "sex": ["F", "M"] * 15}), "identifier-column"),
    (pd.DataFrame({"who": _pseudonyms(12)}), "identifier-column"),  # values, whatever the name
    (pd.DataFrame({"patient": [f"P{i:04d}" for i in range(25)]}), "identifier-column"),
    (pd.DataFrame({"person_id": ["a", "b", "c"]}), "identifier-column"),
    (pd.DataFrame({"sex": ["F", "M", "F", "F", "M"]}), "row-level-table"),  # one row each
    (pd.DataFrame({"code": [f"level {i}" for i in range(60)]}), "row-level-table"),
    (pd.DataFrame({"visit": [f"v{i}" for i in range(8)], "ward": ["a", "b"] * 4}),
     "row-level-table"),  # a key beside attributes
    (pd.DataFrame({"note": ["fell at home after the second dose, admitted for three days"]}),
     "free-text"),
])
def test_per_row_and_identifying_text_tables_fail(table, rule):
    verdict, results = _run(table)
    assert verdict == "fail" and results[rule].verdict == "fail", {
        r: v.verdict for r, v in results.items()}
    for result in results.values():  # messages name columns and sizes, never a value
        assert not any(str(v) in result.message for v in table.iloc[:, 0].tolist()
                       if len(str(v)) > 2)


def test_a_list_of_category_labels_goes_to_review():
    verdict, results = _run(pd.DataFrame({"tki": ["imatinib", "nilotinib", "dasatinib"]}))
    assert verdict == "review" and results["label-list"].verdict == "review"


def test_a_count_table_keyed_by_pseudonym_fails_even_with_large_counts():
    table = pd.DataFrame({"pid": _pseudonyms(5), "visits": np.array([12, 15, 20, 11, 30])})
    verdict, results = _run(table)
    assert verdict == "fail" and results["identifier-column"].verdict == "fail"


@pytest.mark.parametrize("labels", [
    [str(y) for y in range(2015, 2025)], ["L01EA01", "L01EA03", "L01EA02"],
    ["C92.1", "C92.0"], ["0-17", "18-64", "65+"]])
def test_ordinary_group_labels_are_not_identifiers(labels):
    table = pd.DataFrame({"group": labels, "n": np.full(len(labels), 50)})
    _, results = _run(table)
    assert "identifier-column" not in results
