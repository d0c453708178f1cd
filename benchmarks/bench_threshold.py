"""Threshold decryption (issue 17, ``workbench/secure/threshold.py``): 3 parties, a KM round on
bench_secure's synthetic cohort (1,826 daily bins: one BFV ciphertext per holder).

The baseline is the same round decrypted with one ordinary SEAL secret key at the same
parameters (kept here, in benchmarks/, only as that baseline). A round is: each holder bins its
rows (ops.holder_vectors) and encrypts them under the key, the aggregator adds the ciphertexts,
and the sum is decrypted: by one Decryptor, or by 3 partial decryptions plus the combine. The
partials run in sequence in one process here; on holder nodes they run in parallel, so the
"critical path" figure counts one partial plus the combine. Timed alternately (bench_secure's
``paired``: median of per-pair ratios).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

PARTIES = 3


def _bench_secure():
    path = Path(__file__).with_name("bench_secure.py")
    spec = importlib.util.spec_from_file_location("bench_secure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _single_key():
    """BASELINE ONLY: one whole secret key at the threshold parameters."""
    from workbench.secure import threshold as th
    from workbench.secure import threshold_seal as sealio

    sealapi, ctx = th._seal()[0], th.context()
    keygen = sealapi.KeyGenerator(ctx)
    public = sealapi.PublicKey()
    keygen.create_public_key(public)
    decryptor, encoder = sealapi.Decryptor(ctx, keygen.secret_key()), sealapi.BatchEncoder(ctx)

    def decrypt(ciphertext: bytes):
        ct = sealio.load(sealapi.Ciphertext(), ctx, ciphertext)
        plain = sealapi.Plaintext()
        decryptor.decrypt(ct, plain)
        return encoder.decode_int64(plain)

    return th.tenseal_context(sealio.save(public)), decrypt


def run(full: bool) -> list[dict]:
    import numpy as np
    import tenseal as ts

    from workbench.secure import ops
    from workbench.secure import threshold as th

    bench = _bench_secure()
    n = 100_000 if full else 10_000
    frames = list(bench.split(bench.cohort(n)).values())
    spec = {"duration_col": "days", "event_col": "event", "resolution": 1.0,
            "n_bins": bench.BINS, "by": []}
    seed = os.urandom(32)
    parties, shares = zip(*(th.Party.generate(seed) for _ in range(PARTIES)), strict=True)
    joint_context = th.tenseal_context(th.joint_public_key(
        seed, list(shares), [th.commitment(s) for s in shares]))
    single_context, single_decrypt = _single_key()

    def threshold_decrypt(ciphertext: bytes):
        return th.decrypt(ciphertext, [p.partial(ciphertext) for p in parties])

    def km_round(context: bytes, decrypt):
        ctx = ts.context_from(context)
        total = None
        for frame in frames:
            vector = ops.holder_vectors("survival", spec, frame)["bfv"]
            ct = ts._ts_cpp.BFVVector(ctx.data, vector.astype(np.int64).tolist())
            total = ct if total is None else total + ct
        blob = total.serialize()
        [ciphertext] = th.seal_ciphertexts(context, blob)
        return decrypt(ciphertext), blob, ciphertext

    mine, _, ciphertext = km_round(joint_context, threshold_decrypt)
    want = np.sum([ops.holder_vectors("survival", spec, f)["bfv"] for f in frames], axis=0)
    assert np.array_equal(np.asarray(mine)[:len(want)], want), "threshold KM round is wrong"
    repeat = 9 if full else 5
    whole = bench.paired(lambda: km_round(joint_context, threshold_decrypt),
                         lambda: km_round(single_context, single_decrypt), repeat)
    [single_ct] = th.seal_ciphertexts(single_context, km_round(single_context,
                                                               single_decrypt)[1])
    decrypt_only = bench.paired(lambda: threshold_decrypt(ciphertext),
                                lambda: single_decrypt(single_ct), repeat * 3)
    one = bench.paired(lambda: parties[0].partial(ciphertext),
                       lambda: single_decrypt(single_ct), repeat * 3)
    partial = parties[0].partial(ciphertext)
    shamir = _shamir_party(parties)
    shamir_one = bench.paired(lambda: shamir.partial(ciphertext, [1, 2]),
                              lambda: single_decrypt(single_ct), repeat * 3)
    partials = [p.partial(ciphertext) for p in parties]
    start = time.perf_counter()
    for _ in range(repeat):
        th.decrypt(ciphertext, partials)
    combine_ms = (time.perf_counter() - start) / repeat * 1e3
    table = th.parameters()
    common = {"parties": PARTIES, "params": f"BFV N={table['poly_modulus_degree']} "
              f"q={table['q_bits']} bits (+{th.SPECIAL_PRIME.bit_length()} key-level) "
              f"t={th.PLAIN_MODULUS}",
              "flood_bits": th.FLOOD_BITS, "budget_after_bits": table["budget_after_bits"]}
    return [
        {"name": f"threshold KM round, {PARTIES} parties (partials in sequence) / single-key "
                 f"round, n={n:.0e}", "ratio": whole["ratio"], "goal": 1.5,
         "ms": whole["ms"], "single_key_ms": whole["baseline_ms"], **common},
        {"name": f"threshold decryption ({PARTIES} partials + combine) / single-key decryption",
         "ratio": decrypt_only["ratio"], "goal": None, "ms": decrypt_only["ms"],
         "single_key_ms": decrypt_only["baseline_ms"],
         "critical_path_ms": one["ms"] + combine_ms, "combine_ms": combine_ms, **common},
        {"name": "one party's partial decryption of a KM aggregate / single-key decryption",
         "ratio": one["ratio"], "goal": None, "ms": one["ms"], "partial_bytes": len(partial),
         "ciphertext_bytes_seal": len(ciphertext), "ciphertext_bytes_tenseal": len(whole["out"][1]),
         **common},
        {"name": "one party's t-of-N (Shamir, t=2 of 3) partial decryption / single-key "
                 "decryption", "ratio": shamir_one["ratio"], "goal": None,
         "ms": shamir_one["ms"], **common},
    ]


def _shamir_party(parties):
    """Party 1's Shamir share after the three parties re-share for t = 2."""
    from workbench.secure import threshold_shamir as sh

    ids = [1, 2, 3]
    dealt = [sh.deal(p, i, ids, 2) for p, i in zip(parties, ids, strict=True)]
    return sh.ShamirParty.receive(1, [d[1] for d in dealt])

