"""The reviewer side's memory at rest: one Voila service per study (the earlier layout) against the
one shared review service for every study (workbench.review.services), measured in the same run.

For each number of synthetic studies N, the services ``hub_services`` builds for a policy of N
studies are started with the commands and environment the hub gives them (per study: N study
dashboards + the admin overview + review-files; shared: the shared service + the admin overview +
review-files), each listening on 127.0.0.1, and once every one answers, the PSS of their process
trees is summed (shared library pages split between the processes, so N of them add up; RSS is
reported too). The broker (root, the same in both layouts) is left out.
- dashboards-shared-vs-per-study-<N>: ratio shared PSS / per-study PSS at N studies;
- the shared service alone is also measured at a larger N (50; a policy of that size is all it
  takes), where the per-study figure is extrapolated from the per-service cost measured at the
  largest per-study N (starting 50 Voila processes on this shared 2-core machine measures the
  machine, not the layout).
No hub is needed (the services answer their root without one; OAuth only matters on a visit);
the services run as ``nobody`` in a space it owns, so no account is made for the synthetic
studies. A visit adds one sandboxed kernel (about 90 MB, docs/capacity.md) in either layout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.hub import processes  # noqa: E402

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
BUILD = """
import json, sys
from workbench.paths import Space
from workbench.policy import load_policy
from workbench.review.services import hub_services
space = Space.at(sys.argv[1])
services, _ = hub_services(load_policy(sys.argv[2]), space, sys.argv[2],
                           per_study=sys.argv[3] == "per-study")
print(json.dumps([s for s in services if s["command"][4] in ("dashboard", "files")]))
"""


def _policy(count: int) -> str:
    studies = "".join(
        f"  s{i:03d}:\n    title: Study {i}\n    purpose: benchmark\n    sponsor: bench\n"
        f"    members: [alice]\n    reviewers: [rita]\n    views: [cml_cohort]\n"
        f"    expires: 2099-12-31\n" for i in range(count))
    return ("users:\n  alice: {roles: [researcher]}\n  rita: {roles: [reviewer]}\n"
            "  ada: {roles: [admin]}\nstudies:\n" + studies)


def _memory_kb(roots: list[int]) -> tuple[int, int]:
    pids = set(roots) | {p.pid for p in processes.descendants(*roots)}
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return pss, rss


def _env(service: dict) -> dict:
    """What the hub hands a managed service (a token the services never get to use here)."""
    name, url = service["name"], service["url"]
    env = {**service["environment"], "PATH": "/usr/bin:/bin",
           "JUPYTERHUB_SERVICE_NAME": name, "JUPYTERHUB_SERVICE_URL": url,
           "JUPYTERHUB_SERVICE_PREFIX": f"/services/{name}/",
           "JUPYTERHUB_API_TOKEN": "bench-not-a-hub-token",  # noqa: S105
           "JUPYTERHUB_CLIENT_ID": f"service-{name}",
           "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "JUPYTERHUB_BASE_URL": "/",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/services/{name}/oauth_callback",
           "JUPYTERHUB_HOST": "", "JUPYTERHUB_OAUTH_SCOPES": "[]",
           "JUPYTERHUB_OAUTH_ACCESS_SCOPES": "[]"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/", timeout=2)
        return True
    except httpx.HTTPError:
        return False


def measure(count: int, layout: str, patience: float = 600) -> dict:
    """Start the reviewer side for ``count`` studies in ``layout`` and measure it at rest."""
    root = Path(tempfile.mkdtemp(prefix=f"wb-bench-dash-{layout}-", dir="/tmp"))
    os.chmod(root, 0o755)
    shutil.chown(root, "nobody", "nogroup")
    policy = root / "policy.yaml"
    policy.write_text(_policy(count))
    os.chmod(policy, 0o644)
    started: list[subprocess.Popen] = []
    try:
        built = subprocess.run([*AS_NOBODY, sys.executable, "-c", BUILD, str(root), str(policy),
                                layout], capture_output=True, text=True, cwd="/", check=True,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(root)}, timeout=300)
        services = json.loads(built.stdout)
        begin = time.monotonic()
        for service in services:
            started.append(subprocess.Popen(
                [*AS_NOBODY, *service["command"]], env=_env(service), cwd=service["cwd"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        waiting = {s["url"] for s in services}
        while waiting and time.monotonic() - begin < patience:
            if any(p.poll() is not None for p in started):
                raise RuntimeError(f"a {layout} dashboard service exited while starting")
            waiting = {url for url in waiting if not _answers(url)}
            time.sleep(0.5)
        if waiting:
            raise RuntimeError(f"{len(waiting)} {layout} services never answered")
        ready_s = time.monotonic() - begin
        time.sleep(2)  # let start-up garbage settle
        pss, rss = _memory_kb([p.pid for p in started])
        return {"studies": count, "layout": layout, "processes": len(started),
                "pss_mb": round(pss / 1024, 1), "rss_mb": round(rss / 1024, 1),
                "all_ready_s": round(ready_s, 1)}
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def run(full: bool) -> list[dict]:
    if os.geteuid() != 0:
        raise SystemExit("bench_dashboards runs as root (it starts the services as nobody)")
    sizes, large = ((4, 20), 50) if full else ((4, 8), 20)
    rows, per_study = [], {}
    for count in sizes:
        shared = measure(count, "shared")
        separate = per_study[count] = measure(count, "per-study")
        rows.append({"name": f"dashboards-shared-vs-per-study-{count} (PSS)",
                     "ratio": shared["pss_mb"] / separate["pss_mb"], "goal": None,
                     "shared_pss_mb": shared["pss_mb"], "per_study_pss_mb": separate["pss_mb"],
                     "shared_rss_mb": shared["rss_mb"], "per_study_rss_mb": separate["rss_mb"],
                     "per_study_processes": separate["processes"],
                     "shared_ready_s": shared["all_ready_s"],
                     "per_study_ready_s": separate["all_ready_s"]})
    biggest = per_study[sizes[-1]]
    # each study's own service: the per-study total less the shared part (admin + files),
    # taken as the difference between the two per-study sizes
    small = per_study[sizes[0]]
    per_service = (biggest["pss_mb"] - small["pss_mb"]) / (sizes[-1] - sizes[0])
    fixed = small["pss_mb"] - per_service * sizes[0]
    shared = measure(large, "shared")
    extrapolated = fixed + per_service * large
    rows.append({"name": f"dashboards-shared-{large}-vs-per-study-extrapolated (PSS)",
                 "ratio": shared["pss_mb"] / extrapolated, "goal": None,
                 "shared_pss_mb": shared["pss_mb"],
                 "per_study_extrapolated_pss_mb": round(extrapolated, 1),
                 "per_study_service_pss_mb": round(per_service, 1),
                 "fixed_pss_mb": round(fixed, 1)})
    return rows


if __name__ == "__main__":
    for row in run(full="--quick" not in sys.argv):
        print(row)
