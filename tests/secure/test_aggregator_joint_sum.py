"""The aggregator's sum under the joint key (``nodes._joint_sum``): NumPy residue additions
instead of TenSEAL's, giving the ciphertexts the key parties recompute, with every input still
checked as SEAL's ``load`` checks it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from workbench.errors import WorkbenchUserError
from workbench.secure import nodes, ops, tensealproto
from workbench.secure import threshold as th
from workbench.secure import threshold_node as tn
from workbench.secure.keys import PublicKeys, fingerprint_of

HOLDERS = ["h1", "h2", "h3"]


@pytest.fixture(scope="module")
def joint():
    seed = os.urandom(32)
    parties, shares = zip(*(th.Party.generate(seed) for _ in HOLDERS), strict=True)
    context = th.tenseal_context(th.joint_public_key(seed, list(shares),
                                                     [th.commitment(s) for s in shares]))
    keys = PublicKeys(context, fingerprint_of(context), {"parties": HOLDERS})
    rng = np.random.default_rng(3)
    values = {h: rng.integers(0, 1 << 20, 2 * ops.data_slots(th.POLY_DEGREE) - 7)
              for h in HOLDERS}
    parts = [nodes.Encrypted("survival", keys.fingerprint, nodes.encrypt_vector(keys, values[h]),
                             [h]) for h in HOLDERS]
    return {"keys": keys, "parties": parties, "parts": parts, "values": values}


def _reason(call) -> str:
    with pytest.raises(WorkbenchUserError) as caught:
        call()
    return caught.value.reason


def test_the_numpy_sum_is_the_tenseal_sum_and_what_the_parties_recompute(joint):
    keys, parts = joint["keys"], joint["parts"]
    numpy_sum = nodes.Aggregator(keys).combine(parts)
    tenseal_sum = nodes.Aggregator(PublicKeys(keys.bfv_bytes, keys.fingerprint)).combine(parts)
    assert numpy_sum.blobs != tenseal_sum.blobs  # canonical (uncompressed) against zstd bytes
    assert numpy_sum.contributors == HOLDERS and len(numpy_sum.blobs) == 2
    ours = [tn.digest(s) for s in tn.pooled_from_sum(numpy_sum.blobs)]
    assert ours == [tn.digest(s) for s in tn.pooled_from_sum(tenseal_sum.blobs)]
    assert ours == [tn.digest(s) for s in tn.pooled([p.blobs for p in parts])]
    # and the key parties' partials open it to the sum of the values
    sums = tn.pooled_from_sum(numpy_sum.blobs)
    opened = [th.decrypt(c, [p.partial(c) for p in joint["parties"]]) for c in sums]
    expected = sum(joint["values"].values())
    got = np.concatenate([o[:ops.data_slots(th.POLY_DEGREE)] for o in opened])[:len(expected)]
    assert np.array_equal(got, expected)

def test_tenseal_loads_the_numpy_sum(joint):
    import tenseal as ts

    pooled = nodes.Aggregator(joint["keys"]).combine(joint["parts"])
    for blob in pooled.blobs:
        assert ts.bfv_vector_from(joint["keys"].bfv, blob).size() == th.POLY_DEGREE


def _with_blob(parts, holder_index, blob):
    out = list(parts)
    old = out[holder_index]
    out[holder_index] = nodes.Encrypted(old.kind, old.fingerprint, [blob] + old.blobs[1:],
                                        old.contributors)
    return out


def test_every_input_is_checked(joint):
    keys, parts = joint["keys"], joint["parts"]
    aggregator = nodes.Aggregator(keys)
    good = parts[1].blobs[0]
    size, ciphertext = tensealproto.one_ciphertext_vector(good)
    residues = th.ciphertext_residues(ciphertext)
    unreduced = residues.copy()
    unreduced[1, 0, 5] = th.DATA_PRIMES[0]
    bad_blobs = {
        "truncated": good[:-1],
        "trailing byte": good + b"\0",
        "garbage": os.urandom(len(good)),
        "empty": b"",
        "unreduced residue": tensealproto.vector_bytes(
            size, th.sealio.ciphertext_bytes(th._ids()[0], unreduced.astype(np.uint64),  # noqa: SLF001
                                             ntt=False)),
        "NTT form": tensealproto.vector_bytes(
            size, th.sealio.ciphertext_bytes(th._ids()[0], residues.astype(np.uint64),  # noqa: SLF001
                                             ntt=True)),
        "two sizes": b"\x0a\x04\x80\x20\x80\x20" + good[4:],
    }
    for label, blob in bad_blobs.items():
        assert _reason(lambda b=blob: aggregator.combine(_with_blob(parts, 1, b))) \
            == "malformed-ciphertext", label
    # a vector of another size cannot be added to the others (TenSEAL refuses it too)
    other = tensealproto.vector_bytes(size - 1, ciphertext)
    assert _reason(lambda: aggregator.combine(_with_blob(parts, 1, other))) == "malformed-message"
    # a canonical, uncompressed ciphertext of the right form is accepted, and sums the same
    canonical = tensealproto.vector_bytes(size, th.canonical_bytes(residues))
    same = aggregator.combine(_with_blob(parts, 1, canonical))
    assert [tn.digest(s) for s in tn.pooled_from_sum(same.blobs)] == \
        [tn.digest(s) for s in tn.pooled_from_sum(aggregator.combine(parts).blobs)]
    # context, layout and duplicates as before
    foreign = [nodes.Encrypted(p.kind, "0" * 64, p.blobs, p.contributors) for p in parts]
    assert _reason(lambda: aggregator.combine(foreign)) == "wrong-context"
    short = [parts[0], nodes.Encrypted("survival", keys.fingerprint, parts[1].blobs[:1], ["h2"])]
    assert _reason(lambda: aggregator.combine(short)) == "malformed-message"
    assert _reason(lambda: aggregator.combine([parts[0], parts[0]])) == "duplicate-holder"
