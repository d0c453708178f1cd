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

What it does not stop: adding an encryption whose MAC slots are 0 on top of the genuine sum
(docs/secure.md, Limits).
"""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np

from workbench.secure.keys import BFV_PLAIN_MODULUS

DOMAIN = "workbench-he-mac-v1"
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


def expected(keys: list[bytes], nonce: str, kind: str, spec_hash: str,
             schemes: list[str]) -> list[int | float]:
    """What the pooled MAC slots must hold when exactly the holders of ``keys`` contributed."""
    total = [0] * len(schemes)
    for key in keys:
        for i, value in enumerate(slot_values(key, nonce, kind, spec_hash, schemes)):
            total[i] += value
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
