"""What a policy-change record says changed: names and field paths, never a value."""

from __future__ import annotations

import json

from policy_support import NEW_STUDY, POLICY

from workbench.policy import parse_policy
from workbench.policy.changes import describe_changes, summary


def test_first_policy_adds_everything():
    fields = describe_changes(None, parse_policy(POLICY))
    assert fields["studies_added"] == ["pol-one"] and fields["members_added"] == ["pol-one/alice"]
    assert "users.ada (added)" in fields["changes"]
    assert summary(fields).startswith("+study pol-one; +member pol-one/alice; +user ada")


def test_studies_members_fields_and_users_each_named_once():
    old = parse_policy(POLICY)
    text = (POLICY.replace("members: [alice]", "members: [bob]")
            .replace("views: [visits]", "views: [visits, elderly]")
            .replace("  rita: {roles: [reviewer]}\n", "")
            .replace("    reviewers: [rita]\n", "")
            .replace("ada: {roles: [admin]}", "ada: {roles: [admin], email: ada@example.org}")
            + NEW_STUDY)
    fields = describe_changes(old, parse_policy(text))
    assert fields["studies_added"] == ["pol-two"] and fields["studies_removed"] == []
    assert fields["members_added"] == ["pol-one/bob", "pol-two/alice", "pol-two/bob"]
    assert fields["members_removed"] == ["pol-one/alice"]
    assert fields["changes"] == ["studies.pol-one.reviewers", "studies.pol-one.views",
                                 "users.ada", "users.rita (removed)"]
    assert "-user rita" in summary(fields) and "changed users.ada" in summary(fields)
    assert "example.org" not in json.dumps(fields)  # a changed value is named, never quoted
    back = describe_changes(parse_policy(text), old)
    assert back["studies_removed"] == ["pol-two"] and "users.rita (added)" in back["changes"]


def test_no_change_says_so():
    policy = parse_policy(POLICY)
    fields = describe_changes(policy, policy)
    assert not any(fields.values())
    assert summary(fields) == "no change in studies, members or users"
