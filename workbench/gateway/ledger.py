"""The usage ledger: how many rows each holder contributed to every read and secure operation
(the space's basis for sharing benefits with data holders). Append-only JSON lines in
DATA_DIR/usage/ledger.jsonl, written only by the gateway account."""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from workbench.errors import WorkbenchUserError
from workbench.paths import Space

LEDGER_FILE = "ledger.jsonl"


def ledger_path(space: Space) -> Path:
    return space.usage / LEDGER_FILE


class UsageLedger:
    """Appends one line per served request; a write that fails refuses the request (the caller
    must not send data whose use is not metered)."""

    def __init__(self, space: Space):
        self.path = ledger_path(space)
        self._lock = threading.Lock()

    def record(self, *, study: str, kind: str, view: str, rows_by_holder: dict[str, int],
               op: str | None = None, record_id: str | None = None) -> dict:
        entry = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "study": study, "kind": kind, "view": view, "op": op,
            "rows_by_holder": {h: int(n) for h, n in sorted(rows_by_holder.items())},
            "rows": int(sum(rows_by_holder.values())),
            "provenance_record": record_id,
        }
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry


def read_ledger(space: Space) -> list[dict]:
    path = ledger_path(space)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except PermissionError:
        raise WorkbenchUserError(f"{path} is readable only by the gateway account and root: run "
                                 "the report as root", reason="permission-denied") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def usage_report(entries: list[dict], study: str | None = None,
                 holder: str | None = None) -> list[dict]:
    """Totals per (study, holder, kind): requests and rows contributed."""
    totals: dict[tuple, dict] = defaultdict(lambda: {"requests": 0, "rows": 0})
    for entry in entries:
        if study and entry["study"] != study:
            continue
        for name, rows in entry["rows_by_holder"].items():
            if holder and name != holder:
                continue
            row = totals[(entry["study"], name, entry["kind"])]
            row["requests"] += 1
            row["rows"] += rows
    return [{"study": s, "holder": h, "kind": k, **v} for (s, h, k), v in sorted(totals.items())]
