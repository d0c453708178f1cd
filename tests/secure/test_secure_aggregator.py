"""The aggregator as its own process and uid, and signed holder contributions. Plays a malicious
aggregator (it holds the public key, so it can encrypt anything): adding a fabricated contribution,
replaying a round, passing one holder's signature off as another's; checks what the aggregator's
uid can read, the service path through the real aggregator and key holder processes, and the
supervisor starting ``workbench aggregator``."""

from __future__ import annotations

import base64
import pwd
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench import accounts
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.paths import Space
from workbench.secure import Federation, ops, results
from workbench.secure.aggregator import AggregatorClient
from workbench.secure.keys import load_public
from workbench.secure.nodes import Aggregator, Encrypted, HolderNode, encrypt_vector
from workbench.secure.release import ReleaseRefused
from workbench.secure.service import run_secure_op
from workbench.secure.signing import Signer, load_signers, new_nonce

from .conftest import (
    aggregator_round,
    provenance_records,
    run_as,
    signed_round,
    split_round_robin,
)

pytestmark = pytest.mark.slow
COUNT = {"by": []}


def _fabricated(keys, kind: str = "counts", spec: dict = COUNT, name: str = "mallory"):
    """What an aggregator can make with the public key: 20 made-up rows that count themselves as
    one more holder."""
    frame = pd.DataFrame({"week": np.arange(1, 21), "arrest": np.zeros(20, dtype=int)})
    vectors = ops.holder_vectors(kind, spec, frame)
    blobs = encrypt_vector(keys, vectors["bfv"])
    return Encrypted(kind, keys.fingerprint, blobs, [name])


def _decryptions(space, request_id: str) -> list[dict]:
    return [r["fields"] for r in provenance_records(space, "he-decryption")
            if r["fields"].get("request_id") == request_id]


def test_a_fabricated_contribution_added_by_the_aggregator_is_refused(he_space, rossi):
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    parts = split_round_robin(rossi)
    two = {h: parts[h] for h in ("hospital", "insurer")}
    header, _, honest = signed_round(space, two, "counts", COUNT)
    tampered = Aggregator(keys).combine([*honest, _fabricated(keys)])
    header["context"] = {"study": "recidivism", "request_id": "fab-added"}
    with pytest.raises(WorkbenchUserError) as err:  # forwarded with the honest signatures only
        client.request(header, tampered.blobs)
    # its MAC slot is 0, but the holders' MACs bind the counts it shifts (mac.py)
    assert err.value.reason == "mac-mismatch"
    (record,) = _decryptions(space, "fab-added")
    assert record["decision"] == "refused" and record["reason"] == "mac-mismatch"
    assert {"name": "holder-macs", "status": "fail"} in record["rules"]

    # one honest holder plus the fabrication: the only way to pass min-holders is the fake's
    # count, and an unsigned holder does not count; nothing is decrypted
    header, _, (alone,) = signed_round(space, {"hospital": parts["hospital"]}, "counts", COUNT)
    tampered = Aggregator(keys).combine([alone, _fabricated(keys)])
    with pytest.raises(ReleaseRefused) as refused:
        client.request(header, tampered.blobs)
    assert refused.value.rule == "min-holders"

    # claiming the fake as a registered holder without its signature
    header, _, honest = signed_round(space, two, "counts", COUNT)
    tampered = Aggregator(keys).combine([*honest, _fabricated(keys, name="pharma")])
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header | {"contributors": tampered.contributors}, tampered.blobs)
    assert err.value.reason == "unsigned-contribution"

    # ... or with a made-up signature in a well-formed envelope
    header, _, honest = signed_round(space, two, "counts", COUNT)
    forged = dict(header["signatures"][0], holder="pharma",
                  signature=base64.b64encode(bytes(64)).decode())
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header | {"contributors": tampered.contributors,
                                 "signatures": [*header["signatures"], forged]}, tampered.blobs)
    assert err.value.reason == "bad-signature"

    # a holder the space never registered
    header, _, honest = signed_round(space, two, "counts", COUNT)
    unknown = dict(header["signatures"][0], holder="mallory")
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header | {"contributors": [*header["contributors"], "mallory"],
                                 "signatures": [*header["signatures"], unknown]},
                       tampered.blobs)
    assert err.value.reason == "unsigned-contribution" and "no registered" in str(err.value)


