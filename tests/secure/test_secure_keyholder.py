"""The key holder as a separate process and uid: key file permissions, the socket, the wire
protocol's errors, provenance of every decryption, fail-closed behaviour."""

from __future__ import annotations

import pwd
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.secure import Federation, attest, wire
from workbench.secure.keys import PublicKeys, load_public
from workbench.secure.nodes import Aggregator
from workbench.secure.release import ReleaseRefused

from .conftest import (
    HOLDERS,
    in_process_checker,
    provenance_records,
    run_as,
    signed_round,
    split_round_robin,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _as_nobody(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], user="nobody", group="nogroup",
                          extra_groups=[], capture_output=True, text=True, timeout=60)


def _as_gateway(code: str) -> subprocess.CompletedProcess:
    uid, gid = accounts.ensure_user(accounts.GATEWAY)
    return subprocess.run([sys.executable, "-c", code], user=uid, group=gid, extra_groups=[],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_no_account_holds_the_whole_key_and_each_reads_only_its_part(he_space):
    """A space without nodes: its HE key is a joint key of simulated key parties whose shares
    only the gateway account (which plays the holders) reads; the release checker holds no
    secret key, only the box key the partials are sealed to; no single-key file exists."""
    from workbench.secure.threshold_node import BOX_KEY

    space, _, _ = he_space
    public, box, shares = space.he / "public.ctx", space.he / BOX_KEY, space.he / "key-shares"
    assert not (space.he / "secret.ctx").exists()
    assert oct(public.stat().st_mode & 0o777) == "0o644"
    keys = load_public(space)
    assert not keys.bfv.has_secret_key() and not keys.bfv.has_relin_keys()
    assert keys.threshold["simulated"] == "space" and keys.threshold["t"] == 2
    assert keys.threshold["parties"] == ["insurer", "pharma"]  # the member organisations
    assert len(public.read_bytes()) < 500_000
    gateway_uid = pwd.getpwnam(accounts.GATEWAY).pw_uid
    assert shares.stat().st_mode & 0o777 == 0o700 and shares.stat().st_uid == gateway_uid
    files = sorted(shares.iterdir())
    assert [f.name for f in files] == ["insurer.key", "pharma.key"]
    assert all(f.stat().st_mode & 0o777 == 0o600 and f.stat().st_uid == gateway_uid
               for f in files)
    assert box.stat().st_mode & 0o777 == 0o600
    assert box.stat().st_uid == pwd.getpwnam(accounts.KEYHOLDER).pw_uid
    for path in (files[0], box):
        other = _as_nobody(f"open({str(path)!r}, 'rb').read()")
        assert other.returncode != 0 and "PermissionError" in other.stderr
    readable = _as_nobody(f"print(len(open({str(public)!r}, 'rb').read()))")
    assert readable.returncode == 0, readable.stderr
    gateway = _as_gateway(f"open({str(box)!r}, 'rb').read()")  # the service next door
    assert gateway.returncode != 0 and "PermissionError" in gateway.stderr
    checker = run_as(accounts.KEYHOLDER, f"open({str(files[0])!r}, 'rb').read()")
    assert checker.returncode != 0 and "PermissionError" in checker.stderr


def test_keyholder_process_runs_as_its_own_uid_behind_a_closed_socket(he_space):
    space, _, keyholder = he_space
    status = open(f"/proc/{keyholder.pid}/status").read()
    uids = status.split("Uid:")[1].split("\n")[0].split()
    assert set(uids) == {str(pwd.getpwnam(accounts.KEYHOLDER).pw_uid)}
    mode = space.keyholder_socket.stat().st_mode & 0o777
    assert mode == 0o660
    probe = _as_nobody(
        "import socket; s = socket.socket(socket.AF_UNIX); "
        f"s.connect({str(space.keyholder_socket)!r})")
    assert probe.returncode != 0 and "PermissionError" in probe.stderr
    # only the aggregator may ask for decryptions; the gateway goes through it
    gateway = _as_gateway(
        "from workbench.secure.keyholder import KeyHolderClient; "
        f"print(KeyHolderClient({str(space.keyholder_socket)!r}).fingerprint)")
    assert gateway.returncode != 0 and "may not connect to the key holder" in gateway.stderr
    via_aggregator = _as_gateway(
        "from workbench.secure.aggregator import AggregatorClient; "
        f"print(AggregatorClient({str(space.aggregator_socket)!r}).fingerprint)")
    assert via_aggregator.returncode == 0, via_aggregator.stderr
    assert via_aggregator.stdout.strip() == load_public(space).fingerprint


def test_federation_through_the_process_and_its_provenance(he_space, rossi):
    space, _, keyholder = he_space
    context = {"study": "recidivism", "request_id": "req-km-1", "user": "alice"}
    fed = Federation(split_round_robin(rossi), min_cell_count=10, keyholder=keyholder.client(),
                     public_keys=load_public(space), context=context)
    local = Federation(split_round_robin(rossi), min_cell_count=10)
    remote_km = fed.kaplan_meier(duration_col="week", event_col="arrest")
    local_km = local.kaplan_meier(duration_col="week", event_col="arrest")
    assert np.abs(remote_km.survival_function_.to_numpy()
                  - local_km.survival_function_.to_numpy()).max() <= 1e-15
    records = [r for r in provenance_records(space, "he-decryption")
               if r["fields"].get("request_id") == "req-km-1"]
    assert len(records) == 1
    fields = records[0]["fields"]
    assert fields["decision"] == "decrypted" and fields["study"] == "recidivism"
    assert fields["op"] == "kaplan_meier" and fields["scheme"] == "bfv"
    assert len(fields["result_sha256"]) == 64


def test_refusals_cross_the_process_with_their_rule_and_are_recorded(he_space, rossi):
    space, _, keyholder = he_space
    df = rossi.copy()
    df["tiny"] = "big"
    df.loc[:2, "tiny"] = "small"  # a cell of 3, below the key holder's floor of 5
    fed = Federation(split_round_robin(df), min_cell_count=1, keyholder=keyholder.client(),
                     public_keys=load_public(space),
                     context={"study": "recidivism", "request_id": "req-small"})
    with pytest.raises(ReleaseRefused) as err:
        fed.count(by="tiny")  # the request asked for 1: the key holder's floor still applies
    assert err.value.rule == "min-cell-count" and "fewer than 5 people" in str(err.value)
    (record,) = [r for r in provenance_records(space, "he-decryption")
                 if r["fields"].get("request_id") == "req-small"]
    assert record["fields"]["decision"] == "refused"
    assert record["fields"]["reason"] == "min-cell-count"


def test_model_rounds_release_only_pooled_derivatives(he_space, rossi):
    space, _, keyholder = he_space
    keys = load_public(space)
    parts = split_round_robin(rossi)
    spec = {"duration_col": "week", "event_col": "arrest", "resolution": 1.0, "n_bins": 53,
            "by": [], "covariates": ["age", "prio"], "center": [0.0, 0.0], "beta": [0.0, 0.0]}
    header, pooled, _ = signed_round(space, parts, "cox", spec, op="cox_ph", keys=keys)
    released = keyholder.client().request(header, pooled.blobs)
    attestation = released.pop("attestation")  # the release checker's signature (attest.py)
    assert attest.verify(attestation, attest.load_verify_key(space))["result"] == released
    assert set(released) == {"loglik", "gradient", "hessian", "n", "events", "covariate_means"}
    assert released["n"] == len(rossi)


def _request(space, parts, keys=None, **changes):
    """A freshly signed count round (each nonce is accepted once), then ``changes``."""
    header, pooled, _ = signed_round(space, parts, "counts", {"by": []}, keys=keys)
    return header | changes, pooled


def test_ciphertexts_from_another_context_get_a_clear_error(he_space, rossi):
    space, _, keyholder = he_space
    client = keyholder.client()
    foreign = in_process_checker(HOLDERS)[1]  # another joint key
    parts = split_round_robin(rossi)
    header, pooled = _request(space, parts, keys=foreign)
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs)
    assert err.value.reason == "wrong-context" and "another public context" in str(err.value)
    # the same ciphertexts claiming the space's fingerprint (and signed so): caught after
    # decryption, by the MAC slots (what decrypts under the wrong key is noise)
    forged = PublicKeys(foreign.bfv_bytes, load_public(space).fingerprint)
    header, pooled = _request(space, parts, keys=forged)
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs)
    assert err.value.reason == "mac-mismatch"
    # and the aggregator refuses to mix contexts at all
    _, _, (mine, *_) = signed_round(space, parts, "counts", {"by": []})
    _, _, (_, theirs, *_) = signed_round(space, parts, "counts", {"by": []}, keys=foreign)
    with pytest.raises(WorkbenchUserError) as err:
        Aggregator(load_public(space)).combine([mine, theirs])
    assert err.value.reason == "wrong-context"


