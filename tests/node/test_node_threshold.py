"""Threshold decryption through the holder nodes (issue 17): the space's BFV key is the nodes'
joint key, made without a dealer over their mTLS channels; every round's BFV sum is decrypted
from every node's partial, sealed to the release checker; no process or file holds the whole key.

Three nodes (hospital-a, hospital-b, insurer-b), a study with min_holders 3. The refusals are
asked of a real node over real TLS with real signed contributions of a fresh round, as a
coordinator that wants more than a pooled sum would ask. The joint secret sum s_i is formed only
in ``_oracle_joint_secret`` (a test oracle, as in tests/secure/test_threshold.py): to show the
search for it is not vacuous (it decrypts) and that no file holds it."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import uuid

import numpy as np
import pytest
import tenseal as ts
from lifelines import CoxPHFitter, KaplanMeierFitter

from tests.node.conftest import (
    POLICY,
    STUDY,
    pooled_rows,
    run_as_kernel,
    running_node_space,
)
from tests.secure.test_threshold import _oracle_noise
from workbench.node.client import NodeError, NodeSet
from workbench.node.coordinator import NodeCoordinator
from workbench.node.keygen import ensure_joint_key
from workbench.secure import threshold as th
from workbench.secure import threshold_node as tn
from workbench.secure import threshold_seal as sealio
from workbench.secure.keys import load_public
from workbench.secure.nodes import Contributions
from workbench.secure.signing import new_nonce
from workbench.views import ViewEngine

HOLDERS = ("hospital-a", "hospital-b", "insurer-b")
THRESHOLD_POLICY = POLICY.replace("thresholds: {min_cell_count: 10}",
                                  "thresholds: {min_cell_count: 10, min_holders: 3}")
THRESHOLDS = {"min_cell_count": 10, "min_holders": 3}
KM_SPEC = {"duration_col": "days", "resolution": 1.0, "n_bins": 1501, "event_col": "event",
           "by": []}


@pytest.fixture(scope="module")
def joint_space():
    assert THRESHOLD_POLICY != POLICY
    with running_node_space("wb-node-th-", rows=900, holders=HOLDERS,
                            policy=THRESHOLD_POLICY) as made:
        made.after_keygen = _whole_key_found(made.space)
        yield made


def _oracle_joint_secret(space) -> np.ndarray:
    """TEST ORACLE ONLY: the joint secret sum s_i, read as root from every node's share file;
    the protocol never forms it."""
    shares = [th.Party.from_share_bytes(
        (space.node_dir(h) / "threshold" / "share.key").read_bytes()).share for h in HOLDERS]
    return np.sum(shares, axis=0)


def _encodings(secret: np.ndarray) -> list[bytes]:
    """Ways a whole key could be written: ternary bytes, residues (u4, u8), lifted mod t, and
    SEAL's own NTT form (the first prime's words, as a SecretKey file holds them)."""
    sealapi, _parms, ctx = th._seal()
    polys = np.stack([secret % th._PRIMES, secret % th._PRIMES]).astype(np.uint64)
    ct = sealio.load(sealapi.Ciphertext(), ctx, sealio.ciphertext_bytes(th._ids()[0], polys,
                                                                         ntt=False))
    sealapi.Evaluator(ctx).transform_to_ntt_inplace(ct)
    ntt = sealio.residues(sealio.save(ct), (2, len(th.DATA_PRIMES), th.POLY_DEGREE))[1][0]
    return [secret.astype(np.int8).tobytes(),
            (secret % th._PRIMES).astype("<u4").tobytes()[:4096],
            (secret % th._PRIMES).astype("<u8").tobytes()[:4096],
            np.where(secret < 0, th.PLAIN_MODULUS + secret, secret).astype("<u8").tobytes()[:4096],
            ntt[0].astype("<u8").tobytes()[:4096], ntt[0].astype("<u4").tobytes()[:4096]]


def _whole_key_found(space, secret: np.ndarray | None = None) -> list[str]:
    """Every file of the space and of every node's state (as root) that holds the joint key
    (``secret``, by default the additive shares' sum); first checks, with a fresh encryption,
    that the oracle's key really is the joint key."""
    secret = _oracle_joint_secret(space) if secret is None else secret
    joint = load_public(space)
    vector = ts.bfv_vector(ts.context_from(joint.bfv_bytes), [7] * 10)
    [ciphertext] = th.seal_ciphertexts(joint.bfv_bytes, vector.serialize())
    assert _oracle_noise(ciphertext, secret).max() < th.noise_bound()  # s decrypts: a real key
    needles = _encodings(secret)
    # the positive control: the search finds the key in a SEAL SecretKey file (zstd inside)
    assert _holds(_seal_secret_key(secret), needles)
    found = []
    for path in space.root.rglob("*"):
        if path.is_file() and not path.is_symlink() and not path.is_socket():
            if _holds(path.read_bytes(), needles):
                found.append(str(path))
    return found


def _seal_secret_key(secret: np.ndarray) -> bytes:
    """TEST ORACLE ONLY: the joint secret as SEAL would save a SecretKey (NTT form, zstd)."""
    sealapi, _parms, ctx = th._seal()
    polys = np.stack([secret % th._PRIMES, secret % th._PRIMES]).astype(np.uint64)
    ct = sealio.load(sealapi.Ciphertext(), ctx, sealio.ciphertext_bytes(th._ids()[0], polys,
                                                                         ntt=False))
    sealapi.Evaluator(ctx).transform_to_ntt_inplace(ct)
    ntt = sealio.residues(sealio.save(ct), (2, len(th.DATA_PRIMES), th.POLY_DEGREE))[1][0]
    special = (secret % th.SPECIAL_PRIME)[None, :]  # its residues at the key-level prime
    words = np.concatenate([ntt, special]).astype(np.uint64).ravel()
    key = sealio.load(sealapi.SecretKey(), ctx, sealio.plaintext_bytes(words, th._ids()[1]))
    return b"prefix" + sealio.save(key)


def _holds(data: bytes, needles: list[bytes]) -> bool:
    """Whether ``data``, or any SEAL object inside it once decompressed, holds a needle."""
    import struct

    import zstandard

    texts, start = [data], 0
    while (start := data.find(b"\x5e\xa1\x10", start)) >= 0:  # SEAL's header: magic, size 16
        total = struct.unpack_from("<Q", data, start + 8)[0] if start + 16 <= len(data) else 0
        if data[start + 5] == 2 and 16 < total <= len(data) - start:
            try:
                texts.append(zstandard.ZstdDecompressor().decompressobj().decompress(
                    data[start + 16:start + total]))
            except zstandard.ZstdError:
                pass
        start += 1
    return any(n in text for text in texts for n in needles)


def test_keygen_gives_every_node_its_own_share_and_the_space_a_joint_key(joint_space):
    space, record = joint_space.space, joint_space.record
    assert record["parties"] == list(HOLDERS) and record["scheme"] == "N-out-of-N"
    public = load_public(space)
    assert public.threshold["keygen"] == record["keygen"]
    assert not public.bfv.has_secret_key()
    assert not public.threshold.get("simulated")  # the nodes' own key, not init's
    # no secret key anywhere: no single-key file, and the simulated key of `workbench init`
    # (its shares played by the gateway account) is gone with its shares
    assert not (space.he / "secret.ctx").exists() and not (space.he / "key-shares").exists()
    for holder in HOLDERS:
        share = space.node_dir(holder) / "threshold" / "share.key"
        stat = share.stat()
        assert stat.st_uid == pwd.getpwnam(f"wbh-{holder}").pw_uid
        assert stat.st_mode & 0o777 == 0o600
    assert ensure_joint_key(space, policy_path=joint_space.policy)["keygen"] == record["keygen"]
    assert joint_space.after_keygen == []


def test_no_other_account_reads_a_nodes_share(joint_space):
    space = joint_space.space
    for holder in HOLDERS:
        target = space.node_dir(holder) / "threshold" / "share.key"
        others = ["wb-gateway", "wb-aggregator", "wb-keyholder", "wb-collector",
                  *(f"wbh-{h}" for h in HOLDERS if h != holder)]
        for account in others:
            uid = pwd.getpwnam(account).pw_uid
            result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                     "--clear-groups", "cat", str(target)],
                                    capture_output=True, text=True)
            assert result.returncode != 0 and "Permission denied" in result.stderr, \
                (account, target)
    box = space.he / tn.BOX_KEY  # the checker's key opens partials: the key holder's alone
    assert box.stat().st_uid == pwd.getpwnam("wb-keyholder").pw_uid
    assert box.stat().st_mode & 0o777 == 0o600


