"""Entry kinds, sequence numbers and the limits on user keys and values.

Every stored entry is ``(user_key, sequence, kind, stored_value)``. Entries of
one user key are ordered newest (highest sequence) first. ``PUT_TTL`` entries
carry their wall-clock expiry as the first 8 bytes of the stored value
(float64 little-endian seconds since the epoch), so the same bytes flow through
the memtable, the WAL and SSTables unchanged.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from .errors import Error

__all__ = ["DELETE", "Kind", "MAX_KEY_BYTES", "MAX_SEQUENCE", "MAX_VALUE_BYTES", "PUT", "PUT_TTL", "RANGE_DELETE",
           "TTL_PREFIX_BYTES", "check_key", "check_value", "join_ttl", "split_ttl"]


class Kind(IntEnum):
    """Entry kind in every WAL op and SSTable entry.

    Persistent: never renumber or reuse a value (doc/format.md#kinds).
    """

    DELETE = 0
    PUT = 1
    PUT_TTL = 2  # stored value = expires_at:f64le + user value
    RANGE_DELETE = 3  # in write batches only: key = start, value = end (tables keep range tombstones apart)


DELETE = int(Kind.DELETE)
PUT = int(Kind.PUT)
PUT_TTL = int(Kind.PUT_TTL)
RANGE_DELETE = int(Kind.RANGE_DELETE)

MAX_SEQUENCE = (1 << 56) - 1  # seq and kind share one u64 in SSTable blocks: seq << 8 | kind
MAX_KEY_BYTES = 65535  # keys are length-prefixed with a u16 in SSTable blocks
MAX_VALUE_BYTES = 256 << 20  # values up to 256 MiB (doc/format.md)
TTL_PREFIX_BYTES = 8

_F64 = struct.Struct("<d")


def join_ttl(expires_at: float, value: bytes) -> bytes:
    """The stored value of a ``PUT_TTL`` entry: ``expires_at:f64le + value``
    (``batch.encode_ttl_value``, on every put with a ttl, inlines it).

    >>> split_ttl(join_ttl(1.5, b"v"))
    (1.5, b'v')
    """
    return _F64.pack(expires_at) + value


def split_ttl(stored: bytes) -> tuple[float, bytes]:
    """``(expires_at, user value)`` of a ``PUT_TTL`` entry's stored value.

    Raises struct.error if ``stored`` is shorter than ``TTL_PREFIX_BYTES``
    (batch decoding refuses such a value; a table could only hold one if
    damaged). The hot read paths (``Reads.get``, the scan windows in
    lsm/iterators.py, compaction's drop checks) inline this, marked
    ``# keys.split_ttl, inlined``.
    """
    return _F64.unpack_from(stored)[0], stored[TTL_PREFIX_BYTES:]

_BYTES_TYPES = (bytes, bytearray, memoryview)


def check_key(key: object, name: str = "key") -> bytes:
    """Return ``key`` as immutable bytes, or raise TypeError/ValueError naming ``name``."""
    return _check_bytes(key, name, MAX_KEY_BYTES)


def check_value(value: object, name: str = "value") -> bytes:
    """Return ``value`` as immutable bytes, or raise TypeError/ValueError naming ``name``."""
    return _check_bytes(value, name, MAX_VALUE_BYTES)


def _check_bytes(obj: object, name: str, limit: int) -> bytes:
    if type(obj) is not bytes:
        if not isinstance(obj, _BYTES_TYPES):
            raise TypeError(f"{name} must be bytes, bytearray or memoryview, not {type(obj).__name__}")
        try:
            obj = bytes(obj)  # a copy: the caller may mutate a bytearray later
        except ValueError as e:  # a released memoryview
            raise ValueError(f"{name} cannot be read: {e}") from None
    if len(obj) > limit:
        raise ValueError(f"{name} is {len(obj)} bytes; the limit is {limit}")
    return obj


class SequenceOverflow(Error):
    """Internal: the 56-bit sequence space is exhausted (never in practice)."""