def test_malformed_messages_get_a_clear_error(he_space, rossi):
    space, _, keyholder = he_space
    client = keyholder.client()
    with pytest.raises(WorkbenchUserError) as err:
        client.raw(b"GET / HTTP/1.1\r\n\r\n")
    assert err.value.reason == "malformed-message" and "magic" in str(err.value)
    with pytest.raises(WorkbenchUserError) as err:
        client.raw(b"WBHE\x01\x00\x00\x00\x05{nope\x00\x00\x00\x00")
    assert err.value.reason == "malformed-message" and "JSON" in str(err.value)
    with socket.socket(socket.AF_UNIX) as sock:  # a frame cut short by the sender
        sock.connect(str(space.keyholder_socket))
        sock.sendall(wire.encode({"type": "ping"}, [b"abc"])[:-2])
        sock.shutdown(socket.SHUT_WR)
        reply, _ = wire.recv(sock)
    assert reply["error"]["reason"] == "malformed-message"
    parts = split_round_robin(rossi)
    header, _ = _request(space, parts)
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, [b"\x00" * 100])
    assert err.value.reason == "malformed-ciphertext"
    header, pooled = _request(space, parts)
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs * 2)
    assert err.value.reason == "malformed-message"
    header, pooled = _request(space, parts, op="exfiltrate")
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs)
    assert err.value.reason == "malformed-message"
    header, pooled = _request(space, parts, kind="survival", op="kaplan_meier")
    with pytest.raises(WorkbenchUserError) as err:  # the signatures are for a counts round
        client.request(header, pooled.blobs)
    assert err.value.reason == "bad-signature"
    header, pooled, _ = signed_round(space, parts, "counts", {"by": []})
    header["spec"] = {"by": [{"column": "fin", "levels": ["0", "1"]}]}
    with pytest.raises(WorkbenchUserError) as err:  # a spec the holders did not sign
        client.request(header, pooled.blobs)
    assert err.value.reason == "bad-signature"
    with pytest.raises(ReleaseRefused) as err:  # one holder's ciphertext, alone
        header, single = _request(space, {"hospital": rossi})
        client.request(header, single.blobs)
    assert err.value.rule == "min-holders"


def test_wire_frames_roundtrip_and_bounds():
    frame = wire.encode({"a": 1}, [b"xyz", b""])
    assert wire.decode(frame) == ({"a": 1}, [b"xyz", b""])
    for bad in (frame[:-1], frame + b"!", b"WBHE\x02" + frame[5:], b"WBHE\x01\xff\xff\xff\xff"):
        with pytest.raises(wire.WireError):
            wire.decode(bad)
    with pytest.raises(wire.WireError):
        wire.decode(wire.encode({"a": 1})[:9] + b"[1]" + b"\x00\x00\x00\x00")


def test_no_collector_means_no_decryption(open_tmp, rossi):
    from workbench.secure.keys import create_keys
    from workbench.secure.process import start_keyholder
    from workbench.secure.signing import create_holder_keys

    space = Space(open_tmp)
    create_holder_keys(space, split_round_robin(rossi))
    create_keys(space)
    with start_keyholder(space) as keyholder:
        fed = Federation(split_round_robin(rossi), keyholder=keyholder.client(),
                         public_keys=load_public(space), context={"study": "recidivism"})
        with pytest.raises(WorkbenchError) as err:
            fed.count()
        assert "provenance" in str(err.value)
        assert not isinstance(err.value, ReleaseRefused)
