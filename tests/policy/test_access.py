"""The one access decision point: explicit rules, deny by default, monotone in grants."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.accounts import study_kernel_user
from workbench.errors import WorkbenchUserError
from workbench.policy.access import ACTIONS, decide, ensure_allowed
from workbench.policy.model import Policy, Study, User

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def demo_policy(**study_changes) -> Policy:
    study = dict(title="T", purpose="P", sponsor="S", members=("alice",), reviewers=("rita",),
                 views=("v1",), expires=date(2027, 1, 1))
    study.update(study_changes)
    return Policy(
        users={"alice": User(roles=("researcher",)), "rita": User(roles=("reviewer",)),
               "ada": User(roles=("admin",)), "bob": User(roles=("researcher",))},
        studies={"s1": Study(**study)},
    )


@pytest.mark.parametrize("actor,action,resource,allowed", [
    ("alice", "read-view", "v1", True),
    ("alice", "read-view", "v2", False),          # not granted
    ("alice", "read-view", None, False),          # a view action needs a view
    ("alice", "secure-op", "v1", True),
    ("alice", "spawn-server", None, True),
    ("alice", "request-release", None, True),
    ("alice", "review-release", None, False),     # no self-review
    ("alice", "admin", None, False),
    ("bob", "read-view", "v1", False),            # researcher, not a member
    ("bob", "spawn-server", None, False),
    ("rita", "review-release", None, True),
    ("rita", "view-dashboard", None, True),
    ("rita", "read-view", "v1", False),           # reviewers do not read data
    ("ada", "admin", None, True),
    ("ada", "view-dashboard", None, True),
    ("ada", "read-view", "v1", False),            # admins do not read data either
    ("ada", "spawn-server", None, False),
    (study_kernel_user("s1"), "read-view", "v1", True),
    (study_kernel_user("s1"), "read-view", "v2", False),
    (study_kernel_user("s1"), "spawn-server", None, False),
    (study_kernel_user("other"), "read-view", "v1", False),  # another study's kernel
    ("mallory", "read-view", "v1", False),
    ("alice", "delete-everything", None, False),
])
def test_rules(actor, action, resource, allowed):
    assert decide(demo_policy(), actor, action, "s1", resource, now=NOW).allowed is allowed


def test_a_mistyped_view_is_named_from_the_studys_own_grants_only():
    policy = demo_policy(views=("t1d_cohort", "v1"))
    reason = decide(policy, "alice", "read-view", "s1", "t1d_cohrt", now=NOW).reason
    assert "is not granted the view 't1d_cohrt' (did you mean 't1d_cohort'?)" in reason


def test_unknown_study_denied():
    assert not decide(demo_policy(), "alice", "read-view", "s2", "v1", now=NOW)
    assert not decide(demo_policy(), "alice", "read-view", None, "v1", now=NOW)


def test_expired_study_denies_everything_in_it():
    policy = demo_policy(expires=date(2026, 5, 31))
    for actor in ("alice", "rita", "ada", study_kernel_user("s1")):
        for action in ACTIONS[:-1]:
            decision = decide(policy, actor, action, "s1", "v1", now=NOW)
            assert not decision.allowed
    reason = decide(policy, "alice", "read-view", "s1", "v1", now=NOW).reason
    assert "expired on 2026-05-31" in reason
    # the expiry day itself is still valid
    assert decide(demo_policy(expires=date(2026, 6, 1)), "alice", "read-view", "s1", "v1", now=NOW)


def test_roles_are_rechecked_even_if_listed():
    # a policy built in code (not via the loader) listing a reviewer as member grants nothing
    policy = demo_policy(members=("rita",))
    assert not decide(policy, "rita", "read-view", "s1", "v1", now=NOW)


def test_ensure_allowed_message_names_study_view_and_how_to_ask():
    with pytest.raises(WorkbenchUserError) as info:
        ensure_allowed(demo_policy(), "alice", "read-view", "s1", "secret_view", now=NOW)
    message = str(info.value)
    assert info.value.reason == "access-denied"
    assert "s1" in message and "secret_view" in message and "ask an admin (ada)" in message


# -- properties --------------------------------------------------------------------------------
NAMES = st.sampled_from(["alice", "bob", "rita", "ada", "eve"])
STUDIES = st.sampled_from(["s1", "s2", "s3"])
VIEWS = st.sampled_from(["v1", "v2", "v3"])
ROLES = st.sampled_from(["researcher", "reviewer", "admin"])
DAYS = st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 1, 1))


@st.composite
def policies(draw):
    users = {name: User(roles=tuple(draw(st.sets(ROLES, min_size=1))))
             for name in draw(st.sets(NAMES))}
    studies = {
        sid: Study(title="T", purpose="P", sponsor="S",
                   members=tuple(draw(st.sets(NAMES, max_size=3))),
                   reviewers=tuple(draw(st.sets(NAMES, max_size=3))),
                   views=tuple(draw(st.sets(VIEWS, max_size=3))), expires=draw(DAYS))
        for sid in draw(st.sets(STUDIES))
    }
    return Policy(users=users, studies=studies)


ACTORS = st.one_of(NAMES, STUDIES.map(study_kernel_user))
QUERIES = st.lists(st.tuples(ACTORS, st.sampled_from(ACTIONS), st.one_of(st.none(), STUDIES),
                             st.one_of(st.none(), VIEWS)), min_size=1, max_size=30)


def allowed_set(policy, queries, now):
    return {q for q in queries if decide(policy, *q, now=now).allowed}


@st.composite
def grants(draw, policy: Policy):
    """A policy with one more grant: a role, a study, a member, a reviewer, a view or a later
    expiry."""
    kind = draw(st.sampled_from(["user-role", "member", "reviewer", "view", "expiry", "study"]))
    users, studies = dict(policy.users), dict(policy.studies)
    if kind == "user-role":
        name = draw(NAMES)
        roles = set(users[name].roles) if name in users else set()
        users[name] = User(roles=tuple(roles | {draw(ROLES)}))
    elif kind == "study" or not studies:
        sid = draw(STUDIES)
        if sid not in studies:
            studies[sid] = Study(title="T", purpose="P", sponsor="S", expires=draw(DAYS))
    else:
        sid = draw(st.sampled_from(sorted(studies)))
        study = studies[sid]
        if kind == "member":
            added = tuple(set(study.members) | {draw(NAMES)})
            study = study.model_copy(update={"members": added})
        elif kind == "reviewer":
            added = tuple(set(study.reviewers) | {draw(NAMES)})
            study = study.model_copy(update={"reviewers": added})
        elif kind == "view":
            study = study.model_copy(update={"views": tuple(set(study.views) | {draw(VIEWS)})})
        else:
            study = study.model_copy(update={"expires": max(study.expires, draw(DAYS))})
        studies[sid] = study
    return Policy(users=users, studies=studies)


@settings(max_examples=200, deadline=None)
@given(queries=QUERIES, now=DAYS)
def test_empty_policy_denies_everything(queries, now):
    now = datetime(now.year, now.month, now.day, tzinfo=UTC)
    assert allowed_set(Policy(), queries, now) == set()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), queries=QUERIES, now=DAYS)
def test_adding_a_grant_never_removes_access(data, queries, now):
    now = datetime(now.year, now.month, now.day, tzinfo=UTC)
    before = data.draw(policies())
    after = data.draw(grants(before))
    assert allowed_set(before, queries, now) <= allowed_set(after, queries, now)


@st.composite
def revocations(draw, policy: Policy):
    """A policy with one grant taken away: a role, a user, a study, a member, a reviewer, a view,
    or an earlier expiry."""
    users, studies = dict(policy.users), dict(policy.studies)
    kinds = (["role", "user"] if users else []) + (
        ["study", "member", "reviewer", "view", "expiry"] if studies else [])
    if not kinds:
        return policy
    kind = draw(st.sampled_from(kinds))
    if kind in ("role", "user"):
        name = draw(st.sampled_from(sorted(users)))
        roles = users[name].roles
        if kind == "user" or len(roles) == 1:
            del users[name]
        else:
            gone = draw(st.sampled_from(roles))
            users[name] = User(roles=tuple(r for r in roles if r != gone))
    else:
        sid = draw(st.sampled_from(sorted(studies)))
        study = studies[sid]
        if kind == "study":
            del studies[sid]
        elif kind == "expiry":
            studies[sid] = study.model_copy(update={"expires": min(study.expires, draw(DAYS))})
        else:
            field = {"member": "members", "reviewer": "reviewers", "view": "views"}[kind]
            values = getattr(study, field)
            if values:
                gone = draw(st.sampled_from(values))
                studies[sid] = study.model_copy(
                    update={field: tuple(v for v in values if v != gone)})
    return Policy(users=users, studies=studies)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), queries=QUERIES, now=DAYS)
def test_revoking_a_grant_never_adds_access(data, queries, now):
    now = datetime(now.year, now.month, now.day, tzinfo=UTC)
    before = data.draw(policies())
    after = data.draw(revocations(before))
    assert allowed_set(after, queries, now) <= allowed_set(before, queries, now)
