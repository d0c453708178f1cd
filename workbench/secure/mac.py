"""Homomorphic MACs on HE contributions (security boundary: checked by ``keyholder.py``).

Signatures bind each holder's ciphertexts as they leave the holder, but the key holder sees only
the pooled sum, so an aggregator could swap a signed contribution for its own ciphertext and keep
the signature. To catch that, every holder shares a secret MAC key with the key holder (never with
the aggregator) and puts, into the last slot of each of its ciphertexts, a pseudorandom value
r_i = PRF(key, nonce, kind, spec hash, scheme, ciphertext index i). Additions keep these slots
summing, so the pooled slot must equal the sum of the r_i of exactly the holders that signed.
The aggregator cannot compute any r_i, so replacing, dropping, repeating or scaling a holder's
ciphertext changes the slot by an amount it cannot predict:

- BFV: r_i is uniform mod the plain modulus t (a prime ~2^30); a wrong slot passes with
  probability 1/t ~ 1e-9 per ciphertext.
- CKKS: r_i is uniform in [0, 2^20); the key holder accepts |slot - sum| <= tolerance(M), with
  M the largest decrypted |value| of that ciphertext (CKKS error grows with it): 1e-3 + 1e-13 M
  (measured errors: <= 1e-16 M with 32 holders, 3e-15 M at worst seen). A guess passes with
  probability 2 tolerance / 2^20: ~2e-9 while M <= 1e10. The key holder refuses ciphertexts with
  M > MAX_CKKS_MAGNITUDE, so a forger cannot widen the tolerance past ~2e-4 by packing huge
  values.

Value binding (BFV only): r_i alone does not depend on the values, so an aggregator could add an
encryption of its own offset with 0 in the MAC slot on top of the genuine sum and shift the counts
the release rules check. So every holder and the key holder also share one round-weight key
(never the aggregator): per round and per BFV ciphertext i it gives weights w_ij uniform in
[0, t), and holder h's BFV MAC slot is r_hi + sum_j w_ij v_hij mod t. The slot stays linear in the
values, so the pooled slot must equal sum_h r_hi + sum_j w_ij V_ij mod t for the pooled values V;
an offset d != 0 added with 0 in its MAC slot moves the expected value by sum_j w_ij d_j and the
slot not at all, and that sum is 0 mod t with probability 1/t for weights the aggregator does
not know. CKKS MAC slots bind no values (docs/secure.md, Limits).
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
CKKS_RANGE = 2.0 ** 20
MAX_CKKS_MAGNITUDE = 1e15


def slot_values(key: bytes, nonce: str, kind: str, spec_hash: str,
                schemes: list[str]) -> list[int | float]:
    """The holder's MAC slot for each of its ciphertexts (``schemes``: one per ciphertext)."""
    # HMAC over the round's JSON (closed by "]", so unambiguous), then "|scheme|index"
    prefix = json.dumps([DOMAIN, nonce, kind, spec_hash], separators=(",", ":")).encode()
    keyed = hmac.new(key, prefix, hashlib.sha256)
    out: list[int | float] = []
    for index, scheme in enumerate(schemes):
        one = keyed.copy()
        one.update(f"|{scheme}|{index}".encode())
        digest = one.digest()
        if scheme == "bfv":  # 128 bits mod a 30-bit prime: bias below 2^-98
            out.append(int.from_bytes(digest[:16], "big") % BFV_PLAIN_MODULUS)
        else:  # 53 random bits as a double in [0, 2^20)
            out.append((int.from_bytes(digest[:8], "big") >> 11) * 2.0 ** -53 * CKKS_RANGE)
    return out


def weights(weight_key: bytes, nonce: str, kind: str, spec_hash: str, index: int,
            size: int) -> np.ndarray:
    """The round's weights for BFV ciphertext ``index``: ``size`` integers uniform in [0, t)."""
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
    """sum_j w_ij v_ij mod t for each BFV ciphertext's data slots (all but the MAC slot)."""
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
                 schemes: list[str], bfv_data: list[np.ndarray]) -> list[int | float]:
    """The MAC slot of each of a holder's ciphertexts: r_i, plus the value tag for BFV ones
    (``bfv_data``: the data slots of its BFV ciphertexts, which come first)."""
    tags = value_tags(weight_key, nonce, kind, spec_hash, bfv_data)
    out = slot_values(key, nonce, kind, spec_hash, schemes)
    for i, tag in enumerate(tags):
        out[i] = (out[i] + tag) % BFV_PLAIN_MODULUS
    return out


def expected(keys: list[bytes], weight_key: bytes, nonce: str, kind: str, spec_hash: str,
             schemes: list[str], bfv_data: list[np.ndarray]) -> list[int | float]:
    """What the pooled MAC slots must hold when exactly the holders of ``keys`` contributed and
    the pooled BFV ciphertexts' data slots hold ``bfv_data``."""
    total = [0] * len(schemes)
    for key in keys:
        for i, value in enumerate(slot_values(key, nonce, kind, spec_hash, schemes)):
            total[i] += value
    for i, tag in enumerate(value_tags(weight_key, nonce, kind, spec_hash, bfv_data)):
        total[i] += tag
    return [t % BFV_PLAIN_MODULUS if s == "bfv" else float(t)
            for t, s in zip(total, schemes, strict=True)]


def tolerance(largest: float) -> float:
    return 1e-3 + 1e-13 * largest


def matches(scheme: str, decrypted: np.ndarray, want: int | float) -> bool:
    """Does one decrypted ciphertext (its last slot the MAC) carry the MAC ``want``?"""
    if scheme == "bfv":
        return int(round(float(decrypted[-1]))) % BFV_PLAIN_MODULUS == want
    largest = float(np.max(np.abs(decrypted))) if len(decrypted) else 0.0
    return abs(float(decrypted[-1]) - want) <= tolerance(largest)
