"""RFC 9497 OPRF, mode 0 (base), suite ristretto255-SHA512, on libsodium.

The three steps and who runs them:

    node:     r, B = blind(x)            B = r * HashToGroup(x): a uniformly random group element
    service:  Z = evaluate(k, B)         Z = k * B, after checking B is a valid, non-identity point
    node:     y = finalize(x, r, Z)      SHA-512(x, r^-1 * Z): the OPRF output F_k(x)

The service learns nothing about ``x`` (B is uniform whatever x is); the node learns F_k(x) and
nothing about ``k``. libsodium's ristretto255 (Debian's libsodium23 through ``pysodium``: PyNaCl
does not bind the ristretto255 functions) has one canonical encoding per element, so validating
an element is one call and two comparisons. RFC 9497's test vectors (Appendix A.1.1) are checked
in tests/linkage/test_oprf.py.
"""

from __future__ import annotations

import hashlib

import pysodium

ELEMENT = 32  # bytes of an encoded group element (and of a scalar)
CONTEXT = b"OPRFV1-\x00-ristretto255-SHA512"  # RFC 9497 3.1: "OPRFV1-" || mode 0 || "-" || suite
_HASH_TO_GROUP = b"HashToGroup-" + CONTEXT
_DERIVE = b"DeriveKeyPair" + CONTEXT


class InvalidElement(ValueError):
    """Not the canonical encoding of a ristretto255 element other than the identity."""


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def _expand_xmd(message: bytes, dst: bytes, length: int = 64) -> bytes:
    """RFC 9380 5.3.1 expand_message_xmd with SHA-512, for the one length this suite needs
    (64 bytes: one SHA-512 block of output)."""
    dst_prime = dst + _i2osp(len(dst), 1)
    b0 = hashlib.sha512(bytes(128) + message + _i2osp(length, 2) + b"\x00" + dst_prime).digest()
    return hashlib.sha512(b0 + b"\x01" + dst_prime).digest()[:length]


def hash_to_group(value: bytes) -> bytes:
    """HashToGroup: ristretto255's hash-to-group map on 64 uniform bytes (RFC 9380, RFC 9496)."""
    return pysodium.crypto_core_ristretto255_from_hash(_expand_xmd(value, _HASH_TO_GROUP))


def check_element(element: bytes) -> bytes:
    """``element`` if it is a canonical encoding of a group element other than the identity
    (RFC 9497 DeserializeElement); InvalidElement otherwise."""
    # libsodium's is_valid_point accepts the identity (all zero bytes: its one canonical
    # encoding), which RFC 9497 says to refuse: k * identity would say nothing of k but is no
    # blinded input either.
    # Debian 12's libsodium (1.0.18) also takes a set top bit as an alias of the same point,
    # while RFC 9496 says a value >= p is no encoding: refused here whatever the version.
    if (not isinstance(element, bytes) or len(element) != ELEMENT or not any(element)
            or element[31] & 0x80
            or not pysodium.crypto_core_ristretto255_is_valid_point(element)):
        raise InvalidElement("not a valid ristretto255 element")
    return element


def new_key() -> bytes:
    """A fresh secret key: a uniformly random non-zero scalar."""
    return pysodium.crypto_core_ristretto255_scalar_random()


def derive_key(seed: bytes, info: bytes) -> bytes:
    """RFC 9497 DeriveKeyPair (its secret half): for the test vectors and reproducible keys."""
    derive_input = seed + _i2osp(len(info), 2) + info
    for counter in range(256):
        scalar = pysodium.crypto_core_ristretto255_scalar_reduce(
            _expand_xmd(derive_input + _i2osp(counter, 1), _DERIVE))
        if any(scalar):
            return scalar
    raise ValueError("DeriveKeyPair: no non-zero scalar")


def blind(value: bytes, blind_scalar: bytes | None = None) -> tuple[bytes, bytes]:
    """(r, r * HashToGroup(value)). ``blind_scalar`` only for test vectors."""
    r = blind_scalar or pysodium.crypto_core_ristretto255_scalar_random()
    point = hash_to_group(value)
    if not any(point):  # the identity: negligible, but RFC 9497 says to refuse it
        raise InvalidElement("the input hashes to the identity element")
    return r, pysodium.crypto_scalarmult_ristretto255(r, point)


def evaluate(key: bytes, blinded: bytes) -> bytes:
    """The service's step: ``key * blinded`` for a checked element."""
    return pysodium.crypto_scalarmult_ristretto255(key, check_element(blinded))


def finalize(value: bytes, r: bytes, evaluated: bytes) -> bytes:
    """The node's step: unblind (r^-1 * Z) and hash with the input (RFC 9497 3.3.1 Finalize)."""
    unblinded = pysodium.crypto_scalarmult_ristretto255(
        pysodium.crypto_core_ristretto255_scalar_invert(r), check_element(evaluated))
    return hashlib.sha512(_i2osp(len(value), 2) + value + _i2osp(len(unblinded), 2) + unblinded
                          + b"Finalize").digest()
