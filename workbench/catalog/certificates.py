"""Ownership certificates: a dataset's identity, holder, content and schema hashes and quality
score, signed with the space's Ed25519 key. Security boundary: ``verify`` is what a third party
runs to check that the data they were told about is the data that is held; tests in
tests/catalog/test_certificates.py flip single bytes of the data and of the certificate.

The file is canonical JSON (sorted keys, two-space indent): ``verify`` rejects any file that is not
byte-for-byte the canonical form of what it parses to, so no byte of it can change unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from workbench.catalog.models import Dataset
from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.space.keys import load_public_key, load_signing_key, public_pem
from workbench.space.tables import file_sha256

KIND = "workbench-ownership-certificate"


def canonical(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def render(document: dict) -> str:
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def schema_hash(dataset: Dataset) -> str:
    columns = [c.model_dump() for c in dataset.columns]
    return hashlib.sha256(canonical({"columns": columns})).hexdigest()


def dataset_files(space: Space, dataset: Dataset) -> list[tuple[str, Path]]:
    """Every file that makes up the dataset, as (path relative to the store's root, absolute
    path). The store is the space's, or the holder node's own once the holder is a node (the
    same relative names, so a certificate stays valid when the store moves to its node)."""
    node = space.node_dir(dataset.holder)
    store = Space(node) if (node / "node.json").exists() else space
    folder = store.holder_dir(dataset.holder)
    path = folder / dataset.file
    if not path.resolve().is_relative_to(folder.resolve()):
        raise WorkbenchUserError(
            f"catalog entry '{dataset.id}': field 'file' points outside holders/{dataset.holder}/",
            reason="bad-catalog-entry",
        )
    return [(path.relative_to(store.root).as_posix(), path)]


def _hash_files(files: list[tuple[str, str]]) -> str:
    lines = "".join(f"{name}\0{digest}\n" for name, digest in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _file_digest(path: Path, rel: str) -> str:
    try:
        return file_sha256(path)
    except FileNotFoundError:
        raise WorkbenchUserError(f"{rel}: the dataset's file is missing", reason="missing-file") \
            from None
    except PermissionError:
        raise WorkbenchUserError(
            f"{rel} is readable only by the account that owns the store (the gateway, or the "
            "holder's node): run this as root.",
            reason="permission-denied",
        ) from None


def _space_id(space: Space) -> str:
    try:
        return json.loads(space.manifest.read_text())["space_id"]
    except (FileNotFoundError, KeyError, ValueError):
        raise WorkbenchUserError(
            f"{space.manifest} is missing or malformed: is {space.root} a space built by "
            "'workbench init'?", reason="no-space",
        ) from None


def issue(space: Space, dataset: Dataset, issued_at: datetime | None = None) -> dict:
    """A signed certificate for ``dataset`` as it is held now."""
    files = [{"path": rel, "sha256": _file_digest(path, rel)}
             for rel, path in dataset_files(space, dataset)]
    if len(files) == 1 and files[0]["sha256"] != dataset.version:
        # never vouch for data that changed after it was released into the catalog
        raise WorkbenchUserError(
            f"{files[0]['path']} no longer matches the version recorded in the catalog for "
            f"'{dataset.id}': the file changed after release. Restore it or rebuild the space.",
            reason="dataset-changed",
        )
    key = load_signing_key(space)
    payload = {
        "kind": KIND,
        "space_id": _space_id(space),
        "dataset": dataset.id,
        "holder": dataset.holder,
        "table": dataset.table,
        "rows": dataset.rows,
        "files": files,
        "content_hash": _hash_files([(f["path"], f["sha256"]) for f in files]),
        "schema_hash": schema_hash(dataset),
        "quality_score": dataset.quality_score,
        "issued_at": (issued_at or datetime.now(UTC)).isoformat(),
    }
    return {
        "certificate": payload,
        "signature": {
            "algorithm": "Ed25519",
            "public_key_sha256": hashlib.sha256(public_pem(key.public_key())).hexdigest(),
            "value": base64.b64encode(key.sign(canonical(payload))).decode(),
        },
    }


def write(path: Path, document: dict) -> None:
    path.write_text(render(document))


@dataclass(frozen=True)
class Verified:
    dataset: str
    holder: str
    content_hash: str
    issued_at: str


def _invalid(path: Path, message: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"{path}: certificate NOT valid: {message}",
                              reason="certificate-invalid")


def verify(space: Space, path: Path) -> Verified:
    """Check the signature with the space's public key, then that the held data and the catalog
    schema still hash to what was certified. Raises WorkbenchUserError naming what differs."""
    try:
        # bytes, not read_text(): universal newlines would turn a forged "\r" back into "\n"
        text = Path(path).read_bytes().decode("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise WorkbenchUserError(f"{path}: no such certificate file", reason="no-file") from None
    except UnicodeDecodeError:
        raise _invalid(path, "the file is not text (it was altered or is not a certificate)") \
            from None
    try:
        document = json.loads(text)
        payload = document["certificate"]
        signature = document["signature"]
        value = base64.b64decode(signature["value"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise _invalid(path, f"it is not a well-formed certificate ({type(exc).__name__}: "
                             f"{exc})") from None
    if render(document) != text:
        raise _invalid(path, "the file is not in its canonical form: it was edited after signing")
    # the unsigned envelope must be exactly what issue() writes: no byte of it may vary either
    if set(document) != {"certificate", "signature"} or set(signature) != {
            "algorithm", "public_key_sha256", "value"} or signature["algorithm"] != "Ed25519":
        raise _invalid(path, "its signature block is not an Ed25519 signature as issued")
    if base64.b64encode(value).decode() != signature["value"]:
        raise _invalid(path, "the signature is not canonical base64: it was edited")
    public = load_public_key(space.signing_pub)
    if signature.get("public_key_sha256") != hashlib.sha256(public_pem(public)).hexdigest():
        raise _invalid(path, f"it was not signed by this space's key ({space.signing_pub})")
    try:
        public.verify(value, canonical(payload))
    except InvalidSignature:
        raise _invalid(path, "the Ed25519 signature does not match its content") from None
    if payload.get("kind") != KIND:
        raise _invalid(path, "it is not an ownership certificate")

    catalog = Catalog.load(space)
    dataset = catalog.datasets.get(payload["dataset"])
    if dataset is None:
        raise _invalid(path, f"dataset '{payload['dataset']}' is no longer in the catalog")
    held = {rel: _file_digest(p, rel) for rel, p in dataset_files(space, dataset)}
    certified = {f["path"]: f["sha256"] for f in payload["files"]}
    for rel in sorted(set(held) | set(certified)):
        if held.get(rel) != certified.get(rel):
            raise _invalid(path, f"data file {rel} differs from the certified content")
    if _hash_files(sorted(held.items())) != payload["content_hash"]:
        raise _invalid(path, "the content hash does not match the held files")
    if schema_hash(dataset) != payload["schema_hash"]:
        raise _invalid(path, f"the catalog schema of '{dataset.id}' changed since certification")
    if dataset.holder != payload["holder"]:
        raise _invalid(path, f"the catalog names another holder for '{dataset.id}'")
    return Verified(dataset.id, dataset.holder, payload["content_hash"], payload["issued_at"])
