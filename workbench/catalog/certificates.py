"""Ownership certificates: a dataset's identity, holder, content and schema hashes and quality
score, signed by whoever vouches for it. Security boundary: ``verify`` is what a third party
runs to check that the data they were told about is the data that is held; tests in
tests/catalog/test_certificates.py flip single bytes of the data and of the certificate.

Two signers: a holder node signs the certificates of its own ingests with its own Ed25519 key
(``issue_by_holder``; the key enrolled with the space, its public half in ``he/holders.json``),
and the payload names it (``vouched_by``); ``verify`` accepts such a certificate only under that
holder's enrolled key and only for that holder's dataset, so one holder cannot vouch for
another's data. Stores built centrally (``workbench init``) carry the space's root signature
(``issue``), which ``verify`` reports as such.

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
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from workbench.catalog.models import Dataset
from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.space.keys import load_public_key, load_signing_key, public_pem
from workbench.space.tables import file_sha256

KIND = "workbench-ownership-certificate"
# A holder's key also signs its HE contributions: its certificate signatures carry their own
# domain, so neither kind of signature can pass for the other.
HOLDER_DOMAIN = b"workbench-ownership-certificate-v1\0"


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
    payload = _payload(_space_id(space), dataset, files, issued_at)
    return {
        "certificate": payload,
        "signature": {
            "algorithm": "Ed25519",
            "public_key_sha256": hashlib.sha256(public_pem(key.public_key())).hexdigest(),
            "value": base64.b64encode(key.sign(canonical(payload))).decode(),
        },
    }


def _payload(space_id: str, dataset: Dataset, files: list[dict],
             issued_at: datetime | None) -> dict:
    return {
        "kind": KIND,
        "space_id": space_id,
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


def issue_by_holder(dataset: Dataset, files: list[tuple[str, Path]], space_id: str,
                    key: SigningKey, issued_at: datetime | None = None) -> dict:
    """The holder's own certificate for ``dataset`` (run at its node, with its signing key):
    ``files`` are (path relative to the node's store root, where the file is now)."""
    listed = [{"path": rel, "sha256": _file_digest(path, rel)} for rel, path in files]
    payload = _payload(space_id, dataset, listed, issued_at)
    payload["vouched_by"] = dataset.holder
    return {
        "certificate": payload,
        "signature": {
            "algorithm": "Ed25519",
            "public_key_sha256": hashlib.sha256(bytes(key.verify_key)).hexdigest(),
            "value": base64.b64encode(
                key.sign(HOLDER_DOMAIN + canonical(payload)).signature).decode(),
        },
    }


def holder_keys(space: Space) -> dict[str, bytes]:
    """The holders' enrolled public keys (``he/holders.json``, root-written, public)."""
    try:
        listed = json.loads(space.holder_registry.read_text())["holders"]
        return {name: base64.b64decode(value, validate=True) for name, value in listed.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise WorkbenchUserError(f"{space.holder_registry} is not a registry of holder keys: "
                                 "restore it from the space's build.", reason="bad-registry") \
            from None


def write(path: Path, document: dict) -> None:
    path.write_text(render(document))


@dataclass(frozen=True)
class Verified:
    dataset: str
    holder: str
    content_hash: str
    issued_at: str
    vouched_by: str = "the space's key"


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
    if isinstance(payload, dict) and "vouched_by" in payload:
        voucher = _check_holder_signature(space, path, payload, signature, value)
    else:
        voucher = _check_space_signature(space, path, payload, signature, value)
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
    return Verified(dataset.id, dataset.holder, payload["content_hash"], payload["issued_at"],
                    voucher)


def _check_space_signature(space: Space, path: Path, payload, signature: dict,
                           value: bytes) -> str:
    public = load_public_key(space.signing_pub)
    fingerprint = hashlib.sha256(public_pem(public)).hexdigest()
    if signature.get("public_key_sha256") != fingerprint:
        raise _invalid(path, f"it was not signed by this space's key ({space.signing_pub})")
    try:
        public.verify(value, canonical(payload))
    except InvalidSignature:
        raise _invalid(path, "the Ed25519 signature does not match its content") from None
    return f"the space's root key (signing.pub {fingerprint[:16]}), not the holder"


def _check_holder_signature(space: Space, path: Path, payload: dict, signature: dict,
                            value: bytes) -> str:
    """A holder vouches only for its own dataset, only with the key it enrolled."""
    voucher, holder = payload["vouched_by"], payload.get("holder")
    if voucher != holder:
        raise _invalid(path, f"it is vouched for by '{voucher}' but the dataset is holder "
                             f"{holder}'s: only a holder vouches for its own data")
    keys = holder_keys(space)
    fingerprints = {hashlib.sha256(raw).hexdigest(): name for name, raw in keys.items()}
    signer = fingerprints.get(signature.get("public_key_sha256"))
    if holder not in keys:
        raise _invalid(path, f"holder '{holder}' has no enrolled key in {space.holder_registry}")
    if signer != holder:
        who = f"holder {signer}'s key" if signer else "a key no holder enrolled"
        raise _invalid(path, f"it was signed with {who}, not holder {holder}'s")
    try:
        VerifyKey(keys[holder]).verify(HOLDER_DOMAIN + canonical(payload), value)
    except BadSignatureError:
        raise _invalid(path, f"the Ed25519 signature does not match its content under holder "
                             f"{holder}'s key") from None
    fingerprint = hashlib.sha256(keys[holder]).hexdigest()
    return f"holder {holder} (its enrolled Ed25519 key {fingerprint[:16]})"