def test_the_aggregator_process_refuses_unsigned_or_altered_parts(he_space, rossi):
    space, _, keyholder = he_space
    aggregator, keys = keyholder.aggregator.client(), load_public(space)
    round_, honest = aggregator_round(space, split_round_robin(rossi), "counts", COUNT)
    with pytest.raises(WorkbenchUserError) as err:
        aggregator.submit(round_, [*honest, _fabricated(keys)])
    assert err.value.reason == "unsigned-contribution"
    swapped = Encrypted("counts", keys.fingerprint, honest[1].blobs, ["hospital"],
                        honest[0].envelope)  # insurer's ciphertexts, hospital's seal
    with pytest.raises(WorkbenchUserError) as err:
        aggregator.submit(round_, [swapped, *honest[1:]])
    assert err.value.reason == "bad-signature"
    result = aggregator.submit(round_, honest)  # the honest round still goes through, once
    assert result["counts"] == [len(rossi)]


def test_malformed_aggregate_requests_get_a_clear_error(he_space):
    _, _, keyholder = he_space
    client = keyholder.aggregator.client()
    part = {"holder": "hospital", "per_scheme": {"bfv": 1}, "blobs": 1, "envelope": None}
    for header, fragment in [
            ({"type": "decrypt-release"}, "unknown request type"),  # it decrypts nothing
            ({"type": "aggregate", "round": {}, "parts": []}, "needs a round"),
            ({"type": "aggregate", "round": {"kind": "counts"}, "parts": [{"holder": "x"}]},
             "each part is"),
            ({"type": "aggregate", "round": {"kind": "counts"},
              "parts": [part | {"per_scheme": {"bfv": 2}}]}, "does not add up"),
            ({"type": "aggregate", "round": {"kind": "counts"}, "parts": [part]},
             "0 ciphertexts sent, the parts declare 1")]:
        with pytest.raises(WorkbenchUserError) as err:
            client.request(header)
        assert err.value.reason == "malformed-message" and fragment in str(err.value), header


def test_a_replayed_round_is_refused(he_space, rossi):
    space, _, keyholder = he_space
    client = keyholder.client()
    parts = split_round_robin(rossi)
    header, pooled, _ = signed_round(space, parts, "counts", COUNT)
    header["context"] = {"study": "recidivism", "request_id": "replay"}
    assert client.request(header, pooled.blobs)["counts"] == [len(rossi)]
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs)
    assert err.value.reason == "replayed-round" and "already used" in str(err.value)
    assert [r["decision"] for r in _decryptions(space, "replay")] == ["decrypted", "refused"]

    # through the aggregator process: the same frame twice
    round_, honest = aggregator_round(space, parts, "counts", COUNT)
    aggregator = keyholder.aggregator.client()
    aggregator.submit(round_, honest)
    with pytest.raises(WorkbenchUserError) as err:
        aggregator.submit(round_, honest)
    assert err.value.reason == "replayed-round"

    # a properly signed round whose nonce was issued an hour ago (e.g. before a restart)
    old = f"{time.time_ns() // 1_000_000 - 3_600_000:013d}-{'ab' * 16}"
    keys, signers = load_public(space), load_signers(space, parts)
    stale = [HolderNode(h, f, keys, signers[h]).contribute("counts", COUNT, old)
             for h, f in parts.items()]
    with pytest.raises(WorkbenchUserError) as err:
        aggregator.submit(round_ | {"nonce": old}, stale)
    assert err.value.reason == "replayed-round" and "stale" in str(err.value)


