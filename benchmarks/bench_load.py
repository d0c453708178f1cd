"""Load test: N study users, each with a sealed + audited kernel, run trivial cells at once.

Each user is a process of its own (as each user has a single-user server of their own in the
space), holding one kernel started through the real sandbox provisioner and attributed to that
user (``c.SandboxProvisioner.run_user``), all writing to one real collector. After a warm-up,
the users start together on a signal and each runs M cells ``1`` as fast as it can; a cell's
latency is execute_request sent -> execute_reply received. The baseline, in the same run, is one
user alone doing the same M cells. Back to back, the p95 of 20 users on 2 cores is queueing; so
a second pair of sessions has people in it: each user thinks 2-5 s (uniform, seeded per user)
between cells, as in a real session, and its p95 is compared with one user thinking the same way
(goal <= 3).

Then, as root, the provenance log is read back: every cell sent must have its "submitted"
record and its completion record, attributed to the user who sent it, and every kernel its start
and shutdown records. Nothing missing is the goal (the ``lost-provenance-records`` row).
Needs root (the sandbox drops to the study kernel uid) and bubblewrap.

``python benchmarks/bench_load.py --worker DATA_DIR JUPYTER_DIR USER CELLS THINK_MIN THINK_MAX``
is one user (used
by :func:`run`; it speaks a line protocol on stdin/stdout, see :func:`_worker`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from workbench.paths import Space
from workbench.provenance.reader import ProvenanceReader
from workbench.provenance.service import start_collector
from workbench.sandbox.kernelspec import install_kernelspec

STUDY = "bench"  # the study bench_kernel uses too: no extra system accounts
WARMUP = 3
TAG = "@@bench-load "  # marks the protocol lines (the kernel shares the worker's stdout)
START_TIMEOUT = 300.0  # 20 kernels starting at once on 2 cores
CELL_TIMEOUT = 120.0
THINK = (2.0, 5.0)  # seconds a person takes between two cells


# -- one user (runs in its own process) ---------------------------------------------------------
def _say(kind: str, **data) -> None:
    print(TAG + json.dumps({"kind": kind, **data}), flush=True)


def _cell(kc) -> tuple[str, float]:
    """Run ``1``; the latency is request sent -> reply received (then wait for idle, so the
    next cell starts from a quiet kernel)."""
    began = time.perf_counter()
    msg_id = kc.execute("1", store_history=False)
    while True:
        reply = kc.get_shell_msg(timeout=CELL_TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    took = time.perf_counter() - began
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell {msg_id} replied {reply['content']['status']}: "
                           f"{reply['content'].get('evalue', '')}")
    while True:
        msg = kc.get_iopub_msg(timeout=CELL_TIMEOUT)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            return msg_id, took


def _worker(data_dir: str, jupyter: str, user: str, cells: int,
            think: tuple[float, float] = (0.0, 0.0)) -> int:
    """Start a sealed kernel as ``user``, say ``ready``, wait for ``go`` on stdin, run the
    cells (``think``: seconds the user pauses before each, uniform), say ``done`` with the
    latencies and msg_ids, shut the kernel down."""
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    from workbench.sandbox.kernelspec import KERNEL_NAME, StrictKernelSpecManager

    def stop(*_):
        raise SystemExit(1)  # the finally below still shuts the kernel down

    signal.signal(signal.SIGTERM, stop)
    config = Config({"SandboxProvisioner": {"study": STUDY, "data_dir": data_dir,
                                            "run_user": user}})
    ksm = StrictKernelSpecManager(kernel_dirs=[str(Path(jupyter) / "kernels")])
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, config=config)
    kc = None
    try:
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=START_TIMEOUT)
        sent = [_cell(kc)[0] for _ in range(WARMUP)]
        _say("ready", kernel_id=km.kernel_id)
        if sys.stdin.readline().strip() != "go":
            return 1
        began = time.monotonic()  # system-wide clock: comparable across the workers
        pause = random.Random(user)  # noqa: S311 - a simulated person, not a secret
        measured = []
        for _ in range(cells):
            if think[1] > 0:
                time.sleep(pause.uniform(*think))  # the person reading the last output
            measured.append(_cell(kc))
        ended = time.monotonic()
        sent += [msg_id for msg_id, _ in measured]
        _say("done", latencies=[took for _, took in measured], msg_ids=sent, began=began,
             ended=ended)
    finally:
        if kc is not None:
            kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=False)  # the proxy flushes its completion records
    _say("stopped")
    return 0


# -- the driver ---------------------------------------------------------------------------------
class _User:
    def __init__(self, root: Path, space: Space, jupyter: Path, name: str, cells: int,
                 think: tuple[float, float]):
        self.name = name
        self.log = root / f"{name}.log"
        with open(self.log, "wb") as errors:
            self.process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
                [sys.executable, __file__, "--worker", str(space.root), str(jupyter), name,
                 str(cells), str(think[0]), str(think[1])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
        self.kernel_id: str | None = None
        self.result: dict = {}

    def expect(self, kind: str) -> dict:
        for line in self.process.stdout:
            if line.startswith(TAG):
                message = json.loads(line[len(TAG):])
                if message["kind"] == kind:
                    return message
        self.process.wait(timeout=30)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"user {self.name} exited ({self.process.returncode}) before "
                           f"'{kind}':\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _session(root: Path, space: Space, jupyter: Path, names: list[str], cells: int,
             think: tuple[float, float] = (0.0, 0.0)) -> list[_User]:
    """Start every user's kernel, then let them all go at once; return them finished."""
    users: list[_User] = []
    try:
        for name in names:
            users.append(_User(root, space, jupyter, name, cells, think))
        for user in users:  # all start concurrently; this only waits for each in turn
            user.kernel_id = user.expect("ready")["kernel_id"]
        for user in users:
            user.process.stdin.write("go\n")
            user.process.stdin.flush()
        for user in users:
            user.result = user.expect("done")
        for user in users:
            user.expect("stopped")
            user.process.wait(timeout=60)
    finally:
        for user in users:
            user.stop()
    return users


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank


def _figures(users: list[_User]) -> dict:
    latencies = [t for user in users for t in user.result["latencies"]]
    span = (max(u.result["ended"] for u in users) - min(u.result["began"] for u in users))
    return {"p95": _p95(latencies), "median": statistics.median(latencies),
            "cells_per_s": len(latencies) / span}


def _audit(space: Space, users: list[_User], timeout: float = 30.0) -> dict:
    """Missing / misattributed provenance records for everything the users did (polls a while:
    completion records are written after the reply)."""
    expected = {msg_id: user.name for user in users for msg_id in user.result["msg_ids"]}
    kernels = {user.kernel_id: user.name for user in users}
    deadline = time.monotonic() + timeout
    while True:
        submitted, completed = {}, {}
        lifecycle: dict[str, set[str]] = defaultdict(set)
        misattributed = 0
        with ProvenanceReader(space) as reader:
            for record in reader.records(study=STUDY,
                                         kinds=["cell-execution", "kernel-lifecycle"]):
                fields = record.fields
                if record.kind == "kernel-lifecycle":
                    if fields.get("kernel_id") in kernels and fields.get("status") == "ok":
                        lifecycle[fields["kernel_id"]].add(fields.get("event"))
                        misattributed += fields.get("user") != kernels[fields["kernel_id"]]
                    continue
                msg_id = fields.get("msg_id")
                if msg_id not in expected:
                    continue
                misattributed += fields.get("user") != expected[msg_id]
                if fields.get("status") == "submitted":
                    submitted[msg_id] = True
                elif fields.get("status") == "ok":
                    completed[msg_id] = True
            verified = reader.verify().ok
        missing = {
            "submitted": sum(m not in submitted for m in expected),
            "completed": sum(m not in completed for m in expected),
            "kernel_start": sum("start" not in lifecycle[k] for k in kernels),
            "kernel_shutdown": sum("shutdown" not in lifecycle[k] for k in kernels),
        }
        if not sum(missing.values()) or time.monotonic() > deadline:
            return {"missing": missing, "misattributed": misattributed, "cells": len(expected),
                    "log_verifies": verified}
        time.sleep(0.5)


def run(full: bool) -> list[dict]:
    count, cells = (20, 50) if full else (5, 20)
    root = Path(tempfile.mkdtemp(prefix="wb-bench-load-", dir="/tmp"))
    root.chmod(0o755)  # the study kernel uid must reach its workspace below it
    space = Space(root)
    jupyter = root / "jupyter"
    install_kernelspec(jupyter)
    collector = start_collector(space)
    thinking_cells = 20 if full else 5
    try:
        alone = _session(root, space, jupyter, ["bench-solo"], cells)
        crowd = _session(root, space, jupyter, [f"bench-user-{i:02d}" for i in range(count)],
                         cells)
        alone_thinking = _session(root, space, jupyter, ["bench-solo-t"], thinking_cells, THINK)
        people = _session(root, space, jupyter, [f"bench-person-{i:02d}" for i in range(count)],
                          thinking_cells, THINK)
        audit = _audit(space, alone + crowd + alone_thinking + people)
    finally:
        collector.stop()
        shutil.rmtree(root, ignore_errors=True)
    one, many = _figures(alone), _figures(crowd)
    one_thinking, thinking = _figures(alone_thinking), _figures(people)
    lost = sum(audit["missing"].values())
    return [
        {"name": f"p95-cell-latency-{count}-people-thinking-2-5s-vs-1",
         "ratio": thinking["p95"] / one_thinking["p95"], "goal": 3,
         "p95_ms": round(thinking["p95"] * 1e3, 2),
         "one_user_p95_ms": round(one_thinking["p95"] * 1e3, 2),
         "median_ms": round(thinking["median"] * 1e3, 2), "cells_per_user": thinking_cells},
        {"name": f"p95-cell-latency-{count}-users-vs-1", "ratio": many["p95"] / one["p95"],
         "goal": None, "p95_ms": round(many["p95"] * 1e3, 2),
         "one_user_p95_ms": round(one["p95"] * 1e3, 2),
         "median_ms": round(many["median"] * 1e3, 2),
         "one_user_median_ms": round(one["median"] * 1e3, 2),
         "median_ratio": round(many["median"] / one["median"], 2), "cells_per_user": cells},
        {"name": f"throughput-{count}-users-vs-1",
         "ratio": many["cells_per_s"] / one["cells_per_s"], "goal": None,
         "cells_per_s": round(many["cells_per_s"], 1),
         "one_user_cells_per_s": round(one["cells_per_s"], 1)},
        # every cell sent (warm-up included) must have both its records, every kernel its start
        # and shutdown, each attributed to the user who did it
        {"name": "lost-provenance-records", "ratio": lost, "goal": 0, **audit["missing"],
         "cells_checked": audit["cells"], "log_verifies": audit["log_verifies"]},
        {"name": "misattributed-provenance-records", "ratio": audit["misattributed"], "goal": 0},
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        data_dir, jupyter_dir, user_name, cell_count, low, high = sys.argv[2:8]
        sys.exit(_worker(data_dir, jupyter_dir, user_name, int(cell_count),
                         (float(low), float(high))))
    for row in run(full="--quick" not in sys.argv):
        print(row)
