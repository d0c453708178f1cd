"""Holder MACs (``mac.py``): plays a malicious aggregator that keeps every holder's valid signature
but changes what goes into the pooled sum (a holder's ciphertext replaced by a known vector or by
zeros that still count one holder, scaled, dropped, repeated, or an offset on the real sums),
against the real key holder process; checks the MAC key files' modes and that the aggregator's
uid cannot read them, the in-process federation's throwaway MAC keys, and the slot layout."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.secure import Federation, mac, ops, signing
from workbench.secure.keys import BFV_PLAIN_MODULUS, load_public
from workbench.secure.nodes import Aggregator, Encrypted, encrypt_vector, slots

from .conftest import (
    HOLDERS,
    assert_holder_secret_file,
    provenance_records,
    run_as,
    signed_round,
    split_round_robin,
)

pytestmark = pytest.mark.slow
COUNT = {"by": []}
MEAN = {"by": [], "column": "age", "dominance_n": 2}


def _known(keys, kind: str, spec: dict, frame: pd.DataFrame, like: Encrypted) -> Encrypted:
    """What the aggregator can encrypt itself (public key only): ``frame``'s vector, which counts
    one holder, with zeros in the MAC slots, under ``like``'s name."""
    vectors = ops.holder_vectors(kind, spec, frame)
    blobs = encrypt_vector(keys, vectors["bfv"])
    assert len(blobs) == len(like.blobs)
    return Encrypted(kind, keys.fingerprint, blobs, like.contributors)


def _pool(keys, blob_lists: list[list[bytes]], count: int) -> list[bytes]:
    """Adds ``count`` ciphertexts slot by slot, as the aggregator does, in any combination it
    likes."""
    import tenseal as ts

    out = []
    for i in range(count):
        cts = [ts.bfv_vector_from(keys.bfv, blobs[i]) for blobs in blob_lists]
        total = cts[0]
        for ct in cts[1:]:
            total = total + ct
        out.append(total.serialize())
    return out


def _refused_as_mac_mismatch(client, header, blobs, space, request_id: str) -> None:
    header = header | {"context": {"study": "recidivism", "request_id": request_id}}
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, blobs)
    assert err.value.reason == "mac-mismatch", (request_id, str(err.value))
    assert "nothing was released" in str(err.value)
    assert not any(ch.isdigit() for ch in str(err.value)), str(err.value)  # no values in it
    (record,) = [r["fields"] for r in provenance_records(space, "he-decryption")
                 if r["fields"].get("request_id") == request_id]
    assert record["decision"] == "refused" and record["reason"] == "mac-mismatch"
    assert {"name": "holder-macs", "status": "fail"} in record["rules"]
    assert {"name": "holder-signatures", "status": "pass"} in record["rules"]


def test_a_holder_replaced_by_a_known_vector_is_refused(he_space, rossi):
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    parts = split_round_robin(rossi)
    known = rossi.iloc[:40]  # the aggregator subtracts this from the reply to learn the others

    header, _, honest = signed_round(space, parts, "counts", COUNT)
    fake = _known(keys, "counts", COUNT, known, honest[0])
    tampered = Aggregator(keys).combine([fake, *honest[1:]])  # the hospital's signature kept
    _refused_as_mac_mismatch(client, header, tampered.blobs, space, "mac-known")

    # zeros that still count one holder: the others' pooled figure would come back as is
    header, _, honest = signed_round(space, parts, "counts", COUNT)
    counts_cell_holders_holders = np.array([0, 1, 1])
    zeros = Encrypted("counts", keys.fingerprint,
                      encrypt_vector(keys, counts_cell_holders_holders), honest[0].contributors)
    tampered = Aggregator(keys).combine([zeros, *honest[1:]])
    _refused_as_mac_mismatch(client, header, tampered.blobs, space, "mac-zeros")

    # the honest sum of the same holders still goes through
    header, pooled, _ = signed_round(space, parts, "counts", COUNT)
    assert client.request(header, pooled.blobs)["counts"] == [len(rossi)]


