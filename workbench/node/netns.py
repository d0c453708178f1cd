"""Holder nodes in network namespaces on one machine (tests and benchmarks): each node gets its
own namespace behind a veth pair, so every byte between the coordinator and a node crosses a
network interface, as between machines. Needs root and iproute2."""

from __future__ import annotations

import contextlib
import subprocess


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespaces(holders: list[str], tag: str, port: int = 8443, subnet: int = 77):
    """One network namespace per holder, each behind a veth pair to the root namespace: the
    node listens on 10.<subnet>.<i>.2, the gateway reaches it through 10.<subnet>.<i>.1 (two
    users on one machine, say the tests and a benchmark, take different subnets)."""
    made, addresses = {}, {}
    try:
        for i, holder in enumerate(holders, start=1):
            ns, host_if, node_if = f"wbn{tag}{i}", f"wbv{tag}{i}h", f"wbv{tag}{i}n"
            _ip("netns", "add", ns)
            made[holder] = ns
            _ip("link", "add", host_if, "type", "veth", "peer", "name", node_if)
            _ip("link", "set", node_if, "netns", ns)
            _ip("addr", "add", f"10.{subnet}.{i}.1/24", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("-n", ns, "addr", "add", f"10.{subnet}.{i}.2/24", "dev", node_if)
            _ip("-n", ns, "link", "set", node_if, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            addresses[holder] = f"10.{subnet}.{i}.2:{port}"
        yield made, addresses
    finally:
        for i, ns in enumerate(made.values(), start=1):
            subprocess.run(["ip", "link", "del", f"wbv{tag}{i}h"], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
