"""How the sandbox writes provenance: ``ProvenanceClient.append_async`` on the proxy's loop.

Each record gets its own connection and returns only on the collector's durability ack (raising
``ProvenanceUnavailable`` otherwise), so a background record (a cell's completion, a denial)
never queues in front of a record that gates the next cell.
"""

from __future__ import annotations

import os
from typing import Any

from workbench.provenance.client import ProvenanceClient


class CollectorRecorder:
    """``await recorder(kind, fields)`` -> record id once durable; raises if it is not."""

    def __init__(self, socket_path: str | os.PathLike):
        self.client = ProvenanceClient(socket_path)

    async def __call__(self, kind: str, fields: dict[str, Any], background: bool = False) -> str:
        return await self.client.append_async(kind, fields)

    def close(self) -> None:
        self.client.close()
