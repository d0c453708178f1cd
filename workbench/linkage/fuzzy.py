"""Privacy-preserving fuzzy linkage: cryptographic long-term keys (CLKs) of name and birth date.

A CLK (Schnell, Bachteler, Reiher 2009) is a 1024-bit Bloom filter: every bigram of every field
is hashed ``k`` times into it by double hashing, ``g_i = h1 + i * h2 (mod 1024)``, where h1 and
h2 are the two halves of an HMAC-SHA-256 of the bigram under a key derived from the holders'
shared secret and the field's group. Records of one person with a typo share most bigrams, so
their CLKs share most bits and the Dice coefficient stays high; the linkage unit, which never
holds the secret, compares CLKs only. This is clkhash's scheme (its schema v1 double hashing,
bigrams padded with a space), written here because clkhash 0.18.3 pins ``cryptography<41``.

First and last name are hashed with one key (group ``name``): a record whose names were put in
each other's fields gets the same CLK. The birth date is hashed as its 8 digits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from collections.abc import Iterable, Sequence

from anonlink import candidate_generation, similarities, solving
from bitarray import bitarray

BITS = 1024
# field -> (key group, k: hashes per bigram). More k for a field = more weight in the Dice score.
FIELDS: dict[str, tuple[str, int]] = {"first_name": ("name", 12), "last_name": ("name", 12),
                                      "birth_date": ("dob", 25)}
THRESHOLD = 0.8
SECRET_BYTES = 32
_CONTEXT = b"workbench/linkage/clk/v1/"


def _normal(field: str, value: object) -> str | None:
    """Case, accents, spaces and punctuation do not tell people apart; a date is its digits,
    so it must come year, month, day (ISO text or a date object) at every holder."""
    if value is None or value != value:  # None, NaN or NaT
        return None
    if hasattr(value, "strftime"):  # a parsed date: str() of a Timestamp would add the time
        value = value.strftime("%Y%m%d")
    text = unicodedata.normalize("NFKD", str(value).casefold())
    keep = str.isdigit if field == "birth_date" else str.isalpha
    text = "".join(c for c in text if keep(c) and not unicodedata.combining(c))
    return text or None


def bigrams(text: str) -> list[str]:
    padded = f" {text} "
    return [padded[i:i + 2] for i in range(len(padded) - 1)]


def _keys(secret: bytes) -> dict[str, bytes]:
    if len(secret) < 16:
        raise ValueError("the shared CLK secret must be at least 16 bytes")
    groups = {group for group, _ in FIELDS.values()}
    return {g: hmac.digest(secret, _CONTEXT + g.encode(), "sha256") for g in groups}


def _clk(record: dict, keys: dict[str, bytes]) -> bitarray:
    bits = bitarray(BITS)
    bits.setall(0)
    for field, (group, k) in FIELDS.items():
        text = _normal(field, record.get(field))
        if text is None:
            continue  # a missing field sets no bits (and so only lowers the score)
        for gram in set(bigrams(text)):
            # random hashing: k independent positions from one keyed BLAKE2b digest (16 bits
            # each, 1024 divides 65536), not double hashing's arithmetic progression, which
            # Niedermeyer et al. (2014) exploit to recover bigrams from the bit patterns
            digest = hashlib.blake2b(gram.encode(), key=keys[group], digest_size=2 * k).digest()
            for i in range(0, 2 * k, 2):
                bits[int.from_bytes(digest[i:i + 2], "big") % BITS] = 1
    return bits


def encode(records: Iterable[dict], secret: bytes) -> list[bitarray]:
    """The holder's side: one CLK per record (dicts with the keys of ``FIELDS``)."""
    keys = _keys(secret)
    return [_clk(record, keys) for record in records]


def serialize(clks: Sequence[bitarray]) -> list[str]:
    """CLKs as base64 text (clkhash's format): what a holder sends the linkage unit."""
    return [base64.b64encode(clk.tobytes()).decode() for clk in clks]


def deserialize(texts: Sequence[str]) -> list[bitarray]:
    out = []
    for row, text in enumerate(texts):
        raw = base64.b64decode(text, validate=True)
        if len(raw) != BITS // 8:
            raise ValueError(f"CLK {row}: {len(raw)} bytes, expected {BITS // 8}")
        clk = bitarray()
        clk.frombytes(raw)
        out.append(clk)
    return out


def dice(a: bitarray, b: bitarray) -> float:
    total = a.count() + b.count()
    return 2 * (a & b).count() / total if total else 0.0


def match(clks_a: Sequence[bitarray], clks_b: Sequence[bitarray],
          threshold: float = THRESHOLD) -> list[tuple[int, int, float]]:
    """The linkage unit's side: one-to-one pairs (row in A, row in B, Dice) with Dice >=
    ``threshold``, best first (anonlink's candidates and greedy solver)."""
    if not clks_a or not clks_b:
        return []
    candidates = candidate_generation.find_candidate_pairs(
        [clks_a, clks_b], similarities.dice_coefficient, threshold)
    scores, _, (rows_a, rows_b) = candidates
    score = {(a, b): s for s, a, b in zip(scores, rows_a, rows_b, strict=True)}
    pairs = []
    for group in solving.greedy_solve(candidates):
        (da, ra), (_db, rb) = sorted(group)
        if da == 0:
            pairs.append((ra, rb, score[(ra, rb)]))
    return sorted(pairs, key=lambda p: -p[2])


def fingerprint(secret: bytes) -> str:
    """A short id of the secret that holders can compare (a wrong secret links nothing)."""
    return hashlib.sha256(_CONTEXT + b"fingerprint" + secret).hexdigest()[:16]
