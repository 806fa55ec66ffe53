"""The PersistentCache log codec: file names, shard routing, and the
operations inside each record (doc/format.md#persistent-cache).

Log grammar (doc/format.md#persistent-cache). Each log is a plain sequence of
lsm.record records of type ``CACHE`` (magic, version, type, length, payload,
xxh32); each payload is one or more operations::

    payload  := op+
    op       := HEADER:u8(0) version:varint shard:varint shards:varint   (first op of a file only)
              | PUT:u8(1)    key_len:varint key expires_at:f64le value_len:varint value
              | DELETE:u8(2) key_len:varint key
              | EVICT:u8(3)  key_len:varint key
              | EXPIRE:u8(4) key_len:varint key

``expires_at`` is wall-clock seconds since the epoch, ``+inf`` for "never".
One user call is one record: a put together with the evictions and
expirations it causes is all-or-nothing. Replay applies the operations in
order to an ordered map (a PUT moves its key to the most-recent end), so the
recency after a restart is the order of the last logged write; reads are not
logged. A checkpoint writes the live entries in recency order, so reads before
the last checkpoint do survive in the order.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from enum import IntEnum

import xxhash

from ..coding import F64, DecodeError, decode_varint, encode_varint, get_length_prefixed
from ..errors import CorruptionError

__all__ = ["FORMAT_VERSION", "KEY_OPS", "NAME_RE", "OP_DELETE", "OP_EVICT", "OP_EXPIRE", "OP_HEADER",
           "OP_PUT", "Op",
           "decode_header", "encode_header", "encode_key_op", "encode_put",
           "iter_ops", "make_shard_log_name", "make_shard_temp_name", "shard_hash", "shard_of"]

FORMAT_VERSION = 1  # of the op encoding (in every log's HEADER); bump on any incompatible change


class Op(IntEnum):
    """Operation kind in a cache log. Persistent: never renumber or reuse a value."""

    HEADER = 0
    PUT = 1
    DELETE = 2
    EVICT = 3
    EXPIRE = 4


# Plain ints for the hot paths (an IntEnum member costs an attribute lookup and a compare).
OP_HEADER, OP_PUT, OP_DELETE, OP_EVICT, OP_EXPIRE = (int(k) for k in Op)
KEY_OPS = frozenset((OP_DELETE, OP_EVICT, OP_EXPIRE))

_INF = math.inf
shard_hash = xxhash.xxh3_64_intdigest
"""``shard_of(key, n) == shard_hash(key) % n`` for ``n > 1``: callers on hot
paths route with it directly (one call fewer); never change it (it places
keys in files)."""


NAME_RE = re.compile(r"^cache-(\d{3,})-of-(\d{3,})\.(log|tmp)$")
"""Matches the names :func:`make_shard_log_name` and :func:`make_shard_temp_name` give:
groups shard, shard count, and ``log`` or ``tmp``."""


def make_shard_log_name(dirpath: str, shard: int, shards: int) -> str:
    return os.path.join(dirpath, f"cache-{shard:03d}-of-{shards:03d}.log")


def make_shard_temp_name(dirpath: str, shard: int, shards: int) -> str:
    return os.path.join(dirpath, f"cache-{shard:03d}-of-{shards:03d}.tmp")


def shard_of(key: bytes, shards: int) -> int:
    """Index of the shard holding ``key``; stable across processes and versions."""
    return shard_hash(key) % shards if shards > 1 else 0


# -- operation encoding --------------------------------------------------------

def encode_header(shard: int, shards: int) -> bytes:
    return bytes((OP_HEADER,)) + encode_varint(FORMAT_VERSION) + encode_varint(shard) + encode_varint(shards)


def encode_put(out: bytearray, key: bytes, value: bytes, expires_at: float) -> None:
    n = len(key)
    out += _PUT_HEADS[n] if n < 0x80 else bytes((OP_PUT,)) + encode_varint(n)
    out += key
    out += _F64_INF if expires_at == _INF else F64.pack(expires_at)
    n = len(value)
    out += _VARINTS[n] if n < 0x80 else encode_varint(n)
    out += value


def encode_key_op(out: bytearray, kind: int, key: bytes) -> None:
    n = len(key)
    out += _KEY_OP_HEADS[kind][n] if n < 0x80 else bytes((kind,)) + encode_varint(n)
    out += key


# Precomputed op heads for keys and values under 128 bytes (one-byte varints):
# the put path spends most of its time in small Python operations.
_VARINTS = [bytes((n,)) for n in range(0x80)]
_PUT_HEADS = [bytes((OP_PUT, n)) for n in range(0x80)]
_KEY_OP_HEADS = {kind: [bytes((kind, n)) for n in range(0x80)] for kind in KEY_OPS}
_F64_INF = F64.pack(_INF)


def iter_ops(payload: bytes, path: str, offset: int) -> Iterator[tuple[int, bytes, bytes, float]]:
    """Yield ``(kind, key, value, expires_at)`` for each op of one record payload.

    For HEADER, ``key`` is empty, ``value`` is ``b""`` and ``expires_at`` is
    unused; the header fields come from :func:`decode_header`.
    Raises: CorruptionError at the record's ``offset`` on any malformed op.
    """
    pos = 0
    n = len(payload)
    try:
        while pos < n:
            kind = payload[pos]
            pos += 1
            if kind == OP_PUT:
                key, pos = get_length_prefixed(payload, pos)
                if pos + 8 > n:
                    raise DecodeError("PUT ends inside expires_at")
                exp = F64.unpack_from(payload, pos)[0]
                if exp != exp:
                    raise DecodeError("PUT has a NaN expires_at")
                value, pos = get_length_prefixed(payload, pos + 8)
                yield kind, key, value, exp
            elif kind in KEY_OPS:
                key, pos = get_length_prefixed(payload, pos)
                yield kind, key, b"", _INF
            elif kind == OP_HEADER:
                start = pos - 1
                for _ in range(3):
                    _, pos = decode_varint(payload, pos)
                yield kind, payload[start:pos], b"", _INF
            else:
                raise DecodeError(f"unknown cache op kind {kind}")
    except DecodeError as e:
        raise CorruptionError(path, offset, f"bad cache record: {e}") from None


def decode_header(op: bytes) -> tuple[int, int, int]:
    """``(version, shard, shards)`` of a HEADER op as yielded by :func:`iter_ops`."""
    version, pos = decode_varint(op, 1)
    shard, pos = decode_varint(op, pos)
    shards, pos = decode_varint(op, pos)
    return version, shard, shards
