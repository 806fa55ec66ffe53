"""TableReader: point reads and range iteration over one SSTable
(doc/format.md#sstable). Two levels: the in-memory index picks a data block,
the block (from the shared block cache, or read, checked and decoded) is
searched by bisection.
"""

from __future__ import annotations

from typing import Iterator, Protocol

from ..errors import CorruptionError
from ..fs import RandomAccessFile
from .block import Block, IndexBlock
from .bloom import BloomFilter
from .format import BLOCK_TRAILER_BYTES, FOOTER_BYTES, BlockHandle, decode_footer, unwrap_block
from .props import decode_props

__all__ = ["TableReader"]


class BlockCacheLike(Protocol):
    def get(self, key: tuple[int, int]) -> Block | None: ...
    def put(self, key: tuple[int, int], block: Block, charge: int) -> None: ...


class TableReader:
    """An open SSTable. Index, filter and properties are read and checked at
    open and pinned in memory; data blocks go through ``cache``.

    Thread safety: every method may be called from several threads at once.
    Raises: CorruptionError (file and offset) on any damaged byte it reads;
    DiskError on I/O failure.
    """

    def __init__(self, file: RandomAccessFile, number: int, cache: BlockCacheLike | None = None,
                 verify_checksums: bool = True) -> None:
        self.file = file
        self.path = file.path
        self.number = number
        self.cache = cache
        self.verify = verify_checksums
        size = file.size
        self.file_size = size
        footer = decode_footer(file.read_at(max(size - FOOTER_BYTES, 0), FOOTER_BYTES), self.path, size)
        self.props = decode_props(self._read(footer.props, True), self.path, footer.props.offset)
        self.index = IndexBlock(self._read(footer.index, True), self.path, footer.index.offset)
        self.filter = BloomFilter(self._read(footer.filter, True))
        self.data_limit = max(int(self.props["data_bytes"]), 1)  # no data block decodes to more
        self.smallest: bytes = self.props["smallest"]  # type: ignore[assignment]
        self.largest: bytes = self.props["largest"]  # type: ignore[assignment]
        if len(self.index) != self.props["data_blocks"]:
            raise CorruptionError(self.path, footer.index.offset, "index entry count "
                                  f"{len(self.index)} != data_blocks {self.props['data_blocks']}")

    def _read(self, handle: BlockHandle, verify: bool) -> bytes:
        raw = self.file.read_at(handle.offset, handle.size + BLOCK_TRAILER_BYTES)
        return unwrap_block(raw, handle, self.path, verify)

    def block(self, i: int) -> Block:
        """Data block ``i``, from the cache when possible."""
        offset = self.index.offsets[i]
        cache = self.cache
        if cache is not None:
            key = (self.number, offset)
            b = cache.get(key)
            if b is not None:
                return b
        handle = BlockHandle(offset, self.index.sizes[i])
        raw = self.file.read_at(offset, handle[1] + BLOCK_TRAILER_BYTES)
        b = Block(unwrap_block(raw, handle, self.path, self.verify, self.data_limit), self.path, offset)
        if len(b) and b.last_key() != self.index.keys[i]:
            raise CorruptionError(self.path, offset, "data block's last key does not match the index")
        if cache is not None:
            cache.put(key, b, b.nbytes)
        return b

    def may_contain(self, key: bytes) -> bool:
        return self.filter.may_contain(key)

    def get(self, key: bytes, seq: int) -> tuple[int, int, bytes] | None:
        """Newest ``(seq, kind, stored_value)`` of ``key`` at or below ``seq``, or None.

        Does not consult the bloom filter (the caller does, to count it).
        """
        i = self.index.find(key)
        if i >= len(self.index):
            return None
        b = self.block(i)
        j = b.find(key, seq)
        if j < 0:
            return None
        t = b.tag(j)
        return t >> 8, t & 0xFF, b.value(j)

    def iter_forward(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, -seq, kind, value)`` for lo <= key < hi, ascending."""
        index = self.index
        n = len(index)
        i = index.find(lo) if lo else 0
        while i < n:
            if hi is not None and i > 0 and index.keys[i - 1] >= hi:
                return
            yield from self.block(i).iter_forward(lo, hi)
            i += 1

    def iter_reverse(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, seq, kind, value)`` for lo <= key < hi, descending."""
        index = self.index
        i = len(index) - 1 if hi is None else min(index.find(hi), len(index) - 1)
        while i >= 0:
            if lo and index.keys[i] < lo:
                return
            yield from self.block(i).iter_reverse(lo, hi)
            i -= 1

    def iter_entries(self) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Every entry as ``(key, seq, kind, value)`` in table order (for compaction, dump)."""
        for i in range(len(self.index)):
            b = self.block(i)
            keys, tags = b.keys, b.tags
            for j in range(len(keys)):
                t = tags[j]
                yield keys[j], t >> 8, t & 0xFF, b.value(j)

    def close(self) -> None:
        self.file.close()
