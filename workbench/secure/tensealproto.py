"""TenSEAL's protobuf wrappers around SEAL objects, read and written directly (``tensors.proto``,
``context.proto``): a context's fields, and a ``BFVVectorProto {repeated uint32 sizes = 1;
repeated bytes ciphertexts = 2;}``. Going through TenSEAL to load a vector and save each
ciphertext again cost more than the rest of a node's work on it; SEAL's own ``load`` (or
``threshold.ciphertext_residues``) still validates every ciphertext taken out of one."""

from __future__ import annotations

import struct


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, offset after it) of the varint at ``at``, or ValueError."""
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value, at, shift = value | (byte & 0x7F) << shift, at + 1, shift + 7
        if byte < 0x80:
            return value, at


def field(number: int, value: bytes | int | float) -> bytes:
    """One protobuf field: bytes (or a message) length-delimited, an int as a varint, a float as
    a 64-bit double."""
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    if isinstance(value, float):
        return varint(number << 3 | 1) + struct.pack("<d", value)
    return varint(number << 3) + varint(value)


def vector_ciphertexts(blob: bytes) -> list[bytes]:
    """The SEAL ciphertexts inside a serialized BFVVector, or ValueError."""
    out, at = [], 0
    while at < len(blob):
        key, at = read_varint(blob, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _value, at = read_varint(blob, at)
        elif wire_type == 2:
            length, at = read_varint(blob, at)
            if at + length > len(blob):
                raise ValueError("truncated field")
            if number == 2:
                out.append(blob[at:at + length])
            at += length
        else:
            raise ValueError("unexpected wire type")
    return out


def one_ciphertext_vector(blob: bytes) -> tuple[int, bytes]:
    """(size, SEAL ciphertext bytes) of a one-ciphertext BFVVector exactly as TenSEAL writes it
    (the packed sizes with one value, then one ciphertext, nothing else), or ValueError."""
    if blob[:1] != b"\x0a":
        raise ValueError("no sizes field")
    length, at = read_varint(blob, 1)
    size, end = read_varint(blob, at)
    if end != at + length or blob[end:end + 1] != b"\x12":
        raise ValueError("not one size")
    length, at = read_varint(blob, end + 1)
    if at + length != len(blob):
        raise ValueError("not one ciphertext")
    return size, blob[at:]


def vector_bytes(size: int, ciphertext: bytes) -> bytes:
    """A one-ciphertext BFVVector as TenSEAL writes it (``one_ciphertext_vector``'s inverse)."""
    return field(1, varint(size)) + field(2, ciphertext)
