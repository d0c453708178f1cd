"""Starting holder nodes as their own processes and accounts (``workbench demo``, the tests).

Each node runs ``workbench node serve`` as root, which drops to the account owning the node's
directory before it reads anything; ``netns`` runs it inside a network namespace (the tests put
every node behind its own veth pair, so every byte to it crosses an interface). The port a node
bound is read from its ready line and written to the space's public node registry.
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench.node.client import write_registry
from workbench.paths import Space
from workbench.runtime import ServiceProcess, start_service, workbench_command

READY = re.compile(r"holder node (\S+) ready on (\S+):(\d+)")


def start_node(root: Path, listen: str = "127.0.0.1:0", netns: str | None = None,
               ready_timeout: float = 60.0) -> tuple[ServiceProcess, str]:
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
    with ThreadPoolExecutor(max(1, len(roots))) as pool:
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
