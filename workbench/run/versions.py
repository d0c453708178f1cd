"""Which kept dataset versions a logged view read ran on (for ``workbench rerun``'s stale cells).

A ``view-read`` or ``he-operation`` record carries the view's version: a hash of the view's
definition and of the version (file hash) of every holder's dataset it reads
(``rerun.view_version``). Each holder node keeps its recent dataset versions
(``node/versions.py``, retention from its rules), so the holders' versions a stale cell ran on can
be found again by hashing the kept combinations until one gives the logged version. Holders that
are not nodes (or whose directory this account cannot read) count with their catalog version
only. Reading the nodes' directories needs root.
"""

from __future__ import annotations

import hashlib
import itertools
from math import prod

from workbench.catalog.store import Catalog
from workbench.node.versions import VersionStore
from workbench.paths import Space

MAX_COMBINATIONS = 100_000  # holders x kept versions: far more than any retention keeps


def _kept(space: Space, holder: str, datasets: dict[str, str]) -> list[tuple[str, dict]]:
    """(node version id, dataset id -> file hash) of every kept version of ``holder`` holding
    all of ``datasets``; else only the catalog's versions (``datasets``)."""
    store = VersionStore(space.node_dir(holder), holder)
    try:
        versions = store.versions()
    except PermissionError:
        versions = []
    # newest first: of kept versions with the same files, the one served last is named
    found = [(v["id"], {d: v["datasets"][d]["version"] for d in datasets})
             for v in reversed(versions) if set(datasets) <= set(v.get("datasets", {}))]
    return found or [("catalog", datasets)]


def ran_on(space: Space, catalog: Catalog, view_id: str, logged: str) -> dict[str, str] | None:
    """holder -> node version id whose data gave the logged ``view_version``, or None when no
    kept combination does (a version let go by retention, or a changed view definition). One
    read sees one version of each holder: candidates are whole versions, not single files."""
    view = catalog.views.get(view_id)
    if view is None:
        return None
    order = [d for table in sorted(view.tables) for d in catalog.holders_of(table)]
    holders = sorted({d.holder for d in order})
    candidates = [_kept(space, h, {d.id: d.version for d in order if d.holder == h})
                  for h in holders]
    if prod(len(c) for c in candidates) > MAX_COMBINATIONS:
        return None
    head = view.model_dump_json()
    for choice in itertools.product(*candidates):
        files = {d: v for _vid, chosen in choice for d, v in chosen.items()}
        parts = [head] + [f"{d.id}={files[d.id]}" for d in order]
        if hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] == logged:
            return {h: vid for h, (vid, _c) in zip(holders, choice, strict=True)
                    if vid != "catalog"}
    return None


def describe(found: dict[str, str] | None) -> str:
    if found is None:
        return "no kept dataset version gives the version it read (let go by a holder's " \
               "retention, or the view's definition changed)"
    if not found:
        return "its data was not ingested at a node"
    return "it ran on " + ", ".join(f"{h} version {v}" for h, v in sorted(found.items())) + \
        " (kept at the node)"
