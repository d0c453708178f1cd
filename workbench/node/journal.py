"""The node's own record: every request it served or refused, hash-chained.

One JSON line per request: ``seq``, ``time``, what was asked (peer, study, view, kind, nonce),
the decision and its reason, and ``prev``/``hash``, where ``hash = sha256(prev || canonical JSON
of the line without hash)``. Changing, dropping or reordering a line breaks every later hash, so
the holder can show what its node did independently of the space's central log (and compare the
two). Lines carry no row or value: counts of rows and bytes only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from workbench.errors import WorkbenchUserError

GENESIS = "0" * 64


def _digest(prev: str, entry: dict) -> str:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode()).hexdigest()


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _last(self, handle) -> tuple[int, str]:
        handle.seek(0)
        seq, prev = 0, GENESIS
        for line in handle:
            if line.strip():
                entry = json.loads(line)
                seq, prev = entry["seq"], entry["hash"]
        return seq, prev

    def append(self, event: dict) -> dict:
        """Append one entry (durable before this returns)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            seq, prev = self._last(handle)
            entry = {"seq": seq + 1, "time": round(time.time(), 3), **event, "prev": prev}
            entry["hash"] = _digest(prev, entry)
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def verify(self) -> int:
        """Check the chain; return the number of entries, or raise naming the first bad line."""
        prev = GENESIS
        entries = self.entries()
        for number, entry in enumerate(entries, start=1):
            body = {k: v for k, v in entry.items() if k != "hash"}
            if entry.get("seq") != number or entry.get("prev") != prev or \
                    entry.get("hash") != _digest(prev, body):
                raise WorkbenchUserError(f"{self.path} line {number}: the hash chain breaks "
                                         "here; the log was changed after it was written.",
                                         reason="journal-broken")
            prev = entry["hash"]
        return len(entries)
