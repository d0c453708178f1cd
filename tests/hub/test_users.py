"""Demo and admin-created accounts: generated passwords, stored only as bcrypt hashes, on the
embedded SQLite hub database and on PostgreSQL (the production hub database)."""

from __future__ import annotations

import uuid
from pathlib import Path

import bcrypt
import psycopg
import pytest
from jupyterhub import orm
from nativeauthenticator.orm import UserInfo

from workbench.errors import WorkbenchUserError
from workbench.hub.users import create_demo_users, create_users
from workbench.policy import load_policy, parse_policy

DEMO_POLICY = Path(__file__).resolve().parents[2] / "workbench" / "hub_config" / "policy.yaml"


def _check_accounts(db_url: str, passwords: dict[str, str]) -> None:
    session = orm.new_session_factory(db_url)()
    try:
        for name, password in passwords.items():
            info = UserInfo.find(session, name)
            assert info.is_authorized and info.is_valid_password(password)
            assert password.encode() not in info.password
            assert bcrypt.checkpw(password.encode(), info.password)
            assert orm.User.find(session, name) is not None
    finally:
        session.close()


def test_demo_users_get_distinct_strong_passwords_once(tmp_path):
    db_url = f"sqlite:///{tmp_path}/hub.sqlite"
    created = create_demo_users(db_url, load_policy(DEMO_POLICY))
    assert set(created) == {"alice", "rita", "remy", "ada"}
    assert len(set(created.values())) == 4 and all(len(p) >= 16 for p in created.values())
    _check_accounts(db_url, created)
    assert create_demo_users(db_url, load_policy(DEMO_POLICY)) == {}  # kept, not re-issued
    reset = create_users(db_url, ["alice"], reset=True)
    assert reset["alice"] != created["alice"]
    _check_accounts(db_url, reset)


def test_demo_users_must_be_in_the_policy(tmp_path):
    policy = parse_policy("users:\n  alice: {roles: [researcher]}\n")
    with pytest.raises(WorkbenchUserError, match="rita"):
        create_demo_users(f"sqlite:///{tmp_path}/hub.sqlite", policy)


@pytest.mark.postgres
def test_accounts_on_a_postgresql_hub_database():
    name = f"wb_hub_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        created = create_users(db_url, ["alice", "ada"])
        _check_accounts(db_url, created)
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()
