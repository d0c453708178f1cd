"""Hub accounts with passwords: the demo users, and any policy user an admin wants to create.

Passwords are generated here, returned once to the caller (``make demo`` prints them) and stored
only as the authenticator stores them: a bcrypt hash in the hub database's ``users_info`` table.
Running it again keeps existing accounts and their passwords (it returns only new ones), unless
``reset=True``.
"""

from __future__ import annotations

import secrets

import bcrypt
from jupyterhub import orm
from nativeauthenticator.orm import UserInfo

from workbench.errors import WorkbenchUserError
from workbench.policy.model import Policy

DEMO_USERS = ("alice", "rita", "remy", "ada")


def generate_password() -> str:
    """About 96 bits from the OS's CSPRNG, URL-safe (no characters that trip up a shell)."""
    return secrets.token_urlsafe(12)


def create_users(db_url: str, names, reset: bool = False) -> dict[str, str]:
    """Create approved password accounts; return ``{name: password}`` for each one created."""
    session = orm.new_session_factory(db_url)()
    created: dict[str, str] = {}
    try:
        for name in names:
            info = UserInfo.find(session, name)
            if info is not None and not reset:
                continue
            password = generate_password()
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
            if info is None:
                session.add(UserInfo(username=name, password=hashed, is_authorized=True))
            else:
                info.password, info.is_authorized = hashed, True
            if orm.User.find(session, name) is None:
                session.add(orm.User(name=name))
            created[name] = password
        session.commit()
    finally:
        session.close()
    return created


def create_demo_users(db_url: str, policy: Policy, reset: bool = False) -> dict[str, str]:
    """alice (researcher), rita and remy (reviewers), ada (admin), as the demo policy names them."""
    missing = [name for name in DEMO_USERS if name not in policy.users]
    if missing:
        raise WorkbenchUserError(
            f"the policy has no user {', '.join(missing)}: the demo needs alice, rita, remy and "
            "ada under 'users' (see workbench/hub_config/policy.yaml).", reason="bad-policy")
    return create_users(db_url, DEMO_USERS, reset=reset)
