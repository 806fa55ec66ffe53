"""Data and index blocks, stored column-wise so that decoding is a few C-level
``array`` copies rather than a Python loop per field (doc/format.md#data-block).

    data_block  := count:u32le key_len:u16le{count} value_len:u32le{count}
                   tag:u64le{count} key_bytes value_bytes
    tag         := sequence << 8 | kind
    index_block := count:u32le key_len:u16le{count} offset:u64le{count}
                   size:u32le{count} key_bytes

Entries in a data block are sorted by user key ascending, then sequence
descending. Every version of one user key lives in the same block (the writer
never cuts a block between them), so a point read needs exactly one block.
Each index entry holds the *last* user key of its data block.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Iterator

from ..coding import U32
from ..errors import CorruptionError
from ..invariants import check
from .format import BlockHandle

__all__ = ["Block", "BlockBuilder", "IndexBlock", "encode_index_block"]

_SWAP = sys.byteorder != "little"  # the format is little-endian; arrays are native
_U64 = struct.Struct("<Q")
_ENTRY_CHARGE = 64  # block cache charge per entry, over the payload


def _column(typecode: str, buf: bytes, start: int, count: int) -> tuple[array, int]:
    a = array(typecode)
    end = start + a.itemsize * count
    a.frombytes(buf[start:end])
    if _SWAP:
        a.byteswap()
    return a, end


def _le_bytes(a: array) -> bytes:
    if _SWAP:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


class BlockBuilder:
    """Accumulates the entries of one data block.

    Requires: entries are added in (key ascending, sequence descending) order.
    Thread safety: none.
    """

    __slots__ = ("klens", "vlens", "tags", "keys", "values", "nbytes")

    def __init__(self) -> None:
        self.klens = array("H")
        self.vlens = array("I")
        self.tags = array("Q")
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.nbytes = 4

    def add(self, key: bytes, tag: int, value: bytes) -> None:
        self.klens.append(len(key))
        self.vlens.append(len(value))
        self.tags.append(tag)
        self.keys.append(key)
        self.values.append(value)
        self.nbytes += 14 + len(key) + len(value)

    def __len__(self) -> int:
        return len(self.keys)

    def finish(self) -> bytes:
        return b"".join((U32.pack(len(self.keys)), _le_bytes(self.klens), _le_bytes(self.vlens),
                         _le_bytes(self.tags), b"".join(self.keys), b"".join(self.values)))


class Block:
    """A data block over its raw payload. Immutable after construction, so one
    instance is shared by every reader through the block cache.

    Construction is O(1) when every key has one length and every value has
    one length (checked with one bytes comparison per column): entry ``i``'s
    key and value are then at computed offsets, and a point lookup bisects
    by slicing ``data`` (about log2(n) slices) and reads one tag with
    ``struct``; no per-entry Python object is made. Otherwise the key offsets
    (and value lengths) are decoded at construction, as before. The lists
    used by iteration (``keys``, ``tags``, ``voffs``) are built on first use.
    """

    __slots__ = ("data", "count", "_kw", "_vw", "_kstart", "_vstart", "_tagpos",
                 "_koffs", "_vlens", "_voffs", "_keys", "_tags", "nbytes")

    def __init__(self, payload: bytes, path: str = "?", offset: int = 0) -> None:
        try:
            (count,) = U32.unpack_from(payload, 0)
        except struct.error as e:
            raise CorruptionError(path, offset, f"malformed data block header: {e}") from None
        vl = 4 + 2 * count  # value-length column
        tp = vl + 4 * count  # tag column
        ks = tp + 8 * count  # key bytes
        if ks > len(payload):
            raise CorruptionError(path, offset, f"malformed data block header: {count} entries "
                                  f"need {ks} header bytes, block has {len(payload)}")
        self.data = payload
        self.count = count
        self._tagpos = tp
        self._kstart = ks
        if count and payload[4:6] * count == payload[4:vl]:  # one key length
            kw = payload[4] | payload[5] << 8
            self._kw = kw
            self._koffs: list[int] | None = None
            vs = ks + kw * count
        else:
            self._kw = -1
            klens, _ = _column("H", payload, 4, count)
            self._koffs = list(accumulate(klens, initial=ks))
            vs = self._koffs[-1]
        self._vstart = vs
        if count and payload[vl:vl + 4] * count == payload[vl:tp]:  # one value length
            (vw,) = U32.unpack_from(payload, vl)
            self._vw = vw
            self._vlens: array | None = None
            need = vs + vw * count
        else:
            self._vw = -1
            self._vlens, _ = _column("I", payload, vl, count)
            need = vs + sum(self._vlens)
        if need != len(payload):
            raise CorruptionError(path, offset, f"data block sizes do not add up: {count} entries "
                                  f"need {need} bytes, block has {len(payload)}")
        self._voffs: list[int] | None = None
        self._keys: list[bytes] | None = None
        self._tags: array | None = None
        self.nbytes = len(payload) + _ENTRY_CHARGE * count  # what the block cache charges

    def __len__(self) -> int:
        return self.count

    @property
    def koffs(self) -> list[int]:
        """Start offset of every key, plus the end."""
        ko = self._koffs
        if ko is None:
            ks, kw = self._kstart, self._kw
            ko = self._koffs = [ks + i * kw for i in range(self.count + 1)]
        return ko

    @property
    def vlens(self) -> array:
        vlens = self._vlens
        if vlens is None:
            vlens = self._vlens = array("I", [self._vw]) * self.count
        return vlens

    @property
    def tags(self) -> array:
        """Every tag (``seq << 8 | kind``), in entry order (built on first use)."""
        tags = self._tags
        if tags is None:
            tags, _ = _column("Q", self.data, self._tagpos, self.count)
            self._tags = tags
        return tags

    def tag(self, i: int) -> int:
        return _U64.unpack_from(self.data, self._tagpos + 8 * i)[0]

    @property
    def voffs(self) -> list[int]:
        """Start offset of every value, plus the end (built on first use)."""
        voffs = self._voffs
        if voffs is None:
            voffs = self._voffs = list(accumulate(self.vlens, initial=self._vstart))
        return voffs

    @property
    def keys(self) -> list[bytes]:
        """Every key of the block, in order (built on first use)."""
        keys = self._keys
        if keys is None:
            d, ko = self.data, self.koffs
            keys = self._keys = [d[a:b] for a, b in zip(ko, ko[1:])]
        return keys

    def key(self, i: int) -> bytes:
        kw = self._kw
        if kw >= 0:
            s = self._kstart + i * kw
            return self.data[s:s + kw]
        return self.data[self._koffs[i]:self._koffs[i + 1]]

    def last_key(self) -> bytes:
        return self.key(self.count - 1) if self.count else b""

    def value(self, i: int) -> bytes:
        vw = self._vw
        if vw >= 0:
            s = self._vstart + i * vw
            return self.data[s:s + vw]
        voffs = self._voffs
        if voffs is None:  # one lookup: sum the lengths before it
            start = self._vstart + sum(self._vlens[:i])
            return self.data[start:start + self._vlens[i]]
        return self.data[voffs[i]:voffs[i + 1]]

    def _lower_bound(self, key: bytes) -> int:
        """First index whose key is >= ``key``."""
        if self._keys is not None:
            return bisect_left(self._keys, key)
        data, lo, hi = self.data, 0, self.count
        kw = self._kw
        if kw >= 0:
            ks = self._kstart
            while lo < hi:
                mid = (lo + hi) >> 1
                s = ks + mid * kw
                if data[s:s + kw] < key:
                    lo = mid + 1
                else:
                    hi = mid
            return lo
        ko = self._koffs
        while lo < hi:
            mid = (lo + hi) >> 1
            if data[ko[mid]:ko[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def find(self, key: bytes, seq: int) -> int:
        """Index of the newest entry for ``key`` with sequence <= ``seq``, or -1."""
        i = self._lower_bound(key)
        data, n, kw, tp = self.data, self.count, self._kw, self._tagpos
        while i < n:
            if kw >= 0:
                s = self._kstart + i * kw
                if data[s:s + kw] != key:
                    return -1
            elif data[self._koffs[i]:self._koffs[i + 1]] != key:
                return -1
            if _U64.unpack_from(data, tp + 8 * i)[0] >> 8 <= seq:
                return i
            i += 1
        return -1

    def iter_forward(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, -seq, kind, value)`` for lo <= key < hi, in merge order."""
        keys, tags, voffs, data = self.keys, self.tags, self.voffs, self.data
        i = bisect_left(keys, lo) if lo else 0
        j = len(keys) if hi is None else bisect_left(keys, hi)
        for i in range(i, j):
            t = tags[i]
            yield keys[i], -(t >> 8), t & 0xFF, data[voffs[i]:voffs[i + 1]]

    def iter_reverse(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, seq, kind, value)`` for lo <= key < hi: keys descending,
        and within one key sequence descending (the reverse-merge order)."""
        keys, tags, voffs, data = self.keys, self.tags, self.voffs, self.data
        i = bisect_left(keys, lo) if lo else 0
        j = len(keys) if hi is None else bisect_left(keys, hi)
        while j > i:
            # versions of keys[j-1] occupy [s, j); emit them newest first
            k = keys[j - 1]
            s = bisect_left(keys, k, i, j)
            for x in range(s, j):
                t = tags[x]
                yield k, t >> 8, t & 0xFF, data[voffs[x]:voffs[x + 1]]
            j = s

    def _check(self) -> None:
        """Invariant: keys ascending; sequences strictly descending within a key."""
        keys = self.keys
        for i in range(1, len(keys)):
            a, b = keys[i - 1], keys[i]
            check(a < b or (a == b and self.tags[i - 1] >> 8 > self.tags[i] >> 8),
                  f"block entries {i - 1},{i} out of order")


def encode_index_block(last_keys: list[bytes], handles: list[BlockHandle]) -> bytes:
    klens = array("H", [len(k) for k in last_keys])
    offs = array("Q", [h.offset for h in handles])
    sizes = array("I", [h.size for h in handles])
    return b"".join((U32.pack(len(last_keys)), _le_bytes(klens), _le_bytes(offs),
                     _le_bytes(sizes), b"".join(last_keys)))


class IndexBlock:
    """The decoded sparse index: the last key of every data block, and its handle."""

    __slots__ = ("keys", "offsets", "sizes")

    def __init__(self, payload: bytes, path: str = "?", offset: int = 0) -> None:
        try:
            (count,) = U32.unpack_from(payload, 0)
            klens, pos = _column("H", payload, 4, count)
            offs, pos = _column("Q", payload, pos, count)
            sizes, pos = _column("I", payload, pos, count)
        except (struct.error, ValueError) as e:
            raise CorruptionError(path, offset, f"malformed index block: {e}") from None
        if pos + sum(klens) != len(payload):
            raise CorruptionError(path, offset, "index block sizes do not add up")
        koffs = list(accumulate(klens, initial=pos))
        self.keys = [payload[a:b] for a, b in zip(koffs, koffs[1:])]
        self.offsets = offs
        self.sizes = sizes
        for i in range(1, count):
            if not (self.keys[i - 1] < self.keys[i] and offs[i - 1] < offs[i]):
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
