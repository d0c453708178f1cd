"""Hub on PostgreSQL against the hub on SQLite: spawn-to-ready of a study server, measured in the
same run on two real hubs (tests/hub/conftest.py's LiveHub: configurable-http-proxy, the
StudySpawner as the study uid, a real collector), alternating one spawn on each.

- hub-spawn-postgresql-vs-sqlite: median of the per-pair ratios of POST /users/alice/servers/
  cml-tki -> the server answering through the proxy (goal <= 1.2, issue 21).
- the same rows report what one study server and one hub hold in memory (PSS of the process
  tree, MB), for docs/capacity.md.
Needs root (study accounts) and the PostgreSQL server on 127.0.0.1:5432.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the live hub of the hub tests, not a second copy of it

from tests.hub.conftest import LiveHub  # noqa: E402
from workbench.hub import processes  # noqa: E402


def pss_mb(*roots: int) -> float:
    """Proportional set size of processes and their descendants: shared pages split fairly,
    so adding up many servers does not count the same library pages many times."""
    pids = set(roots) | {p.pid for p in processes.descendants(*roots)}
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def _spawn_to_ready(hub: LiveHub) -> float:
    """POST the spawn, then poll the server itself through the proxy every 20 ms."""
    token = hub.token_for("alice")
    url = f"{hub.url}/user/alice/cml-tki/api/status"
    began = time.perf_counter()
    response = hub.spawn("alice", "cml-tki")
    assert response.status_code in (201, 202), response.text
    with httpx.Client(timeout=10, headers={"Authorization": f"token {token}"}) as client:
        while time.perf_counter() - began < 120:
            if client.get(url).status_code == 200:
                return time.perf_counter() - began
            time.sleep(0.02)
    raise RuntimeError(f"no server after 120 s:\n{hub.output()}")


def _hub(db: str) -> LiveHub:
    root = Path(tempfile.mkdtemp(prefix=f"wb-bench-hub-{db}-", dir="/tmp"))
    os.chmod(root, 0o755)
    hub = LiveHub(root, db=db)
    hub.start()
    return hub


def run(full: bool) -> list[dict]:
    rounds = 6 if full else 2
    hubs = {}
    try:
        for db in ("sqlite", "postgresql"):
            hubs[db] = _hub(db)
        times: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
        memory: dict[str, list[float]] = {"server": [], "hub": []}
        for i in range(rounds + 1):  # the first pair warms both up and is not counted
            for db in (("sqlite", "postgresql") if i % 2 else ("postgresql", "sqlite")):
                hub = hubs[db]
                took = _spawn_to_ready(hub)
                if i:
                    times[db].append(took)
                    memory["server"].append(pss_mb(hub.server_pid("alice", "cml-tki")))
                    memory["hub"].append(pss_mb(hub.process.pid) - memory["server"][-1])
                hub.stop_server("alice", "cml-tki")
    finally:
        for hub in hubs.values():
            hub.stop()
            shutil.rmtree(hub.root, ignore_errors=True)
    ratios = [p / s for s, p in zip(times["sqlite"], times["postgresql"], strict=True)]
    return [{
        "name": "hub-spawn-postgresql-vs-sqlite", "ratio": statistics.median(ratios),
        "goal": 1.2, "sqlite_s": round(statistics.median(times["sqlite"]), 3),
        "postgresql_s": round(statistics.median(times["postgresql"]), 3), "spawns": rounds,
        "study_server_pss_mb": statistics.median(memory["server"]),
        "hub_and_proxy_pss_mb": round(statistics.median(memory["hub"]), 1),
        "round_ratios": [round(r, 2) for r in ratios],
    }]


if __name__ == "__main__":
    for row in run(full="--quick" not in sys.argv):
        print(row)
