"""Ownership certificates: valid ones verify; one changed byte of the data or of the certificate
is caught (security boundary: workbench/catalog/certificates.py)."""

import base64
import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.catalog import certificates
from workbench.catalog.store import Catalog
from workbench.cli import cli
from workbench.errors import WorkbenchUserError
from workbench.space.build import init_space

DATASET = "gbsg.gbsg2"
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # the space is rebuilt by nothing here


@pytest.fixture(scope="module")
def cert_space(tmp_path_factory):
    space = init_space(tmp_path_factory.mktemp("certs") / "space", patients=0,
                       echo=lambda _l: None)
    out = space.root.parent / "gbsg2.cert.json"
    result = CliRunner().invoke(cli, ["catalog", "certify", DATASET, "--out", str(out),
                                      "--data-dir", str(space.root)])
    assert result.exit_code == 0, result.output
    return space, out


def _verify(space, path):
    return CliRunner().invoke(cli, ["catalog", "verify", str(path), "--data-dir", str(space.root)])


def test_a_fresh_certificate_verifies(cert_space):
    space, cert = cert_space
    result = _verify(space, cert)
    assert result.exit_code == 0, result.output
    assert "certificate valid" in result.output and DATASET in result.output
    payload = json.loads(cert.read_text())["certificate"]
    assert payload["holder"] == "gbsg" and payload["dataset"] == DATASET
    assert payload["files"][0]["path"] == "holders/gbsg/gbsg2.parquet"
    assert set(payload) >= {"content_hash", "schema_hash", "quality_score", "issued_at"}


def test_the_build_certified_every_dataset(cert_space):
    space, _ = cert_space
    for dataset_id in Catalog.load(space).datasets:
        certificates.verify(space, space.catalog / "certificates" / f"{dataset_id}.json")


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_one_changed_byte_of_the_data_is_caught(cert_space, data):
    space, cert = cert_space
    path = space.holder_dir("gbsg") / "gbsg2.parquet"
    original = path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(original)
    changed[position] ^= flip
    path.write_bytes(bytes(changed))
    try:
        result = _verify(space, cert)
    finally:
        path.write_bytes(original)
    assert result.exit_code != 0
    assert "NOT valid" in str(result.exception) and "holders/gbsg/gbsg2.parquet differs" in str(
        result.exception)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_one_changed_byte_of_the_certificate_is_caught(cert_space, data, tmp_path_factory):
    space, cert = cert_space
    original = cert.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(original)
    changed[position] ^= flip
    forged = tmp_path_factory.mktemp("forged") / "cert.json"
    forged.write_bytes(bytes(changed))
    result = _verify(space, forged)
    assert result.exit_code != 0
    assert isinstance(result.exception, WorkbenchUserError), result.exception
    assert "NOT valid" in str(result.exception)


@pytest.mark.parametrize("newline", [b"\r", b"\r\n"])
def test_a_newline_rewritten_as_carriage_return_is_caught(cert_space, tmp_path, newline):
    """Found by the byte-flip property above: "\n" xor 7 is "\r", which universal-newline
    reading would have turned back into "\n"."""
    space, cert = cert_space
    forged = tmp_path / "cert.json"
    forged.write_bytes(cert.read_bytes().replace(b"\n", newline, 1))
    result = _verify(space, forged)
    assert result.exit_code != 0 and "canonical form" in str(result.exception)


def test_a_certificate_from_another_space_is_refused(cert_space, open_tmp):
    space, cert = cert_space
    other = init_space(open_tmp / "other", patients=0, echo=lambda _l: None)
    result = _verify(other, cert)
    assert result.exit_code != 0 and "not signed by this space's key" in str(result.exception)


def test_a_changed_catalog_schema_is_caught(cert_space):
    space, cert = cert_space
    entry = space.catalog / "datasets" / f"{DATASET}.json"
    original = entry.read_text()
    entry.write_text(original.replace('"sensitivity": "sensitive"', '"sensitivity": "general"'))
    try:
        result = _verify(space, cert)
    finally:
        entry.write_text(original)
    assert result.exit_code != 0 and "schema" in str(result.exception)


