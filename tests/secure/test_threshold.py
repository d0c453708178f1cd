"""Threshold BFV (``threshold.py``): N holders each keep a key share; their KM vectors, encrypted
under the joint key by TenSEAL unchanged, decrypt exactly only with all N partial decryptions.

Tries to break it: N - 1 partials (every subset), partials from shares of another key, a party
with a wrong share or a shifted partial (the MAC slot must catch it), a partial for another
ciphertext, a public share from another seed, unreduced or non-ternary data, and the maximum
load (32 parties, 32 holders' values near t) against the stated noise budget. The joint secret
sum s_i is formed only in ``_oracle_joint_secret``, an explicit test oracle: to measure the real
noise against ``noise_bound`` and to check that no artifact of the protocol contains it."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pandas as pd
import pytest
import tenseal as ts

from workbench.secure import mac, ops, signing
from workbench.secure import threshold as th
from workbench.secure import threshold_seal as sealio

from .conftest import split_round_robin

SPEC = {"duration_col": "time", "event_col": "status", "resolution": 30.0, "n_bins": 40,
        "by": [{"column": "sex", "levels": ["1", "2"]}]}
NONCE = "round-1"
SLOTS = th.POLY_DEGREE


@pytest.fixture(scope="module")
def committee():
    """Three holders' shares from one public seed, and the joint context (public only)."""
    seed = os.urandom(32)
    parties, public_shares = zip(*(th.Party.generate(seed) for _ in range(3)), strict=True)
    commitments = [th.commitment(share) for share in public_shares]  # made before any reveal
    public_key = th.joint_public_key(seed, list(public_shares), commitments)
    return {"seed": seed, "parties": list(parties), "public_shares": list(public_shares),
            "commitments": commitments,
            "public_key": public_key, "context": th.tenseal_context(public_key)}


def _holder_slots(frame: pd.DataFrame, key: bytes, weight_key: bytes) -> np.ndarray:
    """A holder's KM vector (ops.py) in one ciphertext's slots, its MAC in the last slot."""
    vector = ops.holder_vectors("survival", SPEC, frame)["bfv"]
    assert len(vector) <= ops.data_slots(SLOTS)
    spec_hash = signing.spec_sha256(SPEC)
    slot = mac.holder_slots(key, weight_key, NONCE, "survival", spec_hash, [vector])
    return ops.chunks(vector, SLOTS, slot)[0].astype(np.int64)


@pytest.fixture(scope="module")
def km_round(committee, lung_all):
    """Each holder encrypts its KM vector under the joint key; the sum as the aggregator adds
    it; the pooled plaintext and MAC the release checker expects."""
    ctx = ts.context_from(committee["context"])
    weight_key = os.urandom(mac.KEY_BYTES)
    keys, plain, total = [], [], None
    for frame in split_round_robin(lung_all).values():
        keys.append(os.urandom(mac.KEY_BYTES))
        plain.append(_holder_slots(frame, keys[-1], weight_key))
        ct = ts.bfv_vector(ctx, plain[-1].tolist())
        total = ct if total is None else total + ct
    [ciphertext] = th.seal_ciphertexts(committee["context"], total.serialize())
    pooled = np.sum(plain, axis=0) % th.PLAIN_MODULUS
    data = pooled[:-ops.MAC_SLOTS]
    want = mac.expected(keys, weight_key, NONCE, "survival", signing.spec_sha256(SPEC),
                        [data])[0]
    return {"ciphertext": ciphertext, "pooled": pooled, "mac": want, "summands": len(plain)}


def _mac_ok(slots: np.ndarray, want: int) -> bool:
    return mac.matches(slots, want)


def _oracle_joint_secret(parties: list[th.Party]) -> np.ndarray:
    """TEST ORACLE ONLY: the joint secret sum s_i, which the protocol never forms."""
    return np.sum([p.share for p in parties], axis=0)


