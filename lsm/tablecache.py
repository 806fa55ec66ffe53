"""Caches in front of SSTables: block payloads that had to be read and
decoded (LRU by bytes), and open table readers (bounded by count, so by
file descriptors).

Uncompressed tables of the current format are searched in place in a
memory map (lsm.sstable.reader): the OS page cache is their cache, and the
block cache holds only what a read had to decode (zstd blocks, blocks of
format 1 tables, and every block on a filesystem that cannot map).
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

from .fs import FileSystem
from .manifest import FileMeta
from .sstable import TableReader
from .sstable.reader import READER_BYTES

__all__ = ["BLOCK_OVERHEAD", "BlockCache", "TableCache", "descriptor_budget"]

BLOCK_OVERHEAD = 120  # bytes charged per cached block beyond its payload: the bytes object, the map's entry


class BlockCache:
    """LRU of decoded block payloads keyed by an int (``number << 32 | block``),
    bounded by the bytes they hold (payload + :data:`BLOCK_OVERHEAD` each).

    Thread safety: ``put`` takes ``_mu``; ``get`` needs no lock (see there).
    Payloads are immutable ``bytes``, so one evicted while a reader still
    uses it stays valid for that reader.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map: OrderedDict[int, bytes] = OrderedDict()  # guarded by _mu (writes)
        self._mu = threading.Lock()
        self.bytes = 0  # guarded by _mu
        self.hits = 0
        self.misses = 0

    def get(self, key: int) -> bytes | None:
        # Lock-free hit path: OrderedDict.get and move_to_end are single C
        # calls (atomic under the GIL); a concurrent eviction makes
        # move_to_end raise KeyError, which only means the block just left the
        # cache. hits/misses may lose an increment under races (statistics).
        payload = self._map.get(key)
        if payload is None:
            self.misses += 1
            return None
        try:
            self._map.move_to_end(key)
        except KeyError:
            pass
        self.hits += 1
        return payload

    def put(self, key: int, payload: bytes) -> None:
        charge = len(payload) + BLOCK_OVERHEAD
        if charge > self.capacity:
            return
        with self._mu:
            old = self._map.pop(key, None)
            if old is not None:
                self.bytes -= len(old) + BLOCK_OVERHEAD
            self._map[key] = payload
            self.bytes += charge
            while self.bytes > self.capacity:
                _, evicted = self._map.popitem(last=False)
                self.bytes -= len(evicted) + BLOCK_OVERHEAD

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "bytes": self.bytes,
                "capacity": self.capacity, "blocks": len(self._map)}


def descriptor_budget() -> int:
    """Open tables this process can afford: its soft ``RLIMIT_NOFILE`` less
    what else needs descriptors (a database's lock, logs, manifest and worker
    pipes, a compaction's inputs, the application's own files): an eighth of
    the limit, at least 32. Unbounded where there is no limit to read.
    ``max_open_files`` above it is clipped to it (as RocksDB clips to the
    limit), so that reads never fail with EMFILE for want of a closed table."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return sys.maxsize
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return sys.maxsize
    return max(10, soft - max(32, soft // 8))


class TableCache:
    """The open :class:`TableReader` of each table, at most ``capacity`` of
    them (each holds one file descriptor; ``capacity`` is clipped to
    :func:`descriptor_budget`).

    A table's reader hangs on its :class:`FileMeta` (``meta.reader``), which
    every version listing the table shares, so a read reaches it with one
    attribute load and no lookup. Past ``capacity`` the reader opened
    longest ago is dropped (first in, first out: a hit costs nothing to
    record).

    Thread safety: :meth:`reader` may be called from any thread. Two threads
    missing on the same table may both open it; one result wins, the other
    is closed. A dropped reader is not closed explicitly: a thread may still
    be reading through it, and it closes when the last one lets go.
    """

    def __init__(self, fs: FileSystem, path_of: Callable[[int], str], capacity: int,
                 block_cache: BlockCache | None, verify_checksums: bool) -> None:
        self._fs = fs
        self._path_of = path_of
        self.capacity = min(capacity, descriptor_budget())
        self._block_cache = block_cache
        self._verify = verify_checksums
        self._open: deque[FileMeta] = deque()  # guarded by _mu; every meta whose reader is set
        self._mu = threading.Lock()

    def reader(self, meta: FileMeta) -> TableReader:
        """The open reader of ``meta``'s table.

        Raises: DiskError (ENOENT if the table was deleted), CorruptionError.
        """
        r = meta.reader
        if r is not None:
            return r
        path = self._path_of(meta.number)
        f = self._fs.open_readable(path)
        try:
            r = TableReader(f, meta.number, self._block_cache, self._verify, global_seq=meta.global_seq)
        except BaseException:
            f.close()
            raise
        with self._mu:
            existing = meta.reader
            if existing is not None:
                r.close()  # lost the race: nobody else has seen ours
                return existing
            meta.reader = r
            self._open.append(meta)
            while len(self._open) > self.capacity:
                self._open.popleft().reader = None
        return r

    def get(self, number: int) -> TableReader:
        """An uncached reader of table ``number`` (tools, tests); the caller closes it."""
        f = self._fs.open_readable(self._path_of(number))
        try:
            return TableReader(f, number, self._block_cache, self._verify)
        except BaseException:
            f.close()
            raise

    def evict(self, number: int) -> None:
        """Drop the reader of table ``number`` (its file was deleted)."""
        with self._mu:
            for meta in self._open:
                if meta.number == number:
                    meta.reader = None
                    self._open.remove(meta)
                    break

    def open_count(self) -> int:
        return len(self._open)

    def memory(self) -> dict[str, int]:
        """What the open readers hold, by kind: ``readers`` (the reader
        objects themselves: :data:`~lsm.sstable.reader.READER_BYTES` each),
        ``index`` (their index blocks, pinned while open), ``filters``
        (their bloom filters, likewise) and ``mapped`` (file bytes mapped
        into memory: page cache, not heap; the pages reads touched count in
        the process's resident size as file pages). Every figure is bounded
        by ``capacity`` readers. Cost: one pass over the open readers."""
        with self._mu:
            held = [m.reader for m in self._open]
        readers = [r for r in held if r is not None]
        return {"readers": len(readers) * READER_BYTES,
                "index": sum(r.index_bytes for r in readers),
                "filters": sum(r.filter_bytes for r in readers),
                "mapped": sum(r.mapped_bytes for r in readers)}

    def close(self) -> None:
        """Close every open reader (the DB is closing)."""
        with self._mu:
            metas, self._open = list(self._open), deque()
        for meta in metas:
            r, meta.reader = meta.reader, None
            if r is not None:
                r.close()
