"""Value-binding BFV MACs (``mac.py``): plays a malicious aggregator that keeps every holder's
signature and MAC but adds its own offset Enc(d), with 0 in the MAC slot, to the pooled counts — to
lift a small cell above min-cell-count, add a holder to an at-risk slot's holder bits, or count one
more holder — and then would subtract d from the reply it relays. Against the real key holder
process every such offset is refused with ``mac-mismatch``; in-process, the same offset is shown
to be released (shifted) once the weights are disabled, so the binding is what stops it. Also:
the round-weight key file's modes and readers, and the weights' PRF."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from workbench.errors import WorkbenchUserError
from workbench.secure import mac, ops, signing
from workbench.secure.keys import BFV_PLAIN_MODULUS, load_public
from workbench.secure.nodes import Aggregator, HolderNode, encrypt_vector
from workbench.secure.release import ReleaseRefused

from .conftest import HOLDERS, assert_holder_secret_file, in_process_checker, provenance_records

pytestmark = pytest.mark.slow
THRESHOLDS = {"min_cell_count": 10}
SITE = {"by": [{"column": "site", "levels": ["a", "b"]}]}
KM = {"duration_col": "days", "event_col": "event", "resolution": 1.0, "n_bins": 40, "by": []}


@dataclass
class Attack:
    parts: dict[str, pd.DataFrame]
    kind: str
    op: str
    spec: dict
    offset: dict[str, np.ndarray]  # d per layout segment (BFV ones), zeros elsewhere
    honest_refused_by: str | None  # the rule the honest round is refused by, if any


def _sites(**rows: dict[str, int]) -> dict[str, pd.DataFrame]:
    return {holder: pd.DataFrame({"site": [lvl for lvl, n in levels.items() for _ in range(n)]})
            for holder, levels in rows.items()}


def _small_cell() -> Attack:
    # cell b pools 3 + 2 rows of two holders: suppressed; d = +5 lifts it to the minimum of 10
    return Attack(_sites(hospital={"a": 30, "b": 3}, insurer={"a": 30, "b": 2}), "counts",
                  "count", SITE, {"counts": np.array([0, 5])}, "min-cell-count")


def _at_risk_holder_bits() -> Attack:
    # the hospital follows 40 patients to day 39, the insurer 40 patients to day 9 only: after
    # day 9 the curve is the hospital's alone and is cut; d adds one holder to those slots
    hospital = pd.DataFrame({"days": np.arange(40), "event": np.arange(40) % 2})
    insurer = pd.DataFrame({"days": np.repeat(np.arange(10), 4), "event": np.tile([0, 1], 20)})
    at_risk = np.zeros(40, dtype=np.int64)
    at_risk[10:] = 1 << ops.AT_RISK_SHIFT
    return Attack({"hospital": hospital, "insurer": insurer}, "survival", "kaplan_meier", KM,
                  {"at_risk": at_risk}, None)


def _holders_slot() -> Attack:
    # the insurer's rows are all outside the selection (it signs zeros): one holder's counts,
    # refused by min-holders; d counts the insurer in the holders slot and in cell a
    return Attack(_sites(hospital={"a": 30}, insurer={"z": 30}), "counts", "count",
                  {"by": [{"column": "site", "levels": ["a"]}]},
                  {"cell_holders": np.array([1]), "holders": np.array([1])}, "min-holders")


ATTACKS = {"small-cell": _small_cell, "at-risk-holder-bits": _at_risk_holder_bits,
           "holders-slot": _holders_slot}


def _round(keys, signers, attack: Attack) -> tuple[dict, list[bytes]]:
    """One honest round: every holder encrypts, MACs and signs; the pooled ciphertexts and the
    decrypt-release header an honest aggregator would send."""
    nonce = signing.new_nonce()
    contributions = [HolderNode(h, f, keys, signers[h]).contribute(attack.kind, attack.spec,
                                                                    nonce)
                     for h, f in attack.parts.items()]
    pooled = Aggregator(keys).combine(contributions)
    header = {"type": "decrypt-release", "kind": attack.kind, "op": attack.op,
              "spec": attack.spec, "thresholds": THRESHOLDS, "contributors": pooled.contributors,
              "fingerprint": pooled.fingerprint, "context": {"study": "recidivism"},
              "nonce": nonce, "signatures": [c.envelope for c in contributions]}
    return header, pooled.blobs


def _shifted(keys, blobs: list[bytes], attack: Attack) -> list[bytes]:
    """What the aggregator can do with the public key alone: add Enc(d), MAC slot 0, to the
    pooled BFV ciphertexts."""
    import tenseal as ts

    parts = [np.asarray(attack.offset.get(name, np.zeros(size)), dtype=np.int64)
             for name, size in ops.layout(attack.kind, attack.spec)]
    offset = encrypt_vector(keys, ops.pack(attack.kind, attack.spec, parts)["bfv"])
    out = list(blobs)
    for i, blob in enumerate(offset):
        out[i] = (ts.bfv_vector_from(keys.bfv, blobs[i])
                  + ts.bfv_vector_from(keys.bfv, blob)).serialize()
    return out


def _honest_outcome(ask, attack: Attack):
    if attack.honest_refused_by is None:
        return ask()
    with pytest.raises(ReleaseRefused) as refused:
        ask()
    assert refused.value.rule == attack.honest_refused_by
    return None


@pytest.mark.parametrize("name", ATTACKS)
def test_an_offset_added_to_the_counts_is_refused_by_the_key_holder(he_space, name):
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    attack = ATTACKS[name]()
    signers = signing.load_signers(space, list(attack.parts))
    header, blobs = _round(keys, signers, attack)
    _honest_outcome(lambda: client.request(header, blobs), attack)

    header, blobs = _round(keys, signers, attack)
    request_id = f"value-mac-{name}"
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header | {"context": {"study": "recidivism", "request_id": request_id}},
                       _shifted(keys, blobs, attack))
    assert err.value.reason == "mac-mismatch", str(err.value)
    assert "nothing was released" in str(err.value)
    assert not any(ch.isdigit() for ch in str(err.value))  # no values in it
    (record,) = [r["fields"] for r in provenance_records(space, "he-decryption")
                 if r["fields"].get("request_id") == request_id]
    assert record["decision"] == "refused" and record["reason"] == "mac-mismatch"
    assert {"name": "holder-macs", "status": "fail"} in record["rules"]


@pytest.mark.parametrize("name", ATTACKS)
def test_without_the_value_binding_the_same_offset_is_released(name, monkeypatch):
    """The attack is real: with the weights zeroed (the MACs of before), the offset passes and
    the key holder releases the shifted counts, which the aggregator would correct."""
    attack = ATTACKS[name]()
    keyholder, keys, _parties, signers = in_process_checker(attack.parts)
    header, blobs = _round(keys, signers, attack)
    honest = _honest_outcome(lambda: keyholder.handle(header, blobs), attack)
    header, blobs = _round(keys, signers, attack)
    with pytest.raises(WorkbenchUserError) as err:  # in-process, bound: refused
        keyholder.handle(header, _shifted(keys, blobs, attack))
    assert err.value.reason == "mac-mismatch"

    monkeypatch.setattr(mac, "weights", lambda *args: np.zeros(args[-1], dtype=np.int64))
    header, blobs = _round(keys, signers, attack)
    shifted = keyholder.handle(header, _shifted(keys, blobs, attack))
    if name == "small-cell":  # the aggregator subtracts 5: the suppressed cell held 5
        assert shifted["counts"] == [60, 10]
    elif name == "holders-slot":  # one holder's own figure, released
        assert shifted["counts"] == [30]
    else:  # the tail the insurer does not follow, released step by step
        (cut,), (group,) = honest["groups"], shifted["groups"]
        # honest: one last row from before day 10 to the grid's end; shifted: its steps shown
        assert not [t for t in cut["times"] if 10 < t < 39]
        assert [t for t in group["times"] if 10 < t < 39]


def test_an_offset_on_the_holders_slot_alone_is_refused(he_space):
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    attack = _small_cell()
    attack.offset = {"holders": np.array([BFV_PLAIN_MODULUS - 1])}  # -1: one holder fewer
    signers = signing.load_signers(space, list(attack.parts))
    header, blobs = _round(keys, signers, attack)
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, _shifted(keys, blobs, attack))
    assert err.value.reason == "mac-mismatch"


# -- the round-weight key --------------------------------------------------------------------------
def test_the_weight_key_is_readable_by_the_holders_and_the_key_holder_only(he_space):
    space, _, _ = he_space
    assert_holder_secret_file(signing.mac_dir(space.he) / signing.WEIGHTS_FILE, mac.KEY_BYTES)
    # the holders (load_signers, as the gateway) and the key holder (its registry) share it
    signers = signing.load_signers(space, list(HOLDERS))
    assert {s.weight_key for s in signers.values()} == {
        signing.RegistryFile(space.holder_registry).round_weight_key()}
    # no holder can be named so that its MAC key file is the weight key
    assert not signing.HOLDER_NAME.match(signing.WEIGHTS_FILE.removesuffix(".key"))
    with pytest.raises(WorkbenchUserError) as err:
        signing.create_holder_keys(space, ["_weights"])
    assert err.value.reason == "bad-holder"


def test_a_missing_weight_key_is_refused_and_key_creation_restores_it(he_space):
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    attack = _small_cell()
    attack.spec = {"by": []}
    signers = signing.load_signers(space, list(attack.parts))
    header, blobs = _round(keys, signers, attack)
    path = signing.mac_dir(space.he) / signing.WEIGHTS_FILE
    path.unlink()
    try:
        with pytest.raises(WorkbenchUserError) as err:  # the key holder cannot check the MACs
            client.request(header, blobs)
        assert err.value.reason == "unsigned-contribution" and "round-weight key" in str(err.value)
        with pytest.raises(WorkbenchUserError) as err:  # nor can the holders make them
            signing.load_signers(space, ["hospital"])
        assert err.value.reason == "unsigned-contribution"
    finally:
        assert signing.create_holder_keys(space, HOLDERS) == []  # existing holders: a new key
    assert path.stat().st_mode & 0o777 == 0o640
    signers = signing.load_signers(space, list(attack.parts))
    header, blobs = _round(keys, signers, attack)
    # a study of its own: this key holder audits each study's releases together (audit.py),
    # and the module's other tests released this population's cells
    assert client.request(header | {"context": {"study": "weight-key"}}, blobs)["counts"] == [65]


def test_the_in_process_federation_shares_one_throwaway_weight_key(rossi):
    from workbench.secure import Federation

    from .conftest import split_round_robin

    fed = Federation(split_round_robin(rossi), min_cell_count=10)
    (weight_key,) = {h.signer.weight_key for h in fed.holders}
    assert len(weight_key) == mac.KEY_BYTES
    assert fed.coordinator.keyholder.registry.round_weight_key() == weight_key
    assert fed.count() == len(rossi)
    other = Federation(split_round_robin(rossi), min_cell_count=10)
    assert other.holders[0].signer.weight_key != weight_key


# -- the weights and the tags ----------------------------------------------------------------------
def test_weights_are_keyed_per_round_kind_spec_and_ciphertext():
    key, nonce = b"w" * 32, signing.new_nonce()
    base = mac.weights(key, nonce, "survival", "ab" * 32, 0, 4095)
    assert base.dtype == np.int64 and len(base) == 4095
    assert base.min() >= 0 and base.max() < BFV_PLAIN_MODULUS
    assert base.max() > BFV_PLAIN_MODULUS // 2 and len(np.unique(base)) > 4000
    assert (base == mac.weights(key, nonce, "survival", "ab" * 32, 0, 4095)).all()
    for changed in (mac.weights(b"o" * 32, nonce, "survival", "ab" * 32, 0, 4095),
                    mac.weights(key, signing.new_nonce(), "survival", "ab" * 32, 0, 4095),
                    mac.weights(key, nonce, "counts", "ab" * 32, 0, 4095),
                    mac.weights(key, nonce, "survival", "cd" * 32, 0, 4095),
                    mac.weights(key, nonce, "survival", "ab" * 32, 1, 4095)):
        assert (changed != base).mean() > 0.99


def test_value_tags_are_linear_mod_t_and_exact_for_large_values():
    key, nonce, t = b"w" * 32, signing.new_nonce(), BFV_PLAIN_MODULUS
    rng = np.random.default_rng(1)
    a = rng.integers(0, t, 4095)  # values near t: products near 2^60
    b = rng.integers(0, 1 << 21, 4095)
    (tag_a, tag_b), (tag_sum,) = (mac.value_tags(key, nonce, "counts", "ab" * 32, [a, b]),
                                  mac.value_tags(key, nonce, "counts", "ab" * 32, [a + b]))
    w = mac.weights(key, nonce, "counts", "ab" * 32, 0, 4095)
    assert tag_a == sum(int(x) * int(y) for x, y in zip(w, a, strict=True)) % t  # big ints
    w1 = mac.weights(key, nonce, "counts", "ab" * 32, 1, 4095)
    assert tag_b == sum(int(x) * int(y) for x, y in zip(w1, b, strict=True)) % t
    top = np.full(4095, t - 1)  # the largest values a slot holds: no int64 overflow
    assert mac.value_tags(key, nonce, "counts", "ab" * 32, [top])[0] == \
        sum(int(x) * (t - 1) for x in w) % t
    # the key holder sees the pooled values, possibly as negative representatives
    assert tag_sum == mac.value_tags(key, nonce, "counts", "ab" * 32, [a + b - t])[0]
    assert tag_sum == sum(int(x) * int(y) for x, y in zip(w, a + b, strict=True)) % t
    # a holder's MAC slot plus another's: what the key holder expects of their sum
    macs = [b"h" * 32, b"i" * 32]
    one, two = (mac.holder_slots(m, key, nonce, "counts", "ab" * 32, [v])[0]
                for m, v in zip(macs, (a, b), strict=True))
    assert mac.expected(macs, key, nonce, "counts", "ab" * 32, [a + b]) == \
        [(one + two) % t]
    # an offset on any single slot changes what is expected
    for j in (0, 17, 4094):
        shifted = a + b
        shifted[j] += 1
        assert mac.expected(macs, key, nonce, "counts", "ab" * 32, [shifted]) != \
            [(one + two) % t]
