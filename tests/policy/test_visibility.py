"""Visibility per granted view: 'aggregates' refuses rows and allows the twin and wb.secure,
through the one access decision point; the policy file's forms and their checks."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime

import pytest

from workbench.accounts import study_kernel_user
from workbench.errors import WorkbenchUserError
from workbench.policy.access import decide, view_read
from workbench.policy.loader import parse_policy
from workbench.policy.model import Policy, Study, User, cross_reference_problems

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KERNEL = study_kernel_user("s1")


def policy(visibility) -> Policy:
    study = Study(title="T", purpose="P", sponsor="S", members=("alice",), views=("v1", "v2"),
                  expires=date(2027, 1, 1), **({} if visibility is None else
                                               {"visibility": visibility}))
    return Policy(users={"alice": User(roles=("researcher",))}, studies={"s1": study})


@pytest.mark.parametrize("visibility,levels", [
    (None, {"v1": "rows", "v2": "rows"}),                      # policies from before: unchanged
    ("aggregates", {"v1": "aggregates", "v2": "aggregates"}),
    ({"v1": "aggregates"}, {"v1": "aggregates", "v2": "rows"}),
])
def test_each_granted_view_has_one_level(visibility, levels):
    assert policy(visibility).studies["s1"].visibilities() == levels


@pytest.mark.parametrize("actor", ["alice", KERNEL])
def test_aggregates_refuses_rows_and_allows_the_twin_and_secure_ops(actor):
    p = policy({"v1": "aggregates"})
    refusal = decide(p, actor, "read-view", "s1", "v1", NOW)
    assert not refusal and "aggregates" in refusal.reason and "wb.secure" in refusal.reason
    assert decide(p, actor, "read-twin", "s1", "v1", NOW)
    assert decide(p, actor, "secure-op", "s1", "v1", NOW)
    assert view_read(p, actor, "s1", "v1", NOW) == "twin"
    assert view_read(p, actor, "s1", "v2", NOW) == "rows"


@pytest.mark.parametrize("actor,study,view,when", [
    ("bob", "s1", "v1", NOW),                        # not a member: not even the twin
    ("alice", "s1", "v3", NOW),                      # not granted
    ("alice", "s2", "v1", NOW),                      # no such study
    ("alice", "s1", "v1", datetime(2028, 1, 1, tzinfo=UTC)),  # expired
])
def test_the_twin_is_no_back_door(actor, study, view, when):
    p = policy("aggregates")
    assert not decide(p, actor, "read-twin", study, view, when)
    with pytest.raises(WorkbenchUserError) as caught:
        view_read(p, actor, study, view, when)
    assert caught.value.reason == "access-denied"


POLICY = textwrap.dedent("""\
    users:
      alice: {roles: [researcher]}
    studies:
      s1:
        title: T
        purpose: P
        sponsor: S
        members: [alice]
        views: [v1]
        visibility: VISIBILITY
        expires: 2027-01-01
    """)


def test_policy_file_forms_and_their_mistakes():
    assert parse_policy(POLICY.replace("VISIBILITY", "aggregates")).studies["s1"].visibility \
        == "aggregates"
    assert parse_policy(POLICY.replace("VISIBILITY", "{v1: rows}")).studies["s1"] \
        .visibility_of("v1") == "rows"
    with pytest.raises(WorkbenchUserError) as caught:
        parse_policy(POLICY.replace("VISIBILITY", "hidden"))
    assert "visibility" in str(caught.value)
    problems = cross_reference_problems(
        Policy.model_validate({"users": {"alice": {"roles": ["researcher"]}}, "studies": {"s1": {
            "title": "T", "purpose": "P", "sponsor": "S", "members": ["alice"], "views": ["v1"],
            "visibility": {"v9": "aggregates"}, "expires": "2027-01-01"}}}))
    assert problems == [(("studies", "s1", "visibility", "v9"),
                         "view 'v9' is not granted to the study: add it to 'views' or remove "
                         "it here")]


def test_the_demo_policy_shows_the_cml_study_aggregates_only():
    from pathlib import Path

    from workbench.policy.loader import load_policy

    demo = load_policy(Path(__file__).resolve().parents[2] / "workbench/hub_config/policy.yaml")
    assert set(demo.studies["cml-tki"].visibilities().values()) == {"aggregates"}
