"""Data, index and range-deletion blocks (doc/format.md#data-block).

Format 2 data blocks are columnar and searchable in place (in a memory map,
without decoding): when every key of a block has one length and every
value has one length, entry ``i``'s key and value sit at computed offsets;
otherwise offset columns say where each one starts::

    data_block  := count:u32le key_width:u16le value_width:u32le
                   [key_offset:u32le{count+1}]      iff key_width == VARIABLE_KEY (0xFFFF)
                   [value_offset:u32le{count+1}]    iff value_width == VARIABLE_VALUE (0xFFFFFFFF)
                   tag:u64le{count} key_bytes value_bytes
    tag         := sequence << 8 | kind

Offsets are relative to the start of ``key_bytes`` (``value_bytes``); the
first is 0 and the last the column's length. Entries are sorted by user key
ascending, then sequence descending, and every version of one user key lives
in the same block (a writer never cuts a block between them), so a point
read needs exactly one block.

Format 1 data blocks (``count key_len:u16le{count} value_len:u32le{count}
tag:u64le{count} key_bytes value_bytes``) are converted to the format 2
layout when read (:func:`convert_v1_block`), so one search routine serves
both.

    index_block     := count:u32le key_len:u16le{count} offset:u64le{count}
                       size:u32le{count} key_bytes         (one entry per data block: its last key)
    range_del_block := count:u32le start_len:u16le{count} end_len:u16le{count}
                       seq:u64le{count} start_bytes end_bytes      (format 2)
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate

from ..coding import U32
from ..errors import CorruptionError
from ..memory import keys_list
from .format import BlockHandle

__all__ = ["BLOCK_HEADER", "VARIABLE_KEY", "VARIABLE_VALUE", "BlockLayout", "IndexBlock", "block_layout",
           "column_struct", "convert_v1_block", "decode_range_dels", "encode_data_block",
           "encode_index_block", "encode_range_dels", "read_entries"]

_SWAP = sys.byteorder != "little"  # the format is little-endian; arrays are native
BLOCK_HEADER = struct.Struct("<IHI")  # count, key_width, value_width
VARIABLE_KEY = 0xFFFF
VARIABLE_VALUE = 0xFFFFFFFF
_U64 = struct.Struct("<Q")


def _le(a: array) -> bytes:
    if _SWAP:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _column(typecode: str, buf, start: int, count: int) -> array:
    a = array(typecode)
    a.frombytes(buf[start:start + a.itemsize * count])
    if _SWAP:
        a.byteswap()
    return a


_structs: dict[tuple[int, int], struct.Struct] = {}


def column_struct(width: int, count: int) -> struct.Struct:
    """``Struct(f"{width}s" * count)``: cuts ``count`` fixed-width fields out of
    a buffer with one C call. Cached (a block's widths and counts repeat)."""
    s = _structs.get((width, count))
    if s is None:
        if len(_structs) > 4096:
            _structs.clear()  # bounded: odd widths from many tables cannot grow it forever
        s = _structs[(width, count)] = struct.Struct(f"{width}s" * count)
    return s


def encode_data_block(keys: Sequence[bytes], tags: Sequence[int], values: Sequence[bytes]) -> bytes:
    """One format 2 data block of ``keys[i], tags[i], values[i]``.

    Requires: (key ascending, sequence descending) order; ``len(keys) ==
    len(tags) == len(values) >= 1``.
    """
    n = len(keys)
    klens = set(map(len, keys))
    vlens = set(map(len, values))
    kw = klens.pop() if len(klens) == 1 else VARIABLE_KEY
    vw = vlens.pop() if len(vlens) == 1 else VARIABLE_VALUE
    parts = [BLOCK_HEADER.pack(n, kw, vw)]
    if kw == VARIABLE_KEY:  # (a uniform width of 0xFFFF itself also lands here)
        parts.append(_le(array("I", accumulate(map(len, keys), initial=0))))
    if vw == VARIABLE_VALUE:
        parts.append(_le(array("I", accumulate(map(len, values), initial=0))))
    parts.append(_le(array("Q", tags)))
    parts.append(b"".join(keys))
    parts.append(b"".join(values))
    return b"".join(parts)


class BlockLayout:
    """Where the columns of one format 2 block start in its buffer (absolute
    offsets). Built by :func:`block_layout`, which also checks that the
    sizes add up. ``koffs``/``voffs`` are the offset columns' positions, or
    -1 for a fixed width."""

    __slots__ = ("count", "kw", "vw", "koffs", "voffs", "tags", "keys", "values", "end")

    def __init__(self, count: int, kw: int, vw: int, koffs: int, voffs: int, tags: int, keys: int,
                 values: int, end: int) -> None:
        self.count = count
        self.kw = kw
        self.vw = vw
        self.koffs = koffs
        self.voffs = voffs
        self.tags = tags
        self.keys = keys
        self.values = values
        self.end = end


def block_layout(buf, o: int, size: int, path: str = "?", offset: int | None = None) -> BlockLayout:
    """The layout of the format 2 block ``buf[o:o + size]``.

    Raises: CorruptionError (at ``offset``, default ``o``) when its header and
    sizes do not add up exactly to ``size`` bytes, or an offset column is
    not ascending from 0.
    """
    at = o if offset is None else offset
    if size < BLOCK_HEADER.size:
        raise CorruptionError(path, at, f"data block of {size} bytes is shorter than its header")
    n, kw, vw = BLOCK_HEADER.unpack_from(buf, o)
    p = o + BLOCK_HEADER.size
    end = o + size
    koffs = voffs = -1
    if kw == VARIABLE_KEY:
        koffs, p = p, p + 4 * (n + 1)
    if vw == VARIABLE_VALUE:
        voffs, p = p, p + 4 * (n + 1)
    tags, p = p, p + 8 * n
    if n == 0 or p > end:
        raise CorruptionError(path, at, f"malformed data block header: {n} entries need more than "
                              f"the block's {size} bytes" if n else "data block with no entries")
    keys = p
    if koffs >= 0:
        ko = _column("I", buf, koffs, n + 1)
        if ko[0] != 0 or any(a > b for a, b in zip(ko, ko[1:])):
            raise CorruptionError(path, at, "data block key offsets are not ascending from 0")
        klen = ko[-1]
    else:
        klen = kw * n
    values = keys + klen
    if voffs >= 0:
        vo = _column("I", buf, voffs, n + 1)
        if vo[0] != 0 or any(a > b for a, b in zip(vo, vo[1:])):
            raise CorruptionError(path, at, "data block value offsets are not ascending from 0")
        vlen = vo[-1]
    else:
        vlen = vw * n
    if values + vlen != end:
        raise CorruptionError(path, at, f"data block sizes do not add up: {n} entries need "
                              f"{values + vlen - o} bytes, block has {size}")
    return BlockLayout(n, kw, vw, koffs, voffs, tags, keys, values, end)


def read_entries(buf, lay: BlockLayout, a: int = 0, b: int | None = None
                 ) -> tuple[Sequence[bytes], array, Sequence[bytes]]:
    """Keys, tags and values of entries ``a .. b-1`` (default: all) of a block:
    fixed-width columns cut with one ``struct`` call each."""
    n = lay.count if b is None else b
    m = n - a
    if m <= 0:
        return (), array("Q"), ()
    keys: Sequence[bytes]
    values: Sequence[bytes]
    if lay.koffs < 0:
        keys = column_struct(lay.kw, m).unpack_from(buf, lay.keys + a * lay.kw)
    else:
        ko = _column("I", buf, lay.koffs + 4 * a, m + 1)
        base = lay.keys
        keys = [buf[base + x:base + y] for x, y in zip(ko, ko[1:])]
    if lay.voffs < 0:
        values = column_struct(lay.vw, m).unpack_from(buf, lay.values + a * lay.vw)
    else:
        vo = _column("I", buf, lay.voffs + 4 * a, m + 1)
        base = lay.values
        values = [buf[base + x:base + y] for x, y in zip(vo, vo[1:])]
    return keys, _column("Q", buf, lay.tags + 8 * a, m), values


def convert_v1_block(payload: bytes, path: str = "?", offset: int = 0) -> bytes:
    """A format 1 data block re-encoded in the format 2 layout (same entries).

    Raises: CorruptionError when the format 1 block's sizes do not add up.
    """
    try:
        (count,) = U32.unpack_from(payload, 0)
    except struct.error as e:
        raise CorruptionError(path, offset, f"malformed data block header: {e}") from None
    vl = 4 + 2 * count
    tp = vl + 4 * count
    ks = tp + 8 * count
    if ks > len(payload) or count == 0:
        raise CorruptionError(path, offset, f"malformed data block header: {count} entries "
                              f"need {ks} header bytes, block has {len(payload)}")
    klens = _column("H", payload, 4, count)
    vlens = _column("I", payload, vl, count)
    ko = list(accumulate(klens, initial=ks))
    vs = ko[-1]
    vo = list(accumulate(vlens, initial=vs))
    if vo[-1] != len(payload):
        raise CorruptionError(path, offset, f"data block sizes do not add up: {count} entries "
                              f"need {vo[-1]} bytes, block has {len(payload)}")
    keys = [payload[x:y] for x, y in zip(ko, ko[1:])]
    values = [payload[x:y] for x, y in zip(vo, vo[1:])]
    return encode_data_block(keys, _column("Q", payload, tp, count), values)


def encode_index_block(last_keys: list[bytes], handles: list[BlockHandle]) -> bytes:
    klens = array("H", [len(k) for k in last_keys])
    offs = array("Q", [h.offset for h in handles])
    sizes = array("I", [h.size for h in handles])
    return b"".join((U32.pack(len(last_keys)), _le(klens), _le(offs), _le(sizes), b"".join(last_keys)))


class IndexBlock:
    """The decoded sparse index: the last key of every data block, and its
    handle. Immutable after construction; ``keys`` is a list so that a read
    bisects it in C. ``nbytes``: the memory it holds (lsm.memory)."""

    __slots__ = ("keys", "offsets", "sizes", "nbytes")

    def __init__(self, payload: bytes, path: str = "?", offset: int = 0) -> None:
        try:
            (count,) = U32.unpack_from(payload, 0)
            if 4 + 14 * count > len(payload):
                raise ValueError(f"{count} entries need more than {len(payload)} bytes")
            klens = _column("H", payload, 4, count)
            pos = 4 + 2 * count
            offs = _column("Q", payload, pos, count)
            pos += 8 * count
            sizes = _column("I", payload, pos, count)
            pos += 4 * count
        except (struct.error, ValueError) as e:
            raise CorruptionError(path, offset, f"malformed index block: {e}") from None
        key_bytes = sum(klens)
        if pos + key_bytes != len(payload):
            raise CorruptionError(path, offset, "index block sizes do not add up")
        koffs = list(accumulate(klens, initial=pos))
        self.keys = [payload[a:b] for a, b in zip(koffs, koffs[1:])]
        # Offsets and sizes stay arrays (8 and 4 bytes an entry): as lists of
        # ints they would cost 40 bytes each, and an open table keeps its
        # index for as long as it is open (doc/design.md#memory).
        self.offsets = offs
        self.sizes = sizes
        fixed = klens[0] if count and min(klens) == max(klens) else None
        self.nbytes = (keys_list(count, key_bytes, fixed) + sys.getsizeof(self.keys)
                       + sys.getsizeof(offs) + sys.getsizeof(sizes))
        keys = self.keys
        for i in range(1, count):
            if not (keys[i - 1] < keys[i] and offs[i - 1] < offs[i]):
                raise CorruptionError(path, offset, f"index entries {i - 1},{i} out of order")

    def __len__(self) -> int:
        return len(self.keys)

    def handle(self, i: int) -> BlockHandle:
        return BlockHandle(self.offsets[i], self.sizes[i])

    def find(self, key: bytes) -> int:
        """Index of the only block that may hold ``key``, or len(self) if none."""
        return bisect_left(self.keys, key)

    def find_last_before(self, key: bytes) -> int:
        """Index of the last block that may hold keys < ``key``."""
        return bisect_right(self.keys, key)


def encode_range_dels(dels: Sequence[tuple[bytes, bytes, int]]) -> bytes:
    """The range-deletion block of ``(start, end, seq)`` tombstones, each
    deleting keys in ``[start, end)`` written before ``seq``. Requires: sorted
    by start ascending, then seq descending."""
    starts = [d[0] for d in dels]
    ends = [d[1] for d in dels]
    return b"".join((U32.pack(len(dels)), _le(array("H", map(len, starts))), _le(array("H", map(len, ends))),
                     _le(array("Q", [d[2] for d in dels])), b"".join(starts), b"".join(ends)))


def decode_range_dels(payload: bytes, path: str = "?", offset: int = 0) -> list[tuple[bytes, bytes, int]]:
    """Inverse of :func:`encode_range_dels`. Raises: CorruptionError if malformed."""
    try:
        (count,) = U32.unpack_from(payload, 0)
        if 4 + 12 * count > len(payload):
            raise ValueError(f"{count} tombstones need more than {len(payload)} bytes")
        slens = _column("H", payload, 4, count)
        elens = _column("H", payload, 4 + 2 * count, count)
        seqs = _column("Q", payload, 4 + 4 * count, count)
    except (struct.error, ValueError) as e:
        raise CorruptionError(path, offset, f"malformed range-deletion block: {e}") from None
    pos = 4 + 12 * count
    so = list(accumulate(slens, initial=pos))
    eo = list(accumulate(elens, initial=so[-1]))
    if eo[-1] != len(payload):
        raise CorruptionError(path, offset, "range-deletion block sizes do not add up")
    out = [(payload[so[i]:so[i + 1]], payload[eo[i]:eo[i + 1]], seqs[i]) for i in range(count)]
    for i, (start, stop, _) in enumerate(out):
        if not start < stop:
            raise CorruptionError(path, offset, f"range tombstone {i} is empty or inverted")
    return out
