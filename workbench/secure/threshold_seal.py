"""SEAL objects as NumPy residues, for threshold decryption (``threshold.py``).

The multiparty protocols are ring arithmetic on SEAL's own polynomials, which ``tenseal.sealapi``
exposes only through ``save``/``load``. SEAL writes a 16-byte header (magic 0xA15E, header size,
version, compression mode, reserved, total size) and then, zstd-compressed (mode 2, the only mode
its ``save`` writes here), the object's members. Every object used here ends with a DynArray of
uint64 coefficients, laid out polynomial by polynomial, RNS prime by prime, coefficient by
coefficient. So reading is: strip the header, decompress, take the trailing array. Writing builds
the members ourselves with compression mode 0 (none), which SEAL's ``load`` accepts and validates
(every residue below its prime, metadata matching the context).
"""

from __future__ import annotations

import os
import struct
from functools import cache

import numpy as np

from workbench.errors import WorkbenchUserError

_MAGIC = 0xA15E
_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, reserved, size
_NONE, _ZSTD = 0, 2
_MAX_BODY = 1 << 24  # far above a 4-limb key (256 KiB): bounds decompression


class SealFormatError(WorkbenchUserError):
    def __init__(self, message: str):
        super().__init__(f"Malformed SEAL object: {message}", reason="malformed-message")


def save(seal_object) -> bytes:
    """SEAL's serialization (written to a memfd: a key share never reaches a disk this way)."""
    fd = os.memfd_create("workbench-threshold", os.MFD_CLOEXEC)
    try:
        seal_object.save(f"/proc/self/fd/{fd}")
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def load(seal_object, context, data: bytes):
    fd = os.memfd_create("workbench-threshold", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        try:
            seal_object.load(context, f"/proc/self/fd/{fd}")
        except (ValueError, RuntimeError) as exc:  # SEAL's own validation
            raise SealFormatError(f"SEAL refused it ({type(exc).__name__})") from None
    finally:
        os.close(fd)
    return seal_object


def _body(data: bytes) -> bytes:
    if len(data) < _HEADER.size:
        raise SealFormatError("shorter than its header")
    magic, size, _major, _minor, mode, _reserved, total = _HEADER.unpack_from(data)
    if magic != _MAGIC or size != _HEADER.size or total != len(data):
        raise SealFormatError("bad header")
    if mode == _NONE:
        return data[_HEADER.size:]
    if mode != _ZSTD:
        raise SealFormatError(f"compression mode {mode} is not supported")
    import zstandard

    body = zstandard.ZstdDecompressor().decompressobj().decompress(data[_HEADER.size:])
    if len(body) > _MAX_BODY:
        raise SealFormatError("too large")
    return body


def residues(data: bytes, shape: tuple[int, ...]) -> tuple[bytes, np.ndarray]:
    """(members before the coefficients, coefficients as uint64 of ``shape``) of a saved object."""
    body = _body(data)
    count = int(np.prod(shape))
    end = len(body) - 8 * count
    if end < 8 or int.from_bytes(body[end - 8:end], "little") != count:
        raise SealFormatError(f"expected {count} coefficients")
    return body[:end], np.frombuffer(body, dtype="<u8", offset=end).reshape(shape)


@cache
def _version() -> tuple[int, int]:
    from tenseal import sealapi

    major, minor = _HEADER.unpack_from(save(sealapi.Plaintext(1)))[2:4]
    return major, minor


def _frame(members: bytes) -> bytes:
    total = _HEADER.size + len(members)
    return _HEADER.pack(_MAGIC, _HEADER.size, *_version(), _NONE, 0, total) + members


def _dynarray(values: np.ndarray) -> bytes:
    flat = np.ascontiguousarray(values, dtype="<u8").ravel()
    return _frame(struct.pack("<Q", flat.size) + flat.tobytes())


def _parms_id(words) -> bytes:
    return struct.pack("<4Q", *words)


def ciphertext_bytes(parms_id, polys: np.ndarray, ntt: bool) -> bytes:
    """A SEAL Ciphertext (or PublicKey: the same members) of ``polys``: (size, primes, N)."""
    size, primes, degree = polys.shape
    members = (_parms_id(parms_id) + struct.pack("<?QQQdQ", ntt, size, degree, primes, 1.0, 1)
               + _dynarray(polys))
    return _frame(members)


def plaintext_bytes(coefficients: np.ndarray, parms_id=(0, 0, 0, 0)) -> bytes:
    """A BFV Plaintext with these coefficients mod t (parms_id zero), or a SecretKey's members
    (NTT form: the parms_id of its level)."""
    members = (_parms_id(parms_id) + struct.pack("<Qd", coefficients.size, 1.0)
               + _dynarray(coefficients))
    return _frame(members)