def test_scaled_dropped_or_repeated_contributions_are_refused(he_space, rossi):
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    parts = split_round_robin(rossi)
    count = 1

    # c·A + B + C: the hospital's ciphertext times 2 (a plaintext scalar needs no extra keys)
    import tenseal as ts

    header, _, honest = signed_round(space, parts, "counts", COUNT)
    doubled = (ts.bfv_vector_from(keys.bfv, honest[0].blobs[0]) * 2).serialize()
    blobs = _pool(keys, [[doubled], honest[1].blobs, honest[2].blobs], count)
    _refused_as_mac_mismatch(client, header, blobs, space, "mac-scaled")

    # the insurer's ciphertext dropped, its signature kept (the pooled sum counts two holders,
    # so without the MAC this passed every other check)
    header, _, honest = signed_round(space, parts, "counts", COUNT)
    blobs = _pool(keys, [honest[0].blobs, honest[2].blobs], count)
    _refused_as_mac_mismatch(client, header, blobs, space, "mac-dropped")

    # the hospital's ciphertext added twice, once in place of the insurer's
    header, _, honest = signed_round(space, parts, "counts", COUNT)
    blobs = _pool(keys, [honest[0].blobs, honest[0].blobs, honest[2].blobs], count)
    _refused_as_mac_mismatch(client, header, blobs, space, "mac-repeated")

    # ... or on top of all three
    header, _, honest = signed_round(space, parts, "counts", COUNT)
    blobs = _pool(keys, [c.blobs for c in honest] + [honest[0].blobs], count)
    _refused_as_mac_mismatch(client, header, blobs, space, "mac-repeated-extra")


def test_an_offset_on_the_real_sums_or_a_repeated_mean_ciphertext_is_refused(he_space, rossi):
    """The real values travel as fixed-point digits in BFV (ops.encode_reals), so their MAC
    binds them as it binds the counts: an offset added to the pooled sums with 0 in the MAC slot,
    or one holder's ciphertext added twice, is refused."""
    space, _, keyholder = he_space
    client, keys = keyholder.client(), load_public(space)
    parts = split_round_robin(rossi)
    header, pooled, honest = signed_round(space, parts, "moments", MEAN, op="mean")
    assert honest[0].per_scheme == {"bfv": 1}  # the wire's field
    count = len(honest[0].blobs)
    # +1000 years on the pooled sum of ages (its fixed-point digits), nothing in the MAC slot
    names = [name for name, _size in ops.layout("moments", MEAN)]
    offsets = [np.zeros(size) for _name, size in ops.layout("moments", MEAN)]
    offsets[names.index("s1")][0] = 1000.0
    offset = ops.pack("moments", MEAN, offsets)["bfv"]
    blobs = _pool(keys, [pooled.blobs, encrypt_vector(keys, offset)], count)
    _refused_as_mac_mismatch(client, header, blobs, space, "mac-real-offset")

    # the hospital's ciphertext repeated
    header, pooled, honest = signed_round(space, parts, "moments", MEAN, op="mean")
    blobs = _pool(keys, [honest[0].blobs, honest[0].blobs, honest[1].blobs, honest[2].blobs],
                  count)
    _refused_as_mac_mismatch(client, header, blobs, space, "mac-mean-twice")

    # and the honest round: the pooled mean, checked against plaintext
    header, pooled, _ = signed_round(space, parts, "moments", MEAN, op="mean")
    result = client.request(header, pooled.blobs)
    assert abs(result["mean"][0] - rossi["age"].mean()) <= 1e-9


def test_a_signer_without_a_mac_key_is_refused_and_init_adds_missing_keys(he_space, rossi):
    space, _, keyholder = he_space
    client = keyholder.client()
    parts = split_round_robin(rossi, holders=4)
    header, pooled, _ = signed_round(space, parts, "counts", COUNT)
    key_file = signing.mac_dir(space.he) / "registry.key"
    key_file.unlink()  # the key holder can no longer check the registry's MAC
    with pytest.raises(WorkbenchUserError) as err:
        client.request(header, pooled.blobs)
    assert err.value.reason == "unsigned-contribution" and "no MAC key" in str(err.value)
    # the registry already has its signing key; the next key creation gives it a new MAC key
    assert signing.create_holder_keys(space, HOLDERS) == []
    assert key_file.stat().st_mode & 0o777 == 0o640
    header, pooled, _ = signed_round(space, parts, "counts", COUNT)
    assert client.request(header, pooled.blobs)["counts"] == [len(rossi)]


def test_mac_keys_are_readable_by_the_holders_and_the_key_holder_only(he_space):
    space, _, _ = he_space
    gateway, keyholder_ids = accounts.ensure_user(accounts.GATEWAY), \
        accounts.ensure_user(accounts.KEYHOLDER)
    folder = signing.mac_dir(space.he)
    st = folder.stat()
    assert st.st_mode & 0o777 == 0o750
    assert (st.st_uid, st.st_gid) == (gateway[0], keyholder_ids[1])
    for holder in HOLDERS:
        assert_holder_secret_file(folder / f"{holder}.key", mac.KEY_BYTES,
                                  try_reads=holder == "hospital")
    listing = run_as(accounts.AGGREGATOR, f"import os; os.listdir({str(folder)!r})")
    assert listing.returncode != 0 and "PermissionError" in listing.stderr
    # the key holder reads them (as wb-keyholder) through its registry, the gateway through
    # load_signers: both keys are the same bytes
    signer = signing.load_signers(space, ["hospital"])["hospital"]
    assert signer.mac_key == signing.RegistryFile(space.holder_registry).mac_key("hospital")


