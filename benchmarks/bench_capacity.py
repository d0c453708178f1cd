"""What one kernel, one gateway and one collector need, for docs/capacity.md (one study server
and one hub are measured by bench_hubdb.py, beside its spawn ratio).

Memory is PSS (shared pages split between the processes sharing them, so N of them add up), CPU
is user + system time of the component's process tree from /proc, per unit of work:
- kernel: a sealed + audited study kernel (bubblewrap, seccomp, the audit proxy's records) against
  a plain ipykernel, measured in the same run: PSS after start (ratio: sealed / plain), CPU per
  trivial cell and per pandas cell (a 200,000 x 5 group-by) inside each kernel;
- collector: acknowledged appends per second with 1 and 4 writers, its CPU per record and its PSS
  (ratio: collector CPU per record / wall time per record: the share of one core it needs when
  writers keep it busy; below 1 it waits on fsync, not on the CPU);
- gateway: CPU and wall time per ``wb.view`` of 100,000 rows read as the study kernel's uid,
  and its PSS (ratio: gateway CPU / wall per read).
Needs root (study uids) and bubblewrap.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from workbench.hub import processes
from workbench.paths import Space
from workbench.provenance.service import start_collector

HERE = Path(__file__).parent
TICK = os.sysconf("SC_CLK_TCK")
PANDAS_CELL = ("import numpy as np, pandas as pd\n"
               "df = pd.DataFrame(np.random.default_rng(1).random((200_000, 5)))\n"
               "df.groupby((df[0] * 10).astype(int)).mean().shape")


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree(*roots: int) -> set[int]:
    return set(roots) | {p.pid for p in processes.descendants(*roots)}


def cpu_s(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / TICK


def pss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def _space(tag: str) -> Space:
    root = Path(tempfile.mkdtemp(prefix=f"wb-bench-cap-{tag}-", dir="/tmp"))
    os.chmod(root, 0o755)
    return Space(root)


# -- kernel ---------------------------------------------------------------------------------------
def _run_cell(kc, code: str) -> None:
    msg_id = kc.execute(code, store_history=False)
    while True:
        reply = kc.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg_id:
            assert reply["content"]["status"] == "ok", reply["content"]
            break
    while True:
        msg = kc.get_iopub_msg(timeout=120)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            return


def _kernel_figures(make, cells: int) -> dict:
    before = tree(os.getpid())
    km = make()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        pids = tree(os.getpid()) - before
        _run_cell(kc, PANDAS_CELL)  # imports and first-touch pages out of the way
        _run_cell(kc, "1")
        figures = {"pss_mb": pss_mb(pids)}
        for label, code, count in (("trivial", "1", cells), ("pandas", PANDAS_CELL, cells // 10)):
            started = cpu_s(pids)
            for _ in range(count):
                _run_cell(kc, code)
            figures[f"cpu_ms_per_{label}_cell"] = round((cpu_s(pids) - started) / count * 1e3, 2)
        figures["pss_after_cells_mb"] = pss_mb(pids)
        return figures
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _kernel_row(cells: int) -> dict:
    from workbench.sandbox.kernelspec import install_kernelspec

    bench_kernel = _sibling("bench_kernel")
    space = _space("kernel")
    jupyter = space.root / "jupyter"
    install_kernelspec(jupyter)
    collector = start_collector(space)
    try:
        plain = _kernel_figures(bench_kernel._plain, cells)
        sealed = _kernel_figures(lambda: bench_kernel._sealed(space, jupyter), cells)
    finally:
        collector.stop()
        shutil.rmtree(space.root, ignore_errors=True)
    return {"name": "capacity-kernel (PSS sealed / plain)",
            "ratio": sealed["pss_mb"] / plain["pss_mb"], "goal": None,
            **{f"sealed_{k}": v for k, v in sealed.items()},
            **{f"plain_{k}": v for k, v in plain.items()}, "cells": cells}


# -- collector ------------------------------------------------------------------------------------
def _appends(handle, count: int, writers: int) -> tuple[float, float]:
    """(wall seconds per record, collector CPU seconds per record) with ``writers`` threads."""
    fields = _sibling("bench_provenance").FIELDS
    pids = tree(handle.pid)
    per_writer = count // writers

    def work():
        client = handle.client()
        for _ in range(per_writer):
            client.append("view-read", fields)

    threads = [threading.Thread(target=work) for _ in range(writers)]
    cpu0, began = cpu_s(pids), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - began, cpu_s(pids) - cpu0
    return wall / (per_writer * writers), cpu / (per_writer * writers)


def _collector_rows(count: int) -> list[dict]:
    space = _space("collector")
    rows = []
    try:
        with start_collector(space) as handle:
            _appends(handle, 200, 1)  # warm up
            for writers in (1, 4):
                wall, cpu = _appends(handle, count, writers)
                rows.append({"name": f"capacity-collector-sqlite-{writers}w (CPU / wall per "
                                     "record)", "ratio": cpu / wall, "goal": None,
                             "records_per_s": round(1 / wall),
                             "cpu_us_per_record": round(cpu * 1e6, 1),
                             "pss_mb": pss_mb(tree(handle.pid)), "records": count})
    finally:
        shutil.rmtree(space.root, ignore_errors=True)
    return rows


# -- gateway --------------------------------------------------------------------------------------
def _gateway_row(rows: int) -> dict:
    from workbench.gateway.server import start_gateway
    from workbench.views.sample import build_sample_space

    bench_gateway = _sibling("bench_gateway")
    root = Path(tempfile.mkdtemp(prefix="wb-bench-cap-gw-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        space = build_sample_space(root / "space", rows=rows)
        policy = root / "policy.yaml"
        policy.write_text(bench_gateway.POLICY)
        os.chmod(policy, 0o644)
        with start_collector(space), start_gateway(space, policy, max_rows=2 * rows) as gateway:
            pids = tree(gateway.pid)
            idle = pss_mb(pids)
            cpu0, began = cpu_s(pids), time.perf_counter()
            fetched = bench_gateway._kernel_fetch(space, rows)  # 1 warm-up + REPEATS reads
            reads = bench_gateway.REPEATS + 1
            cpu = (cpu_s(tree(gateway.pid)) - cpu0) / reads
            busy = pss_mb(tree(gateway.pid))
        assert fetched["rows"] == rows
        return {"name": f"capacity-gateway {rows:.0e} rows (CPU / wall per read)",
                "ratio": cpu / fetched["best"], "goal": None,
                "cpu_ms_per_read": round(cpu * 1e3, 1),
                "best_read_ms": round(fetched["best"] * 1e3, 1),
                "client_wall_s_all_reads": round(time.perf_counter() - began, 2),
                "pss_idle_mb": idle, "pss_after_reads_mb": busy}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(full: bool) -> list[dict]:
    rows = [_kernel_row(200 if full else 50)]
    rows += _collector_rows(4000 if full else 1000)
    rows.append(_gateway_row(100_000))
    return rows


if __name__ == "__main__":
    for row in run(full="--quick" not in sys.argv):
        print(row)
