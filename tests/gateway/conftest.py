"""A real space, a real provenance collector and the real gateway process; requests are made by a
subprocess running as the study's kernel uid (setpriv), exactly as a sandboxed kernel would."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench.accounts import ensure_user, study_kernel_user
from workbench.catalog.models import Column, View
from workbench.gateway.server import start_gateway
from workbench.provenance.service import start_collector
from workbench.secure.keys import create_keys
from workbench.secure.process import start_aggregator, start_keyholder
from workbench.views.sample import build_sample_space

ROOT = Path(__file__).resolve().parents[2]
STUDY, OTHER, EXPIRED = "gw-one", "gw-two", "gw-old"
ROWS = 300

POLICY = textwrap.dedent(f"""\
    users:
      alice: {{roles: [researcher]}}
      rita: {{roles: [reviewer]}}
      ada: {{roles: [admin]}}
    studies:
      {STUDY}:
        title: One
        purpose: gateway tests
        sponsor: tests
        members: [alice]
        reviewers: [rita]
        views: [visits, visits_monthly, elderly, not_in_catalog, reads_files]
        expires: 2099-12-31
      {OTHER}:
        title: Two
        purpose: gateway tests
        sponsor: tests
        members: [alice]
        views: [visits_monthly]
        expires: 2099-12-31
      {EXPIRED}:
        title: Old
        purpose: gateway tests
        sponsor: tests
        members: [alice]
        views: [visits]
        expires: 2020-01-01
    """)


class Gateway:
    study, other, expired, rows = STUDY, OTHER, EXPIRED, ROWS

    def __init__(self, space, handle, collector, policy_path):
        self.space, self.handle, self.policy_path = space, handle, policy_path
        self.collector = collector

    def run_as(self, study: str, code: str, uid: int | None = None, env: dict | None = None):
        """Run ``code`` (Python, prints one JSON line) as ``study``'s kernel uid (or ``uid``)."""
        if uid is None:
            uid = pwd.getpwnam(study_kernel_user(study)).pw_uid
        gid = pwd.getpwuid(uid).pw_gid
        environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent",
                       "WORKBENCH_GATEWAY_SOCKET": str(self.space.gateway_socket(study)),
                       "WORKBENCH_STUDY": study, "WORKBENCH_USER": "alice",
                       "WORKBENCH_KERNEL_ID": "k-123", **(env or {})}
        prelude = "import json, workbench as wb\nfrom workbench.errors import WorkbenchUserError\n"
        result = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
             sys.executable, "-c", prelude + textwrap.dedent(code)],
            env=environment, capture_output=True, text=True, timeout=120, cwd="/")
        assert result.returncode == 0, result.stderr + result.stdout
        return json.loads(result.stdout.strip().splitlines()[-1])

    def log(self) -> str:
        return self.handle.output()

    def ledger(self) -> list[dict]:
        from workbench.gateway.ledger import read_ledger
        return read_ledger(self.space)

    def records(self) -> list[dict]:
        """The provenance records the collector stored (read back through its store)."""
        from workbench.provenance.store import open_store
        store = open_store(self.space, readonly=True)
        try:
            return [json.loads(body) for _seq, _prev, _hash, body in store.rows()]
        finally:
            store.close()


@pytest.fixture(scope="package")
def gateway(tmp_path_factory):
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="wb-gw-", dir="/tmp"))
    os.chmod(root, 0o755)
    hostile = View(id="reads_files", title="hostile", description="reads a file",
                   tables=("visit",), sql="SELECT *, 'x' AS holder FROM read_csv('/etc/passwd')",
                   columns=(Column(name="a", type="string", description="x"),))
    space = build_sample_space(root / "space", rows=ROWS, extra_views=[hostile])
    os.chmod(space.root, 0o755)
    policy_path = root / "policy.yaml"
    policy_path.write_text(POLICY)
    os.chmod(policy_path, 0o644)
    for study in (STUDY, OTHER, EXPIRED):
        ensure_user(study_kernel_user(study))
    create_keys(space)
    services = []  # stopped in reverse order even when a later start fails
    try:
        collector = start_collector(space)
        services.append(collector)
        services.append(start_keyholder(space, min_cell_floor=5))
        services.append(start_aggregator(space))
        handle = start_gateway(space, policy_path)
        services.append(handle)
        gateway = Gateway(space, handle, collector, policy_path)
        yield gateway
        services[0] = gateway.collector  # a test may have restarted it
    finally:
        for service in reversed(services):
            service.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)
