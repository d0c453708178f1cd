"""Everything ``workbench/hub_config/jupyterhub_config.py`` sets, from the policy file and the
data space.

Environment overrides (for ``jupyterhub -f workbench/hub_config/jupyterhub_config.py``):
``WORKBENCH_POLICY``, ``WORKBENCH_DATA_DIR``, ``WORKBENCH_HUB_DB_URL`` (default: SQLite in the
space's ``hub/state``; e.g. ``postgresql://hub@db/jupyterhub``: see workbench.hub.database),
``WORKBENCH_HUB_BIND_URL`` (default ``http://127.0.0.1:8000``), ``WORKBENCH_HUB_PORT`` (the hub's
internal API port, default 8081), ``WORKBENCH_PROXY_API_PORT`` (default 8001),
``WORKBENCH_CULL_TIMEOUT`` (seconds, default 3600).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys

from workbench import accounts
from workbench.errors import WorkbenchError
from workbench.hub import roles as hub_roles
from workbench.hub.database import hub_db_url
from workbench.hub.home import (
    policy_history_of,
    review_queues_of,
    studies_of,
    write_templates,
)
from workbench.hub.layout import HubLayout, ensure_interpreter_reachable
from workbench.paths import Space
from workbench.policy.signed import active_policy

SERVER_SCOPES = {"access:servers", "servers", "admin:servers", "shares", "users:shares",
                 "groups:shares", "tokens", "admin:users"}


def _culler_service(timeout: int) -> dict:
    return {
        "name": hub_roles.CULLER_SERVICE,
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={timeout}",
                    "--cull-every=60", "--remove-named-servers=false"],
        "user": _culler_user(),
    }


def _culler_user() -> str:
    name = "wb-culler"
    accounts.ensure_user(name)
    return name if accounts.is_root() else os.environ.get("USER", "")


def _review_services(policy, space: Space, policy_path: str) -> tuple[list[dict], list[dict]]:
    """The RELEASE component's reviewer dashboards (hub-managed Voila services), when present."""
    try:
        found = importlib.util.find_spec("workbench.review.services")
    except ModuleNotFoundError:  # the review package itself is not installed
        found = None
    if found is None:
        return [], []
    from workbench.review.services import hub_services

    return hub_services(policy, space, policy_path)


def _interruptible_children() -> None:
    """A hub started with SIGINT ignored (under ``nohup ... &`` or any shell's background job)
    passes that on through exec to every service and study server it starts; Python then never
    turns SIGINT into KeyboardInterrupt, so each stop waits out JupyterHub's SIGINT timeout
    before SIGTERM (30 s for the culler alone). Python's own handler is reset by exec, so the
    children start with the default action."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def configure(c, policy_path: str | os.PathLike | None = None,
              data_dir: str | os.PathLike | None = None, *, db_url: str | None = None,
              bind_url: str | None = None, review_services: bool = True) -> None:
    """Fill a JupyterHub config object ``c``. ``review_services=False`` leaves out the
    reviewer dashboards (hub tests that are not about them start faster)."""
    policy_path = str(policy_path or os.environ.get("WORKBENCH_POLICY", ""))
    _interruptible_children()
    space = Space.at(data_dir)
    # a bad policy stops the hub with file, line and field; so does one the space's admin keys
    # do not sign (workbench.policy.signed)
    policy = active_policy(policy_path, space, "the hub").current()
    layout = HubLayout(space)
    layout.ensure()
    ensure_interpreter_reachable(fix=False)

    hub = c.JupyterHub
    hub.bind_url = bind_url or os.environ.get("WORKBENCH_HUB_BIND_URL", "http://127.0.0.1:8000")
    hub.hub_ip = "127.0.0.1"
    hub.hub_port = int(os.environ.get("WORKBENCH_HUB_PORT", "8081"))
    c.ConfigurableHTTPProxy.api_url = (
        f"http://127.0.0.1:{int(os.environ.get('WORKBENCH_PROXY_API_PORT', '8001'))}")
    hub.db_url = hub_db_url(layout, db_url)
    hub.cookie_secret_file = str(layout.cookie_secret)
    hub.pid_file = str(layout.state / "jupyterhub.pid")
    hub.data_files_path = os.path.join(sys.prefix, "share", "jupyterhub")

    hub.spawner_class = "workbench-study"
    hub.allow_named_servers = True
    # No count limit: a named server can only ever start for a study the user is a member of
    # (StudySpawner), and a refused or stopped one holds no resources.
    hub.named_server_limit_per_user = 0
    hub.template_paths = [str(write_templates(layout.root / "templates"))]
    hub.template_vars = {"studies": studies_of(policy_path, space),
                         "policy_history": policy_history_of(policy_path, space),
                         "review_queues": review_queues_of(policy_path, space)}
    hub.default_url = "/hub/home"  # the study list; there is no default server to spawn
    hub.admin_access = False  # no admin route into a researcher's server
    hub.load_groups = hub_roles.groups(policy)

    c.StudySpawner.policy_file = policy_path
    c.StudySpawner.data_dir = str(space.root)
    c.StudySpawner.http_timeout = 60
    c.StudySpawner.start_timeout = 120

    hub.authenticator_class = "workbench.hub.auth.WorkbenchAuthenticator"
    auth = c.WorkbenchAuthenticator
    auth.data_dir = str(space.root)
    auth.enable_signup = True
    auth.open_signup = False  # sign-ups wait for an admin's approval
    auth.minimum_password_length = 12
    auth.check_common_password = True
    auth.allowed_failed_logins = 5
    auth.seconds_before_next_try = 300
    auth.allow_2fa = True
    c.Authenticator.admin_users = set()  # admins get scoped roles, never the blanket admin flag
    c.Authenticator.allow_all = True  # who may log in is decided by the admin's approval

    timeout = int(os.environ.get("WORKBENCH_CULL_TIMEOUT", "3600"))
    services = [_culler_service(timeout)]
    role_list = hub_roles.roles(policy)
    extra_services, extra_roles = (_review_services(policy, space, policy_path)
                                   if review_services else ([], []))
    for role in extra_roles:  # a dashboard role that reached into servers would be a hole
        leaked = [s for s in role.get("scopes", []) if s.split("!")[0] in SERVER_SCOPES]
        if leaked:
            raise WorkbenchError(f"review role {role.get('name')} asks for {leaked}: dashboards "
                                 "must not get access to researcher servers")
    hub.services = services + list(extra_services)
    hub.load_roles = role_list + list(extra_roles)
