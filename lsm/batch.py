"""Write batches and their encoding (doc/format.md#batch).

A batch is the unit of atomicity: the whole batch is one WAL record, and its
operations get consecutive sequence numbers starting at ``first_seq``.

    batch   := first_seq:u64le count:u32le synced:u64le op{count}      (format 2, write-ahead log format 3)
             | first_seq:u64le count:u32le op{count}                   (format 1, write-ahead log format 2)
    op      := kind:u8 key_len:varint key [value_len:varint value]   (no value for DELETE)

``synced`` is the last sequence number that was durable (fsynced) when the
batch was written: recovery uses it to tell writes lost to a power cut
(never acknowledged as durable) from damage to acknowledged data. For
``PUT_TTL`` the value is ``expires_at:f64le`` followed by the user value;
for ``RANGE_DELETE`` the key is the range's start and the value its end.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from .coding import DecodeError, decode_varint, encode_varint
from .errors import Error
from .keys import (
    DELETE,
    MAX_KEY_BYTES,
    MAX_SEQUENCE,
    MAX_VALUE_BYTES,
    PUT,
    PUT_TTL,
    RANGE_DELETE,
    TTL_PREFIX_BYTES,
    check_key,
    check_value,
)

if TYPE_CHECKING:  # annotations only: lsm.writes sits above this module
    from .writes import Writes

__all__ = ["FORMAT_VERSION", "HEADER", "HEADER_V1", "Batch", "WriteBatch", "decode_batch", "encode_batch",
           "encode_ttl_value", "op_prefix"]

FORMAT_VERSION = 2
HEADER = struct.Struct("<QIQ")  # first_seq, count, synced
HEADER_V1 = struct.Struct("<QI")  # first_seq, count
_OP_BYTES = 24  # memtable accounting overhead per op, beyond key and value
_MAX_TTL = 1e9  # seconds (~31 years): beyond this a ttl is a mistake, not a lifetime
_F64 = struct.Struct("<d")

# Precomputed encodings for the sizes most keys and values have: varint(n)
# for n < 4096, and kind:u8 + varint(n) for keys shorter than 256 bytes.
_SMALL_VALUE = 4096
_SMALL_KEY = 256
VARINT = [encode_varint(n) for n in range(_SMALL_VALUE)]
_PREFIX = [[bytes((k,)) + VARINT[n] for n in range(_SMALL_KEY)] for k in range(RANGE_DELETE + 1)]
_PUT_PREFIX = _PREFIX[PUT]


def op_prefix(kind: int, n: int) -> bytes:
    """``kind:u8 varint(n)``: the start of an op whose key is ``n`` bytes."""
    return _PREFIX[kind][n] if n < _SMALL_KEY else bytes((kind,)) + encode_varint(n)


def varint(n: int) -> bytes:
    return VARINT[n] if n < _SMALL_VALUE else encode_varint(n)


class WriteBatch:
    """A list of puts, deletes and range deletes applied atomically by ``DB.write``.

    Build one directly, or use ``with db.write_batch() as b:`` which applies it
    on a clean exit and discards it if the block raises. Keys and values are
    validated and copied when added, so a bad argument raises at the call that
    passed it and nothing partial is ever written.

    Each operation is kept twice: as ``(kind, key, value)`` for the memtable,
    and already encoded (``_parts``), so that writing the batch joins its
    log record in one step.

    Thread safety: none; build a batch in one thread.

    >>> b = WriteBatch()
    >>> b.put(b"k", b"v").delete(b"old")
    <WriteBatch 2 ops>
    >>> len(b)
    2
    """

    __slots__ = ("ops", "nbytes", "_parts", "_db", "_sync")

    def __init__(self) -> None:
        self.ops: list[tuple[int, bytes, bytes]] = []  # (kind, key, stored value)
        self._parts: list[bytes] = []  # the ops encoded, in order
        self.nbytes = 0
        self._db: Writes | None = None  # set by DB.write_batch() for context-manager use
        self._sync: bool | None = None

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> WriteBatch:
        """Queue ``key = value`` (expiring ``ttl`` seconds after the batch is built)."""
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
            value = check_value(value)
        if ttl is None:  # the common case, written out (op_prefix and varint, inlined)
            nk = len(key)
            nv = len(value)
            self.ops.append((PUT, key, value))
            self._parts += (_PUT_PREFIX[nk] if nk < _SMALL_KEY else op_prefix(PUT, nk), key,
                            VARINT[nv] if nv < _SMALL_VALUE else encode_varint(nv), value)
            self.nbytes += nk + nv + _OP_BYTES
            return self
        kind = PUT
        if ttl is not None:
            value = encode_ttl_value(ttl, value)
            kind = PUT_TTL
        self.ops.append((kind, key, value))
        self._parts += (op_prefix(kind, len(key)), key, varint(len(value)), value)
        self.nbytes += len(key) + len(value) + _OP_BYTES
        return self

    def delete(self, key: bytes) -> WriteBatch:
        """Queue a deletion of ``key``."""
        key = check_key(key)
        self.ops.append((DELETE, key, b""))
        self._parts += (op_prefix(DELETE, len(key)), key)
        self.nbytes += len(key) + _OP_BYTES
        return self

    def delete_range(self, start: bytes, stop: bytes) -> WriteBatch:
        """Queue a deletion of every key ``start <= k < stop`` (RocksDB's
        ``DeleteRange``): one range tombstone, whatever the number of keys.
        Keys written after the batch are not affected. An empty range
        (``start == stop``) queues nothing.
        Raises: TypeError/ValueError naming the bad argument; ValueError if
        ``start > stop``."""
        start = check_key(start, "start")
        stop = check_key(stop, "stop")
        if start > stop:
            raise ValueError(f"start {start!r} is after stop {stop!r}")
        if start < stop:
            self._range_delete(start, stop)
        return self

    def _range_delete(self, start: bytes, end: bytes) -> None:
        """Queue a range tombstone over ``[start, end)`` (arguments already checked)."""
        self.ops.append((RANGE_DELETE, start, end))
        self._parts += (op_prefix(RANGE_DELETE, len(start)), start, varint(len(end)), end)
        self.nbytes += len(start) + len(end) + _OP_BYTES

    def _with_prefix(self, prefix: bytes) -> WriteBatch:
        """A new batch of the same operations with ``prefix`` in front of
        every key (and of a range tombstone's end); values, TTL expiries
        included, unchanged. Raises: ValueError when a key grows past
        :data:`MAX_KEY_BYTES`."""
        out = WriteBatch()
        room = MAX_KEY_BYTES - len(prefix)
        for kind, key, value in self.ops:
            if len(key) > room or (kind == RANGE_DELETE and len(value) > room):
                raise ValueError(f"batch key {key!r} is {len(key)} bytes; with the {len(prefix)}-byte "
                                 f"prefix the limit is {room}")
            key = prefix + key
            if kind == RANGE_DELETE:
                out._range_delete(key, prefix + value)
            elif kind == DELETE:
                out.ops.append((kind, key, value))
                out._parts += (op_prefix(kind, len(key)), key)
                out.nbytes += len(key) + _OP_BYTES
            else:
                out.ops.append((kind, key, value))
                out._parts += (op_prefix(kind, len(key)), key, varint(len(value)), value)
                out.nbytes += len(key) + len(value) + _OP_BYTES
        return out

    def clear(self) -> None:
        """Drop every queued operation."""
        self.ops.clear()
        self._parts.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"<WriteBatch {len(self.ops)} ops>"

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        db, self._db = self._db, None
        if exc_type is None and db is not None:
            db.write(self, sync=self._sync)
        elif exc_type is not None:
            self.clear()


def encode_ttl_value(ttl: float, value: bytes) -> bytes:
    """Stored value of a ``PUT_TTL``: absolute wall-clock expiry + user value.

    Raises: TypeError (not a number), ValueError (not in ``0 < ttl <= 1e9``).
    """
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    try:
        ok = 0 < ttl <= _MAX_TTL
    except OverflowError:  # an int too large for a float
        ok = False
    if not ok:
        raise ValueError(f"ttl must be a number of seconds in (0, {_MAX_TTL:g}]; got {ttl!r}")
    return _F64.pack(time.time() + ttl) + value  # keys.join_ttl, inlined (every put with a ttl comes here)


def encode_batch(first_seq: int, ops: list[tuple[int, bytes, bytes]], synced: int = 0) -> bytes:
    """Encode ``ops`` as one batch payload (format 2) starting at ``first_seq``."""
    parts = [HEADER.pack(first_seq, len(ops), synced)]
    for kind, key, value in ops:
        parts.append(op_prefix(kind, len(key)))
        parts.append(key)
        if kind != DELETE:
            parts.append(varint(len(value)))
            parts.append(value)
    return b"".join(parts)


class BatchDecodeError(Error):
    """Internal: a batch payload is malformed (the WAL reader adds path and offset)."""


class Batch(NamedTuple):
    """A decoded batch: op ``i`` has sequence ``first_seq + i``; ``synced`` is
    the durable sequence when it was written (0 in format 1, which has none)."""

    first_seq: int
    ops: list[tuple[int, bytes, bytes]]
    synced: int


def decode_batch(payload: bytes, version: int = FORMAT_VERSION) -> Batch:
    """Decode a batch payload of format ``version`` (2, or 1 from logs of
    write-ahead log format 2).

    Raises: BatchDecodeError when the payload is malformed (it passed the
    record checksum, so this means a writer bug or a format mismatch).
    """
    head = HEADER if version >= 2 else HEADER_V1
    if len(payload) < head.size:
        raise BatchDecodeError(f"batch payload of {len(payload)} bytes is shorter than its header")
    if version >= 2:
        first_seq, count, synced = head.unpack_from(payload, 0)
    else:
        first_seq, count = head.unpack_from(payload, 0)
        synced = 0
    if first_seq < 1 or first_seq + count - 1 > MAX_SEQUENCE:
        raise BatchDecodeError(f"batch sequence range {first_seq}..{first_seq + count - 1} is outside "
                               f"1..{MAX_SEQUENCE}")
    pos = head.size
    ops: list[tuple[int, bytes, bytes]] = []
    kinds = (PUT, PUT_TTL, RANGE_DELETE) if version >= 2 else (PUT, PUT_TTL)
    try:
        for _ in range(count):
            kind = payload[pos]
            pos += 1
            n, pos = decode_varint(payload, pos)
            key = payload[pos:pos + n]
            if len(key) != n:
                raise IndexError("key runs past the end")
            pos += n
            if kind == DELETE:
                value = b""
            elif kind in kinds:
                n, pos = decode_varint(payload, pos)
                value = payload[pos:pos + n]
                if len(value) != n:
                    raise IndexError("value runs past the end")
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
    return Batch(first_seq, ops, synced)


def iter_entries(payload: bytes, version: int = FORMAT_VERSION) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Yield ``(seq, kind, key, value)`` for each op of an encoded batch."""
    first_seq, ops, _ = decode_batch(payload, version)
    for i, (kind, key, value) in enumerate(ops):
        yield first_seq + i, kind, key, value