def test_km_logrank_and_cox_through_threshold_nodes_equal_the_pooled_fit(joint_space):
    space = joint_space.space
    out = run_as_kernel(space, """
        km = wb.secure.kaplan_meier("visit_survival", duration_col="days", event_col="event")
        lr = wb.secure.logrank_test("visit_survival", "days", "event", group_col="diagnosis")
        cox = wb.secure.cox_ph("visit_survival", "days", "event", covariates=["age"])
        print(json.dumps({
            "times": km.survival_function_.index.tolist(),
            "removed": km.event_table["removed"].tolist(),
            "survival": km.survival_function_["KM_estimate"].tolist(), "holders": km.holders,
            "chi2": float(lr.test_statistic), "coef": float(cox.params_["age"])}))
    """)
    assert out["holders"] == list(HOLDERS)
    df = pooled_rows(space)
    times = np.asarray(out["times"])[np.asarray(out["removed"]) > 0]
    coarse = times[np.searchsorted(times, df["days"].to_numpy(), side="left")]
    ref = KaplanMeierFitter().fit(coarse, df["event"]).survival_function_["KM_estimate"]
    assert np.abs(ref.reindex(out["times"]).to_numpy() - np.asarray(out["survival"])).max() \
        <= 1e-12
    from lifelines.statistics import multivariate_logrank_test

    chi2 = multivariate_logrank_test(df["days"], df["diagnosis"], df["event"]).test_statistic
    assert abs(out["chi2"] - chi2) <= 1e-9 * max(1.0, chi2)
    cph = CoxPHFitter().fit(df[["days", "event", "age"]], "days", "event",
                            fit_options={"precision": 1e-12})
    assert abs(out["coef"] - cph.params_["age"]) <= 1e-6
    # every partial is in provenance (the release checker's record) and in each node's journal
    checks = _decryption_checks(space)
    names = {c["name"] for c in checks}
    assert {f"partial-decryption {h}" for h in HOLDERS} <= names
    for holder in HOLDERS:
        lines = [json.loads(line) for line in
                 (space.node_dir(holder) / "journal.jsonl").read_text().splitlines()]
        assert any(line.get("path") == "/v1/partial" and line.get("partial_of")
                   and line["decision"] == "served" for line in lines)


