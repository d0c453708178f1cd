"""CPU, memory and process limits of a study server and every kernel it starts.

LocalProcessSpawner enforces none of ``mem_limit``/``cpu_limit``; this module does, at the OS level:

- a cgroup per server when the hub can write one (cgroup v2, else the v1 ``memory``/``cpu``/
  ``pids`` hierarchies): memory is the server's and its kernels' resident total, CPU is a CFS quota
  of ``cpu`` cores, pids caps fork bombs. Kernels stay in the cgroup (bwrap does not move them).
- always, rlimits set in the child before exec: ``RLIMIT_NPROC`` (per uid) and ``RLIMIT_CORE`` 0;
  without a cgroup also ``RLIMIT_AS`` (address space per process: cruder, but it bites).

SECURITY BOUNDARY (resource exhaustion). Guarded by tests/hub/test_hub_limits.py.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "workbench"


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu: float  # cores
    max_processes: int  # threads count too: keep generous

    def describe(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpu": self.cpu,
                "max_processes": self.max_processes}


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def cgroup_mode(root: Path = CGROUP_ROOT) -> str | None:
    """'v2', 'v1' or None: which cgroup interface this hub can use to limit a server."""
    controllers = root / "cgroup.controllers"
    if controllers.exists():
        wanted = {"memory", "cpu", "pids"}
        if wanted <= set(controllers.read_text().split()) and os.access(root, os.W_OK):
            return "v2"
        return None
    if all(_writable(root / c) for c in ("memory", "cpu", "pids")):
        return "v1"
    return None


class ServerCgroup:
    """One cgroup (v2) or one directory per v1 controller for one study server."""

    def __init__(self, name: str, root: Path = CGROUP_ROOT):
        self.name = name
        self.root = root
        self.mode = cgroup_mode(root)

    def _dirs(self) -> list[Path]:
        if self.mode == "v2":
            return [self.root / _PREFIX / self.name]
        if self.mode == "v1":
            return [self.root / c / _PREFIX / self.name for c in ("memory", "cpu", "pids")]
        return []

    def create(self, limits: Limits) -> bool:
        """Create (or reset) the cgroup with these limits; False when cgroups are unavailable."""
        if self.mode is None:
            return False
        if self.mode == "v2":
            parent = self.root / _PREFIX
            parent.mkdir(exist_ok=True)
            # Controllers must be enabled in the parent for the child to get the files.
            with contextlib.suppress(OSError):
                (self.root / "cgroup.subtree_control").write_text("+memory +cpu +pids")
            (parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")
            group = parent / self.name
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
            period = 100_000
            (group / "cpu.max").write_text(f"{int(limits.cpu * period)} {period}")
            (group / "pids.max").write_text(str(limits.max_processes))
            return True
        memory, cpu, pids = self._dirs()
        for d in (memory, cpu, pids):
            d.mkdir(parents=True, exist_ok=True)
        memsw = memory / "memory.memsw.limit_in_bytes"  # only when swap accounting is on
        with contextlib.suppress(OSError):  # memory must stay <= memsw while both change
            memsw.write_text("-1")
        (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        with contextlib.suppress(OSError):
            memsw.write_text(str(limits.memory_bytes))
        period = 100_000
        (cpu / "cpu.cfs_period_us").write_text(str(period))
        (cpu / "cpu.cfs_quota_us").write_text(str(int(limits.cpu * period)))
        (pids / "pids.max").write_text(str(limits.max_processes))
        return True

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self._dirs()]

    def memory_limit(self) -> int | None:
        """The memory limit the kernel enforces now (for tests and the admin)."""
        if self.mode == "v2":
            value = (self._dirs()[0] / "memory.max").read_text().strip()
        elif self.mode == "v1":
            value = (self._dirs()[0] / "memory.limit_in_bytes").read_text().strip()
        else:
            return None
        return None if value == "max" else int(value)

    def oom_kills(self) -> int | None:
        """How many processes the memory limit has killed so far."""
        if self.mode == "v2":
            events = (self._dirs()[0] / "memory.events").read_text()
        elif self.mode == "v1":
            events = (self._dirs()[0] / "memory.oom_control").read_text()
        else:
            return None
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None

    def remove(self) -> None:
        """Remove the cgroup once the server is gone (fails harmlessly while processes remain)."""
        for d in self._dirs():
            with contextlib.suppress(OSError):
                d.rmdir()


def _cgroup_procs_of(pid: int, root: Path = CGROUP_ROOT) -> list[str]:
    """cgroup.procs files of the workbench cgroups process ``pid`` is in (v1 and v2)."""
    files = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hierarchy, controllers, path = line.split(":", 2)
        if not path.startswith(f"/{_PREFIX}/"):
            continue
        mounts = [root] if not controllers else [root / c for c in controllers.split(",")]
        for mount in mounts:
            procs = mount / path.lstrip("/") / "cgroup.procs"
            if procs.exists():
                files.append(str(procs))
                break
    return files


# /proc/<pid>/limits names of the rlimits a kernel takes over from its server (prlimit on
# another uid's process needs CAP_SYS_RESOURCE, which containers often drop: read /proc instead)
INHERITED_RLIMITS = {"Max address space": resource.RLIMIT_AS,
                     "Max processes": resource.RLIMIT_NPROC,
                     "Max core file size": resource.RLIMIT_CORE,
                     "Max cpu time": resource.RLIMIT_CPU}


def _rlimits_of(pid: int) -> dict[int, tuple[int, int]]:
    found = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        for name, which in INHERITED_RLIMITS.items():
            if line.startswith(name + " "):
                soft, hard = line[len(name):].split()[:2]
                found[which] = tuple(resource.RLIM_INFINITY if v == "unlimited" else int(v)
                                     for v in (soft, hard))
    return found


def inherit_limits(pid: int):
    """A ``preexec_fn`` putting the child under the same limits as process ``pid``: its
    workbench cgroups and its rlimits. For a root service starting processes on behalf of a
    study server (the kernel launcher), so kernels count against their server's limits."""
    procs_files = _cgroup_procs_of(pid)
    limits = _rlimits_of(pid)

    def preexec() -> None:
        for procs in procs_files:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        for which, value in limits.items():
            resource.setrlimit(which, value)

    return preexec


def make_preexec(limits: Limits, cgroup_procs: list[str], use_rlimit_as: bool, uid: int | None,
                 gid: int | None, umask: int = 0o002):
    """A Popen ``preexec_fn``: join the cgroup, set rlimits, drop to ``uid``/``gid`` (no
    supplementary groups), set the umask. Runs in the child between fork and exec, as root."""

    def preexec() -> None:
        pid = str(os.getpid())
        for procs in cgroup_procs:
            with open(procs, "w") as handle:
                handle.write(pid)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core dumps of data in memory
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
        if use_rlimit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if gid is not None and uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        os.umask(umask)

    return preexec
