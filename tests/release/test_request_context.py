"""What a release request carries besides its output (airlock.py, rules.py): the numbers behind a
figure, checked by the same rules; the requester's justification and disclosure controls; the
comment thread of reviewers and requester, recorded in provenance by digest only."""

from __future__ import annotations

import hashlib
import io
import json

import matplotlib
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_rossi

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.release.airlock import Context
from workbench.release.helpers import coarsen_survival
from workbench.release.serialize import to_payload

matplotlib.use("Agg")

# the kernel account sends every request; the person is only the kernel's claim
KERNEL = Context("alice", "cml-tki", kernel_id="k-1", msg_id="m-1", claimed_user="alice")
RITA, REMY, OLGA = Context("rita"), Context("remy"), Context("olga")


def _km():
    rossi = load_rossi()
    return KaplanMeierFitter().fit(rossi.week, rossi.arrest, label="all")


def _figure(km) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    km.plot_survival_function(ax=ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_a_km_figure_of_a_curve_that_fails_survival_step_is_refused(airlock):
    km = _km()  # every week a step: 1-9 arrests a week fail survival-step at k=10
    refused = airlock.create(KERNEL, to_payload(_figure(km), data=km, view="cml_cohort"),
                             "km_fig", "KM of re-arrest")
    assert refused["state"] == "draft" and refused["verdict"] == "fail"
    assert "survival-step" in refused["failed_rules"]
    # the same curve coarsened: its figure goes to the reviewers, who check picture and numbers
    coarse = coarsen_survival(km, 10)
    passed = airlock.create(KERNEL, to_payload(_figure(km), data=coarse, view="cml_cohort"),
                            "km_fig_coarse", "KM of re-arrest, coarsened")
    assert passed["state"] == "submitted" and passed["failed_rules"] == []
    evidence = airlock.detail(RITA, passed["id"])["evidence"]
    rules = {r["rule"]: r["verdict"] for r in evidence["rules"]}
    assert rules["survival-step"] == "pass" and rules["figure-manual"] == "review"
    assert "all::n" in evidence["counts"]  # its numbers enter differencing like a curve's


def test_a_figure_without_its_numbers_is_refused(airlock):
    refused = airlock.create(KERNEL, to_payload(_figure(_km()), view="cml_cohort"), "bare",
                             "a picture alone")
    assert refused["state"] == "draft" and "figure-data" in refused["failed_rules"]
    finding = next(f for f in refused["findings"] if f["rule"] == "figure-data")
    assert "data=" in finding["message"]


def test_a_figure_cannot_vouch_for_a_figure(airlock):
    png = _figure(_km())
    payload = to_payload(png, view="cml_cohort")
    payload["data"] = to_payload(png, view="cml_cohort")
    with pytest.raises(WorkbenchUserError) as refused:
        airlock.create(KERNEL, payload, "nested", "figure of a figure")
    assert "not another figure" in str(refused.value)


def test_justification_and_controls_are_stored_with_the_request_not_in_provenance(
        airlock, read_records):
    payload = to_payload(pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]}), view="cml_cohort")
    req = airlock.create(KERNEL, payload, "arms", "patients per arm",
                         justification="table 1 of the manuscript",
                         controls=["groups under 10 merged", "counts rounded to 5"])
    detail = airlock.detail(RITA, req["id"])
    assert detail["justification"] == "table 1 of the manuscript"
    assert detail["controls"] == ["groups under 10 merged", "counts rounded to 5"]
    assert detail["claimed_user"] == "alice"
    recorded = json.dumps(read_records("release-request"))
    assert "manuscript" not in recorded and "rounded to 5" not in recorded
    for bad in ({"controls": "x" * 201}, {"controls": [3]}, {"controls": ["ok"] * 21},
                {"justification": ["not", "text"]}):
        with pytest.raises(WorkbenchUserError) as refused:
            airlock.create(KERNEL, payload, "bad", "d", **bad)
        assert refused.value.reason == "bad-request"


def test_reviewers_and_the_requester_comment_others_cannot(airlock, read_records):
    payload = to_payload(pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]}), view="cml_cohort")
    req = airlock.create(KERNEL, payload, "arms", "patients per arm")
    airlock.comment(RITA, req["id"], "why arm b has 130 here and 128 in the paper?")
    thread = airlock.comment(KERNEL, req["id"], "two late enrolments, see cell 4")["comments"]
    assert [(c["actor"], c["role"], c["claimed_user"]) for c in thread] == [
        ("rita", "reviewer", None), ("alice", "requester", "alice")]
    for outsider in (OLGA, Context("bob"), Context("rita", "other")):
        with pytest.raises(WorkbenchUserError) as refused:
            airlock.comment(outsider, req["id"], "let me in")
        assert refused.value.reason == "access-denied"
    with pytest.raises(WorkbenchUserError):
        airlock.comment(REMY, req["id"], "   ")
    assert airlock.detail(KERNEL, req["id"])["comments"] == thread  # the author reads them too
    records = read_records("release-comment")
    assert [(r["fields"]["user"], r["fields"]["role"]) for r in records] == [
        ("rita", "reviewer"), ("alice", "requester")]
    body = "why arm b has 130 here and 128 in the paper?"
    assert records[0]["fields"]["ref"] == hashlib.sha256(body.encode()).hexdigest()
    assert "paper" not in json.dumps(records)  # the text stays in the airlock


def test_no_comment_without_the_collector(airlock, collector):
    payload = to_payload(pd.DataFrame({"arm": ["a", "b"], "n": [120, 130]}), view="cml_cohort")
    req = airlock.create(KERNEL, payload, "arms", "patients per arm")
    collector.stop()
    with pytest.raises(WorkbenchError):
        airlock.comment(RITA, req["id"], "looks fine")
    assert airlock.store.comments(req["id"]) == []
