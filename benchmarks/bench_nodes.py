"""Holder node benchmarks (issue 16): the secure rounds played by holder nodes over mTLS.

Each space is the sample space with the ``visit_survival`` view of tests/node, its holders
enrolled as nodes (own ``wbh-<holder>`` accounts, own processes), each node in its own network
namespace behind a veth pair, plus the space's collector, key holder and aggregator processes.
Everything is measured at the coordinator level, as root: the gateway's ``Coordinator`` with
``remote=NodeCoordinator(NodeSet.for_space(space), ...).remote(...)`` (what ``run_secure_op``
builds, without the provenance record, which is the same for both paths and would hide the log
of rounds). Rows:

Every space makes the nodes' joint key when its nodes start (as the supervisor does), so every
row is threshold-decrypted: each round also asks the key parties for their partials.

- KM at n = 1e5 over 3 nodes ÷ the same KM with in-process holders on the same rows (each
  node's own partition of the view, read by an engine over the node's store as the node reads
  it), the same signing keys, thresholds, aggregator and key holder processes, the nodes still
  giving the partials: median of the per-pair ratios, alternating; both sides read the view
  once per operation.
- The same node KM ÷ ``Federation`` on the single-key baseline (``single_key.py``: everything
  in one process, one key): no goal, it shows what the service split and the threshold
  decryption cost on top.
- Round time with 3, 8 and 32 nodes at small n, and the coordinator's own share of the round:
  (round seconds - slowest node's own compute seconds) / round seconds, where a node's compute
  seconds are what its reply reports (``node.contribute`` only: not its view read, policy and
  rules checks or journal write); with the round split into the fan-out to the nodes and the
  aggregator + key holder step.
- The same 3-node KM with threshold BFV (issue 17: the nodes' joint key, every node's sealed
  partial decryption per round, combined by the key holder) ÷ the same rounds less their
  partial step, timed inside each run (a single key would add only its ~1 ms decryption).
- Bytes per node per KM with TLS: the host-side veth counters (rx + tx) around one KM, next to
  the contribution's ciphertext bytes; and each node's resident memory (its process tree).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from bench_secure import paired

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the node space of tests/node
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # and what it imports

SUBNET = 78  # 10.78.<i>.0/24: not the tests' 10.77 (tests/node run at the same time)
PARAMS = {"duration_col": "days", "event_col": "event"}


def namespaces(holders: list[str], tag: str, port: int = 8443):
    """The nodes' namespaces on 10.78 (the tests, which may run at once, take 10.77)."""
    from workbench.node.netns import namespaces as on_subnet

    return on_subnet(holders, tag, port, subnet=SUBNET)


def _traffic(interface: str) -> int:
    stats = Path("/sys/class/net") / interface / "statistics"
    return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())


def _rss_mb(pid: int) -> float:
    """Resident memory of a node's process tree (``ip netns exec`` execs, the node drops
    privileges in place: normally one process)."""
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


