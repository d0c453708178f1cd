"""``workbench demo``: a whole space on this machine, ready for the researcher to log in.

Builds the space if missing (``workbench init`` for what is central), enrols every holder as a
node, has each synthetic holder's node generate and ingest its own sources
(``workbench/space/at_nodes.py``), starts the provenance collector, the data gateway, the HE key
holder and aggregator and the airlock (each the owning component's own helper, as its own uid),
creates the demo users and prints their passwords once, then runs configurable-http-proxy and
JupyterHub on 127.0.0.1:8000 in the foreground. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from workbench.errors import WorkbenchUserError
from workbench.hub import processes
from workbench.hub.database import hub_db_url
from workbench.hub.layout import HubLayout, ensure_interpreter_reachable
from workbench.hub.users import create_demo_users
from workbench.node.enroll import is_node_space
from workbench.paths import Space
from workbench.policy import load_policy
from workbench.resources import JUPYTERHUB_CONFIG
from workbench.services import KERNEL_LAUNCHER, SERVICES, space_services

Echo = Callable[[str], None]

# Study servers are not root, so their kernels come from the root kernel launcher.
DEMO_SERVICES = SERVICES + (KERNEL_LAUNCHER,)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt  # SIGTERM stops the demo as cleanly as Ctrl-C


def run_demo(data_dir: str | os.PathLike, policy: str | os.PathLike, echo: Echo = print,
             port: int = 8000, patients: int = 10_000) -> int:
    """Run the demo in the foreground; returns the hub's exit status."""
    policy_path = str(Path(policy).resolve())
    parsed = load_policy(policy_path)
    if shutil.which("configurable-http-proxy") is None:
        raise WorkbenchUserError(
            "configurable-http-proxy is not installed: run 'make system-deps' (or "
            "'npm install -g configurable-http-proxy').", reason="missing-proxy")
    space = Space.at(data_dir)
    if not space.manifest.exists():
        echo(f"building the demo space at {space.root} (workbench init; the synthetic holders' "
             "data at their nodes) ...")
        from workbench.space.build import init_space

        init_space(space.root, patients=patients, echo=echo, synthetic_at_nodes=True)
    if not is_node_space(space):  # every holder keeps its own store, keys and rules
        from workbench.node.enroll import enroll_space

        nodes = enroll_space(space)
        echo(f"holder nodes: {', '.join(n.holder for n in nodes)} (each its own account)")
    from workbench.space.at_nodes import build_at_nodes

    # each synthetic holder's node generates and ingests its own sources (again after a stop)
    build_at_nodes(space, echo)
    fixed = ensure_interpreter_reachable(fix=True)
    if fixed:
        echo(f"made {', '.join(map(str, fixed))} traversable so study accounts can run Python")
    layout = HubLayout(space)
    layout.ensure()
    # the services act on the space's signed policy; --policy is only its first version
    from workbench.policy.cli import install_demo_policy

    policy_path = str(install_demo_policy(space, policy_path, echo))
    parsed = load_policy(policy_path)

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background
    # What the hub starts (proxy, culler, study servers) runs in sessions of its own: if the
    # hub dies before stopping them, they come back to us instead of init, and are stopped.
    processes.become_subreaper()
    echo("starting the space's services:")
    with space_services(space, policy_path, echo, services=DEMO_SERVICES):
        passwords = create_demo_users(hub_db_url(layout), parsed)  # $WORKBENCH_HUB_DB_URL
        echo("")
        if passwords:
            echo("demo accounts (shown once; only their bcrypt hashes are stored):")
            for name, password in passwords.items():
                roles = ", ".join(parsed.users[name].roles)
                echo(f"  {name:<6} {roles:<11} {password}")
        else:
            echo("demo accounts exist already (passwords were printed when they were created; "
                 "reset them with 'workbench hub users --reset').")
        echo(f"\nopen http://127.0.0.1:{port}/ and log in as alice; "
             "her studies are under 'Your studies'.\n")
        env = dict(os.environ, WORKBENCH_DATA_DIR=str(space.root), WORKBENCH_POLICY=policy_path,
                   WORKBENCH_HUB_BIND_URL=f"http://127.0.0.1:{port}",
                   # internal ports: free ones, so a second hub on this machine cannot clash
                   WORKBENCH_HUB_PORT=str(_free_port()),
                   WORKBENCH_PROXY_API_PORT=str(_free_port()),
                   CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(32),
                   PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        services = [p.pid for p in processes.descendants(os.getpid())]  # the space's services
        # stdin: not this terminal. Jupyter servers reading a terminal answer SIGINT (how the
        # hub stops its services and servers) with a prompt instead of stopping.
        hub = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f",
                                str(JUPYTERHUB_CONFIG)], cwd=layout.state, env=env,
                               stdin=subprocess.DEVNULL)
        try:
            return hub.wait()
        except KeyboardInterrupt:
            # the hub stops its proxy, services and servers; stop_tree whatever it did not
            return processes.stop_tree(hub, timeout=60)
        finally:
            # a hub that exited on its own leaves what it started to us (its subreaper); the
            # services and what they run are stopped next, by space_services
            keep = set(services) | {p.pid for p in processes.descendants(*services)}
            processes.terminate([p for p in processes.descendants(os.getpid())
                                 if p.pid not in keep])