def _decryption_checks(space) -> list[dict]:
    from workbench.provenance.store import open_store

    store = open_store(space, readonly=True)
    try:
        bodies = [json.loads(body) for _seq, _prev, _hash, body in store.rows()]
    finally:
        store.close()
    return [check for b in bodies if b.get("kind") == "he-decryption"
            for check in b["fields"].get("rules", [])]


def test_no_file_holds_the_whole_key_after_a_study(joint_space):
    run_as_kernel(joint_space.space, """
        print(json.dumps({"n": int(wb.secure.count("visit_survival"))}))
    """)
    assert _whole_key_found(joint_space.space) == []


# -- a coordinator asking for more than a pooled sum ----------------------------------------------
@pytest.fixture()
def coordinator(joint_space):
    space = joint_space.space
    nodes = NodeSet.for_space(space)
    remote = NodeCoordinator(nodes, ViewEngine(space, data=False)).remote(
        STUDY, "visit_survival", None, joint_space.policy, uuid.uuid4().hex)
    yield remote
    nodes.close()


def _round(remote):
    """A fresh round's real signed contributions from every node (no partial asked yet)."""
    nonce, spec = new_nonce(), KM_SPEC | {"thresholds": THRESHOLDS}
    parts, _ = remote.nodes.contribute(remote.request | {"kind": "survival", "spec": spec,
                                                         "nonce": nonce})
    return nonce, spec, sorted(parts, key=lambda p: p.contributors[0])


def _refused(remote, nonce, spec, parts, aggregates=None) -> str:
    body_parts = parts
    with pytest.raises(NodeError) as caught:
        if aggregates is None:
            remote.partials(["hospital-a"], "survival", spec, nonce, body_parts)
        else:
            body = remote.request | {
                "kind": "survival", "spec": spec, "nonce": nonce, "aggregates": aggregates,
                "parts": [{"holder": p.contributors[0], "per_scheme": p.per_scheme,
                           "envelope": p.envelope} for p in parts]}
            remote.nodes.partials(body, [p.blobs[0] for p in parts], ["hospital-a"])
    assert caught.value.holder == "hospital-a"
    return caught.value.reason


