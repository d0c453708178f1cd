"""What the gateway does when the holders are nodes: ask them, merge, never open a store.

A plain read asks every node for its protected partition of the view (each node applies the
study's pseudonyms, date protection and the view's minimum rows to its own rows) and merges them;
the merged read must still reach the view's minimum. A secure operation runs its rounds through
``RemoteHolders`` with the study's thresholds tightened by every node's floors, and those
thresholds travel inside the spec each node signs.

``pin``: only for a ``workbench rerun`` kernel (the gateway's re-run socket, pins written by
root, ``workbench/run/pins.py``): ``{"holders": {holder: kept version}, "view_version": ...}``;
each node then reads that kept version of its store (and refuses one it no longer keeps).
"""

from __future__ import annotations

import time

import pyarrow as pa

from workbench.node.client import NodeSet, RemoteHolders
from workbench.node.rules import Floors, HolderRules
from workbench.policy.model import Thresholds
from workbench.views.engine import ViewEngine, ViewResult

RULES_TTL = 30.0  # seconds the nodes' floors are cached (a node refuses looser ones anyway)


def policy_document(policy_path) -> dict:
    """The policy the coordinator acts on, with its admin signature, for the nodes to check."""
    from workbench.policy.signed import read_signed

    text, record = read_signed(policy_path)
    return {"text": text.decode(), "signature": record}


class NodeCoordinator:
    def __init__(self, nodes: NodeSet, engine: ViewEngine):
        self.nodes, self.engine = nodes, engine
        self._floors: tuple[float, dict] | None = None

    def _request(self, study: str, view: str, columns, policy_path, pin=None) -> dict:
        from workbench.secure.signing import new_nonce

        body = {"study": study, "view": view, "columns": list(columns) if columns else None,
                "nonce": new_nonce(), "policy": policy_document(policy_path)}
        if pin:
            body["versions"] = dict(pin["holders"])
        return body

    def read(self, study: str, view_id: str, columns, limit: int | None,
             policy_path, pin=None) -> ViewResult:
        view = self.engine.view(view_id)
        chosen = self.engine._columns(view, columns, view.plaintext_columns)  # noqa: SLF001
        body = self._request(study, view_id, chosen, policy_path, pin) | {"limit": limit}
        parts = {h: t for h, t in self.nodes.read_view(body).items() if t is not None}
        tables = [t for _, t in sorted(parts.items()) if t.num_rows]
        if tables:
            table = pa.concat_tables(tables, promote_options="permissive")
        elif parts:
            table = next(iter(parts.values()))
        else:
            table = pa.table({c: pa.array([], pa.string()) for c in chosen})
        if limit is not None and table.num_rows > limit:
            table = table.slice(0, limit)
        if table.num_rows < view.min_rows and (limit is None or limit >= view.min_rows):
            self.engine._min_rows(view, table.num_rows)  # noqa: SLF001 - the one message
        version = pin["view_version"] if pin else self.engine.versions[view_id]
        return ViewResult(table, view_id, version, tuple(chosen),
                          {h: t.num_rows for h, t in parts.items()})

    def thresholds(self, thresholds: dict, quorum: int | None = None) -> dict:
        """The study's thresholds tightened by every node's floors (a round signed with looser
        ones would be refused by the node anyway)."""
        now = time.monotonic()
        if self._floors is None or now - self._floors[0] > RULES_TTL:
            self._floors = (now, self.nodes.rules(quorum))
        tight = Thresholds.model_validate(thresholds)
        for rules in self._floors[1].values():
            floors = Floors.model_validate(rules.get("thresholds") or {})
            tight = HolderRules(thresholds=floors).tighten(tight)
        return tight.model_dump()

    def remote(self, study: str, view: str, columns, policy_path, request_id: str,
               quorum: int | None = None, pin=None) -> RemoteHolders:
        """The nodes as the holders of one operation; ``request_id`` is the operation's id in
        the central provenance record, and each node's journal names it too."""
        from workbench.secure.keys import load_public

        request = self._request(study, view, columns, policy_path, pin)
        request.pop("nonce")  # each round brings its own
        request["request_id"] = request_id
        # a joint BFV key (he/public.ctx says so): every round asks the key parties for partials
        return RemoteHolders(self.nodes, request,
                             lambda thresholds: self.thresholds(thresholds, quorum), quorum,
                             keys=load_public(self.engine.space))
