"""N-out-of-N threshold BFV on SEAL ciphertexts (issue #17; docs/secure.md, "Threshold
decryption"). Protocols of Mouchet et al., "Multiparty Homomorphic Encryption from
Ring-Learning-with-Errors" (PETS 2021, eprint 2020/304), as Lattigo's ``multiparty`` package does
them: collective key generation (CKG) from a public seed and collective decryption (a key switch
to the zero key) with noise flooding.

Each ``Party`` draws its ternary share s_i with SEAL's own sampler and publishes only
p_i = -a s_i + e_i, a being the seed's uniform polynomial; the joint key (sum p_i, a) is an
ordinary SEAL PublicKey, so SEAL and TenSEAL encrypt with it unchanged. To decrypt (c0, c1),
every party sends h_i = c1 s_i + E_i, E_i uniform in [-FLOOD_BOUND, FLOOD_BOUND]; then
c0 + sum h_i = Delta m + noise, and BFV's scale-and-round gives m. The joint secret sum s_i is
never formed: each function below sees one share, or only public values.

Arithmetic: the data primes are below 2^31, so products of residues fit in int64 in NumPy; the
ring product c1 s_i is SEAL's ``multiply_plain`` (its NTT, in C++), which lifts the plaintext
coefficient t - 1 to -1 mod q; the final scale-and-round is SEAL's Decryptor under the zero key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache

import numpy as np

from workbench.errors import WorkbenchUserError
from workbench.secure import tensealproto, wire
from workbench.secure import threshold_seal as sealio
from workbench.secure.keys import BFV_PLAIN_MODULUS

POLY_DEGREE = 4096
# Three data primes just below 2^31 (p = 1 mod 2N, for SEAL's NTT) and SEAL's key-level
# ("special") prime, as small as p = 1 mod 2N allows: SEAL keeps keys at all four primes and
# encrypts at the first three, so every bit given to the special prime is lost to the data. 109
# bits in all: the most the HE standard allows at N = 4096 for 128-bit security.
DATA_PRIMES = (2147377153, 2147352577, 2147295233)
SPECIAL_PRIME = 40961
PLAIN_MODULUS = BFV_PLAIN_MODULUS  # the space's t: the MAC slots (mac.py) depend on it
SIGMA = 3.2  # SEAL's error standard deviation (clipped at 6 sigma)
MAX_PARTIES = 32
MAX_SUMMANDS = 32  # contributions summed in one aggregate (one per holder)
FLOOD_BITS = 40
TAIL_SIGMAS = 12  # P(|N(0,1)| > 12) < 2^-107: per coefficient, under the central limit theorem

Q = math.prod(DATA_PRIMES)
_PRIMES = np.array(DATA_PRIMES, dtype=np.int64)[:, None]
_KEY_PRIMES = np.array((*DATA_PRIMES, SPECIAL_PRIME), dtype=np.int64)[:, None]
CRS_DOMAIN = b"workbench-threshold-crs-v1"


class ThresholdError(WorkbenchUserError):
    def __init__(self, message: str):
        super().__init__(f"Threshold decryption refused: {message}", reason="threshold-refused")


def noise_bound(parties: int = MAX_PARTIES, summands: int = MAX_SUMMANDS) -> int:
    """A bound on any coefficient of c0 + c1 s - Delta m for a sum of ``summands`` fresh
    encryptions under the joint key of ``parties`` shares (s = sum of ternary s_i).

    SEAL encrypts at all four primes, then divides by the special prime P and rounds. Before the
    division the noise is u e + e1 + e2 s (variance per coefficient 2 N n (2/3) sigma^2 +
    sigma^2); after it, that over P^2, plus the rounding r0 + r1 s (1/12 + N n (2/3)/12). Each
    summand adds up to 1 from rounding Delta m. ``TAIL_SIGMAS`` standard deviations of the sum."""
    var_key = 2 * POLY_DEGREE * parties * (2 / 3) * SIGMA**2 + SIGMA**2
    var = var_key / SPECIAL_PRIME**2 + 1 / 12 + POLY_DEGREE * parties * (2 / 3) / 12
    return math.ceil(TAIL_SIGMAS * math.sqrt(summands * var)) + summands


FLOOD_BOUND = (1 << FLOOD_BITS) * noise_bound()  # each party's flooding: 2^40 x the noise bound


def parameters() -> dict:
    """The table of docs/secure.md: what the noise budget is before and after flooding."""
    limit = Q // (2 * PLAIN_MODULUS)  # decryption is exact while |noise| < q / 2t
    bound = noise_bound()
    flooded = bound + MAX_PARTIES * FLOOD_BOUND
    return {"poly_modulus_degree": POLY_DEGREE, "data_primes": list(DATA_PRIMES),
            "special_prime": SPECIAL_PRIME, "q_bits": round(math.log2(Q), 2),
            "total_bits": sum(p.bit_length() for p in (*DATA_PRIMES, SPECIAL_PRIME)),
            "plain_modulus": PLAIN_MODULUS, "sigma": SIGMA, "max_parties": MAX_PARTIES,
            "max_summands": MAX_SUMMANDS, "noise_bound_bits": round(math.log2(bound), 2),
            "flood_bits": FLOOD_BITS, "flood_bound_bits": round(math.log2(FLOOD_BOUND), 2),
            "budget_before_bits": round(math.log2(limit / bound), 2),
            "budget_after_bits": round(math.log2(limit / flooded), 2),
            "polynomial_distance_bits": round(math.log2(2 * FLOOD_BOUND / (POLY_DEGREE * bound)),
                                              2)}


FINGERPRINT = hashlib.sha256(json.dumps(parameters(), sort_keys=True).encode()).hexdigest()[:16]
assert parameters()["budget_after_bits"] > 1, "flooding must leave room to decrypt"


@cache
def _seal():
    from tenseal import sealapi

    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(POLY_DEGREE)
    parms.set_coeff_modulus([sealapi.Modulus(p) for p in (*DATA_PRIMES, SPECIAL_PRIME)])
    parms.set_plain_modulus(sealapi.Modulus(PLAIN_MODULUS))
    context = sealapi.SEALContext(parms, False, sealapi.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():  # SEAL checks primes, NTT and the 128-bit bound itself
        raise AssertionError(f"SEAL refused the threshold parameters: "
                             f"{context.parameters_error_message()}")
    return sealapi, parms, context


def context():
    return _seal()[2]


def _ids():
    ctx = context()
    return ctx.first_parms_id(), ctx.key_parms_id()


def common_polynomial(seed: bytes) -> np.ndarray:
    """The CRS a, uniform in NTT form at the four key primes (NTT is a bijection, so uniform
    there is uniform): SHAKE-256 of the seed, rejection-sampled per prime (no modulo bias)."""
    rows = []
    for index, prime in enumerate(_KEY_PRIMES[:, 0]):
        mask = (1 << int(prime).bit_length()) - 1
        xof = hashlib.shake_256(CRS_DOMAIN + bytes([index]) + seed)
        length, row = 2 * POLY_DEGREE, np.empty(0, dtype=np.int64)
        while row.size < POLY_DEGREE:
            draws = np.frombuffer(xof.digest(8 * length), dtype="<u8").astype(np.int64) & mask
            row = draws[draws < prime][:POLY_DEGREE]
            length *= 2
        rows.append(row)
    return np.stack(rows)


def _pack(kind: str, header: dict, polys: np.ndarray) -> bytes:
    return wire.encode({"kind": kind, "parameters": FINGERPRINT, **header},
                       [np.ascontiguousarray(polys, dtype="<u4").tobytes()])


def _unpack(kind: str, data: bytes, primes: np.ndarray) -> tuple[dict, np.ndarray]:
    header, blobs = wire.decode(data)
    shape = (len(primes), POLY_DEGREE)
    if header.get("kind") != kind or header.get("parameters") != FINGERPRINT:
        raise ThresholdError(f"not a {kind} for these parameters")
    if len(blobs) != 1 or len(blobs[0]) != 4 * math.prod(shape):
        raise ThresholdError(f"a {kind} must hold {shape[0]} x {shape[1]} residues")
    polys = np.frombuffer(blobs[0], dtype="<u4").reshape(shape).astype(np.int64)
    if (polys >= primes).any():
        raise ThresholdError(f"a {kind} residue is not reduced")
    return header, polys


def _load_ciphertext(data: bytes):
    """A fresh-level, coefficient-form BFV ciphertext given as SEAL bytes; SEAL validates it."""
    sealapi = _seal()[0]
    ct = sealio.load(sealapi.Ciphertext(), context(), data)
    if ct.size() != 2 or ct.is_ntt_form() or ct.parms_id() != _ids()[0]:
        raise ThresholdError("the ciphertext is not a fresh-level BFV ciphertext at these "
                             "parameters")
    return ct


@cache
def _members() -> bytes:
    """The members, up to the coefficients, of every fresh-level, coefficient-form, size-2 BFV
    ciphertext at these parameters (parms_id, NTT flag, size, degree, primes, scale, correction
    factor, the coefficient array's own header and count): what SEAL's ``load`` checks them
    against, as one byte string."""
    zero = np.zeros((2, len(DATA_PRIMES), POLY_DEGREE), dtype=np.uint64)
    body = sealio._body(sealio.ciphertext_bytes(_ids()[0], zero, ntt=False))  # noqa: SLF001
    return body[:len(body) - 8 * zero.size]


def ciphertext_residues(data: bytes) -> np.ndarray:
    """(c0, c1) residues, shape (2, primes, N) int64, of a ciphertext's SEAL bytes (as SEAL's
    ``save`` writes them, zstd-compressed, or canonical, uncompressed). Checked as SEAL's
    ``load`` checks a ciphertext, and more strictly: every member before the coefficients must
    be byte for byte those of a fresh-level, coefficient-form, size-2 ciphertext at these
    parameters, the length exact, and every residue below its prime (``_load_ciphertext`` did
    the same through SEAL at 0.3-0.7 ms a ciphertext, besides a second decompression)."""
    members, polys = sealio.residues(data, (2, len(DATA_PRIMES), POLY_DEGREE))  # or refused
    if members != _members() or (polys >= _PRIMES.astype(np.uint64)).any():
        raise ThresholdError("the ciphertext is not a fresh-level BFV ciphertext at these "
                             "parameters")
    return polys.astype(np.int64)


_KNOWN: OrderedDict[int, tuple[bytes, np.ndarray]] = OrderedDict()
_KNOWN_KEEP = 64  # canonical sums whose residues are known (a Cox round has 57): ~25 MB


def canonical_bytes(polys: np.ndarray) -> bytes:
    """The canonical SEAL bytes (compression off) of a ciphertext's reduced residues (2, primes,
    N); the residues are remembered for these very bytes (a read-only copy, by the object's
    identity while it is kept), so the parties and the checker that decrypt them need not parse
    them again."""
    if polys.shape != (2, len(DATA_PRIMES), POLY_DEGREE) or polys.min(initial=0) < 0 \
            or (polys >= _PRIMES).any():
        raise ThresholdError("canonical bytes need reduced residues of one ciphertext")
    data = sealio.ciphertext_bytes(_ids()[0], polys.astype(np.uint64), ntt=False)
    known = np.array(polys, dtype=np.int64)
    known.flags.writeable = False
    with _DIGEST_LOCK:
        _KNOWN[id(data)] = (data, known)
        while len(_KNOWN) > _KNOWN_KEEP:
            _KNOWN.popitem(last=False)
    return data


def _residues(data: bytes) -> np.ndarray:
    """(c0, c1) of a ciphertext's SEAL bytes, validated (``ciphertext_residues``), or known
    from ``canonical_bytes`` for these very bytes (read-only)."""
    with _DIGEST_LOCK:
        hit = _KNOWN.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    return ciphertext_residues(data)


_DIGESTS: OrderedDict[int, tuple[bytes, str]] = OrderedDict()
_DIGEST_BYTES = [0]
_DIGEST_BUDGET = 64 << 20  # the objects a digest is remembered for: at most 64 MiB of them
_DIGEST_LOCK = threading.Lock()


def _digest(data: bytes) -> str:
    """SHA-256 of ``data``, the exact bytes. For an immutable ``bytes`` object the digest is
    remembered by the object's identity while a reference to that very object is kept (so the
    identity cannot be reused by another object): in one process the simulated key parties,
    the checker and the signature checks hash each contribution and sum once, not once each."""
    if type(data) is not bytes:
        return hashlib.sha256(data).hexdigest()
    with _DIGEST_LOCK:
        hit = _DIGESTS.get(id(data))
        if hit is not None and hit[0] is data:
            _DIGESTS.move_to_end(id(data))
            return hit[1]
    value = hashlib.sha256(data).hexdigest()
    with _DIGEST_LOCK:
        _remember(data, value)
    return value


def _remember(data: bytes, value: str) -> None:
    old = _DIGESTS.pop(id(data), None)
    if old is not None:
        _DIGEST_BYTES[0] -= len(old[0])
    _DIGESTS[id(data)] = (data, value)
    _DIGEST_BYTES[0] += len(data)
    while _DIGEST_BYTES[0] > _DIGEST_BUDGET and _DIGESTS:
        _key, (gone, _value) = _DIGESTS.popitem(last=False)
        _DIGEST_BYTES[0] -= len(gone)


def _flooding(count: int) -> np.ndarray:
    """``count`` integers uniform in [-FLOOD_BOUND, FLOOD_BOUND], from the OS's CSPRNG."""
    span = 2 * FLOOD_BOUND + 1
    mask = (1 << span.bit_length()) - 1
    out = np.empty(0, dtype=np.int64)
    while out.size < count:  # rejection sampling: about 70% of the masked draws are kept
        need = count - out.size
        draws = np.frombuffer(os.urandom(8 * (need + need // 2 + 64)), dtype="<u8") \
            & np.uint64(mask)
        out = np.concatenate([out, draws[draws < span].astype(np.int64)])
    return out[:count] - FLOOD_BOUND


@dataclass(frozen=True, repr=False)
class Party:
    """One holder's share s_i (coefficients in {-1, 0, 1}). It never leaves this object but as
    ``share_bytes`` for the holder's own 0600 state file."""

    share: np.ndarray

    def __repr__(self) -> str:  # a share must not reach a log through a repr
        return "Party(share=<withheld>)"

    @classmethod
    def generate(cls, seed: bytes) -> tuple[Party, bytes]:
        """A fresh share and its public share p_i = -a s_i + e_i (NTT form, four primes)."""
        sealapi = _seal()[0]
        keygen = sealapi.KeyGenerator(context())
        shape = (len(_KEY_PRIMES), POLY_DEGREE)
        s_hat = sealio.residues(sealio.save(keygen.secret_key()), shape)[1].astype(np.int64)
        own = sealapi.PublicKey()
        keygen.create_public_key(own)
        del keygen
        # SEAL's own (b, a') has b + a' s = -e: its error, already in NTT form
        b, a_own = sealio.residues(sealio.save(own), (2, *shape))[1].astype(np.int64)
        e_hat = (b + a_own * s_hat % _KEY_PRIMES) % _KEY_PRIMES
        p_hat = (e_hat - common_polynomial(seed) * s_hat % _KEY_PRIMES) % _KEY_PRIMES
        seed_id = hashlib.sha256(seed).hexdigest()
        return cls(_coefficients(s_hat[:len(DATA_PRIMES)])), _pack(
            "threshold-public-share", {"seed": seed_id}, p_hat)

    def share_bytes(self) -> bytes:
        return wire.encode({"kind": "threshold-share", "parameters": FINGERPRINT},
                           [self.share.astype(np.int8).tobytes()])

    @classmethod
    def from_share_bytes(cls, data: bytes) -> Party:
        header, blobs = wire.decode(data)
        if header.get("kind") != "threshold-share" or header.get("parameters") != FINGERPRINT \
                or len(blobs) != 1 or len(blobs[0]) != POLY_DEGREE:
            raise ThresholdError("not a threshold key share for these parameters")
        share = np.frombuffer(blobs[0], dtype=np.int8).astype(np.int64)
        if np.abs(share).max() > 1:
            raise ThresholdError("a key share must be ternary")
        return cls(share)

    def partial(self, ciphertext: bytes) -> bytes:
        """h_i = c1 s_i + E_i (E_i the flooding noise), bound to the ciphertext's digest."""
        return self.partials([ciphertext])[0]

    def partials(self, ciphertexts: list[bytes]) -> list[bytes]:
        """``partial`` of each ciphertext, in one batch: every ciphertext validated, every
        product c1 s_i in one FFT call (``negacyclic_products``), the flooding of all of them
        drawn at once (independent draws, each partial bound to its own ciphertext)."""
        if not ciphertexts:
            return []
        c1 = np.stack([_residues(c)[1] for c in ciphertexts])
        c1s = negacyclic_products(c1, np.fft.fft(self.share * _twist()))
        flood = _flooding(len(ciphertexts) * POLY_DEGREE).reshape(len(ciphertexts), 1,
                                                                   POLY_DEGREE)
        h = (c1s + flood) % _PRIMES  # |c1 s| < 2^44, |E| < 2^53: the sum fits int64
        return [_pack("threshold-partial", {"ciphertext": _digest(c)}, h[i])
                for i, c in enumerate(ciphertexts)]


@cache
def _twist() -> np.ndarray:
    """psi^k, psi = exp(i pi / N): a negacyclic convolution is a cyclic one of the twisted
    polynomials."""
    return np.exp(1j * np.pi * np.arange(POLY_DEGREE) / POLY_DEGREE)


_HALF = 16  # c1's residues (< 2^31) are split into 16-bit halves for the floating-point product
_FFT_SLACK = 0.125  # the most any product may sit from an integer before it is refused


def negacyclic_products(c1: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """c1 s over the integers in Z[X]/(X^N + 1), for residues c1 (..., N) in [0, 2^31) and a
    ternary s given by ``spectrum``, the FFT of s psi^k; exact, unreduced (|value| < 2^44).

    Each residue polynomial is split into 16-bit halves lo + 2^16 hi, packed as lo + i hi (s
    is real, so the two convolutions stay in the real and imaginary parts), twisted by psi^k
    and multiplied by the twisted s in float64 FFTs. Every exact value is an integer of at most
    N 2^16 = 2^28 in absolute value; the FFT's rounding error is about 2^-53 x 2^28 x log2 N,
    so far below 1/2 that rounding to the nearest integer is exact. That is checked on every
    product (each value within 1/8 of an integer), failing closed. SEAL's ``multiply_plain``
    gives the same residues (tested); this is one NumPy call for a whole round's ciphertexts
    instead of a SEAL load, product and (always zstd-compressed) save per ciphertext."""
    c1 = np.asarray(c1, dtype=np.int64)
    if c1.shape[-1] != POLY_DEGREE or c1.min(initial=0) < 0 or c1.max(initial=0) >> 31:
        raise ThresholdError("the product needs residues below 2^31")
    twist = _twist()
    packed = np.empty(c1.shape, dtype=np.complex128)
    packed.real = c1 & ((1 << _HALF) - 1)
    packed.imag = c1 >> _HALF
    packed *= twist
    raw = np.fft.fft(packed, axis=-1)
    raw *= spectrum
    raw = np.fft.ifft(raw, axis=-1)
    raw *= twist.conj()
    parts = raw.view(np.float64)  # real, imaginary, real, ...: the lo and hi products
    rounded = np.rint(parts)
    parts -= rounded
    if np.abs(parts).max(initial=0) > _FFT_SLACK:
        raise AssertionError("the floating-point ring product is not exact")
    rounded = rounded.reshape(*c1.shape, 2)
    # |lo| <= 2^28 and |hi| 2^16 <= 2^43: the sum is an exact float64 integer
    return (rounded[..., 0] + rounded[..., 1] * float(1 << _HALF)).astype(np.int64)


def _coefficients(s_hat: np.ndarray) -> np.ndarray:
    """The share in coefficient form: SEAL's inverse NTT of its NTT-form secret key."""
    sealapi, _parms, ctx = _seal()
    data = sealio.ciphertext_bytes(_ids()[0], np.stack([s_hat, s_hat]), ntt=True)
    ct = sealio.load(sealapi.Ciphertext(), ctx, data)
    sealapi.Evaluator(ctx).transform_from_ntt_inplace(ct)
    coeffs = sealio.residues(sealio.save(ct), (2, len(DATA_PRIMES), POLY_DEGREE))[1][0]
    centered = np.where(coeffs > _PRIMES // 2, coeffs.astype(np.int64) - _PRIMES, coeffs)
    if (centered != centered[0]).any() or np.abs(centered[0]).max() > 1:
        raise AssertionError("SEAL's secret key is not one ternary polynomial")
    return centered[0].astype(np.int64)


def commitment(public_share: bytes) -> str:
    """What a party publishes first. The key is the plain sum of the shares, so a party that saw
    the others' p_i could publish (-a s' + e) - sum of theirs and own the whole key alone (the
    rogue-key attack); committing to every p_i before any is revealed rules that out."""
    return hashlib.sha256(b"workbench-threshold-commit-v1" + public_share).hexdigest()


def joint_public_key(seed: bytes, public_shares: list[bytes], commitments: list[str]) -> bytes:
    """The SEAL PublicKey (sum p_i, a), from the public shares only, each matching the
    commitment its party made before any share was revealed (in the same order)."""
    if not 1 <= len(public_shares) <= MAX_PARTIES:
        raise ThresholdError(f"between 1 and {MAX_PARTIES} public shares are needed")
    if len(commitments) != len(public_shares) or len(set(commitments)) != len(commitments):
        raise ThresholdError("one distinct commitment per public share is needed")
    for index, (share, committed) in enumerate(zip(public_shares, commitments, strict=True)):
        if commitment(share) != committed:
            raise ThresholdError(f"public share {index} does not match its party's commitment")
    total = np.zeros((len(_KEY_PRIMES), POLY_DEGREE), dtype=np.int64)
    seed_id = hashlib.sha256(seed).hexdigest()
    for data in public_shares:
        header, p_hat = _unpack("threshold-public-share", data, _KEY_PRIMES)
        if header.get("seed") != seed_id:
            raise ThresholdError("a public share was made from another seed")
        total = (total + p_hat) % _KEY_PRIMES
    key = np.stack([total, common_polynomial(seed)]).astype(np.uint64)
    data = sealio.ciphertext_bytes(_ids()[1], key, ntt=True)
    sealio.load(_seal()[0].PublicKey(), context(), data)  # SEAL validates it
    return data


def tenseal_context(public_key: bytes) -> bytes:
    """A public TenSEAL BFV context (no secret key) around the joint key: holders encrypt with
    it as with today's ``public.ctx`` (the same message layout as ``keys._bfv_contexts``)."""
    field = tensealproto.field
    public_part = field(1, public_key) + field(2, 7) + field(3, -1.0)
    return field(1, sealio.save(_seal()[1])) + field(2, public_part)


def decrypt(ciphertext: bytes, partials: list[bytes]) -> np.ndarray:
    """The ciphertext's slots from every party's partial. c0 + sum h_i is the ciphertext
    switched to the zero key (the protocol's target key s' = 0), so m = round(t x / q) mod t
    of its value x (``scale_and_round``: BFV's decryption, exact in int64 per prime); SEAL's
    BatchEncoder decodes (int64, values above t/2 as negatives, like TenSEAL's ``decrypt``).
    Equal to SEAL's own Decryptor under the zero key (tested), at half its cost."""
    if not 1 <= len(partials) <= MAX_PARTIES:
        raise ThresholdError(f"between 1 and {MAX_PARTIES} partial decryptions are needed")
    polys = _residues(ciphertext)
    digest = _digest(ciphertext)
    total = polys[0]
    for data in partials:
        header, h = _unpack("threshold-partial", data, _PRIMES)
        if header.get("ciphertext") != digest:
            raise ThresholdError("a partial decryption is for another ciphertext")
        total = total + h  # < 33 x 2^31: no overflow, reduced once below
    return decode(scale_and_round(total % _PRIMES))


@cache
def _rounding_constants() -> tuple[np.ndarray, np.ndarray]:
    """Per data prime p: t y = A p + B, y = (q/p)^-1 mod p (A < t, B < p)."""
    a, b = [], []
    for p in DATA_PRIMES:
        ty = PLAIN_MODULUS * pow(Q // p, -1, p)
        a.append(ty // p)
        b.append(ty % p)
    return np.array(a, dtype=np.int64)[:, None], np.array(b, dtype=np.int64)[:, None]


def scale_and_round(x: np.ndarray) -> np.ndarray:
    """round(t X / q) mod t, X the CRT value in [0, q) of the residues ``x`` (primes, N).

    X = sum_j x_j (q/p_j) y_j - v q for an integer v, so t X / q = sum_j x_j t y_j / p_j - v t,
    and mod t only sum_j x_j (A_j + B_j / p_j) counts: the integers x_j A_j mod t and
    floor(x_j B_j / p_j), and the fractions (x_j B_j mod p_j) / p_j, all products below 2^62
    (exact in int64). Only the sum of three fractions is a float; it decides the rounding only
    within 2^-50 of a half, which a ciphertext inside its noise budget never is (t X / q is
    within 2^-5 of an integer: ``parameters()``, budget after flooding)."""
    a, b = _rounding_constants()
    primes = _PRIMES
    xb = x * b
    whole = ((x * a) % PLAIN_MODULUS + xb // primes).sum(axis=0)
    fraction = ((xb % primes) / primes).sum(axis=0)
    return (whole + np.rint(fraction).astype(np.int64)) % PLAIN_MODULUS


def decode(coefficients: np.ndarray) -> np.ndarray:
    """The slots of a plaintext polynomial (coefficients mod t): SEAL's BatchEncoder."""
    sealapi, _parms, ctx = _seal()
    plain = sealio.load(sealapi.Plaintext(), ctx,
                        sealio.plaintext_bytes(np.asarray(coefficients, dtype=np.uint64)))
    return np.array(_encoder().decode_int64(plain), dtype=np.int64)


@cache
def _encoder():
    sealapi, _parms, ctx = _seal()
    return sealapi.BatchEncoder(ctx)


@cache
def _zero_key_decryptor():
    """A Decryptor for the zero key (the public target of the collective key switch)."""
    sealapi, _parms, ctx = _seal()
    zero = np.zeros(len(_KEY_PRIMES) * POLY_DEGREE, dtype=np.uint64)
    key = sealio.load(sealapi.SecretKey(), ctx, sealio.plaintext_bytes(zero, _ids()[1]))
    return sealapi.Decryptor(ctx, key)


def seal_ciphertexts(tenseal_context_bytes: bytes, vector_bytes: bytes) -> list[bytes]:
    """The SEAL ciphertexts of a serialized TenSEAL BFVVector (what holders send today)."""
    import tenseal as ts

    vector = ts.bfv_vector_from(ts.context_from(tenseal_context_bytes), vector_bytes)
    return [sealio.save(ct) for ct in vector.ciphertext()]
