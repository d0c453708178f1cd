"""How much each node may ask of the linkage service, and the counts it keeps.

A node can evaluate the OPRF on any id it guesses: that is what an OPRF is for. What bounds a
dictionary attack on the national-id space (about 1e9 values) is how fast and how much: a
per-minute rate (a token bucket: short bursts, then the refill rate) and a per-UTC-day quota per
node account, both refused with one line. The counts (account, day, elements, batches) are the
service's only state besides its key: no element is kept, and no identifier ever reaches it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from workbench.errors import WorkbenchUserError

PER_MINUTE = 600_000  # elements per node per minute (the service evaluates ~15k/s per core)
PER_DAY = 5_000_000  # elements per node per UTC day: 1e9 guesses would take 200 days
KEEP_DAYS = 31  # days of counts kept in state.json


def read_counts(space, name: str = "state.json") -> dict:
    """{day: {account: {"elements", "batches"}}} from the service's state (none yet: empty);
    ``name="clk-state.json"``: the CLKs each node had matched."""
    from workbench import linkage

    path = linkage.state_dir(space) / name
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise WorkbenchUserError(f"{path} is not the linkage service's state",
                                 reason="bad-state") from None
    days = state.get("days") if isinstance(state, dict) else None
    if not isinstance(days, dict):
        raise WorkbenchUserError(f"{path} is not the linkage service's state", reason="bad-state")
    return days


class RateLimited(WorkbenchUserError):
    def __init__(self, message: str, retry_after: float):
        super().__init__(message, reason="rate-limited")
        self.retry_after = retry_after


class Limits:
    def __init__(self, state_file: Path, per_minute: int = PER_MINUTE, per_day: int = PER_DAY):
        self.path, self.per_minute, self.per_day = state_file, per_minute, per_day
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, when)
        self._state = self._load()

    def _load(self) -> dict:
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"days": {}}
        except ValueError:
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("days"), dict):
            raise WorkbenchUserError(f"{self.path} is not the linkage service's state: move it "
                                     "away (its counts are lost) and start again",
                                     reason="bad-state")
        return state

    def take(self, peer: str, elements: int) -> None:
        """Count ``elements`` for ``peer``, or refuse (nothing counted) over a limit."""
        day = datetime.now(UTC).date().isoformat()
        with self._lock:
            used = self._state["days"].get(day, {}).get(peer, {}).get("elements", 0)
            if used + elements > self.per_day:
                raise WorkbenchUserError(
                    f"{peer} used {used} of its {self.per_day} evaluations for today (UTC): ask "
                    "the linkage service's operator to raise --per-day, or go on tomorrow",
                    reason="quota-exhausted")
            now = time.monotonic()
            tokens, then = self._buckets.get(peer, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * self.per_minute / 60)
            if elements > tokens:
                wait = (elements - tokens) * 60 / self.per_minute
                raise RateLimited(f"{peer} is over its {self.per_minute} evaluations per minute: "
                                  f"retry in {wait:.1f} s", wait)
            self._buckets[peer] = (tokens - elements, now)
            counts = self._state["days"].setdefault(day, {}).setdefault(
                peer, {"elements": 0, "batches": 0})
            counts["elements"] += elements
            counts["batches"] += 1
            for old in sorted(self._state["days"])[:-KEEP_DAYS]:
                del self._state["days"][old]
            self._save()

    def _save(self) -> None:
        partial = self.path.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self._state, handle, indent=1, sort_keys=True)
        os.replace(partial, self.path)
