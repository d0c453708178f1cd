"""The study server uid cannot write (or read) the provenance store, the space's keys, the data,
the catalog, the hub's database or its own configuration: checked with the real file modes of a
real space (workbench init), a real collector and the hub's own layout, as the server uid."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from workbench import accounts
from workbench.hub import singleuser
from workbench.hub.layout import HubLayout
from workbench.policy import load_policy
from workbench.resources import DEMO_POLICY

STUDY = "cml-tki"
PROBE = r"""
import json, os, sys
results = {}
for path in json.loads(sys.argv[1]):
    try:
        if os.path.isdir(path):
            fd = os.open(os.path.join(path, "planted"), os.O_CREAT | os.O_WRONLY, 0o600)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.close(fd)
        results[path] = "written"
    except OSError as exc:
        results[path] = type(exc).__name__
print(json.dumps(results))
"""


def _as_server_uid(paths: list[str]) -> dict:
    uid, gid = accounts.ensure_user(accounts.study_server_user(STUDY))

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    out = subprocess.run([sys.executable, "-I", "-c", PROBE, json.dumps(paths)], check=True,
                         capture_output=True, text=True, preexec_fn=drop)
    return json.loads(out.stdout)


def test_server_uid_cannot_write_store_keys_data_or_its_config(open_tmp):
    from workbench.provenance.service import start_collector
    from workbench.space.build import init_space

    space = init_space(open_tmp / "space", patients=100, echo=lambda _line: None)
    policy = load_policy(DEMO_POLICY)
    layout = HubLayout(space)
    layout.ensure()
    singleuser.prepare_config(layout, STUDY, "alice", policy.studies[STUDY], 3600, 0)
    (layout.state / "jupyterhub.sqlite").write_bytes(b"")
    os.chmod(layout.state / "jupyterhub.sqlite", 0o600)
    with start_collector(space) as collector:
        collector.client().append("login", {"user": "alice", "event": "login"})
        targets = [space.provenance, *space.provenance.iterdir(), space.keys,
                   *space.keys.iterdir(), space.holders, *space.holders.rglob("*"),
                   space.catalog, *space.catalog.rglob("*"), space.usage, space.he,
                   *space.he.iterdir(), space.manifest, space.signing_pub, space.run,
                   layout.state, *layout.state.iterdir(), layout.config_dir(STUDY, "alice"),
                   *layout.config_dir(STUDY, "alice").rglob("*")]
        results = _as_server_uid([str(p) for p in targets])
    assert len(results) == len(targets) > 20
    written = {path: outcome for path, outcome in results.items() if outcome == "written"}
    assert written == {}
    assert set(results.values()) == {"PermissionError"}