class _SubstitutingAggregator(Aggregator):
    """An in-process aggregator that swaps the first holder's contribution for its own, and
    key parties fooled into decrypting that sum (honest ones recompute the sum from the signed
    contributions and refuse it first: test_federation_threshold.py): the MAC is what is left."""

    def __init__(self, keys, keyholder, frame, parties):
        super().__init__(keys, keyholder)
        self.frame, self.parties = frame, parties

    def submit(self, header, parts):
        from workbench.secure import threshold_node as tn

        fake = _known(self.keys, header["kind"], header["spec"], self.frame, parts[0])
        fake.envelope = parts[0].envelope
        pooled = self.combine([fake, *parts[1:]])
        sums = tn.pooled_from_sum(pooled.blobs)
        fooled = [tn.seal_partials(self.parties.parties[h], self.parties.signers[h],
                                   self.parties.checker, nonce=header["nonce"],
                                   kind=header["kind"], spec_hash=signing.spec_sha256(
                                       header["spec"]), sums=sums,
                                   signers=pooled.contributors)
                  for h in self.parties.names]
        return self.forward(header, pooled, [p.envelope for p in parts], fooled)


def test_the_in_process_federation_uses_throwaway_mac_keys(rossi):
    parts = split_round_robin(rossi)
    fed = Federation(parts, min_cell_count=10)
    signers = [h.signer for h in fed.holders]
    assert all(len(s.mac_key) == mac.KEY_BYTES for s in signers)
    assert len({s.mac_key for s in signers}) == len(signers)
    assert fed.kaplan_meier("week", "arrest").event_table["observed"].sum() == \
        rossi["arrest"].sum()
    coordinator = fed.coordinator
    coordinator.aggregator = _SubstitutingAggregator(coordinator.keys, coordinator.keyholder,
                                                     rossi.iloc[:40],
                                                     coordinator.aggregator.parties)
    for op, kwargs in (("count", {}), ("mean", {"column": "age"}),
                       ("kaplan_meier", {"duration_col": "week", "event_col": "arrest"})):
        with pytest.raises(WorkbenchUserError) as err:
            getattr(fed, op)(**kwargs)
        assert err.value.reason == "mac-mismatch", op


def test_in_process_key_holder_refuses_a_signer_it_has_no_mac_key_for(rossi):
    fed = Federation(split_round_robin(rossi, holders=2))
    keyholder = fed.coordinator.keyholder
    assert fed.count() == len(rossi)
    keyholder.registry.macs.pop("insurer")  # its signature still verifies
    with pytest.raises(WorkbenchUserError) as err:
        fed.count()
    assert err.value.reason == "unsigned-contribution" and "no MAC key" in str(err.value)


# -- the layout and the PRF ------------------------------------------------------------------------
def test_every_ciphertext_keeps_one_mac_slot_and_km_stays_one_ciphertext(rossi):
    n = slots()
    km = {"duration_col": "days", "resolution": 1.0, "n_bins": 1826, "event_col": "event",
          "by": []}
    assert ops.sizes("survival", km) == {"bfv": 3655}  # + the rows outside every cell
    assert ops.ciphertexts_needed("survival", km, n) == {"bfv": 1}
    # counts by one axis of c levels: 2c + 2 values; 4095 fit one ciphertext, 4096 need two
    for cells, needed in ((2046, 1), (2047, 2)):
        spec = {"by": [{"column": "x", "levels": [str(i) for i in range(cells)]}]}
        assert ops.ciphertexts_needed("counts", spec, n)["bfv"] == needed
    cox = {"duration_col": "week", "resolution": 1.0, "n_bins": 53, "event_col": "arrest",
           "by": [], "covariates": ["fin", "age", "prio"], "center": [0.0] * 3}
    # every real value takes REAL_DIGITS slots: 53 bins x 20 sums + 6 covariate sums, plus
    # the integers (n, d per bin, cell holders, outside, holders)
    assert ops.sizes("cox", cox) == {"bfv": (53 * 20 + 6) * ops.REAL_DIGITS + 1 + 53 + 3}
    assert ops.ciphertexts_needed("cox", cox, n)["bfv"] == math.ceil(
        ops.sizes("cox", cox)["bfv"] / (n["bfv"] - 1))
    vector = np.arange(1, 5000)
    chunks = ops.chunks(vector, 4096, [7, 8])
    assert [len(c) for c in chunks] == [4096, 4096] and [c[-1] for c in chunks] == [7, 8]
    assert (np.concatenate([c[:-1] for c in chunks])[:len(vector)] == vector).all()