class NodeBench:
    """One space whose ``holders`` are nodes in their own namespaces, with its services."""

    def __init__(self, root: Path, holders: list[str], rows: int, tag: str):
        from tests.node.conftest import POLICY, VIEW, NodeSpace
        from workbench.node.enroll import enroll_space
        from workbench.policy.signed import create_admin_key, register_admin_key
        from workbench.provenance.service import start_collector
        from workbench.secure.keys import create_keys
        from workbench.secure.process import start_aggregator, start_keyholder
        from workbench.views.sample import build_sample_space

        self.holders, self.tag, self.interfaces = holders, tag, {}
        started = time.perf_counter()
        space = build_sample_space(root / "space", rows=rows, extra_views=[VIEW],
                                   holders=tuple(holders))
        os.chmod(space.root, 0o755)
        key = create_admin_key(root / "admin.key")
        self.made = NodeSpace(space, root / "policy.yaml", key,
                              register_admin_key(space, "bench-admin", key.public_key()))
        self.made.sign(POLICY, 1)
        create_keys(space)
        enroll_space(space)
        self._stack = contextlib.ExitStack()
        try:
            made_ns, addresses = self._stack.enter_context(namespaces(holders, tag))
            self.interfaces = {h: f"wbv{tag}{i}h" for i, h in enumerate(holders, start=1)}
            self.made.services.append(start_collector(space))
            self._start_nodes(made_ns, addresses)
            # the nodes' joint key before the key holder starts, as the supervisor does
            from workbench.node.keygen import ensure_joint_key

            keygen_started = time.perf_counter()
            ensure_joint_key(space, policy_path=self.made.policy)
            self.keygen_seconds = time.perf_counter() - keygen_started
            self.made.services.append(start_keyholder(space, min_cell_floor=5))
            self.made.services.append(start_aggregator(space))
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.perf_counter() - started
        self.space = space

    def _start_nodes(self, made_ns: dict, addresses: dict) -> None:
        from workbench.node.process import start_nodes

        self.made.nodes = start_nodes(self.made.space, listen=addresses, netns=made_ns)

    def close(self) -> None:
        from tests.node.conftest import stop_node_space

        if getattr(self, "node_set", None) is not None:
            self.node_set.close()
        stop_node_space(self.made)
        self._stack.close()

    # -- the two paths ----------------------------------------------------------------------
    def connect(self) -> None:
        from tests.node.conftest import VIEW
        from workbench.node.client import NodeSet
        from workbench.node.config import NodeConfig
        from workbench.node.coordinator import NodeCoordinator
        from workbench.paths import Space
        from workbench.policy.model import Thresholds
        from workbench.secure.keys import load_public
        from workbench.views.engine import ViewEngine

        space = self.made.space
        self.node_set = NodeSet.for_space(space)
        self.nodes = NodeCoordinator(self.node_set, ViewEngine(space, data=False))
        self.public = load_public(space)
        self.thresholds = Thresholds.model_validate({"min_cell_count": 10}).model_dump()
        self.view = VIEW
        # what the in-process baseline reads and signs with: each node's own store and keys
        self.engines = {h: ViewEngine(Space(space.node_dir(h))) for h in self.holders}
        self.signers = {h: NodeConfig.load(space.node_dir(h)).signer() for h in self.holders}

    def _coordinator(self, partitions):
        """The gateway's coordinator for one operation: the nodes play the holders when
        ``partitions`` is None, else in-process holders with the nodes' own signing keys."""
        from tests.node.conftest import STUDY
        from workbench.secure.aggregator import AggregatorClient
        from workbench.secure.coordinator import Coordinator
        from workbench.secure.plan import Schema

        rid = uuid.uuid4().hex
        remote = None if partitions is not None else self.nodes.remote(
            STUDY, self.view.id, None, self.made.policy, rid)
        return Coordinator(partitions, self.public, None, self.thresholds,
                           {"study": STUDY, "view": self.view.id, "request_id": rid},
                           aggregator=AggregatorClient(self.made.space.aggregator_socket),
                           signers=None if remote is not None else self.signers,
                           schema=Schema(self.view), remote=remote)

    def partitions(self) -> dict:
        from tests.node.conftest import STUDY

        return {h: e.partitions(STUDY, self.view.id, None)[h] for h, e in self.engines.items()}

    def node_km(self) -> tuple[dict, list[dict]]:
        """One KM through the nodes; each round's log entry also gets ``fanout`` (the wall time
        of asking every node, TLS and each node's view read included) and ``aggregate`` (the
        aggregator and key holder processes)."""
        coordinator = self._coordinator(None)
        spans: list[dict] = []
        coordinator.processes.contribute = _timed(coordinator.processes.contribute, spans,
                                                  "fanout")
        coordinator.aggregator.submit = _timed(coordinator.aggregator.submit, spans,
                                               "aggregate")
        payload = coordinator.run("kaplan_meier", PARAMS)
        for entry, fanout, aggregate in zip(coordinator.log, spans[::2], spans[1::2],
                                            strict=True):
            entry.update(fanout | aggregate)
        return payload, coordinator.log

    def local_km(self) -> tuple[dict, list[dict]]:
        """The same KM with in-process holders (the nodes' rows and signing keys); the nodes,
        as the key parties, still give each round's partials."""
        from tests.node.conftest import STUDY
        from workbench.secure.nodes import Contributions

        coordinator = self._coordinator(self.partitions())
        remote = self.nodes.remote(STUDY, self.view.id, None, self.made.policy,
                                   coordinator.context["request_id"])
        parties = list(self.public.threshold["parties"])
        # the nodes give a partial only of a spec whose signed thresholds meet their floors,
        # as the node path's spec carries them
        coordinator.thresholds = remote.tighten(coordinator.thresholds)
        round_, submit = coordinator.round, coordinator.aggregator.submit

        def signed_thresholds(kind, op, spec):
            return round_(kind, op, {**spec, "thresholds": coordinator.thresholds})

        def with_partials(header, parts):
            return submit(header, Contributions(parts, remote.partials(
                parties, header["kind"], header["spec"], header["nonce"], parts)))

        coordinator.round, coordinator.aggregator.submit = signed_thresholds, with_partials
        return coordinator.run("kaplan_meier", PARAMS), coordinator.log

    def traffic(self) -> dict[str, int]:
        return {h: _traffic(i) for h, i in self.interfaces.items()}

    def rss_mb(self) -> list[float]:
        return [_rss_mb(handle.pid) for handle in self.made.nodes.values()]