def test_a_node_refuses_one_contribution_a_small_sum_another_ciphertext_or_a_replay(
        joint_space, coordinator):
    nonce, spec, parts = _round(coordinator)
    assert len(parts) == 3
    alone = tn.digest(tn.pooled([parts[1].blobs])[0])
    # one holder's contribution alone, asked as its own "sum"
    assert _refused(coordinator, nonce, spec, parts[1:2], [alone]) == "min-holders"
    # a sum of fewer contributions than the study's min_holders (3)
    assert _refused(coordinator, nonce, spec, parts[:2]) == "min-holders"
    # every signed contribution, but a ciphertext that is not their sum (one holder's)
    assert _refused(coordinator, nonce, spec, parts, [alone]) == "not-the-aggregate"
    # a contribution whose ciphertext is not the one its holder signed
    swapped = [parts[0], type(parts[1])(parts[1].kind, parts[1].fingerprint, parts[2].blobs,
                                        parts[1].contributors, parts[1].envelope), parts[2]]
    assert _refused(coordinator, nonce, spec, swapped) == "bad-signature"
    # the honest request is answered once; the same round again is a replay
    [(meta, box)] = coordinator.partials(["hospital-a"], "survival", spec, nonce, parts)
    assert meta["holder"] == "hospital-a" and meta["signers"] == list(HOLDERS)
    assert _refused(coordinator, nonce, spec, parts) == "replayed-round"


def _aggregate(joint_space, remote, nonce, spec, parts, partials):
    from workbench.secure.aggregator import AggregatorClient

    header = {"kind": "survival", "op": "kaplan_meier", "spec": spec, "thresholds": THRESHOLDS,
              "context": {"study": STUDY, "request_id": uuid.uuid4().hex},
              "fingerprint": parts[0].fingerprint, "nonce": nonce}
    client = AggregatorClient(joint_space.space.aggregator_socket)
    return client.submit(header, Contributions(parts, partials))


def test_a_wrong_or_missing_partial_releases_nothing(joint_space, coordinator):
    from nacl.signing import SigningKey

    from workbench.errors import WorkbenchUserError
    from workbench.secure.signing import NonceGuard, Registry, Signer

    space = joint_space.space
    nonce, spec, parts = _round(coordinator)
    honest = coordinator.partials(list(HOLDERS), "survival", spec, nonce, parts)
    # insurer-b's node answers with a share that is not its own (a faulty node), signed with
    # its real key (read here as root): the combined slots are then not the sum
    node = space.node_dir("insurer-b")
    signer = Signer("insurer-b", SigningKey((node / "keys" / "signing.key").read_bytes()))
    wrong_party, _ = th.Party.generate(os.urandom(32))
    keys = {h: SigningKey((space.node_dir(h) / "keys" / "signing.key").read_bytes()).verify_key
            for h in HOLDERS}
    faulty = tn.partial_for_round(
        wrong_party, signer, (space.he / tn.BOX_PUB).read_bytes(), Registry(keys),
        fingerprint=parts[0].fingerprint,
        kind="survival", spec=spec, nonce=nonce,
        parts=[{"holder": p.contributors[0], "per_scheme": p.per_scheme,
                "envelope": p.envelope} for p in parts],
        blobs=[p.blobs[0] for p in parts], aggregates=honest[0][0]["aggregates"],
        min_holders=3, nonces=NonceGuard())
    with pytest.raises(WorkbenchUserError) as caught:
        _aggregate(joint_space, coordinator, nonce, spec, parts, [*honest[:2], faulty])
    assert caught.value.reason == "mac-mismatch"
    # a fresh round with one party's partial left out
    nonce, spec, parts = _round(coordinator)
    honest = coordinator.partials(list(HOLDERS), "survival", spec, nonce, parts)
    with pytest.raises(WorkbenchUserError) as caught:
        _aggregate(joint_space, coordinator, nonce, spec, parts, honest[:2])
    assert caught.value.reason == "missing-partial"
    # and the honest round through the same path releases the pooled curve
    nonce, spec, parts = _round(coordinator)
    honest = coordinator.partials(list(HOLDERS), "survival", spec, nonce, parts)
    released = _aggregate(joint_space, coordinator, nonce, spec, parts, honest)
    assert released["groups"][0]["n"] == len(pooled_rows(space))
    checks = _decryption_checks(space)
    assert {"name": "threshold-partials", "status": "fail",
            "rule": "N-out-of-N: 2 of 3 key parties; 40-bit flooding"} in checks
