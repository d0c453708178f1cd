"""Certificates from the owner (workbench/catalog/certificates.py): an ingest's certificates are
signed by the holder's own enrolled key and ``workbench catalog verify`` names it; one signed by
another holder's key, or vouching for another holder's data, fails."""

from __future__ import annotations

import base64
import json
import shutil

import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from tests.node import ingest_support as support
from workbench.catalog import certificates
from workbench.catalog.store import Catalog
from workbench.cli import cli

DATASET = "insurer.cost"


@pytest.fixture(scope="module")
def ingested():
    root, space = support.build("wb-holder-certs-")
    done = support.ingest(space, "insurer", root / "src-insurer")
    assert done.returncode == 0, done.stderr
    yield root, space
    shutil.rmtree(root, ignore_errors=True)


def _verify(space, path):
    return CliRunner().invoke(cli, ["catalog", "verify", str(path), "--data-dir", str(space.root)])


def _node_key(space, holder: str) -> SigningKey:
    return SigningKey((space.node_dir(holder) / "keys" / "signing.key").read_bytes())


def test_the_holder_vouches_for_its_ingest(ingested):
    _root, space = ingested
    cert = space.catalog / "certificates" / f"{DATASET}.json"
    document = json.loads(cert.read_text())
    assert document["certificate"]["vouched_by"] == "insurer"
    result = _verify(space, cert)
    assert result.exit_code == 0, result.output
    registered = base64.b64decode(json.loads(space.holder_registry.read_text())["holders"][
        "insurer"])
    assert bytes(_node_key(space, "insurer").verify_key) == registered
    assert "vouched for by holder insurer (its enrolled Ed25519 key" in result.output
    # a store built centrally still carries the space's signature, and says so
    central = space.catalog / "certificates" / "hospital_a.person.json"
    result = _verify(space, central)
    assert result.exit_code == 0, result.output
    assert "vouched for by the space's root key" in result.output and "not the holder" in \
        result.output


def _forge(space, tmp_path, key: SigningKey, **changes):
    dataset = Catalog.load(space).datasets[DATASET]
    rel = f"holders/insurer/{dataset.file}"
    path = space.node_dir("insurer") / rel
    document = certificates.issue_by_holder(dataset, [(rel, path)], "space", key)
    if changes:  # re-sign the changed payload with the same key
        payload = {**document["certificate"], **changes}
        document["certificate"] = payload
        document["signature"]["value"] = base64.b64encode(key.sign(
            certificates.HOLDER_DOMAIN + certificates.canonical(payload)).signature).decode()
    out = tmp_path / "forged.json"
    certificates.write(out, document)
    return out


def test_another_holders_key_fails(ingested, tmp_path):
    _root, space = ingested
    forged = _forge(space, tmp_path, _node_key(space, "pharma"))
    result = _verify(space, forged)
    assert result.exit_code != 0
    assert "signed with holder pharma's key, not holder insurer's" in str(result.exception)


def test_a_holder_cannot_vouch_for_another_holders_data(ingested, tmp_path):
    _root, space = ingested
    forged = _forge(space, tmp_path, _node_key(space, "pharma"), vouched_by="pharma")
    result = _verify(space, forged)
    assert result.exit_code != 0
    assert "vouched for by 'pharma' but the dataset is holder insurer's" in str(result.exception)


def test_a_key_no_holder_enrolled_fails(ingested, tmp_path):
    _root, space = ingested
    result = _verify(space, _forge(space, tmp_path, SigningKey.generate()))
    assert result.exit_code != 0
    assert "signed with a key no holder enrolled" in str(result.exception)


def test_a_holder_signature_over_changed_content_fails(ingested, tmp_path):
    _root, space = ingested
    document = json.loads((space.catalog / "certificates" / f"{DATASET}.json").read_text())
    document["certificate"]["quality_score"] = 1.0
    out = tmp_path / "edited.json"
    certificates.write(out, document)
    result = _verify(space, out)
    assert result.exit_code != 0
    assert "signature does not match its content under holder insurer's key" in str(
        result.exception)
