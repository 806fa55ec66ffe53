"""TableReader: point reads and column extraction over one SSTable
(doc/format.md#sstable). Two levels: the in-memory index picks a data block;
the block is searched where it lies.

Where a block lies: an uncompressed format 2 table on a filesystem that can
map files is memory-mapped, and its blocks are searched in place (the OS
page cache is their cache: no read, no copy, no decode). Everything else —
zstd blocks, format 1 blocks (converted to the format 2 layout), and every
block when the filesystem cannot map (the fault-injection filesystem of the
tests) — is read, checked and decoded once into a payload kept in the shared
block cache, charged by its size.

Checks: the footer, properties, index, filter and range-deletion blocks are
verified at open. A data block's checksum is verified (when
``verify_checksums``, the default) the first time this reader touches it,
together with its layout and its last key; later reads of it in the same
open trust those checks. A new open (a new reader) checks again.
"""

from __future__ import annotations

import mmap
import struct
import sys
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Protocol

from ..coding import U32, checksum
from ..errors import CorruptionError
from ..fs import RandomAccessFile
from .block import (
    BLOCK_HEADER,
    VARIABLE_KEY,
    VARIABLE_VALUE,
    BlockLayout,
    IndexBlock,
    _column,
    block_layout,
    column_struct,
    convert_v1_block,
    decode_range_dels,
    read_entries,
)
from .bloom import BlockedBloom, decode_filter
from .format import BLOCK_TRAILER_BYTES, COMPRESSION_NONE, MAX_FOOTER_BYTES, BlockHandle, decode_footer, unwrap_block
from .props import decode_props

__all__ = ["READER_BYTES", "GlobalSeqReader", "TableReader", "read_props"]

_HDR = BLOCK_HEADER.unpack_from
_U64 = struct.Struct("<Q").unpack_from
_U32x2 = struct.Struct("<II").unpack_from
_TRAILER = struct.Struct("<BI").unpack_from

# Memory an open reader holds besides its index and filter: the reader, its
# file and map objects, the decoded properties (a dict of about 15 entries),
# the path. Measured with tracemalloc over 200 small tables: 2,600 bytes.
READER_BYTES = 2600

# Block states (TableReader.state[i]): not yet touched in this open; checked
# and searched in the map; checked, and read through the block cache.
UNTOUCHED, MAPPED, CACHED = 0, 1, 2


class BlockCacheLike(Protocol):
    def get(self, key: int) -> bytes | None: ...
    def put(self, key: int, payload: bytes) -> None: ...


