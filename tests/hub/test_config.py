"""The hub configuration built from the demo policy: groups, least-privilege roles, services."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from traitlets.config import Config

from workbench.errors import WorkbenchUserError
from workbench.hub import roles
from workbench.hub.config import configure
from workbench.policy import load_policy, parse_policy

DEMO_POLICY = Path(__file__).resolve().parents[2] / "workbench" / "hub_config" / "policy.yaml"
# scopes that would let someone run code in, or read, a researcher's server
SERVER_ACCESS = {"access:servers", "shares", "users:shares", "groups:shares", "tokens", "admin"}


def _configured(open_tmp) -> Config:
    c = Config()
    configure(c, DEMO_POLICY, open_tmp / "space", db_url="sqlite://")
    return c


def test_studies_become_groups_and_the_policy_names_them(open_tmp):
    c = _configured(open_tmp)
    groups = c.JupyterHub.load_groups
    assert groups["cml-tki"]["users"] == ["alice"]
    assert groups["cml-tki-reviewers"]["users"] == ["remy", "rita"]
    assert groups["lung-validation"]["properties"]["study"] == "lung-validation"
    assert c.JupyterHub.spawner_class == "workbench-study"
    assert c.JupyterHub.allow_named_servers is True
    assert c.JupyterHub.admin_access is False
    assert c.Authenticator.admin_users == set()


def test_roles_grant_no_server_access_beyond_ones_own(open_tmp):
    c = _configured(open_tmp)
    by_name = {role["name"]: role for role in c.JupyterHub.load_roles}
    for role in by_name.values():
        for scope in role["scopes"]:
            base, _, scope_filter = scope.partition("!")
            if base in SERVER_ACCESS:
                assert scope_filter == "user", (role["name"], scope)
    assert "admin-ui" in by_name["workbench-admin"]["scopes"]
    assert by_name["workbench-admin"]["users"] == ["ada"]
    assert not any(s.startswith("access:servers") for s in by_name["workbench-admin"]["scopes"])
    assert set(by_name["workbench-researcher"]["groups"]) == {
        "cml-tki", "lung-validation", "t1d-registry"}
    assert not any("reviewers" in g for g in by_name["workbench-researcher"]["groups"])
    assert set(by_name["idle-culler"]["scopes"]) == {
        "list:users", "read:users:activity", "read:servers", "delete:servers"}
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert culler["user"] != "root"


def test_a_bad_policy_stops_the_hub_with_file_and_line(open_tmp):
    bad = open_tmp / "policy.yaml"
    bad.write_text("users:\n  alice: {roles: [wizard]}\n")
    with pytest.raises(WorkbenchUserError) as caught:
        configure(Config(), bad, open_tmp / "space", db_url="sqlite://")
    assert "line 2" in str(caught.value)


@given(st.lists(st.sampled_from(["alice", "bob", "carol"]), unique=True),
       st.lists(st.sampled_from(["rita", "remy"]), unique=True))
def test_reviewers_never_get_a_researcher_role(members, reviewers):
    users = "".join(f"  {n}: {{roles: [researcher]}}\n" for n in ["alice", "bob", "carol"])
    users += "".join(f"  {n}: {{roles: [reviewer]}}\n" for n in ["rita", "remy"])
    policy = parse_policy(
        f"users:\n{users}studies:\n  s1:\n    title: t\n    purpose: p\n    sponsor: s\n"
        f"    members: {members}\n    reviewers: {reviewers}\n    expires: 2099-01-01\n")
    groups = roles.groups(policy)
    researcher_groups = next(r for r in roles.roles(policy)
                             if r["name"] == "workbench-researcher")["groups"]
    for group in researcher_groups:
        assert not set(groups[group]["users"]) & set(reviewers)


def test_demo_policy_loads():
    assert "cml-tki" in load_policy(DEMO_POLICY).studies
