"""Byte-level helpers shared by every on-disk format: varints, fixed-width
little-endian integers, length-prefixed byte strings, and the checksum.

All multi-byte integers on disk are little-endian. The checksum everywhere is
xxh32 with seed 0 (doc/format.md#checksums).
"""

from __future__ import annotations

import struct

import xxhash

from .errors import Error

__all__ = [
    "U16", "U32", "U64", "F64",
    "checksum", "decode_varint", "encode_varint", "get_length_prefixed", "put_length_prefixed",
]

U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
F64 = struct.Struct("<d")

checksum = xxhash.xxh32_intdigest
"""xxh32 (seed 0) of a bytes-like object, as an int in [0, 2**32)."""


class DecodeError(Error):
    """Internal: a buffer ended early or held an invalid varint.

    Format readers catch it and re-raise :class:`~lsm.errors.CorruptionError`
    with the file and offset, which this layer does not know.
    """


def encode_varint(n: int) -> bytes:
    """Encode a non-negative int as LEB128 (7 bits per byte, low group first).

    >>> encode_varint(300).hex()
    'ac02'
    """
    if n < 0x80:
        if n < 0:
            raise ValueError(f"varint must be non-negative, got {n}")
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint at ``buf[pos:]``; return ``(value, next_pos)``.

    Raises: DecodeError if the buffer ends inside the varint or it is longer
    than 10 bytes (more than 64 bits).

    >>> decode_varint(bytes.fromhex('ac02ff'), 0)
    (300, 2)
    """
    result = 0
    shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift == 63 and pos < n and buf[pos] > 1:
            raise DecodeError("varint overflows 64 bits")
        if shift > 63:
            raise DecodeError("varint longer than 10 bytes")


def put_length_prefixed(out: bytearray, data: bytes) -> None:
    """Append ``varint(len(data)) data`` to ``out``."""
    out += encode_varint(len(data))
    out += data


def get_length_prefixed(buf: bytes | memoryview, pos: int) -> tuple[bytes, int]:
    """Read ``varint(len) data`` at ``pos``; return ``(data, next_pos)``.

    Raises: DecodeError if the buffer is too short.
    """
    n, pos = decode_varint(buf, pos)
    end = pos + n
    if end > len(buf):
        raise DecodeError(f"length-prefixed field of {n} bytes overruns buffer")
    return bytes(buf[pos:end]), end
