"""Stopping the hub and everything it started.

JupyterHub starts configurable-http-proxy, its managed services (the idle culler, the reviewer
dashboards) and every study server in sessions of their own (``start_new_session``), so a signal
to the hub's process group reaches none of them, and a hub killed before its own cleanup has
finished leaves them running, re-parented to init: a proxy still holding its port, a culler, a
study server as ``wbs-<study>`` whose configuration may already be deleted. :func:`stop_tree`
stops a process and then every process it had started that is still running, whatever the
process's own cleanup managed. Used by ``workbench demo`` and the live hub tests.

A process is named by its pid *and* its start time (``/proc/<pid>/stat``), so a pid reused
after the process exited is never signalled by mistake. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Proc:
    """One process: its pid and its start time in clock ticks since boot."""

    pid: int
    start: int

    def stat(self) -> tuple[str, int] | None:
        """(state, ppid) while this very process exists (zombies included), else None."""
        found = _stat(self.pid)
        if found is None or found[2] != self.start:
            return None
        return found[0], found[1]

    def running(self) -> bool:
        """Exists and is not a zombie (a zombie has exited; only its parent's wait is due)."""
        found = self.stat()
        return found is not None and found[0] != "Z"

    def argv(self) -> list[str]:
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]

    def cmdline(self) -> str:
        return " ".join(self.argv())

    def uid(self) -> int | None:
        try:
            return Path(f"/proc/{self.pid}").stat().st_uid
        except OSError:
            return None


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of ``pid`` from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def proc(pid: int) -> Proc | None:
    found = _stat(pid)
    return None if found is None else Proc(pid, found[2])


def _children_by_parent() -> dict[int, list[Proc]]:
    children: dict[int, list[Proc]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        found = _stat(int(entry.name))
        if found is not None:
            children.setdefault(found[1], []).append(Proc(int(entry.name), found[2]))
    return children


def descendants(*roots: int) -> list[Proc]:
    """Every process below the given pids (children, their children, ...), roots excluded."""
    children = _children_by_parent()
    found: list[Proc] = []
    seen = set(roots)
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in seen:
                seen.add(child.pid)
                found.append(child)
                todo.append(child.pid)
    return found


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (prctl PR_SET_CHILD_SUBREAPER):
    a process whose parent exits is re-parented to us instead of init, so whatever a child
    leaves behind stays findable (and stoppable) as one of our descendants."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap(procs: list[Proc]) -> None:
    """Wait for those of ``procs`` that became our zombies (re-parented to us as subreaper):
    they are not ours to keep, and nothing else will ever wait for them."""
    me = os.getpid()
    for item in procs:
        found = item.stat()
        if found is not None and found[0] == "Z" and found[1] == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(item.pid, os.WNOHANG)


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    """Wait until none of ``procs`` runs, at most ``timeout`` seconds; returns those still
    running."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(procs)
        left = [p for p in procs if p.running()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def terminate(procs: list[Proc], grace: float = 10.0) -> list[Proc]:
    """SIGTERM each running process of ``procs`` (and whatever they started meanwhile), SIGKILL
    what is left after ``grace`` seconds; returns the processes that were still running when
    this was called (what had to be stopped), each gone when it returns."""
    procs = list(procs)
    seen = {p.pid for p in procs}
    for child in descendants(*[p.pid for p in procs if p.running()]):
        if child.pid not in seen:
            seen.add(child.pid)
            procs.append(child)
    running = [p for p in procs if p.running()]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for item in running:
            if item.running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(item.pid, sig)
        if not wait_gone(running, wait):
            break
    left = [p for p in running if p.running()]
    if left:
        raise RuntimeError(f"processes survived SIGKILL: {[p.pid for p in left]}")
    return running


def stop_tree(process: subprocess.Popen, timeout: float = 60.0, grace: float = 10.0,
              left: list[str] | None = None) -> int:
    """Stop ``process`` and every process it started. SIGTERM it and give it ``timeout``
    seconds to stop what it started itself (JupyterHub stops its services, servers and proxy).
    If it is still running then (its cleanup waiting on a child that does not stop), stop its
    descendants for it and give it ``grace`` more seconds before SIGKILL. Whatever it started
    and left running is stopped last (SIGTERM, SIGKILL after ``grace`` s). Returns its exit
    status; ``left`` (if given) receives the command lines of the processes it did not stop
    itself."""
    tree = descendants(process.pid) if process.poll() is None else []
    noted: set[int] = set()

    def note() -> None:
        for item in tree:
            if left is not None and item.pid not in noted and item.running():
                noted.add(item.pid)
                left.append(f"{item.pid}: {item.cmdline()}")

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            note()
            terminate(tree + descendants(process.pid), grace)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    note()
    terminate(tree, grace)
    return process.returncode
