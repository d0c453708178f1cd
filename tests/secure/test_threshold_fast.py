"""The fast paths of threshold decryption (issue 17, speed) against SEAL's own: the batched
ring product c1 s_i (float64 FFTs) against SEAL's ``multiply_plain``, the byte-level ciphertext
check against SEAL's ``load``, and the per-object digest and sum memos against recomputation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from workbench.secure import threshold as th
from workbench.secure import threshold_node as tn
from workbench.secure import threshold_seal as sealio

SHAPE = (len(th.DATA_PRIMES), th.POLY_DEGREE)


def _seal_product(c1: np.ndarray, share: np.ndarray) -> np.ndarray:
    """c1 s by SEAL (what ``Party.partial`` used before the batch): the share as a plaintext
    (t - 1 lifted to -1 mod q), ``multiply_plain`` on the ciphertext (c1, c1)."""
    sealapi, _parms, ctx = th._seal()
    data = sealio.ciphertext_bytes(th._ids()[0], np.stack([c1, c1]).astype(np.uint64), ntt=False)
    ct = th._load_ciphertext(data)
    lifted = np.where(share < 0, th.PLAIN_MODULUS - 1, share).astype(np.uint64)
    plain = sealio.load(sealapi.Plaintext(), ctx, sealio.plaintext_bytes(lifted))
    sealapi.Evaluator(ctx).multiply_plain_inplace(ct, plain)
    return sealio.residues(sealio.save(ct), (2, *SHAPE))[1][1].astype(np.int64)


def _random_residues(rng, count: int) -> np.ndarray:
    return rng.integers(0, th._PRIMES[:, 0][:, None], size=(count, *SHAPE), dtype=np.int64)


def test_the_fft_ring_product_equals_seals_multiply_plain():
    rng = np.random.default_rng(17)
    shares = [rng.integers(-1, 2, th.POLY_DEGREE), np.ones(th.POLY_DEGREE, dtype=np.int64),
              -np.ones(th.POLY_DEGREE, dtype=np.int64)]
    c1 = _random_residues(rng, 3)
    c1[1] = th._PRIMES - 1  # the largest residues: the largest exact values (|c1 s| near 2^43)
    c1[2, :, ::2] = 0
    for share in shares:
        spectrum = np.fft.fft(share * th._twist())
        fast = th.negacyclic_products(c1, spectrum) % th._PRIMES
        for k in range(len(c1)):
            assert np.array_equal(fast[k], _seal_product(c1[k], share))


def test_the_fft_ring_product_refuses_what_it_cannot_do_exactly():
    spectrum = np.fft.fft(np.ones(th.POLY_DEGREE) * th._twist())
    with pytest.raises(th.ThresholdError):
        th.negacyclic_products(np.full((1, *SHAPE), 1 << 31), spectrum)  # not a residue
    with pytest.raises(th.ThresholdError):
        th.negacyclic_products(np.full((1, *SHAPE), -1), spectrum)
    # a share that is not ternary (large coefficients) loses exactness: refused, not rounded
    big = np.fft.fft(np.full(th.POLY_DEGREE, 1 << 30) * th._twist())
    with pytest.raises(AssertionError, match="not exact"):
        th.negacyclic_products(_random_residues(np.random.default_rng(1), 1), big)


def test_batched_partials_are_bound_each_to_its_ciphertext_and_decrypt():
    seed = tn.new_seed()
    made = [th.Party.generate(seed) for _ in range(3)]
    parties = [p for p, _ in made]
    key = th.joint_public_key(seed, [s for _, s in made], [th.commitment(s) for _, s in made])
    import tenseal as ts

    ctx = th.tenseal_context(key)
    values = [[1, 2, 3], [40, 50, 60], [7]]
    cts = [th.seal_ciphertexts(ctx, ts.bfv_vector(ts.context_from(ctx), v).serialize())[0]
           for v in values]
    batches = [p.partials(cts) for p in parties]
    for k, v in enumerate(values):
        assert th.decrypt(cts[k], [b[k] for b in batches])[:len(v)].tolist() == v
    with pytest.raises(th.ThresholdError, match="another ciphertext"):
        th.decrypt(cts[0], [batches[0][1], batches[1][0], batches[2][0]])
    # fresh flooding per ciphertext and per call
    assert batches[0][0] != parties[0].partials(cts)[0]


def _mutations(data: bytes):
    """Single-byte changes to every member before the coefficients, a residue at its prime,
    truncation and extension."""
    body = sealio._body(data)
    members = len(body) - 8 * 2 * SHAPE[0] * SHAPE[1]
    for at in range(members):
        changed = bytearray(body)
        changed[at] ^= 0x01
        yield sealio._frame(bytes(changed))
    polys = sealio.residues(data, (2, *SHAPE))[1].copy()
    polys[1, 2, 5] = th.DATA_PRIMES[2]
    yield sealio.ciphertext_bytes(th._ids()[0], polys, ntt=False)
    yield data[:-8]
    yield sealio._frame(body + b"\0" * 8)
    yield sealio.ciphertext_bytes(th._ids()[0], polys[:, :, :-1], ntt=False)
    yield sealio.ciphertext_bytes(th._ids()[0], sealio.residues(data, (2, *SHAPE))[1], ntt=True)


def test_the_byte_level_ciphertext_check_refuses_all_seal_refuses_and_more():
    rng = np.random.default_rng(5)
    polys = _random_residues(rng, 2)
    good = sealio.ciphertext_bytes(th._ids()[0], polys.astype(np.uint64), ntt=False)
    assert np.array_equal(th.ciphertext_residues(good), polys)
    th._load_ciphertext(good)
    seal_accepts = 0
    for bad in _mutations(good):
        try:
            th._load_ciphertext(bad)
            seal_accepts += 1
        except (th.ThresholdError, sealio.SealFormatError):
            pass
        with pytest.raises((th.ThresholdError, sealio.SealFormatError)):
            th.ciphertext_residues(bad)
    # SEAL ignores a few members' bytes (the reserved bytes of a header); this check does not
    assert seal_accepts < 10


def test_digests_are_remembered_only_for_the_very_same_bytes_object():
    data = bytes(range(256)) * 400
    assert th._digest(data) == hashlib.sha256(data).hexdigest()
    same = th._digest(data)
    copy = bytes(bytearray(data))
    assert copy is not data and th._digest(copy) == same
    mutable = bytearray(data)
    assert th._digest(mutable) == same
    mutable[0] ^= 1
    assert th._digest(mutable) == hashlib.sha256(mutable).hexdigest() != same
    other = bytes(reversed(data))
    assert th._digest(other) == hashlib.sha256(other).hexdigest()


def test_the_remembered_sum_is_the_sum_of_the_exact_contributions():
    import tenseal as ts

    seed = tn.new_seed()
    made = [th.Party.generate(seed) for _ in range(2)]
    key = th.joint_public_key(seed, [s for _, s in made], [th.commitment(s) for _, s in made])
    ctx = ts.context_from(th.tenseal_context(key))
    a, b, c = (ts.bfv_vector(ctx, [v]).serialize() for v in (1, 2, 5))
    first = tn.pooled([[a], [b]])
    assert tn.pooled([[a], [b]]) == first  # remembered
    other = tn.pooled([[a], [c]])  # another contribution: another sum, not the remembered one
    assert other != first
    assert tn.pooled([[b], [a]])[0] == first[0]  # addition commutes, the bytes too
    parties = [p for p, _ in made]
    assert th.decrypt(other[0], [p.partial(other[0]) for p in parties])[0] == 6


def test_the_numpy_scale_and_round_equals_seals_decryptor():
    """BFV's decryption of (x, 0) under the zero key: SEAL's Decryptor and ``scale_and_round``
    agree on random values (every fractional part) and on the ends of the range."""
    sealapi, _parms, ctx = th._seal()
    rng = np.random.default_rng(3)
    cases = [_random_residues(rng, 1)[0] for _ in range(4)]
    cases += [np.zeros(SHAPE, dtype=np.int64), np.broadcast_to(th._PRIMES - 1, SHAPE).copy()]
    for x in cases:
        switched = np.stack([x, np.zeros_like(x)]).astype(np.uint64)
        ct = sealio.load(sealapi.Ciphertext(), ctx,
                         sealio.ciphertext_bytes(th._ids()[0], switched, ntt=False))
        plain = sealapi.Plaintext()
        th._zero_key_decryptor().decrypt(ct, plain)
        want = np.array(th._encoder().decode_int64(plain), dtype=np.int64)
        assert np.array_equal(th.decode(th.scale_and_round(x)), want)


def test_known_residues_belong_to_the_very_canonical_bytes_only():
    rng = np.random.default_rng(9)
    polys = _random_residues(rng, 2)
    data = th.canonical_bytes(polys)
    assert data == sealio.ciphertext_bytes(th._ids()[0], polys.astype(np.uint64), ntt=False)
    known = th._residues(data)
    assert np.array_equal(known, polys) and not known.flags.writeable
    copy = bytes(bytearray(data))  # equal bytes, another object: parsed and checked again
    again = th._residues(copy)
    assert again is not known and np.array_equal(again, polys)
    bad = polys.copy()
    bad[0, 0, 0] = th.DATA_PRIMES[0]
    with pytest.raises(th.ThresholdError):
        th.canonical_bytes(bad)
