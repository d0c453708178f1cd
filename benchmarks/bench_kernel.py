"""Sealed + audited study kernel against a plain local ipykernel, measured in the same run.

- kernel start: ``start_kernel`` until the kernel answers ``kernel_info`` (median of several);
- trivial-cell latency: ``execute("1")`` until both the reply and the idle status arrived, one
  cell on each kernel in turn (the median of the per-pair ratios). The sealed path includes the
  audit proxy's two provenance records per cell (the first one acknowledged by the collector
  before the cell is forwarded).
Needs root (the sandbox drops to a study kernel uid) and bubblewrap.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from traitlets.config import Config

from workbench.paths import Space
from workbench.provenance.client import ProvenanceClient
from workbench.provenance.service import start_collector
from workbench.sandbox.kernelspec import KERNEL_NAME, StrictKernelSpecManager, install_kernelspec

STUDY = "bench"


def _plain() -> KernelManager:
    ksm = KernelSpecManager()
    ksm.get_kernel_spec("python3")  # ipykernel's bundled spec (local provisioner, tcp)
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def _sealed(space: Space, jupyter: Path) -> KernelManager:
    config = Config({"SandboxProvisioner": {"study": STUDY, "data_dir": str(space.root)}})
    ksm = StrictKernelSpecManager(kernel_dirs=[str(jupyter / "kernels")])
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, config=config)


def _start(make) -> tuple[float, KernelManager, object]:
    km = make()
    began = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return time.perf_counter() - began, km, kc


def _stop(km, kc) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def _cell(kc) -> float:
    began = time.perf_counter()
    msg_id = kc.execute("1", store_history=False)
    idle = replied = False
    while not (idle and replied):
        if not replied:
            reply = kc.get_shell_msg(timeout=30)
            replied = reply["parent_header"].get("msg_id") == msg_id
        if not idle:
            msg = kc.get_iopub_msg(timeout=30)
            idle = (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle")
    return time.perf_counter() - began


def _paired_latencies(plain, sealed, cells: int) -> tuple[list[float], list[float]]:
    """One cell on each kernel in turn, so drift and noise hit both alike."""
    for _ in range(5):  # warm-up
        _cell(plain), _cell(sealed)
    pairs = [(_cell(plain), _cell(sealed)) for _ in range(cells)]
    return [p for p, _ in pairs], [s for _, s in pairs]


def _collector_appends(space: Space, count: int) -> list[float]:
    """What one durable record costs on its own (the proxy waits for one per cell)."""
    client = ProvenanceClient(space.collector_socket)
    fields = {"study": STUDY, "user": "bench", "kernel_id": "bench", "msg_id": "bench",
              "code_sha256": "0" * 64, "status": "submitted",
              "started": "2026-01-01T00:00:00+00:00"}

    async def measure() -> list[float]:
        took = []
        for _ in range(count):
            began = time.perf_counter()
            await client.append_async("cell-execution", fields)
            took.append(time.perf_counter() - began)
        return took

    return asyncio.run(measure())


def run(full: bool) -> list[dict]:
    starts, cells = (5, 300) if full else (2, 60)
    root = Path(tempfile.mkdtemp(prefix="wb-bench-kernel-", dir="/tmp"))
    root.chmod(0o755)
    space = Space(root)
    jupyter = root / "jupyter"
    install_kernelspec(jupyter)
    collector = start_collector(space)
    try:
        start_times: dict[str, list[float]] = {"plain": [], "sealed": []}
        for _ in range(starts):  # alternate so drift hits both alike
            for label, make in (("plain", _plain), ("sealed", lambda: _sealed(space, jupyter))):
                took, km, kc = _start(make)
                start_times[label].append(took)
                _stop(km, kc)
        appends = _collector_appends(space, max(20, cells // 3))
        _, plain_km, plain_kc = _start(_plain)
        try:
            _, sealed_km, sealed_kc = _start(lambda: _sealed(space, jupyter))
            try:
                plain_cells, sealed_cells = _paired_latencies(plain_kc, sealed_kc, cells)
            finally:
                _stop(sealed_km, sealed_kc)
        finally:
            _stop(plain_km, plain_kc)
    finally:
        collector.stop()
        shutil.rmtree(root, ignore_errors=True)
    start_plain = statistics.median(start_times["plain"])
    start_sealed = statistics.median(start_times["sealed"])
    cell_plain = statistics.median(plain_cells)
    cell_sealed = statistics.median(sealed_cells)
    append = statistics.median(appends)
    return [
        {"name": "trivial-cell-latency (median of alternating pairs)",
         "ratio": statistics.median(s / p for p, s in zip(plain_cells, sealed_cells, strict=True)),
         "goal": 1.3, "plain_ms": round(cell_plain * 1e3, 2),
         "sealed_ms": round(cell_sealed * 1e3, 2),
         "sealed_p95_ms": round(sorted(sealed_cells)[int(0.95 * cells)] * 1e3, 2),
         "cells": cells},
        {"name": "kernel-start", "ratio": start_sealed / start_plain, "goal": 1.5,
         "plain_s": round(start_plain, 3), "sealed_s": round(start_sealed, 3), "starts": starts},
        # not a goal: explains the cell ratio (one durable record gates each cell, fail closed)
        {"name": "collector-durable-append-vs-plain-cell", "ratio": append / cell_plain,
         "goal": None, "append_ms": round(append * 1e3, 2),
         "sealed_minus_append_ms": round((cell_sealed - append) * 1e3, 2)},
    ]


if __name__ == "__main__":
    for row in run(full="--quick" not in sys.argv):
        print(row)
