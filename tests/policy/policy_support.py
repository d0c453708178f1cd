"""Signing test policies: what `workbench policy keygen` and `apply` do, for fixtures.

    key = register_admin(space, "ada", tmp / "ada.key")   # keygen
    sign_test_policy(space, POLICY_TEXT, key)             # apply --yes (needs the collector)
"""

from __future__ import annotations

from pathlib import Path

from workbench.paths import Space
from workbench.policy import signed
from workbench.policy.cli import apply_policy

POLICY = """\
users:
  alice: {roles: [researcher]}
  bob: {roles: [researcher]}
  rita: {roles: [reviewer]}
  ada: {roles: [admin]}
studies:
  pol-one:
    title: One
    purpose: policy tests
    sponsor: tests
    members: [alice]
    reviewers: [rita]
    views: [visits]
    expires: 2099-12-31
"""

NEW_STUDY = """\
  pol-two:
    title: Two
    purpose: a study added by 'workbench policy apply'
    sponsor: tests
    members: [alice, bob]
    views: [visits_monthly]
    expires: 2099-12-31
"""


def register_admin(space: Space, name: str, path: Path):
    """A new admin key at ``path``, registered in the space; returns the private key."""
    key = signed.create_admin_key(path)
    signed.register_admin_key(space, name, key.public_key())
    return key


def sign_test_policy(space: Space, text: str, key) -> dict | None:
    """Put ``text`` in force as the space's signed policy (recorded: the collector must run)."""
    return apply_policy(space, text.encode(), "test-policy.yaml", key, echo=lambda _line: None)
