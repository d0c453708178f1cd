"""Reading the provenance log: timelines for dashboards, verification, proofs.

    reader = ProvenanceReader(Space.at(data_dir))
    for record in reader.records(study="cml-tki", kinds=["cell-execution", "view-read"]):
        print(record.ts, record.kind, record.fields.get("user"))
    report = reader.verify()          # VerifyReport: .ok, .first_bad_record, .summary()

The reader opens the store directly, so it needs the collector's (or root's) access to
DATA_DIR/provenance: writers never get it. A reader opens SQLite read-only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.provenance import cosign, merkle
from workbench.provenance import heads as heads_mod
from workbench.provenance.service import configured_backend
from workbench.provenance.store import Store, open_store
from workbench.provenance.verify import VerifyReport, Witnessing, verify_rows


@dataclass(frozen=True)
class ProvenanceRecord:
    seq: int
    id: str  # the record's hash (hex): what append() returned to the writer
    kind: str
    version: int
    ts: str
    writer: dict
    fields: dict

    @property
    def study(self) -> str | None:
        return self.fields.get("study")

    def as_dict(self) -> dict:
        return {"seq": self.seq, "id": self.id, "kind": self.kind, "v": self.version,
                "ts": self.ts, "writer": self.writer, "fields": self.fields}


def _record(seq: int, digest: bytes, body: bytes) -> ProvenanceRecord:
    data = json.loads(body)
    return ProvenanceRecord(seq, digest.hex(), data["kind"], data["v"], data["ts"], data["writer"],
                            data["fields"])


class ProvenanceReader:
    def __init__(self, space: Space, backend: str | None = None, public_key: Path | None = None):
        self.space = space
        self.backend = backend if backend is not None else configured_backend(space)
        self.public_key_path = public_key or heads_mod.public_key_path(space)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.space, self.backend, readonly=True)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> ProvenanceReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records -----------------------------------------------------------------------------------
    def records(self, study: str | None = None, kinds: Iterable[str] | None = None,
                since: str | None = None, until: str | None = None) -> Iterator[ProvenanceRecord]:
        """Records in log order, filtered on the study, kinds and receipt time (ISO strings).
        Run ``verify()`` to know the records are the ones that were written."""
        wanted = set(kinds) if kinds else None
        for seq, _prev, digest, body in self.store.rows():
            record = _record(seq, digest, body)
            if study is not None and record.study != study:
                continue
            if wanted is not None and record.kind not in wanted:
                continue
            if (since and record.ts < since) or (until and record.ts > until):
                continue
            yield record

    def record(self, record_id: str) -> ProvenanceRecord:
        for seq, _prev, digest, body in self.store.rows():
            if digest.hex() == record_id:
                return _record(seq, digest, body)
        raise WorkbenchUserError(f"no provenance record with id {record_id[:64]}",
                                 reason="no-such-record")

    # -- integrity ---------------------------------------------------------------------------------
    def public_key(self):
        if not self.public_key_path.exists():
            raise WorkbenchUserError(f"no tree-head public key at {self.public_key_path}: has the "
                                     "collector ever run?", reason="no-public-key")
        return heads_mod.load_public_key(self.public_key_path.read_bytes())

    def heads(self, anchors: Iterable[Path] = ()) -> list[dict]:
        """Signed heads from the store, from DATA_DIR/provenance/heads.jsonl and from ``anchors``
        (files written by ``workbench provenance heads export``), sorted by size."""
        found = list(self.store.heads())
        found += heads_mod.read_head_log(heads_mod.heads_log_path(self.space))
        for anchor in anchors:
            found += heads_mod.read_head_log(Path(anchor))
        unique = {json.dumps(h, sort_keys=True): h for h in found}
        return sorted(unique.values(), key=lambda h: (h.get("tree_size", -1), h.get("timestamp")))

    def verify(self, anchors: Iterable[Path] = (), cosignatures: Iterable[Path] = (),
               witnesses: Path | None = None, now: float | None = None) -> VerifyReport:
        """``cosignatures``: files of cosignatures a witness handed over (``workbench provenance
        witness show``); ``witnesses`` pins the witness list instead of the space's copy."""
        return verify_rows(self.store.rows, self.store.log_id, self.public_key(),
                           self.heads(anchors), self.witnessing(cosignatures, witnesses, now))

    def witnessing(self, files: Iterable[Path] = (), witnesses: Path | None = None,
                   now: float | None = None) -> Witnessing | None:
        listing = cosign.load_witnesses(witnesses or self.space.witnesses)
        if listing is None:
            return None
        found = cosign.read_jsonl(cosign.cosignatures_path(self.space))
        for path in files:
            found += cosign.read_jsonl(Path(path))
        return Witnessing(listing, found, time.time() if now is None else now)

    def leaf_hashes(self) -> list[bytes]:
        return list(self.store.hashes())

    def inclusion_proof(self, record_id: str, tree_size: int | None = None) -> dict:
        """Proof that a record is in the tree of ``tree_size`` (default: the last signed head)."""
        leaves = self.leaf_hashes()
        size = tree_size or max((h["tree_size"] for h in self.heads() if "tree_size" in h),
                                default=len(leaves))
        leaves = leaves[:size]
        target = bytes.fromhex(record_id)
        if target not in leaves:
            raise WorkbenchUserError(f"record {record_id[:64]} is not in the first {size} records",
                                     reason="no-such-record")
        index = leaves.index(target)
        return {"leaf_index": index, "tree_size": size, "leaf_hash": record_id,
                "root_hash": merkle.root(leaves).hex(),
                "path": [node.hex() for node in merkle.inclusion_proof(index, leaves)]}

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> dict:
        leaves = self.leaf_hashes()
        new_size = new_size or len(leaves)
        if not 0 < old_size <= new_size <= len(leaves):
            raise WorkbenchUserError(f"tree sizes must satisfy 0 < old ({old_size}) <= new "
                                     f"({new_size}) <= {len(leaves)} records",
                                     reason="bad-request")
        leaves = leaves[:new_size]
        return {"old_size": old_size, "new_size": new_size,
                "old_root": merkle.root(leaves[:old_size]).hex(),
                "new_root": merkle.root(leaves).hex(),
                "path": [node.hex() for node in merkle.consistency_proof(old_size, leaves)]}

    def export_heads(self) -> dict:
        """Everything an outside party needs to check later that the log was not rewritten."""
        public = self.public_key()
        return {"log_id": self.store.log_id, "key_id": heads_mod.key_id(public),
                "public_key": heads_mod.public_pem(public).decode(),
                "heads": [h for h in self.heads() if "tree_size" in h]}
