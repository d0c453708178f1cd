"""The hub side of the dashboards: ``hub_services(policy, space)`` -> (services, roles) for
``c.JupyterHub.services`` and ``c.JupyterHub.load_roles`` (called by workbench.hub.config).

- ``review``: standalone Voila (``workbench review dashboard --all-studies``,
  workbench.review.voila_app) with every study's release queue, provenance and results
  (``.../voila/render/release_queue.ipynb?study=<study>``); role ``review`` grants
  ``access:services!service=review`` to every ``<study>-reviewers`` group and to admins, and
  the service lets a visitor see a study only if the policy makes them its reviewer or an admin;
- (``per_study=True``, the earlier layout, kept for the benchmark) ``review-<study>``: one Voila
  per study, role ``review-<study>`` for ``<study>-reviewers`` and admins;
- ``review-admin``: the admin overview, for the policy's admins;
- ``review-files``: released files for members and reviewers (the airlock decides per file;
  ``workbench review files``);
- ``review-broker``: no URL; the dashboards' one privileged helper (``workbench review broker``).

Each is started with this interpreter (``workbench_command``: the hub's ``sys.executable``, which
need not be on the service's PATH); JupyterHub passes the services its own PYTHONPATH.

Reviewers get no ``access:servers`` scope anywhere: that would be code execution.
Ports: ``$WORKBENCH_REVIEW_PORT_BASE`` upwards when set, else free ports, on 127.0.0.1.

Accounts (when the hub runs as root): each dashboard server runs unprivileged as its own account,
``wbv-review-studies`` for the shared service (``wbv-<study>`` per study, ``wbv-review-admin``,
``wb-review-files``), and asks the root kernel launcher for its kernels, which run as
``wbr-<study>`` of the visit's study: one kernel account per study rather than one review
account, so one study's dashboard kernel cannot reach another study's reviewers' kernels or
decisions, and never the study's own kernel account (``wbk-<study>``), which is the researcher's.
Only the broker runs as root. What the shared server changes for isolation: docs/review.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.resources import DASHBOARDS
from workbench.review.broker import ADMIN, FILES_ACCOUNT
from workbench.runtime import workbench_command
from workbench.sandbox.launcher import (
    SHARED_REVIEW,
    dashboard_kernel_user,
    dashboard_server_user,
    shared_dashboard_server_user,
)

STUDY_DASHBOARDS = ("release_queue", "provenance", "results")
ADMIN_DASHBOARDS = ("admin_overview",)
SHARED_SERVICE = "review"  # every study's reviewers, one process (docs/review.md)
FILES_SERVICE = "review-files"
BROKER_SERVICE = "review-broker"
ADMIN_SERVICE = "review-admin"
ADMIN_SANDBOX = ADMIN  # the admin overview's kernels: a sandbox that is no study's


def service_name(study: str) -> str:
    return f"review-{study}"


def reviewers_group(study: str) -> str:
    return f"{study}-reviewers"  # the hub's group of a study's reviewers (workbench.hub.roles)


def review_root(space: Space) -> Path:
    return space.root / "review"


def _notebook_dir(space: Space, name: str, notebooks: tuple[str, ...]) -> Path:
    """A root-owned directory holding only the dashboards this service may render."""
    target = review_root(space) / name / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for path in (review_root(space), target.parent, target):
        os.chmod(path, 0o755)  # noqa: S103 - root-owned, read-only for the service
    for notebook in notebooks:
        shutil.copyfile(DASHBOARDS / f"{notebook}.ipynb", target / f"{notebook}.ipynb")
        os.chmod(target / f"{notebook}.ipynb", 0o644)
    return target


def _jupyter_env(space: Space, name: str, with_kernelspec: bool,
                 owner: tuple[int, int] | None = None) -> dict[str, str]:
    """Voila needs writable-free but explicit Jupyter dirs (HOME may be /nonexistent): all
    root-owned and read-only for the service, but its runtime directory, which ``owner`` (the
    service's account) gets for itself."""
    base = review_root(space) / name
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)  # noqa: S103 - root-owned, read-only for the service
    if with_kernelspec:
        from workbench.sandbox.kernelspec import install_kernelspec

        install_kernelspec(data)
    for sub in ("config", "ipython", "runtime"):
        (base / sub).mkdir(exist_ok=True)
    # jupyter_core's one-time IPython 3 migration would write this marker into the (read-only)
    # config dir; present and read-only, it is skipped
    (base / "config" / "migrated").touch()
    if owner is not None:
        os.chown(base / "runtime", *owner)
        os.chmod(base / "runtime", 0o700)
    return {"JUPYTER_DATA_DIR": str(data), "JUPYTER_PATH": str(data),
            "JUPYTER_CONFIG_DIR": str(base / "config"), "IPYTHONDIR": str(base / "ipython"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "PYTHONNOUSERSITE": "1",
            "MPLCONFIGDIR": str(base / "runtime"), "HOME": str(base)}


def _ports(count: int) -> list[int]:
    base = os.environ.get("WORKBENCH_REVIEW_PORT_BASE")
    if base:
        return [int(base) + i for i in range(count)]
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _policy_file(policy, space: Space, policy_path) -> str:
    """The policy file the services re-read; without one, a copy of the hub's loaded policy."""
    path = str(policy_path or os.environ.get("WORKBENCH_POLICY", ""))
    if path:
        return path
    copy = review_root(space) / "policy.json"  # JSON is YAML: load_policy reads it
    review_root(space).mkdir(parents=True, exist_ok=True)
    copy.write_text(json.dumps(policy.model_dump(mode="json"), indent=1))
    os.chmod(copy, 0o644)
    return str(copy)


def _account(name: str, kernels: str | None = None) -> tuple[dict, tuple[int, int] | None]:
    """As root: the service's account (and its kernels'), created now, since the service and
    the launcher cannot; ({"user": name}, (uid, gid)). Without root: the hub's own user."""
    if not accounts.is_root():
        return {}, None
    if kernels is not None:
        accounts.ensure_user(kernels)
    return {"user": name}, accounts.ensure_user(name)


def _shared_service(policy, space: Space, policy_path: str, port: int,
                    common: dict) -> tuple[dict, dict]:
    """``review``: one Voila for every study's reviewers (the study is each visit's), and its
    role: every study's reviewer group and the admins (the service checks the study per page)."""
    user, owner = _account(shared_dashboard_server_user())
    if accounts.is_root():  # each visit's kernel runs as its study's (the launcher makes
        for study in policy.studies:  # those of studies added later)
            accounts.ensure_user(dashboard_kernel_user(study))
    service = {
        "name": SHARED_SERVICE, "display": True, "oauth_no_confirm": True, **user,
        "cwd": str(review_root(space) / SHARED_SERVICE),
        "url": f"http://127.0.0.1:{port}",
        "command": workbench_command(
            "review", "dashboard",
            "--notebooks", str(_notebook_dir(space, SHARED_SERVICE, STUDY_DASHBOARDS)),
            "--data-dir", str(space.root), "--policy", policy_path, "--all-studies",
            "--dashboards", ",".join(STUDY_DASHBOARDS)),
        "environment": {**common, **_jupyter_env(space, SHARED_SERVICE, True, owner)},
    }
    role = {"name": SHARED_SERVICE,
            "description": "Reviewers of any study: the review service (each study's queue "
                           "only to that study's reviewers, checked per page).",
            "scopes": [f"access:services!service={SHARED_SERVICE}"],
            "groups": [reviewers_group(s) for s in sorted(policy.studies)],
            "users": policy.admins()}
    return service, role


def hub_services(policy, space: Space, policy_path: str | os.PathLike | None = None,
                 per_study: bool = False) -> tuple[list[dict], list[dict]]:
    """The services and roles; ``per_study``: one Voila per study (``review-<study>``, the
    layout before the shared service; benchmarks/bench_dashboards.py measures both)."""
    for reserved in (ADMIN_SANDBOX, SHARED_REVIEW):
        if reserved in policy.studies:
            raise WorkbenchUserError(
                f"the study id '{reserved}' is reserved for the review services' accounts: "
                "rename the study in the policy file", reason="bad-policy")
    policy_path = _policy_file(policy, space, policy_path)
    ports = _ports((len(policy.studies) if per_study else 1) + 2)
    common = {"WORKBENCH_DATA_DIR": str(space.root), "WORKBENCH_POLICY": policy_path}
    services: list[dict] = []
    roles: list[dict] = []
    admins = policy.admins()
    if not per_study:
        service, role = _shared_service(policy, space, policy_path, ports[1], common)
        services.append(service)
        roles.append(role)
    for index, study in enumerate(sorted(policy.studies) if per_study else ()):
        name = service_name(study)
        user, owner = _account(dashboard_server_user(study), dashboard_kernel_user(study))
        services.append({
            "name": name, "display": True, "oauth_no_confirm": True, **user,
            "cwd": str(review_root(space) / name),
            "url": f"http://127.0.0.1:{ports[1 + index]}",
            "command": workbench_command(
                "review", "dashboard",
                "--notebooks", str(_notebook_dir(space, name, STUDY_DASHBOARDS)),
                "--data-dir", str(space.root), "--policy", policy_path,
                "--study", study, "--dashboards", ",".join(STUDY_DASHBOARDS)),
            "environment": {**common, **_jupyter_env(space, name, True, owner),
                            "WORKBENCH_STUDY": study},
        })
        roles.append({"name": name,
                      "description": f"Reviewers of {study}: its release queue and dashboards.",
                      "scopes": [f"access:services!service={name}"],
                      "groups": [reviewers_group(study)], "users": admins})
    user, owner = _account(dashboard_server_user(ADMIN_SANDBOX),
                           dashboard_kernel_user(ADMIN_SANDBOX))
    services.append({
        "name": ADMIN_SERVICE, "display": True, "oauth_no_confirm": True, **user,
        "cwd": str(review_root(space) / ADMIN_SERVICE),
        "url": f"http://127.0.0.1:{ports[0]}",
        "command": workbench_command(
            "review", "dashboard",
            "--notebooks", str(_notebook_dir(space, ADMIN_SERVICE, ADMIN_DASHBOARDS)),
            "--data-dir", str(space.root), "--policy", policy_path,
            "--dashboards", ",".join(ADMIN_DASHBOARDS)),
        "environment": {**common, **_jupyter_env(space, ADMIN_SERVICE, True, owner),
                        "WORKBENCH_STUDY": ADMIN_SANDBOX},
    })
    roles.append({"name": ADMIN_SERVICE, "description": "Admins: the admin overview dashboard.",
                  "scopes": [f"access:services!service={ADMIN_SERVICE}"], "users": admins})
    user, _ = _account(FILES_ACCOUNT)
    services.append({
        "name": FILES_SERVICE, "display": True, "oauth_no_confirm": True, **user,
        "cwd": str(review_root(space)),
        "url": f"http://127.0.0.1:{ports[-1]}",
        "command": workbench_command("review", "files", "--data-dir", str(space.root)),
        "environment": dict(common),
    })
    services.append({  # root: the hub's own user
        "name": BROKER_SERVICE, "display": False, "cwd": str(review_root(space)),
        "command": workbench_command("review", "broker", "--data-dir", str(space.root),
                                     "--policy", policy_path),
        "environment": dict(common),
    })
    groups = sorted(policy.studies) + [reviewers_group(s) for s in sorted(policy.studies)]
    roles.append({"name": FILES_SERVICE,
                  "description": "Members and reviewers: download released files.",
                  "scopes": [f"access:services!service={FILES_SERVICE}"], "groups": groups})
    return services, roles