def test_the_km_round_stays_one_bfv_ciphertext_under_the_byte_budget():
    from .conftest import synthetic_cohort

    df = synthetic_cohort(3000)
    # the joint key's ciphertext: three 31-bit primes, zstd-compressed by TenSEAL (106.6 KB
    # measured, docs/secure.md; the single key's 60-bit one was 66 KB, under 90 KB)
    fed = Federation({"a": df.iloc[0::3], "b": df.iloc[1::3], "c": df.iloc[2::3]},
                     min_cell_count=5)
    fed.kaplan_meier("days", "event")
    (round_,) = fed.coordinator.log
    assert round_["ciphertexts"] == 1
    assert max(round_["bytes_per_holder"].values()) <= 110 * 1024


def test_mac_slots_are_keyed_per_round_kind_spec_and_ciphertext():
    key, other = b"k" * 32, b"o" * 32
    nonce = signing.new_nonce()
    base = mac.slot_values(key, nonce, "cox", "ab" * 32, 4)
    assert base == mac.slot_values(key, nonce, "cox", "ab" * 32, 4)
    assert all(0 <= v < BFV_PLAIN_MODULUS and isinstance(v, int) for v in base)
    assert len(set(base)) == 4  # one value per ciphertext
    for changed in (mac.slot_values(other, nonce, "cox", "ab" * 32, 4),
                    mac.slot_values(key, signing.new_nonce(), "cox", "ab" * 32, 4),
                    mac.slot_values(key, nonce, "logistic", "ab" * 32, 4),
                    mac.slot_values(key, nonce, "cox", "cd" * 32, 4)):
        assert all(a != b for a, b in zip(base, changed, strict=True))
    empty = [np.zeros(0, dtype=np.int64)] * 4  # no data slots: no value tag, r_i alone
    total = mac.expected([key, other], b"w" * 32, nonce, "cox", "ab" * 32, empty)
    pair = mac.slot_values(other, nonce, "cox", "ab" * 32, 4)
    assert total == [(a + b) % BFV_PLAIN_MODULUS for a, b in zip(base, pair, strict=True)]
    assert mac.matches(np.array([5, total[0] - BFV_PLAIN_MODULUS]), total[0])
    assert not mac.matches(np.array([5, total[0] + 1]), total[0])


def test_mac_values_are_pinned_across_versions():
    """The PRF input keeps its "|bfv|index" label (from when there were two schemes) byte for
    byte: these values were computed before the label stopped being passed in, so a holder and
    a key holder on either side of that change still agree on every MAC slot."""
    key, weight_key = bytes(range(32)), bytes(range(32, 64))
    assert mac.slot_values(key, "nonce-1", "cox", "ab" * 32, 3) == [689581229, 555581912,
                                                                     956800541]
    data = [np.arange(10, dtype=np.int64), np.array([5, BFV_PLAIN_MODULUS - 1, 7])]
    assert mac.holder_slots(key, weight_key, "nonce-1", "counts", "cd" * 32, data) == [
        309273904, 1031686675]
    assert mac.expected([key, weight_key], weight_key, "nonce-1", "counts", "cd" * 32,
                        data) == [676660303, 753464976]
    # spelled out: HMAC(key, the round's JSON + "|bfv|0"), 128 bits mod t
    import hashlib
    import hmac
    import json

    prefix = json.dumps([mac.DOMAIN, "nonce-1", "cox", "ab" * 32], separators=(",", ":"))
    digest = hmac.new(key, prefix.encode() + b"|bfv|0", hashlib.sha256).digest()
    assert int.from_bytes(digest[:16], "big") % BFV_PLAIN_MODULUS == 689581229


def test_values_beyond_the_fixed_point_range_are_refused_before_encryption(rossi):
    frame = rossi.assign(cost=1e13)  # each holder's sum, 144 x 1e13, is beyond 2^44
    fed = Federation(split_round_robin(frame), min_cell_count=10)
    with pytest.raises(WorkbenchUserError) as err:
        fed.mean("cost")
    assert err.value.reason == "value-too-large" and "rescale" in str(err.value)
    assert "\n" not in str(err.value) and "1.44" not in str(err.value)  # one line, no values
    assert not fed.coordinator.log  # refused before anything was encrypted
    assert float(fed.mean(column="age")) == pytest.approx(rossi["age"].mean(), abs=1e-9)
