"""Caches in front of SSTables: decoded data blocks (LRU by bytes), and open
table readers (LRU by count, bounding file descriptors).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from .fs import FileSystem
from .sstable import TableReader
from .sstable.block import Block

__all__ = ["BlockCache", "TableCache"]


class BlockCache:
    """LRU of decoded blocks keyed by ``(file_number, block_offset)``, bounded
    by the sum of their charges.

    Thread safety: ``put`` and ``evict_file`` take ``_mu``; ``get`` needs no
    lock (see there). Blocks are immutable, so a block evicted while a reader
    still uses it stays valid for that reader.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map: OrderedDict[tuple[int, int], tuple[Block, int]] = OrderedDict()  # guarded by _mu
        self._mu = threading.Lock()
        self.bytes = 0  # guarded by _mu
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, int]) -> Block | None:
        # Lock-free hit path: OrderedDict.get and move_to_end are single C
        # calls (atomic under the GIL); a concurrent eviction makes
        # move_to_end raise KeyError, which only means the block just left the
        # cache. hits/misses may lose an increment under races (statistics).
        item = self._map.get(key)
        if item is None:
            self.misses += 1
            return None
        try:
            self._map.move_to_end(key)
        except KeyError:
            pass
        self.hits += 1
        return item[0]

    def put(self, key: tuple[int, int], block: Block, charge: int) -> None:
        if charge > self.capacity:
            return
        with self._mu:
            old = self._map.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._map[key] = (block, charge)
            self.bytes += charge
            while self.bytes > self.capacity:
                _, (_, c) = self._map.popitem(last=False)
                self.bytes -= c

    def evict_file(self, number: int) -> None:
        """Drop every block of table ``number`` (after the file is deleted)."""
        with self._mu:
            for key in [k for k in self._map if k[0] == number]:
                self.bytes -= self._map.pop(key)[1]

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "bytes": self.bytes,
                "capacity": self.capacity}


class TableCache:
    """Bounded set of open :class:`TableReader` objects, LRU by use.

    Thread safety: ``get`` may be called from any thread. Two threads missing
    on the same table may both open it; one result wins, the other is dropped.
    An evicted reader is not closed explicitly: it closes when the last thread
    using it lets go (its file closes on finalisation).
    """

    def __init__(self, fs: FileSystem, path_of: Callable[[int], str], capacity: int,
                 block_cache: BlockCache | None, verify_checksums: bool) -> None:
        self._fs = fs
        self._path_of = path_of
        self.capacity = capacity
        self._block_cache = block_cache
        self._verify = verify_checksums
        self._map: OrderedDict[int, TableReader] = OrderedDict()  # guarded by _mu
        self._mu = threading.Lock()

    def get(self, number: int) -> TableReader:
        """Raises: DiskError (ENOENT if the table was deleted), CorruptionError."""
        m = self._map
        r = m.get(number)
        if r is not None:
            try:
                m.move_to_end(number)
            except KeyError:  # evicted by another thread meanwhile; still usable
                pass
            return r
        path = self._path_of(number)
        f = self._fs.open_readable(path)
        try:
            r = TableReader(f, number, self._block_cache, self._verify)
        except BaseException:
            f.close()
            raise
        with self._mu:
            existing = m.get(number)
            if existing is not None:
                return existing
            m[number] = r
            while len(m) > self.capacity:
                m.popitem(last=False)
        return r

    def evict(self, number: int) -> None:
        with self._mu:
            self._map.pop(number, None)
        if self._block_cache is not None:
            self._block_cache.evict_file(number)

    def close(self) -> None:
        with self._mu:
            self._map.clear()