def test_one_holders_signature_passed_off_as_anothers_is_refused(he_space, rossi):
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    parts = split_round_robin(rossi)
    signers = load_signers(space, parts)
    nonce = new_nonce()
    contributions = [
        HolderNode("hospital", parts["hospital"], keys, signers["hospital"])
        .contribute("counts", COUNT, nonce),
        # the insurer's name on a contribution signed with the hospital's key
        HolderNode("insurer", parts["insurer"], keys, Signer("insurer", signers["hospital"].key,
                                                          signers["insurer"].mac_key,
                                                          signers["insurer"].weight_key))
        .contribute("counts", COUNT, nonce)]
    pooled = Aggregator(keys).combine(contributions)
    header = {"type": "decrypt-release", "kind": "counts", "op": "count", "spec": COUNT,
              "thresholds": {}, "contributors": pooled.contributors,
              "fingerprint": keys.fingerprint, "context": {"study": "recidivism"},
              "nonce": nonce, "signatures": [c.envelope for c in contributions]}
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs)
    assert err.value.reason == "bad-signature" and "'insurer'" in str(err.value)

    # a genuine signature of the insurer, but from another round
    other, _, _ = signed_round(space, parts, "counts", COUNT)
    header, pooled, _ = signed_round(space, parts, "counts", COUNT)
    header["signatures"][1] = other["signatures"][1]
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs)
    assert err.value.reason == "bad-signature" and "another round" in str(err.value)


def test_the_aggregator_runs_as_its_own_uid_and_cannot_read_keys(he_space):
    space, _, keyholder = he_space
    aggregator = keyholder.aggregator
    uid, gid = accounts.ensure_user(accounts.AGGREGATOR)
    status = Path(f"/proc/{aggregator.pid}/status").read_text()
    assert set(status.split("Uid:")[1].split("\n")[0].split()) == {str(uid)}
    assert set(status.split("Gid:")[1].split("\n")[0].split()) == {str(gid)}
    assert status.split("Groups:")[1].split("\n")[0].split() == []
    sock = space.aggregator_socket.stat()
    assert sock.st_mode & 0o777 == 0o660 and sock.st_uid == uid
    assert sock.st_gid == accounts.ensure_user(accounts.GATEWAY)[1]
    share, holder_key = space.he / "key-shares" / "insurer.key", space.holder_keys / "hospital.key"
    for path in (share, space.he / "checker-box.key", holder_key):
        out = run_as(accounts.AGGREGATOR, f"open({str(path)!r}, 'rb').read()")
        assert out.returncode != 0 and "PermissionError" in out.stderr, path
    public = run_as(accounts.AGGREGATOR, f"print(len(open({str(space.he / 'public.ctx')!r}, "
                                      "'rb').read()))")
    assert public.returncode == 0, public.stderr
    nobody = subprocess.run(
        [sys.executable, "-c", "import socket; s = socket.socket(socket.AF_UNIX); "
                               f"s.connect({str(space.aggregator_socket)!r})"],
        user="nobody", group="nogroup", extra_groups=[], capture_output=True, text=True,
        timeout=60)
    assert nobody.returncode != 0 and "PermissionError" in nobody.stderr
    # the registry of holder public keys is public; only root may change it
    registry = space.holder_registry.stat()
    assert registry.st_mode & 0o777 == 0o644 and registry.st_uid == 0


def test_the_service_path_through_the_aggregator_equals_the_in_process_federation(
        he_space, rossi):
    space, collector, _ = he_space
    parts = split_round_robin(rossi)
    params = {"duration_col": "week", "event_col": "arrest", "covariates": ["fin", "age", "prio"]}
    context = {"study": "recidivism", "request_id": "agg-cox"}
    payload = run_secure_op("cox_ph", parts, params, {"min_cell_count": 10}, collector.client(),
                            context)
    remote = results.build(payload)
    local = Federation(parts, min_cell_count=10).cox_ph(**params)
    assert np.abs(remote.params_ - local.params_).max() <= 1e-9
    records = _decryptions(space, "agg-cox")
    assert len(records) == payload["meta"]["rounds"]
    assert all(r["decision"] == "decrypted" and
               {"name": "holder-signatures", "status": "pass"} in r["rules"] for r in records)