def test_a_re_signed_certificate_with_another_key_is_refused(cert_space):
    """An attacker who edits the payload and re-signs with their own key is caught."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    space, cert = cert_space
    document = json.loads(cert.read_text())
    document["certificate"]["quality_score"] = 1.0
    attacker = Ed25519PrivateKey.generate()
    document["signature"]["value"] = base64.b64encode(
        attacker.sign(certificates.canonical(document["certificate"]))).decode()
    forged = cert.parent / "resigned.json"
    certificates.write(forged, document)
    result = _verify(space, forged)
    assert result.exit_code != 0 and "signature does not match" in str(result.exception)


def test_certify_and_verify_explain_bad_input(cert_space):
    space, _ = cert_space
    runner = CliRunner()
    result = runner.invoke(cli, ["catalog", "certify", "nope.nothing", "--out", "/tmp/x.json",
                                 "--data-dir", str(space.root)])
    assert result.exit_code != 0 and "no dataset 'nope.nothing'" in str(result.exception)
    result = _verify(space, space.root / "missing.json")
    assert result.exit_code != 0 and "no such certificate file" in str(result.exception)


def test_the_command_line_exits_non_zero_with_one_clear_line(cert_space, tmp_path):
    """Through the real entry point: exit code and message, no traceback."""
    import subprocess
    import sys

    space, cert = cert_space
    forged = tmp_path / "c.json"
    forged.write_text(cert.read_text().replace('"holder": "gbsg"', '"holder": "gbsh"'))
    run = [sys.executable, "-c", "from workbench.cli import main; main()", "catalog", "verify",
           "--data-dir", str(space.root)]
    good = subprocess.run([*run, str(cert)], capture_output=True, text=True)
    bad = subprocess.run([*run, str(forged)], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "certificate NOT valid" in bad.stderr


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("\n  ", "\n\t", 1),                  # whitespace only
    lambda text: json.dumps(json.loads(text)),                      # same JSON, other layout
    lambda text: text + " ",                                        # trailing byte
])
def test_a_certificate_in_another_layout_is_refused(cert_space, tmp_path, edit):
    """Every byte counts, also those JSON would ignore."""
    space, cert = cert_space
    forged = tmp_path / "layout.json"
    forged.write_text(edit(cert.read_text()))
    result = _verify(space, forged)
    assert result.exit_code != 0 and "canonical form" in str(result.exception)


def test_certify_refuses_data_changed_after_release(public_only_space, tmp_path):
    path = public_only_space.holder_dir("gbsg") / "gbsg2.parquet"
    path.write_bytes(path.read_bytes() + b"\0")
    result = CliRunner().invoke(cli, ["catalog", "certify", DATASET, "--out",
                                      str(tmp_path / "c.json"), "--data-dir",
                                      str(public_only_space.root)])
    assert result.exit_code != 0 and "changed after release" in str(result.exception)
    assert not (tmp_path / "c.json").exists()


def test_every_catalog_command_is_documented():
    from pathlib import Path

    from workbench.catalog.cli import catalog

    doc = (Path(__file__).parents[2] / "docs" / "catalog.md").read_text()
    for name in catalog.commands:
        assert f"workbench catalog {name}" in doc, name


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _slack(value):
    """The same signature bytes in other base64 text: flip an unused low bit of the last digit."""
    last = B64[B64.index(value[-3]) ^ 1]
    forged = value[:-3] + last + "=="
    assert base64.b64decode(forged) == base64.b64decode(value) and forged != value
    return forged


@pytest.mark.parametrize("edit", [
    lambda d: d["signature"].update(algorithm="Ed25518"),
    lambda d: d["signature"].update(note="x"),
    lambda d: d.update(extra=1),
    # the last base64 digit of a 64-byte signature carries 4 unused bits: same bytes, new text
    lambda d: d["signature"].update(value=_slack(d["signature"]["value"])),
])
def test_the_unsigned_envelope_cannot_vary_either(cert_space, tmp_path, edit):
    space, cert = cert_space
    document = json.loads(cert.read_text())
    edit(document)
    forged = tmp_path / "envelope.json"
    certificates.write(forged, document)
    result = _verify(space, forged)
    assert result.exit_code != 0 and "NOT valid" in str(result.exception)


def test_certificate_byte_flips_exhaustively_over_the_signature_block(cert_space, tmp_path):
    """Every byte from the signature block on, each flipped by 1 (where base64 slack lives)."""
    space, cert = cert_space
    original = cert.read_bytes()
    start = original.index(b'"signature"')
    forged = tmp_path / "flip.json"
    for position in range(start, len(original)):
        changed = bytearray(original)
        changed[position] ^= 1
        forged.write_bytes(bytes(changed))
        with pytest.raises(WorkbenchUserError):
            certificates.verify(space, forged)