def _oracle_noise(ciphertext: bytes, secret: np.ndarray) -> np.ndarray:
    """TEST ORACLE ONLY: |c0 + c1 s - q m / t| per coefficient, with SEAL's multiply_plain."""
    sealapi, _parms, ctx = th._seal()
    ct = sealio.load(sealapi.Ciphertext(), ctx, ciphertext)
    lifted = np.where(secret < 0, th.PLAIN_MODULUS + secret, secret).astype(np.uint64)
    plain = sealio.load(sealapi.Plaintext(), ctx, sealio.plaintext_bytes(lifted))
    c0 = th._residues(ciphertext)[0]
    sealapi.Evaluator(ctx).multiply_plain_inplace(ct, plain)
    c1s = sealio.residues(sealio.save(ct), (2, len(th.DATA_PRIMES), th.POLY_DEGREE))[1][1]
    x = (c0 + c1s.astype(np.int64)) % th._PRIMES
    crt = [(th.Q // p) * pow(th.Q // p, -1, p) for p in th.DATA_PRIMES]
    x = sum(x[j].astype(object) * w for j, w in enumerate(crt)) % th.Q
    m = (x * th.PLAIN_MODULUS + th.Q // 2) // th.Q
    return np.abs((x * th.PLAIN_MODULUS - m * th.Q).astype(float)) / th.PLAIN_MODULUS


def test_parameters_are_128_bit_and_leave_room_for_40_bits_of_flooding():
    table = th.parameters()
    assert th.context().parameters_set()  # SEAL's own check at SEC_LEVEL_TYPE.TC128
    assert table["total_bits"] <= 109  # the HE standard's 128-bit bound at N = 4096
    assert all(p < 2**31 and p % (2 * th.POLY_DEGREE) == 1 for p in th.DATA_PRIMES)
    assert th.FLOOD_BOUND >= 2**40 * th.noise_bound(th.MAX_PARTIES, th.MAX_SUMMANDS)
    assert th.MAX_PARTIES * th.FLOOD_BOUND + th.noise_bound() < th.Q // (2 * th.PLAIN_MODULUS)
    assert table["budget_after_bits"] > 1


def test_joint_key_is_public_and_seal_and_tenseal_encrypt_with_it(committee):
    ctx = ts.context_from(committee["context"])
    assert not ctx.has_secret_key() and ctx.is_public()
    sealapi, _parms, seal_ctx = th._seal()
    key = sealio.load(sealapi.PublicKey(), seal_ctx, committee["public_key"])
    plain = sealapi.Plaintext()
    sealapi.BatchEncoder(seal_ctx).encode(list(range(SLOTS)), plain)
    ct = sealapi.Ciphertext()
    sealapi.Encryptor(seal_ctx, key).encrypt(plain, ct)
    blob = sealio.save(ct)
    partials = [p.partial(blob) for p in committee["parties"]]
    assert th.decrypt(blob, partials).tolist() == list(range(SLOTS))


def test_a_km_sum_decrypts_exactly_with_every_share_and_its_mac_matches(committee, km_round):
    partials = [p.partial(km_round["ciphertext"]) for p in committee["parties"]]
    slots = th.decrypt(km_round["ciphertext"], partials)
    assert np.array_equal(slots % th.PLAIN_MODULUS, km_round["pooled"])
    assert km_round["pooled"][:-1].sum() > 0  # real counts, not an empty vector
    assert _mac_ok(slots, km_round["mac"])
    again = [p.partial(km_round["ciphertext"]) for p in committee["parties"]]
    assert again[0] != partials[0]  # fresh flooding every time: no partial is reproducible


def _looks_uniform(slots: np.ndarray) -> bool:
    """16 equal bins over [0, t): each within 40% of SLOTS / 16 (about 7 sigma)."""
    counts = np.bincount((slots % th.PLAIN_MODULUS) * 16 // th.PLAIN_MODULUS, minlength=16)
    return bool(np.all(np.abs(counts - SLOTS / 16) < 0.4 * SLOTS / 16))


def test_fewer_than_n_partials_or_another_keys_shares_do_not_decrypt(committee, km_round):
    ciphertext, pooled = km_round["ciphertext"], km_round["pooled"]
    partials = [p.partial(ciphertext) for p in committee["parties"]]
    for size in (1, 2):
        for subset in itertools.combinations(partials, size):
            slots = th.decrypt(ciphertext, list(subset)) % th.PLAIN_MODULUS
            assert np.mean(slots == pooled) < 0.01
            assert _looks_uniform(slots)
            assert not _mac_ok(slots, km_round["mac"])
    strangers = [th.Party.generate(committee["seed"])[0] for _ in range(3)]
    slots = th.decrypt(ciphertext, [p.partial(ciphertext) for p in strangers])
    assert _looks_uniform(slots) and not _mac_ok(slots, km_round["mac"])


def test_a_wrong_partial_is_detected_by_the_mac_slot(committee, km_round):
    ciphertext = km_round["ciphertext"]
    honest = [p.partial(ciphertext) for p in committee["parties"][1:]]
    impostor = th.Party.generate(committee["seed"])[0]  # a share that is not in the key
    slots = th.decrypt(ciphertext, [impostor.partial(ciphertext), *honest])
    assert not _mac_ok(slots, km_round["mac"])
    # a subtler cheat: the right partial plus q/t on the constant coefficient adds 1 to every
    # slot (counts shifted by one, the MAC slot too): the value-bound MAC still refuses it
    header, blobs = th.wire.decode(committee["parties"][0].partial(ciphertext))
    h = np.frombuffer(blobs[0], dtype="<u4").reshape(len(th.DATA_PRIMES), -1).astype(np.int64)
    h[:, 0] = (h[:, 0] + th.Q // th.PLAIN_MODULUS % th._PRIMES[:, 0]) % th._PRIMES[:, 0]
    shifted = th.wire.encode(header, [h.astype("<u4").tobytes()])
    slots = th.decrypt(ciphertext, [shifted, *honest])
    assert np.array_equal(slots % th.PLAIN_MODULUS, (km_round["pooled"] + 1) % th.PLAIN_MODULUS)
    assert not _mac_ok(slots, km_round["mac"])


def test_malformed_or_mismatched_inputs_are_refused(committee, km_round):
    ciphertext = km_round["ciphertext"]
    party = committee["parties"][0]
    other = th.seal_ciphertexts(committee["context"], ts.bfv_vector(
        ts.context_from(committee["context"]), [1, 2, 3]).serialize())[0]
    partial = party.partial(other)
    with pytest.raises(th.ThresholdError, match="another ciphertext"):
        th.decrypt(ciphertext, [partial])
    header, blobs = th.wire.decode(party.partial(ciphertext))
    unreduced = np.full(len(blobs[0]) // 4, 2**32 - 1, dtype="<u4").tobytes()
    with pytest.raises(th.ThresholdError, match="not reduced"):
        th.decrypt(ciphertext, [th.wire.encode(header, [unreduced])])
    with pytest.raises(th.ThresholdError, match="another seed"):
        th.joint_public_key(os.urandom(32), committee["public_shares"],
                            committee["commitments"])
    with pytest.raises(th.ThresholdError, match="ternary"):
        th.Party.from_share_bytes(th.wire.encode(
            {"kind": "threshold-share", "parameters": th.FINGERPRINT},
            [np.full(th.POLY_DEGREE, 2, dtype=np.int8).tobytes()]))
    with pytest.raises(sealio.SealFormatError):
        party.partial(ciphertext[:-8])
    restored = th.Party.from_share_bytes(party.share_bytes())
    assert np.array_equal(restored.share, party.share) and "withheld" in repr(restored)


def test_a_rogue_last_share_is_refused_by_the_commitments(committee):
    """The last party sees the others' shares and publishes p' - (sum of theirs), p' its own
    lone key's, to make the joint key its own: it no longer matches its commitment."""
    seed, shares = committee["seed"], committee["public_shares"]
    lone, lone_share = th.Party.generate(seed)
    header, [blob] = th.wire.decode(lone_share)
    rogue = np.frombuffer(blob, dtype="<u4").reshape(4, -1).astype(np.int64)
    for share in shares[:-1]:
        rogue = rogue - np.frombuffer(th.wire.decode(share)[1][0], dtype="<u4").reshape(4, -1)
    rogue_share = th.wire.encode(header, [(rogue % th._KEY_PRIMES).astype("<u4").tobytes()])
    forged = [*shares[:-1], rogue_share]
    with pytest.raises(th.ThresholdError, match="public share 2 does not match"):
        th.joint_public_key(seed, forged, committee["commitments"])
    # the attack is real: without the commitments the key would be the rogue's alone
    key = th.joint_public_key(seed, forged, [th.commitment(s) for s in forged])
    ctx = th.tenseal_context(key)
    [ct] = th.seal_ciphertexts(ctx, ts.bfv_vector(ts.context_from(ctx), [7, 8, 9]).serialize())
    assert th.decrypt(ct, [lone.partial(ct)])[:3].tolist() == [7, 8, 9]
    with pytest.raises(th.ThresholdError, match="distinct commitment"):
        th.joint_public_key(seed, shares, committee["commitments"][:-1])


def test_the_noise_model_bounds_the_measured_noise(committee, km_round):
    secret = _oracle_joint_secret(committee["parties"])
    noise = _oracle_noise(km_round["ciphertext"], secret)
    parties, summands = len(committee["parties"]), km_round["summands"]
    sigma = (th.noise_bound(parties, summands) - summands) / th.TAIL_SIGMAS
    assert noise.max() <= th.noise_bound(parties, summands)
    # the model is conservative (measured: ~0.6 sigma) but not loose by more than 2.5x
    assert 0.4 * sigma <= noise.std() <= sigma


def test_no_artifact_holds_the_joint_secret(committee, km_round):
    secret = _oracle_joint_secret(committee["parties"])
    assert np.abs(secret).max() > 1  # differs from every ternary share
    assert all(np.abs(p.share).max() <= 1 for p in committee["parties"])
    assert all(vars(p).keys() == {"share"} for p in committee["parties"])
    encodings = [secret.astype(np.int8).tobytes(),
                 (secret % th._PRIMES).astype("<u4").tobytes()[:4096],
                 (secret % th._PRIMES).astype("<u8").tobytes()[:4096],
                 np.where(secret < 0, th.PLAIN_MODULUS + secret, secret).astype("<u8").tobytes()]
    partials = [p.partial(km_round["ciphertext"]) for p in committee["parties"]]
    artifacts = [committee["public_key"], committee["context"], *committee["public_shares"],
                 *partials, km_round["ciphertext"]]
    for blob in artifacts:
        assert not any(enc in blob for enc in encodings)
    assert not ts.context_from(committee["context"]).has_secret_key()


def test_the_budget_holds_at_32_parties_and_32_holders_near_t():
    seed = os.urandom(32)
    parties, shares = zip(*(th.Party.generate(seed) for _ in range(th.MAX_PARTIES)), strict=True)
    context = th.tenseal_context(th.joint_public_key(seed, list(shares),
                                                     [th.commitment(s) for s in shares]))
    ctx = ts.context_from(context)
    rng = np.random.default_rng()
    values = rng.integers(th.PLAIN_MODULUS - 2**20, th.PLAIN_MODULUS, (th.MAX_SUMMANDS, SLOTS))
    total = ts.bfv_vector(ctx, values[0].tolist())
    for row in values[1:]:
        total = total + ts.bfv_vector(ctx, row.tolist())
    [ciphertext] = th.seal_ciphertexts(context, total.serialize())
    slots = th.decrypt(ciphertext, [p.partial(ciphertext) for p in parties])
    assert np.array_equal(slots % th.PLAIN_MODULUS, values.sum(axis=0) % th.PLAIN_MODULUS)
