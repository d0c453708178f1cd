"""Starting holder nodes as their own processes and accounts (``workbench demo``, the tests).

Each node runs ``workbench node serve`` as root, which drops to the account owning the node's
directory before it reads anything; ``netns`` runs it inside a network namespace (the tests put
every node behind its own veth pair, so every byte to it crosses an interface). The port a node
bound is read from its ready line and written to the space's public node registry.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from workbench.node.client import write_registry
from workbench.paths import Space
from workbench.runtime import ServiceProcess, start_service, workbench_command

READY = re.compile(r"holder node (\S+) ready on (\S+):(\d+)")


def start_node(root: Path, listen: str = "127.0.0.1:0", netns: str | None = None,
               ready_timeout: float = 300.0) -> tuple[ServiceProcess, str]:
    """Start the node of ``root``; returns its handle and the address it serves on."""
    command = workbench_command("node", "serve", "--node-dir", str(root), "--listen", listen)
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    found: dict[str, str] = {}

    def ready(handle: ServiceProcess) -> bool:
        match = READY.search(handle.output())
        if match:
            found["address"] = f"{match.group(2)}:{match.group(3)}"
        return bool(match)

    handle = start_service(f"holder node {root.name}", command, ready,
                           ready_timeout=ready_timeout)
    return handle, found["address"]


def start_nodes(space: Space, listen: dict[str, str] | None = None,
                netns: dict[str, str] | None = None) -> dict[str, ServiceProcess]:
    """Start every enrolled node of ``space``, in parallel, and publish their addresses."""
    from concurrent.futures import ThreadPoolExecutor

    roots = sorted(p for p in space.nodes.iterdir() if (p / "node.json").exists())
    listen, netns = listen or {}, netns or {}
    # a few at a time: each loads its store and the HE contexts, which a small machine does
    # slowly when dozens start at once
    with ThreadPoolExecutor(min(4, max(1, len(roots)))) as pool:
        futures = {root.name: pool.submit(start_node, root, listen.get(root.name, "127.0.0.1:0"),
                                          netns.get(root.name)) for root in roots}
    handles, addresses, failure = {}, {}, None
    for holder, future in futures.items():
        try:
            handles[holder], addresses[holder] = future.result()
        except Exception as exc:  # noqa: BLE001 - stop the others, then raise the first
            failure = failure or exc
    if failure:
        for handle in handles.values():
            handle.stop()
        raise failure
    write_registry(space, addresses)
    return handles


class NodeGroup:
    """Every node of a space as one service for ``space_services``: started together, stopped
    together."""

    def __init__(self, handles: dict[str, ServiceProcess]):
        self.handles = handles

    @property
    def process(self):
        return next(iter(self.handles.values())).process

    def output(self) -> str:
        return "\n".join(h.output() for h in self.handles.values())

    def stop(self, timeout: float = 10.0) -> int:
        # every node is told first, then each is waited for: they shut down side by side,
        # not one after the other (a space of the demo has about twenty-five)
        for handle in self.handles.values():
            if handle.process.poll() is None:
                handle.process.send_signal(signal.SIGTERM)
        return max([h.stop(timeout) or 0 for h in self.handles.values()], default=0)


def start_holder_nodes(space: Space, policy_path=None) -> NodeGroup:
    """Every enrolled node of ``space`` on 127.0.0.1, each as its own account (``workbench
    demo``), each also a witness of the central log; the gateway finds them through the
    registry. Once they answer, the space's BFV key becomes their joint key (``keygen.py``:
    made the first time, kept afterwards; its key parties and t from the signed policy at
    ``policy_path``, by default the space's), so no process holds the whole BFV secret key."""
    from workbench.node.enroll import ensure_witnesses
    from workbench.node.keygen import ensure_joint_key

    ensure_witnesses(space)  # after the collector's first start: its key is what they pin
    group = NodeGroup(start_nodes(space))
    try:
        ensure_joint_key(space, policy_path=policy_path)
    except BaseException:
        group.stop()
        raise
    return group


def nodes_answer(space: Space) -> bool:
    """True when every node in the registry accepts a TCP connection (a TLS peer is checked by
    the gateway on every request)."""
    import json
    import socket

    try:
        nodes = json.loads(space.node_registry.read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return False
    for entry in nodes.values():
        host, _, port = entry["address"].rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return False
    return bool(nodes)


COSIGN_EVERY = 30.0  # seconds between the demo's rounds of cosigning by the witnesses


def start_cosigner(space: Space, every: float = COSIGN_EVERY) -> ServiceProcess:
    """``workbench provenance cosign --every``: the nodes are asked to witness each new head."""
    command = workbench_command("provenance", "cosign", "--data-dir", str(space.root),
                                "--every", str(every))
    return start_service("witness cosigner", command, lambda handle: True)


def has_witnesses(space: Space) -> bool:
    return space.witnesses.exists()