def test_no_aggregator_means_no_secure_result(open_tmp, rossi):
    from workbench.provenance.service import start_collector
    from workbench.secure.keys import create_keys
    from workbench.secure.process import start_keyholder
    from workbench.secure.signing import create_holder_keys

    space = Space(open_tmp)
    create_holder_keys(space, split_round_robin(rossi))
    create_keys(space)
    with start_collector(space) as collector, start_keyholder(space):
        with pytest.raises(WorkbenchError) as err:
            run_secure_op("count", split_round_robin(rossi), {}, {}, collector.client(),
                          {"study": "recidivism"})
        assert "workbench aggregator" in str(err.value)


def test_the_supervisor_starts_the_aggregator_after_the_key_holder(open_tmp):
    from workbench.cli import cli
    from workbench.secure.keys import create_keys
    from workbench.services import SERVICES, socket_answers, space_services

    assert cli.get_command(None, "aggregator").name == "aggregator"
    labels = [s.label for s in SERVICES]
    assert labels.index("aggregator") == labels.index("key holder") + 1
    space = Space(open_tmp)
    from workbench.secure.signing import create_holder_keys

    create_holder_keys(space, ["hospital", "insurer"])
    create_keys(space)
    policy = open_tmp / "policy.yaml"
    policy.write_text("users: {}\nstudies: {}\n")
    chosen = tuple(s for s in SERVICES
                   if s.label in ("provenance collector", "key holder", "aggregator"))
    lines: list[str] = []
    with space_services(space, policy, echo=lines.append, services=chosen) as started:
        assert started == ["provenance collector", "key holder", "aggregator"]
        assert any(line.startswith("  aggregator: started (pid ") for line in lines)
        assert AggregatorClient(space.aggregator_socket).fingerprint == \
            load_public(space).fingerprint
    assert not socket_answers(space.aggregator_socket)
    assert pwd.getpwnam(accounts.AGGREGATOR).pw_shell == "/usr/sbin/nologin"


def test_a_damaged_holder_signing_key_is_named(open_tmp):
    """A holder's key file cut short is a clear error naming the file, not a traceback."""
    from workbench.secure.signing import create_holder_keys

    space = Space(open_tmp)
    create_holder_keys(space, ["hospital", "insurer"])
    key_file = space.holder_keys / "insurer.key"
    key_file.write_bytes(key_file.read_bytes()[:31])
    assert len(load_signers(space, ["hospital"])["hospital"].public_raw) == 32
    with pytest.raises(WorkbenchUserError) as err:
        load_signers(space, ["hospital", "insurer"])
    assert err.value.reason == "bad-key" and str(key_file) in str(err.value)


def test_the_nonce_guard_forgets_only_what_left_its_window(monkeypatch):
    """Each nonce is accepted once; the guard drops nonces older than its window (oldest first,
    so a busy key holder does not re-scan every round it remembers), and those stay refused as
    stale."""
    from workbench.secure import signing

    clock = [time.time_ns()]
    monkeypatch.setattr(signing.time, "time_ns", lambda: clock[0])
    guard = signing.NonceGuard(window_ms=1000)
    early = [signing.new_nonce() for _ in range(3)]
    for nonce in early:
        guard.accept(nonce)
    with pytest.raises(WorkbenchUserError) as err:
        guard.accept(early[1])
    assert err.value.reason == "replayed-round"
    clock[0] += 600 * 1_000_000
    later = signing.new_nonce()
    guard.accept(later)
    assert len(guard._seen) == 4
    clock[0] += 600 * 1_000_000  # the first three are 1.2 s old now, the last 0.6 s
    guard.accept(signing.new_nonce())
    assert list(guard._seen)[0] == later and len(guard._seen) == 2
    for nonce in (early[0], later):
        with pytest.raises(WorkbenchUserError) as err:
            guard.accept(nonce)
        assert err.value.reason == "replayed-round"