class TableReader:
    """An open SSTable of format 1 or 2. Index, filter, properties and range
    tombstones are read and checked at open and kept in memory.

    Thread safety: every method may be called from several threads at once
    (the per-block state is a ``bytearray`` whose one-byte writes are atomic,
    and two threads checking the same block do the same work).
    Raises: CorruptionError (file and offset) on any damaged byte it reads;
    DiskError on I/O failure.
    Ownership: the reader owns ``file``; it is closed by :meth:`close` or
    when the reader is collected (a map stays valid while any thread still
    holds the reader).
    """

    __slots__ = ("file", "path", "number", "file_size", "version", "props", "index", "ikeys", "offsets",
                 "sizes", "state", "buf", "cache", "cache_base", "verify", "filter", "bloom",
                 "range_dels", "smallest", "largest", "data_limit", "plain", "global_seq", "__weakref__")

    def __new__(cls, *args, global_seq: int = 0, **kwargs):
        # A table given a global sequence (an ingested external table,
        # lsm.ingest) is read through GlobalSeqReader, which reports that
        # sequence for every entry; other tables pay nothing for it.
        if global_seq and cls is TableReader:
            cls = GlobalSeqReader
        return super().__new__(cls)

    def __init__(self, file: RandomAccessFile, number: int, cache: BlockCacheLike | None = None,
                 verify_checksums: bool = True, *, global_seq: int = 0) -> None:
        self.global_seq = global_seq
        self.file = file
        self.path = path = file.path
        self.number = number
        self.cache = cache
        self.cache_base = number << 32
        self.verify = verify_checksums
        size = file.size
        self.file_size = size
        tail = min(size, MAX_FOOTER_BYTES)
        footer = decode_footer(file.read_at(size - tail, tail), path, size)
        self.version = footer.version
        self.props = decode_props(self._read(footer.props), path, footer.props.offset)
        self.index = index = IndexBlock(self._read(footer.index), path, footer.index.offset)
        try:
            self.filter = decode_filter(self._read(footer.filter), self.version)
        except ValueError as e:
            raise CorruptionError(path, footer.filter.offset, f"malformed filter block: {e}") from None
        # What a read probes inline: (words, nwords, patterns) of a format 2
        # filter, with the read's one hash h: m = patterns[h & 4095];
        # words[((h >> 32) * nwords) >> 32] & m == m. None: probe ``filter``
        # itself (format 1), or no filter.
        f = self.filter
        self.bloom = (f.words, f.nwords, f.pattern) if isinstance(f, BlockedBloom) else None
        self.range_dels = (decode_range_dels(self._read(footer.range_del), path, footer.range_del.offset)
                           if footer.range_del.size else [])
        if len(index) != self.props["data_blocks"]:
            raise CorruptionError(path, footer.index.offset, "index entry count "
                                  f"{len(index)} != data_blocks {self.props['data_blocks']!r}")
        if len(self.range_dels) != self.props.get("range_deletions", 0):
            raise CorruptionError(path, footer.range_del.offset, "range-deletion count "
                                  f"{len(self.range_dels)} != range_deletions {self.props.get('range_deletions')!r}")
        self.ikeys = index.keys
        self.offsets = index.offsets
        self.sizes = index.sizes
        self.state = bytearray(len(index))
        self.data_limit = max(int(self.props["data_bytes"]), 1)  # no data block decodes to more
        self.smallest: bytes = self.props["smallest"]  # type: ignore[assignment]
        self.largest: bytes = self.props["largest"]  # type: ignore[assignment]
        p = self.props
        # A plain table holds one live version per key: scans may take its
        # columns as they are (no tombstones, expiries or older versions).
        self.plain = (p["deletions"] == 0 and p["ttl_entries"] == 0 and p["entries"] == p["unique_keys"]
                      and not self.range_dels)
        # Only uncompressed format 2 tables are searched in place.
        mapper = getattr(file, "buffer", None)  # a filesystem that cannot map has none
        self.buf = (mapper() if mapper is not None and self.version >= 2 and p["compression"] == COMPRESSION_NONE
                    else None)

    def _read(self, handle: BlockHandle) -> bytes:
        """A metadata block, checksum always verified."""
        if handle.size == 0 and handle.offset == 0:
            return b""
        raw = self.file.read_at(handle.offset, handle.size + BLOCK_TRAILER_BYTES)
        return unwrap_block(raw, handle, self.path, True)

    # -- blocks ---------------------------------------------------------------

    def block(self, i: int) -> tuple[bytes, int]:
        """``(buf, offset)`` where data block ``i`` starts, in the format 2 layout:
        the map itself, or a checked and decoded payload (from the cache)."""
        if self.state[i] == MAPPED:
            return self.buf, self.offsets[i]  # type: ignore[return-value]
        return self._slow_block(i)

    def _slow_block(self, i: int) -> tuple[bytes, int]:
        buf = self.buf
        if buf is not None and self.state[i] == UNTOUCHED:
            o, size = self.offsets[i], self.sizes[i]
            if o + size + BLOCK_TRAILER_BYTES > len(buf):
                raise CorruptionError(self.path, o, "truncated block: it runs past the end of the file")
            compression, crc = _TRAILER(buf, o + size)
            if compression == COMPRESSION_NONE:
                if self.verify:
                    got = checksum(buf[o:o + size + 1])
                    if got != crc:
                        raise CorruptionError(self.path, o, f"block checksum 0x{got:08x} != stored 0x{crc:08x}")
                self._check_block(buf, o, size, i, o)
                self.state[i] = MAPPED
                return buf, o
            # a zstd block in a table written uncompressed on the whole: cache it
        # Not in the map: read, check and decode it, and keep the payload in
        # the block cache. Every read from the file is checked in full (a
        # cache miss costs a read and often a decompression anyway).
        cache = self.cache
        key = self.cache_base | i
        payload = cache.get(key) if cache is not None else None
        if payload is None:
            o, size = self.offsets[i], self.sizes[i]
            raw = self.file.read_at(o, size + BLOCK_TRAILER_BYTES)
            payload = unwrap_block(raw, BlockHandle(o, size), self.path, self.verify, self.data_limit)
            if self.version == 1:
                payload = convert_v1_block(payload, self.path, o)
            self._check_block(payload, 0, len(payload), i, o)
            self.state[i] = CACHED
            if cache is not None:
                cache.put(key, payload)
        return payload, 0

    def _check_block(self, buf, o: int, size: int, i: int, at: int) -> None:
        lay = block_layout(buf, o, size, self.path, at)
        if self._key(buf, lay, lay.count - 1) != self.ikeys[i]:
            raise CorruptionError(self.path, at, "data block's last key does not match the index")

    @staticmethod
    def _key(buf, lay: BlockLayout, j: int) -> bytes:
        if lay.koffs < 0:
            s = lay.keys + j * lay.kw
            return buf[s:s + lay.kw]
        a, b = _U32x2(buf, lay.koffs + 4 * j)
        return buf[lay.keys + a:lay.keys + b]

    def layout(self, i: int) -> tuple[bytes, BlockLayout]:
        """``(buf, layout)`` of data block ``i`` (checked on first touch)."""
        buf, o = self.block(i)
        return buf, layout_of(buf, o)

    # -- point reads ------------------------------------------------------------

    def may_contain(self, key: bytes) -> bool:
        """The filter's answer (True when the table has none)."""
        f = self.filter
        return True if f is None else f.may_contain(key)

    def get(self, key: bytes, seq: int) -> tuple[int, int, bytes] | None:
        """Newest ``(seq, kind, stored_value)`` of ``key`` at or below ``seq``, or None.
        Does not consult the filter."""
        r = self.find(key, seq)
        return None if r is None else (r[0] >> 8, r[0] & 0xFF, r[1])

    def find(self, key: bytes, seq: int) -> tuple[int, bytes] | None:
        """Newest ``(tag, stored_value)`` of ``key`` at or below ``seq``, or None
        (``tag = seq << 8 | kind``, the memtable's shape: the read path's form).

        Does not consult the filter (the caller does, once per table, with a
        hash shared by every table of the read).
        """
        i = bisect_left(self.ikeys, key)
        if i == len(self.ikeys):
            return None
        if self.state[i] == MAPPED:
            assert self.buf is not None  # a block is MAPPED only in a mapped file
            buf, o = self.buf, self.offsets[i]
        else:
            buf, o = self._slow_block(i)
        n, kw, vw = _HDR(buf, o)
        if kw != VARIABLE_KEY and vw != VARIABLE_VALUE:
            # Fixed widths: find the key in the key column with one C search;
            # a hit counts only at an entry boundary (the first such hit is
            # the newest version: versions are sequence-descending).
            if len(key) != kw:
                return None
            t = o + 10
            ks = t + 8 * n
            vs = ks + kw * n
            if kw:
                p = buf.find(key, ks, vs)
                while p >= 0 and (p - ks) % kw:
                    p = buf.find(key, p + 1, vs)
                if p < 0:
                    return None
                j = (p - ks) // kw
            else:
                j = 0  # every key of the block is the empty key
            tag = _U64(buf, t + 8 * j)[0]
            while tag >> 8 > seq:  # newer than the reader's view: an older version may be visible
                j += 1
                s = ks + j * kw
                if j == n or buf[s:s + kw] != key:
                    return None
                tag = _U64(buf, t + 8 * j)[0]
            s = vs + j * vw
            return tag, buf[s:s + vw]
        return self._get_variable(buf, o, n, kw, vw, key, seq)

    def get_sorted(self, keys: Sequence[bytes], seq: int) -> list[tuple[int, bytes] | None]:
        """:meth:`find` of each of ``keys`` (ascending), in one pass: the
        index is bisected onwards from the previous key's block, and keys in
        the same block share its header (``DB.multi_get``'s inner loop).
        Keys that need more than the fixed-width search of a version at or
        below ``seq`` go through :meth:`find`."""
        ikeys = self.ikeys
        nblocks = len(ikeys)
        state = self.state
        out: list[tuple[int, bytes] | None] = []
        add = out.append
        i = 0
        cur = -1
        fixed = False
        buf: bytes | mmap.mmap = b""  # the current block's buffer, read only once `fixed` is set
        t = ks = vs = kw = vw = 0
        for key in keys:
            i = bisect_left(ikeys, key, i)
            if i == nblocks:
                out += [None] * (len(keys) - len(out))
                break
            if i != cur:
                cur = i
                if state[i] == MAPPED:
                    assert self.buf is not None  # a block is MAPPED only in a mapped file
                    buf, o = self.buf, self.offsets[i]
                else:
                    buf, o = self._slow_block(i)
                n, kw, vw = _HDR(buf, o)
                fixed = kw != VARIABLE_KEY and vw != VARIABLE_VALUE and kw > 0
                t = o + 10
                ks = t + 8 * n
                vs = ks + kw * n
            if not fixed:
                add(self.find(key, seq))
                continue
            if len(key) != kw:
                add(None)
                continue
            p = buf.find(key, ks, vs)
            while p >= 0 and (p - ks) % kw:
                p = buf.find(key, p + 1, vs)
            if p < 0:
                add(None)
                continue
            j = (p - ks) // kw
            tag = _U64(buf, t + 8 * j)[0]
            if tag >> 8 > seq:
                add(self.find(key, seq))  # a version newer than the reader's view first
                continue
            s = vs + j * vw
            add((tag, buf[s:s + vw]))
        return out

    def _get_variable(self, buf, o: int, n: int, kw: int, vw: int, key: bytes,
                      seq: int) -> tuple[int, bytes] | None:
        lay = layout_of(buf, o)
        ks = lay.keys
        lo, hi = 0, n
        if lay.koffs >= 0:
            ko = lay.koffs
            while lo < hi:
                mid = (lo + hi) >> 1
                a, b = _U32x2(buf, ko + 4 * mid)
                if buf[ks + a:ks + b] < key:
                    lo = mid + 1
                else:
                    hi = mid
            j = lo
            while j < n:
                a, b = _U32x2(buf, ko + 4 * j)
                if buf[ks + a:ks + b] != key:
                    return None
                tag = _U64(buf, lay.tags + 8 * j)[0]
                if tag >> 8 <= seq:
                    return tag, _value(buf, lay, j)
                j += 1
            return None
        while lo < hi:
            mid = (lo + hi) >> 1
            s = ks + mid * kw
            if buf[s:s + kw] < key:
                lo = mid + 1
            else:
                hi = mid
        j = lo
        while j < n:
            s = ks + j * kw
            if buf[s:s + kw] != key:
                return None
            tag = _U64(buf, lay.tags + 8 * j)[0]
            if tag >> 8 <= seq:
                return tag, _value(buf, lay, j)
            j += 1
        return None

    # -- ranges -------------------------------------------------------------------

    def first_block(self, key: bytes) -> int:
        """Index of the first block that may hold keys >= ``key``."""
        return bisect_left(self.ikeys, key)

    def columns(self, i: int) -> tuple:
        """``(keys, tags, values)`` of every entry of data block ``i``."""
        buf, o = self.block(i)
        return read_entries(buf, layout_of(buf, o))

    def cut(self, i: int, lo: bytes, hi: bytes | None, with_tags: bool) -> tuple:
        """The entries of data block ``i`` with ``lo <= key < hi`` (``hi`` None:
        unbounded): ``(keys, tags, values, below, above)``, ``tags`` None
        unless ``with_tags``; ``below``/``above``: the block holds keys below
        ``lo`` / at or above ``hi`` (the range starts / ends in it).

        Fixed-width blocks cut the keys with one ``struct`` call and only the
        values in range with another: the scan path's inner step."""
        if self.state[i] == MAPPED:
            assert self.buf is not None  # a block is MAPPED only in a mapped file
            buf, o = self.buf, self.offsets[i]
        else:
            buf, o = self._slow_block(i)
        n, kw, vw = _HDR(buf, o)
        if kw != VARIABLE_KEY and vw != VARIABLE_VALUE:
            t = o + 10
            ks = t + 8 * n
            keys: Sequence[bytes] = column_struct(kw, n).unpack_from(buf, ks)
            a = bisect_left(keys, lo) if lo and keys[0] < lo else 0
            b = n if hi is None or keys[-1] < hi else bisect_left(keys, hi)
            if a >= b:
                return (), None, (), a > 0, b < n
            values: Sequence[bytes] = column_struct(vw, b - a).unpack_from(buf, ks + kw * n + vw * a)
            tags = _column("Q", buf, t + 8 * a, b - a) if with_tags else None
            return (keys[a:b] if a or b < n else keys), tags, values, a > 0, b < n
        keys, tags, values = read_entries(buf, layout_of(buf, o))
        a = bisect_left(keys, lo) if lo and keys[0] < lo else 0
        b = n if hi is None or keys[-1] < hi else bisect_left(keys, hi)
        if a or b < n:
            keys, tags, values = keys[a:b], tags[a:b], values[a:b]
        return keys, tags if with_tags else None, values, a > 0, b < n

    def iter_entries(self, lo: bytes = b"", hi: bytes | None = None
                     ) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Entries as ``(key, seq, kind, value)`` in table order with
        ``lo <= key < hi`` (for compaction, tools and tests)."""
        n = len(self.ikeys)
        i = bisect_left(self.ikeys, lo) if lo else 0
        while i < n:
            keys, tags, values = self.columns(i)
            a = bisect_left(keys, lo) if lo and keys[0] < lo else 0
            b = len(keys) if hi is None or keys[-1] < hi else bisect_left(keys, hi)
            for j in range(a, b):
                t = tags[j]
                yield keys[j], t >> 8, t & 0xFF, values[j]
            if b < len(keys):
                return
            i += 1

    def iter_forward(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, -seq, kind, value)`` for lo <= key < hi, ascending (merge order)."""
        for key, seq, kind, value in self.iter_entries(lo, hi):
            yield key, -seq, kind, value

    def iter_reverse(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, seq, kind, value)`` for lo <= key < hi: keys descending,
        and within one key sequence descending (the reverse-merge order)."""
        i = len(self.ikeys) - 1 if hi is None else min(bisect_left(self.ikeys, hi), len(self.ikeys) - 1)
        while i >= 0:
            if lo and self.ikeys[i] < lo:
                return
            keys, tags, values = self.columns(i)
            j = len(keys) if hi is None or keys[-1] < hi else bisect_left(keys, hi)
            stop = bisect_left(keys, lo) if lo and keys[0] < lo else 0
            while j > stop:
                k = keys[j - 1]
                s = bisect_left(keys, k, stop, j)
                for x in range(s, j):
                    t = tags[x]
                    yield k, t >> 8, t & 0xFF, values[x]
                j = s
            i -= 1

    @property
    def index_bytes(self) -> int:
        """Memory the index holds, with the per-block states."""
        return self.index.nbytes + sys.getsizeof(self.state)

    @property
    def filter_bytes(self) -> int:
        """Memory the bloom filter holds (0 without one)."""
        f = self.filter
        return f.nbytes if f is not None else 0

    @property
    def memory_bytes(self) -> int:
        """Bytes this reader keeps in memory: index, filter, block states and
        :data:`READER_BYTES` of its own (lsm.memory, doc/design.md#memory)."""
        return self.index_bytes + self.filter_bytes + READER_BYTES

    @property
    def mapped_bytes(self) -> int:
        """Bytes of the file mapped into memory (0 when it is read instead).
        Address space backed by the OS page cache, not heap."""
        return self.file_size if self.buf is not None else 0

    def close(self) -> None:
        self.file.close()


def read_props(file: RandomAccessFile) -> dict:
    """The properties of the table in ``file``, read (checksum verified) and
    decoded without its index or filter: what a compaction needs to know of
    an input before it opens it. Raises: CorruptionError, DiskError."""
    size = file.size
    tail = min(size, MAX_FOOTER_BYTES)
    footer = decode_footer(file.read_at(size - tail, tail), file.path, size)
    h = footer.props
    payload = (b"" if h.size == 0 and h.offset == 0 else
               unwrap_block(file.read_at(h.offset, h.size + BLOCK_TRAILER_BYTES), h, file.path, True))
    return decode_props(payload, file.path, h.offset)


def layout_of(buf, o: int) -> BlockLayout:
    """The layout of a block already checked by :func:`block_layout` (no checks)."""
    n, kw, vw = _HDR(buf, o)
    p = o + BLOCK_HEADER.size
    koffs = voffs = -1
    if kw == VARIABLE_KEY:
        koffs, p = p, p + 4 * (n + 1)
    if vw == VARIABLE_VALUE:
        voffs, p = p, p + 4 * (n + 1)
    tags = p
    keys = p + 8 * n
    values = keys + (U32.unpack_from(buf, koffs + 4 * n)[0] if koffs >= 0 else kw * n)
    end = values + (U32.unpack_from(buf, voffs + 4 * n)[0] if voffs >= 0 else vw * n)
    return BlockLayout(n, kw, vw, koffs, voffs, tags, keys, values, end)


def _value(buf, lay: BlockLayout, j: int) -> bytes:
    if lay.voffs < 0:
        s = lay.values + j * lay.vw
        return buf[s:s + lay.vw]
    a, b = _U32x2(buf, lay.voffs + 4 * j)
    return buf[lay.values + a:lay.values + b]


class GlobalSeqReader(TableReader):
    """A table whose entries are all read as having one sequence number, the
    table's *global sequence*: an external table (written with sequence 0 by
    ``lsm.TableFileWriter``) that ``DB.ingest`` gave sequence ``global_seq``
    (recorded in the manifest, doc/format.md#manifest). Such a table holds
    one version per key (checked at ingest), so substituting the sequence is
    all it takes: ``find`` (so ``get``), ``cut`` and ``columns`` (and so ``iter_entries``,
    ``iter_forward``, ``iter_reverse``) report it, and the properties'
    ``min_seq``/``max_seq`` are it. Compaction rewrites the entries with it,
    after which they are an ordinary table's.

    Built by ``TableReader(..., global_seq=n)`` with ``n`` > 0.
    """

    __slots__ = ("_seq_bits",)

    def __init__(self, file: RandomAccessFile, number: int, cache: BlockCacheLike | None = None,
                 verify_checksums: bool = True, *, global_seq: int = 0) -> None:
        super().__init__(file, number, cache, verify_checksums, global_seq=global_seq)
        self._seq_bits = global_seq << 8  # stored tags are the kind alone (sequence 0)
        self.props = {**self.props, "min_seq": global_seq, "max_seq": global_seq}

    def find(self, key: bytes, seq: int) -> tuple[int, bytes] | None:
        if self.global_seq > seq:
            return None  # the one version of every key is newer than the reader's view
        r = TableReader.find(self, key, seq)
        return None if r is None else (self._seq_bits | r[0], r[1])

    def get_sorted(self, keys: Sequence[bytes], seq: int) -> list[tuple[int, bytes] | None]:
        if self.global_seq > seq:
            return [None] * len(keys)
        bits = self._seq_bits
        return [None if r is None else (bits | r[0], r[1]) for r in TableReader.get_sorted(self, keys, seq)]

    def columns(self, i: int) -> tuple:
        keys, tags, values = TableReader.columns(self, i)
        return keys, list(map(self._seq_bits.__or__, tags)), values

    def cut(self, i: int, lo: bytes, hi: bytes | None, with_tags: bool) -> tuple:
        keys, tags, values, below, above = TableReader.cut(self, i, lo, hi, with_tags)
        if tags is not None:
            tags = list(map(self._seq_bits.__or__, tags))
        return keys, tags, values, below, above