def _timed(fn, spans: list[dict], label: str):
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.append({label: time.perf_counter() - start})
    return call


def _survival(payload: dict):
    from workbench.secure import results

    return results.build(payload).survival_function_["KM_estimate"]


def _km_rows(bench: NodeBench, n: int, repeat: int) -> list[dict]:
    from single_key import federation as single_key_federation

    def federation():  # in one process, decrypted with the single-key baseline
        fed = single_key_federation(bench.partitions(), min_cell_count=10, view=bench.view)
        return fed.coordinator.run("kaplan_meier", PARAMS), fed.coordinator.log

    common = {"n": n, "nodes": len(bench.holders), "repeats": repeat,
              "where": "each node in its own netns (veth), mTLS; coordinator-level, as root",
              "rows_per_node": [len(p) for p in bench.partitions().values()]}
    run = paired(bench.node_km, bench.local_km, repeat)
    dS = float(np.abs(_survival(run["out"][0]) - _survival(run["baseline_out"][0])).max())
    last = run["out"][1][0]  # the last node KM's one round
    rows = [{"name": f"KM n={n:.0e}: {len(bench.holders)} nodes / in-process holders "
                     "(same aggregator + key holder processes)", "ratio": run["ratio"],
             "goal": 1.3, "nodes_ms": round(run["ms"], 1),
             "in_process_ms": round(run["baseline_ms"], 1), "max_abs_dS": dS,
             "last_round_ms": {k: round(last[k] * 1e3, 1) for k in ("seconds", "fanout",
                                                                     "aggregate")}
             | {"slowest_node": round(max(last["node_seconds"].values()) * 1e3, 1)},
             **common}]
    run = paired(bench.node_km, federation, repeat)
    rows.append({"name": f"KM n={n:.0e}: {len(bench.holders)} nodes / Federation (one process, "
                         "single-key baseline)",
                 "ratio": run["ratio"], "goal": None, "nodes_ms": round(run["ms"], 1),
                 "federation_ms": round(run["baseline_ms"], 1), **common})
    before = bench.traffic()
    _, log = bench.node_km()
    after = bench.traffic()
    wire = [after[h] - before[h] for h in bench.holders]
    cipher = [sum(r["bytes_per_holder"][h] for r in log) for h in bench.holders]
    rows.append({"name": "bytes per node per KM curve, TLS included (veth rx+tx) / ciphertext "
                         "bytes", "ratio": statistics.mean(wire) / statistics.mean(cipher),
                 "goal": None, "wire_kb_per_node": [round(b / 1e3, 1) for b in wire],
                 "ciphertext_kb_per_node": [round(b / 1e3, 1) for b in cipher],
                 "rounds": len(log), "nodes": len(bench.holders), "n": n,
                 "rss_mb_per_node": [round(r) for r in bench.rss_mb()]})
    return rows


