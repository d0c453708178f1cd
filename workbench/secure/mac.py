"""Homomorphic MACs on HE contributions (security boundary: checked by ``keyholder.py``).

Signatures bind each holder's ciphertexts as they leave the holder, but the key holder sees only
the pooled sum, so an aggregator could swap a signed contribution for its own ciphertext and keep
the signature. To catch that, every holder shares a secret MAC key with the key holder (never with
the aggregator) and puts, into the last slot of each of its ciphertexts, a pseudorandom value
r_i = PRF(key, nonce, kind, spec hash, "bfv", ciphertext index i). Additions keep these slots
summing, so the pooled slot must equal the sum of the r_i of exactly the holders that signed.
The aggregator cannot compute any r_i, so replacing, dropping, repeating or scaling a holder's
ciphertext changes the slot by an amount it cannot predict: r_i is uniform mod the plain modulus
t (a prime ~2^30); a wrong slot passes with probability 1/t ~ 1e-9 per ciphertext. Every
ciphertext is BFV (real values travel as fixed-point digits, ``ops.encode_reals``), so every MAC
slot is exact and value-binding.

Value binding: r_i alone does not depend on the values, so an aggregator could add an encryption
of its own offset with 0 in the MAC slot on top of the genuine sum and shift the values the
release rules check. So every holder and the key holder also share one round-weight key (never
the aggregator): per round and per ciphertext i it gives weights w_ij uniform in [0, t), and
holder h's MAC slot is r_hi + sum_j w_ij v_hij mod t. The slot stays linear in the values, so
the pooled slot must equal sum_h r_hi + sum_j w_ij V_ij mod t for the pooled values V; an offset
d != 0 added with 0 in its MAC slot moves the expected value by sum_j w_ij d_j and the slot not
at all, and that sum is 0 mod t with probability 1/t for weights the aggregator does not know.
This covers the fixed-point digits of the real values as much as the counts.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json

import numpy as np

from workbench.secure.keys import BFV_PLAIN_MODULUS

DOMAIN = "workbench-he-mac-v1"
WEIGHTS_DOMAIN = "workbench-he-weights-v1"
KEY_BYTES = 32


def slot_values(key: bytes, nonce: str, kind: str, spec_hash: str, count: int) -> list[int]:
    """The holder's MAC slot r_i for each of its ``count`` BFV ciphertexts."""
    # HMAC over the round's JSON (closed by "]", so unambiguous), then "|bfv|index": the label
    # is part of the PRF input (from when there were two schemes); changing it would change
    # every MAC, so it stays byte for byte (tests/secure/test_secure_mac.py pins the values)
    prefix = json.dumps([DOMAIN, nonce, kind, spec_hash], separators=(",", ":")).encode()
    keyed = hmac.new(key, prefix, hashlib.sha256)
    out: list[int] = []
    for index in range(count):
        one = keyed.copy()
        one.update(f"|bfv|{index}".encode())
        # 128 bits mod a 30-bit prime: bias below 2^-98
        out.append(int.from_bytes(one.digest()[:16], "big") % BFV_PLAIN_MODULUS)
    return out


def weights(weight_key: bytes, nonce: str, kind: str, spec_hash: str, index: int,
            size: int) -> np.ndarray:
    """The round's weights for ciphertext ``index``: ``size`` integers uniform in [0, t)."""
    prefix = json.dumps([WEIGHTS_DOMAIN, nonce, kind, spec_hash, index], separators=(",", ":"))
    digest = hmac.new(weight_key, prefix.encode(), hashlib.sha256).digest()
    # Philox's 128-bit key from the HMAC; Generator.integers draws without modulo bias
    rng = np.random.Generator(np.random.Philox(key=np.frombuffer(digest[:16], dtype="<u8")))
    return rng.integers(0, BFV_PLAIN_MODULUS, size, dtype=np.int64)


_HALF_BITS = 15
assert BFV_PLAIN_MODULUS < (1 << 30) + (1 << 14)  # the bound _weight_halves relies on


@functools.lru_cache(maxsize=64)
def _weight_halves(weight_key: bytes, nonce: str, kind: str, spec_hash: str, index: int,
                   size: int) -> tuple[np.ndarray, np.ndarray]:
    """The weights split as w = hi * 2^15 + lo, so that a tag needs no per-slot modulo: t is
    below 2^30 + 2^14, so hi <= 2^15 and, for values in [0, t), hi * v < 2^45.1; a dot product
    of at most 2^16 of them stays below 2^62 (int64). Kept for the last rounds, read-only: every
    holder played by one process (the gateway) and the key holder use the same round's."""
    w = weights(weight_key, nonce, kind, spec_hash, index, size)
    halves = w >> _HALF_BITS, w & ((1 << _HALF_BITS) - 1)
    for half in halves:  # shared through the cache
        half.flags.writeable = False
    return halves


def value_tags(weight_key: bytes, nonce: str, kind: str, spec_hash: str,
               data: list[np.ndarray]) -> list[int]:
    """sum_j w_ij v_ij mod t for each ciphertext's data slots (all but the MAC slot)."""
    out = []
    for index, values in enumerate(data):
        if len(values) > 1 << 16:
            raise AssertionError("a BFV ciphertext has at most 2^16 data slots")
        hi, lo = _weight_halves(weight_key, nonce, kind, spec_hash, index, len(values))
        v = np.asarray(values)
        v = (np.rint(v) if v.dtype.kind == "f" else v).astype(np.int64, copy=False)
        if len(v) and (v.min() < 0 or v.max() >= BFV_PLAIN_MODULUS):
            v = np.mod(v, BFV_PLAIN_MODULUS)  # e.g. the key holder's negative representatives
        out.append(((int(hi @ v) << _HALF_BITS) + int(lo @ v)) % BFV_PLAIN_MODULUS)
    return out


def holder_slots(key: bytes, weight_key: bytes, nonce: str, kind: str, spec_hash: str,
                 data: list[np.ndarray]) -> list[int]:
    """The MAC slot of each of a holder's ciphertexts: r_i plus its value tag (``data``: the
    data slots of each ciphertext, one entry per ciphertext)."""
    tags = value_tags(weight_key, nonce, kind, spec_hash, data)
    out = slot_values(key, nonce, kind, spec_hash, len(data))
    for i, tag in enumerate(tags):
        out[i] = (out[i] + tag) % BFV_PLAIN_MODULUS
    return out


def expected(keys: list[bytes], weight_key: bytes, nonce: str, kind: str, spec_hash: str,
             data: list[np.ndarray]) -> list[int]:
    """What the pooled MAC slots must hold when exactly the holders of ``keys`` contributed and
    the pooled ciphertexts' data slots hold ``data`` (one entry per ciphertext)."""
    total = [0] * len(data)
    for key in keys:
        for i, value in enumerate(slot_values(key, nonce, kind, spec_hash, len(data))):
            total[i] += value
    for i, tag in enumerate(value_tags(weight_key, nonce, kind, spec_hash, data)):
        total[i] += tag
    return [t % BFV_PLAIN_MODULUS for t in total]


def matches(decrypted: np.ndarray, want: int) -> bool:
    """Does one decrypted ciphertext (its last slot the MAC) carry the MAC ``want``?"""
    return int(round(float(decrypted[-1]))) % BFV_PLAIN_MODULUS == want
