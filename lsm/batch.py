"""Write batches and their encoding (doc/format.md#batch).

A batch is the unit of atomicity: the whole batch is one WAL record, and its
operations get consecutive sequence numbers starting at ``first_seq``.

    batch   := first_seq:u64le count:u32le op{count}
    op      := kind:u8 key_len:varint key [value_len:varint value]   (value only for PUT/PUT_TTL)

For ``PUT_TTL`` the value field is ``expires_at:f64le`` followed by the user value.
"""

from __future__ import annotations

import struct
import time
from typing import Iterator

from .coding import DecodeError, decode_varint, encode_varint
from .errors import Error
from .keys import DELETE, MAX_SEQUENCE, PUT, PUT_TTL, TTL_PREFIX_BYTES, check_key, check_value

__all__ = ["HEADER", "WriteBatch", "decode_batch", "encode_batch"]

HEADER = struct.Struct("<QI")  # first_seq, count
_OP_BYTES = 24  # memtable accounting overhead per op, beyond key and value


class WriteBatch:
    """A list of puts and deletes applied atomically by ``DB.write``.

    Build one directly, or use ``with db.write_batch() as b:`` which applies it
    on a clean exit and discards it if the block raises. Keys and values are
    validated and copied when added, so a bad argument raises at the call that
    passed it and nothing partial is ever written.

    Thread safety: none; build a batch in one thread.

    >>> b = WriteBatch()
    >>> b.put(b"k", b"v").delete(b"old")
    <WriteBatch 2 ops>
    >>> len(b)
    2
    """

    __slots__ = ("ops", "nbytes", "_db", "_sync")

    def __init__(self) -> None:
        self.ops: list[tuple[int, bytes, bytes]] = []  # (kind, key, stored value)
        self.nbytes = 0
        self._db = None  # set by DB.write_batch() for context-manager use
        self._sync: bool | None = None

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> "WriteBatch":
        """Queue ``key = value`` (expiring ``ttl`` seconds after the batch is built)."""
        key = check_key(key)
        value = check_value(value)
        if ttl is None:
            self.ops.append((PUT, key, value))
        else:
            self.ops.append((PUT_TTL, key, encode_ttl_value(ttl, value)))
        self.nbytes += len(key) + len(value) + _OP_BYTES
        return self

    def delete(self, key: bytes) -> "WriteBatch":
        """Queue a deletion of ``key``."""
        key = check_key(key)
        self.ops.append((DELETE, key, b""))
        self.nbytes += len(key) + _OP_BYTES
        return self

    def clear(self) -> None:
        """Drop every queued operation."""
        self.ops.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"<WriteBatch {len(self.ops)} ops>"

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        db, self._db = self._db, None
        if exc_type is None and db is not None:
            db.write(self, sync=self._sync)
        elif exc_type is not None:
            self.clear()


def encode_ttl_value(ttl: float, value: bytes) -> bytes:
    """Stored value of a ``PUT_TTL``: absolute wall-clock expiry + user value."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    if not ttl > 0 or ttl != ttl or ttl == float("inf"):
        raise ValueError(f"ttl must be a finite number of seconds > 0; got {ttl}")
    try:
        expires = time.time() + ttl  # an int past the float range overflows here
    except OverflowError:
        raise ValueError(f"ttl must be a finite number of seconds > 0; got an int of {ttl.bit_length()} bits, "
                         "past the float range") from None
    return struct.pack("<d", expires) + value


def encode_batch(first_seq: int, ops: list[tuple[int, bytes, bytes]]) -> bytes:
    """Encode ``ops`` as one batch payload starting at ``first_seq``."""
    parts = [HEADER.pack(first_seq, len(ops))]
    append = parts.append
    for kind, key, value in ops:
        append(bytes((kind,)))
        append(encode_varint(len(key)))
        append(key)
        if kind != DELETE:
            append(encode_varint(len(value)))
            append(value)
    return b"".join(parts)


class BatchDecodeError(Error):
    """Internal: a batch payload is malformed (the WAL reader adds path and offset)."""


def decode_batch(payload: bytes) -> tuple[int, list[tuple[int, bytes, bytes]]]:
    """Decode a batch payload into ``(first_seq, ops)``.

    Raises: BatchDecodeError when the payload is malformed (it passed the
    record checksum, so this means a writer bug or a format mismatch).
    """
    if len(payload) < HEADER.size:
        raise BatchDecodeError(f"batch payload of {len(payload)} bytes is shorter than its header")
    first_seq, count = HEADER.unpack_from(payload, 0)
    if first_seq < 1 or first_seq + count - 1 > MAX_SEQUENCE:
        raise BatchDecodeError(f"batch sequence range {first_seq}..{first_seq + count - 1} is outside "
                               f"1..{MAX_SEQUENCE}")
    pos = HEADER.size
    ops: list[tuple[int, bytes, bytes]] = []
    try:
        for _ in range(count):
            kind = payload[pos]
            pos += 1
            n, pos = decode_varint(payload, pos)
            key = payload[pos:pos + n]
            pos += n
            if kind == DELETE:
                value = b""
            elif kind == PUT or kind == PUT_TTL:
                n, pos = decode_varint(payload, pos)
                value = payload[pos:pos + n]
                pos += n
                if kind == PUT_TTL and n < TTL_PREFIX_BYTES:
                    raise BatchDecodeError(f"PUT_TTL value of {n} bytes lacks the 8-byte expiry")
            else:
                raise BatchDecodeError(f"unknown op kind {kind} in batch at byte {pos - 1}")
            ops.append((kind, key, value))
    except (IndexError, DecodeError) as e:
        raise BatchDecodeError(f"batch payload truncated: {e}") from None
    if pos != len(payload):
        raise BatchDecodeError(f"batch payload has {len(payload) - pos} trailing bytes "
                               f"(count {count}) or a truncated op")
    return first_seq, ops


def iter_entries(payload: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Yield ``(seq, kind, key, value)`` for each op of an encoded batch."""
    first_seq, ops = decode_batch(payload)
    for i, (kind, key, value) in enumerate(ops):
        yield first_seq + i, kind, key, value