def _threshold_rows(bench: NodeBench, n: int, repeat: int) -> list[dict]:
    """The node KM under the nodes' joint key (issue 17): every round also asks each key party
    for its sealed partial decryption (recomputing the sum from the signed contributions) and
    the key holder combines them. The baseline is the same KM less its partial step, timed
    inside each run: what the round costs with a single key, whose decryption (about 1 ms,
    ``bench_threshold``) is all it adds. Medians."""
    spans: list[dict] = []
    joint = []
    for _ in range(repeat):
        coordinator = bench._coordinator(None)
        coordinator.processes.partials = _timed(coordinator.processes.partials, spans,
                                                "partials")
        start = time.perf_counter()
        coordinator.run("kaplan_meier", PARAMS)
        joint.append(time.perf_counter() - start)
    partials = [s["partials"] for s in spans]
    joint_ms = statistics.median(joint) * 1e3
    without_ms = statistics.median(j - p for j, p in zip(joint, partials, strict=True)) * 1e3
    return [{"name": f"KM n={n:.0e}: {len(bench.holders)} nodes, threshold BFV (every node's "
                     "partial, sealed to the key holder) / the same round less its partial step",
             "ratio": joint_ms / without_ms, "goal": 1.5, "threshold_ms": round(joint_ms, 1),
             "without_partials_ms": round(without_ms, 1),
             "partials_ms": round(statistics.median(partials) * 1e3, 1),
             "keygen_s": round(bench.keygen_seconds, 2), "repeats": repeat}]


def _round_row(bench: NodeBench, n: int, repeat: int) -> dict:
    bench.node_km()  # warm: connections, each node's engine and HE context
    rounds, shares, slowest, ops, fanout, aggregate = [], [], [], [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        _, log = bench.node_km()
        ops.append(time.perf_counter() - start)
        for entry in log:
            node = max(entry["node_seconds"].values())
            rounds.append(entry["seconds"])
            slowest.append(node)
            shares.append((entry["seconds"] - node) / entry["seconds"])
            fanout.append(entry["fanout"])
            aggregate.append(entry["aggregate"])
    before = bench.traffic()
    bench.node_km()
    after = bench.traffic()
    wire = [after[h] - before[h] for h in bench.holders]
    rss = bench.rss_mb()
    return {"name": f"round time, {len(bench.holders)} nodes: coordinator's own share "
                    "(round - slowest node) / round", "ratio": statistics.median(shares),
            "goal": 0.2, "round_ms": round(statistics.median(rounds) * 1e3, 1),
            "slowest_node_ms": round(statistics.median(slowest) * 1e3, 1),
            "fanout_ms": round(statistics.median(fanout) * 1e3, 1),
            "aggregate_decrypt_ms": round(statistics.median(aggregate) * 1e3, 1),
            # the aggregator and key holder alone; the rest of the "coordinator's share" is
            # each node's request handling outside its reported compute (view read, policy
            # and rules checks, journal) and the transport
            "aggregate_share": round(statistics.median(
                a / r for a, r in zip(aggregate, rounds, strict=True)), 3),
            "km_op_ms": round(statistics.median(ops) * 1e3, 1), "n": n,
            "where": "each node in its own netns (veth)",
            "wire_kb_per_node_per_km": round(statistics.mean(wire) / 1e3, 1),
            "rss_mb_per_node": {"mean": round(statistics.mean(rss)), "max": round(max(rss))},
            "setup_s": round(bench.setup_seconds, 1), "repeats": repeat}


@contextlib.contextmanager
def _space(holders: list[str], rows: int):
    root = Path(tempfile.mkdtemp(prefix="wb-bench-nodes-", dir="/tmp"))
    os.chmod(root, 0o755)
    bench = None
    try:
        bench = NodeBench(root, holders, rows, f"{os.getpid() % 4096:03x}")
        bench.connect()
        yield bench
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(root, ignore_errors=True)


def run(full: bool) -> list[dict]:
    if os.geteuid() != 0:
        raise SystemExit("bench_nodes needs root (node accounts, network namespaces)")
    rows = []
    n = 100_000 if full else 10_000
    with _space(["hospital", "insurer", "pharma"], n) as bench:
        rows += _km_rows(bench, n, 5 if full else 3)
        rows += _threshold_rows(bench, n, 5 if full else 3)
    small = 10_000
    for count in (3, 8, 32) if full else (3, 8):
        with _space([f"node{i:02d}" for i in range(1, count + 1)], small) as bench:
            rows.append(_round_row(bench, small, 7 if full else 3))
    return rows
