"""Adapters for the optional peer stores: plyvel, rocksdict, lmdb, diskcache.

Each is used only when its package imports (``pip install lsm-tree[peers]``);
otherwise the report lists it as unavailable. Where a peer has the knob, it gets
``lsm``'s memory budget: an 8 MiB memtable, a 64 MiB block cache and 10-bit
bloom filters; compression stays at the peer's default. ``--opt PEER:key=value``
overrides any of it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import Any

from lsm_bench.config import OptionValue
from lsm_bench.engines import (
    DELETE_RANGE,
    ITERATE,
    LSM_BLOCK_CACHE_BYTES,
    LSM_BLOOM_BITS,
    LSM_MEMTABLE_BYTES,
    SEEK,
    BatchOp,
    Engine,
    Getter,
    Pair,
    Putter,
    UnsupportedError,
    closing_scan,
    dist_version,
)

LMDB_MAP_BYTES = 1 << 34  # address space only: the file grows as pages are used
QUIESCE_TIMEOUT = 600.0  # seconds a peer's quiesce waits for its background compactions
_EMPTY_RANGE = (b"\xff" * 64, b"\xff" * 65)  # above every key the workloads write


def _leveldb_due(stats: str) -> bool:
    """Whether ``leveldb.stats`` shows a level over its compaction trigger:
    4 files in L0, or level n >= 1 over 10 MiB * 10**(n-1) (LevelDB's defaults)."""
    for line in stats.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        level, files, size_mb = int(parts[0]), int(parts[1]), float(parts[2])
        if (level == 0 and files >= 4) or (level > 0 and size_mb > 10 * 10 ** (level - 1)):
            return True
    return False


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _import_reason(name: str) -> str | None:
    try:
        _module(name)
    except ImportError as exc:
        return f"not installed ({exc.__class__.__name__}: {exc})"
    return None


def _bounded(it: Iterator[Pair], stop: bytes | None) -> Iterator[Pair]:
    """Stop ``it`` at the first key ``>= stop``."""
    if stop is None:
        yield from it
        return
    for pair in it:
        if pair[0] >= stop:
            return
        yield pair


class PlyvelEngine(Engine):
    """LevelDB through plyvel.

    Sync: ``put(..., sync=True)`` / ``write_batch(sync=True)`` per write when
    ``sync=True``; plain writes otherwise (LevelDB hands each WAL record to the
    OS). Batching: ``db.write_batch()``. Scans: ``db.iterator(start=, stop=)``.
    ``quiesce``: ``compact_range`` over an empty key range (which writes the
    memtable to L0: LevelDB has no public flush), then wait until no level is
    over its compaction trigger and ``leveldb.stats`` has stopped changing.

    Direct paths: ``db.get``, ``db.put``, ``db.write_batch()`` + ``write()``,
    ``db.iterator``. ``settle``: ``compact_range()`` without bounds, which
    in plyvel only writes the memtable to L0 (see ``settle``), then a wait
    until the background compactions are done: LevelDB's own settled shape
    (at 1M keys L1 9 MB + L2 86 MB), not a full compaction.
    ``finish_load``: ``close()``, which waits only for the compaction running
    (LevelDB cannot be asked to wait for the ones it has not started).
    """

    name = "plyvel"

    def __init__(self, path: Path, *, sync: bool, options: dict[str, OptionValue]) -> None:
        super().__init__(path, sync=sync, options=options)
        plyvel = _module("plyvel")
        self._kwargs: dict[str, Any] = {
            "create_if_missing": True,
            "write_buffer_size": LSM_MEMTABLE_BYTES,
            "lru_cache_size": LSM_BLOCK_CACHE_BYTES,
            "bloom_filter_bits": LSM_BLOOM_BITS,
        }
        self._kwargs.update(options)
        self.db = plyvel.DB(str(path), **self._kwargs)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _import_reason("plyvel")

    @classmethod
    def version(cls) -> str | None:
        return dist_version("plyvel")

    def describe(self) -> dict[str, object]:
        return {"sync": self.sync, "open_options": dict(self._kwargs), "batch": "db.write_batch()"}

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value, sync=self.sync)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def delete(self, key: bytes) -> None:
        self.db.delete(key, sync=self.sync)

    def write_batch(self, ops: Sequence[BatchOp]) -> None:
        with self.db.write_batch(sync=self.sync) as batch:
            for key, value in ops:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    def scan(
        self, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[Pair]:
        return closing_scan(self.db.iterator(start=start, stop=stop), limit)

    def scan_prefix(self, prefix: bytes) -> Iterator[Pair]:
        return closing_scan(self.db.iterator(prefix=prefix), None)

    def quiesce(self) -> None:
        # CompactRange always writes the memtable to L0 first (LevelDB has no
        # public flush); over an empty key range it compacts nothing else.
        self.db.compact_range(start=_EMPTY_RANGE[0], stop=_EMPTY_RANGE[1])
        self._wait_quiet()

    def _wait_quiet(self) -> None:
        # LevelDB reports no pending-compaction state: wait until no level is
        # over its trigger (L0 files, level bytes) and the stats stop changing.
        deadline = time.monotonic() + QUIESCE_TIMEOUT
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            raw = self.db.get_property(b"leveldb.stats") or b""
            now = time.monotonic()
            if raw != last:
                last, since = raw, now
            elif not _leveldb_due(raw.decode()) and now - since >= 1.0:
                return
            time.sleep(0.1)

    def stats(self) -> dict[str, object] | None:
        raw = self.db.get_property(b"leveldb.stats")
        return {"leveldb.stats": raw.decode() if raw else None}

    def close(self) -> None:
        self.db.close()

    def getter(self) -> Getter:
        get: Getter = self.db.get
        return get

    def putter(self) -> Putter:
        put: Putter = self.db.put if not self.sync else partial(self.db.put, sync=True)
        return put

    def put_batch(self, pairs: Sequence[Pair]) -> None:
        batch = self.db.write_batch(sync=self.sync)
        add = batch.put
        for key, value in pairs:
            add(key, value)
        batch.write()

    def range_iter(self, start: bytes | None, stop: bytes | None) -> Iterator[Pair]:
        it: Iterator[Pair] = self.db.iterator(start=start, stop=stop)
        return it

    def seek_next(self, key: bytes, n: int) -> list[Pair]:
        it = self.db.iterator(start=key)
        try:
            return list(islice(it, n))
        finally:
            it.close()

    def settle(self) -> None:
        # plyvel passes empty slices, not NULL, for compact_range()'s missing
        # bounds: LevelDB compacts the range ["", ""], i.e. only writes the
        # memtable to L0. The background thread then works through the L0
        # backlog and an oversized L1 (60 MB at 1M keys): wait for it.
        self.db.compact_range()
        self._wait_quiet()

    def finish_load(self) -> None:
        self.db.close()


class RocksdictEngine(Engine):
    """RocksDB through rocksdict, in ``raw_mode`` (plain bytes keys and values).

    Sync: one ``WriteOptions`` with ``sync`` set, passed to every write.
    Batching: ``rocksdict.WriteBatch`` + ``db.write``. Scans:
    ``db.items(from_key=start)`` cut at ``stop``. ``quiesce``: ``db.flush()``
    (memtable to L0), then wait until no compaction is pending or running.
    ``settle``: a full ``compact_range``, then ``quiesce``.
    ``--opt rocksdict:name=value`` calls ``Options.set_name(value)``.
    """

    name = "rocksdict"
    features = frozenset({ITERATE, SEEK, DELETE_RANGE})

    def __init__(self, path: Path, *, sync: bool, options: dict[str, OptionValue]) -> None:
        super().__init__(path, sync=sync, options=options)
        rd = _module("rocksdict")
        opts = rd.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(LSM_MEMTABLE_BYTES)
        table = rd.BlockBasedOptions()
        table.set_bloom_filter(LSM_BLOOM_BITS, False)
        table.set_block_cache(rd.Cache(LSM_BLOCK_CACHE_BYTES))
        opts.set_block_based_table_factory(table)
        for name, value in options.items():
            getattr(opts, name if name.startswith("set_") else f"set_{name}")(value)
        self._wo = rd.WriteOptions()
        self._wo.sync = sync
        self._rd = rd
        self._closed = False
        self.db = rd.Rdict(str(path), options=opts)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _import_reason("rocksdict")

    @classmethod
    def version(cls) -> str | None:
        return dist_version("rocksdict")

    def describe(self) -> dict[str, object]:
        return {
            "sync": self.sync,
            "write_buffer_size": LSM_MEMTABLE_BYTES,
            "block_cache_bytes": LSM_BLOCK_CACHE_BYTES,
            "bloom_bits_per_key": LSM_BLOOM_BITS,
            "options": dict(self.options),
            "batch": "rocksdict.WriteBatch + db.write",
        }

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value, self._wo)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def delete(self, key: bytes) -> None:
        self.db.delete(key, self._wo)

    def delete_range(self, start: bytes, stop: bytes) -> None:
        self.db.delete_range(start, stop, self._wo)

    def write_batch(self, ops: Sequence[BatchOp]) -> None:
        batch = self._rd.WriteBatch(raw_mode=True)
        for key, value in ops:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch, self._wo)

    def scan(
        self, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[Pair]:
        items = self.db.items(from_key=start) if start is not None else self.db.items()
        return closing_scan(_bounded(iter(items), stop), limit)

    def quiesce(self) -> None:
        self.db.flush()
        deadline = time.monotonic() + QUIESCE_TIMEOUT
        while time.monotonic() < deadline and (
                self.db.property_int_value("rocksdb.compaction-pending")
                or self.db.property_int_value("rocksdb.num-running-compactions")
                or self.db.property_int_value("rocksdb.num-running-flushes")):
            time.sleep(0.05)

    def stats(self) -> dict[str, object] | None:
        return {"rocksdb.levelstats": self.db.property_value("rocksdb.levelstats")}

    def close(self) -> None:
        if not self._closed:  # rocksdict raises on a second close()
            self._closed = True
            self.db.close()

    def getter(self) -> Getter:
        get: Getter = self.db.get
        return get

    def multi_getter(self) -> Callable[[list[bytes]], list[bytes | None]]:
        # Rdict.get with a list of keys is RocksDB's MultiGet (one call, values in order).
        mget: Callable[[list[bytes]], list[bytes | None]] = self.db.get
        return mget

    def settle(self) -> None:
        self.db.compact_range(None, None)
        self.quiesce()


class LmdbEngine(Engine):
    """LMDB (a copy-on-write B+tree) through the ``lmdb`` package.

    Sync: ``lmdb.open(sync=..., metasync=...)`` - with ``sync=False`` a commit
    writes its pages (``pwrite``) but does not fsync. Batching: every put,
    delete or batch is one write transaction (``env.begin(write=True)``); LMDB
    has one writer at a time. Reads: one read transaction per ``get`` or scan
    (a cursor from ``set_range``). ``quiesce``: ``env.sync(True)``.
    """

    name = "lmdb"

    def __init__(self, path: Path, *, sync: bool, options: dict[str, OptionValue]) -> None:
        super().__init__(path, sync=sync, options=options)
        lmdb = _module("lmdb")
        self._kwargs: dict[str, Any] = {
            "map_size": LMDB_MAP_BYTES,
            "sync": sync,
            "metasync": sync,
            "max_readers": 256,
        }
        self._kwargs.update(options)
        self.env = lmdb.open(str(path), **self._kwargs)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _import_reason("lmdb")

    @classmethod
    def version(cls) -> str | None:
        return dist_version("lmdb")

    def describe(self) -> dict[str, object]:
        return {"sync": self.sync, "open_options": dict(self._kwargs), "batch": "one write txn"}

    def put(self, key: bytes, value: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key, value)

    def get(self, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            value: bytes | None = txn.get(key)
            return value

    def delete(self, key: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(key)

    def write_batch(self, ops: Sequence[BatchOp]) -> None:
        with self.env.begin(write=True) as txn:
            for key, value in ops:
                if value is None:
                    txn.delete(key)
                else:
                    txn.put(key, value)

    def scan(
        self, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[Pair]:
        return closing_scan(self._walk(start, stop), limit)

    def _walk(self, start: bytes | None, stop: bytes | None) -> Iterator[Pair]:
        with self.env.begin() as txn:
            cursor = txn.cursor()
            found = cursor.set_range(start) if start is not None else cursor.first()
            if found:
                yield from _bounded(cursor.iternext(keys=True, values=True), stop)

    def quiesce(self) -> None:
        self.env.sync(True)

    def stats(self) -> dict[str, object] | None:
        return {"stat": self.env.stat(), "info": self.env.info()}

    def close(self) -> None:
        self.env.close()


class DiskcacheEngine(Engine):
    """diskcache's ``Cache`` (SQLite underneath) used as a plain key-value store.

    Opened with ``eviction_policy="none"`` so nothing is evicted. Sync:
    ``sqlite_synchronous=2`` (FULL) for ``sync=True``, else its default 1
    (NORMAL); every ``set`` is its own transaction. Batching:
    ``with cache.transact():`` around the sets. Scans: diskcache has no seek,
    only ``iterkeys()`` in key order, so ``readseq`` walks that (one ``get`` per
    key) and the seek workloads (``seekrandom``, ``scanprefix``, YCSB E) are
    reported as unsupported.
    """

    name = "diskcache"
    features = frozenset({ITERATE})

    def __init__(self, path: Path, *, sync: bool, options: dict[str, OptionValue]) -> None:
        super().__init__(path, sync=sync, options=options)
        diskcache = _module("diskcache")
        self._kwargs: dict[str, Any] = {
            "eviction_policy": "none",
            "statistics": 0,
            "sqlite_synchronous": 2 if sync else 1,
        }
        self._kwargs.update(options)
        self.cache = diskcache.Cache(str(path), **self._kwargs)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _import_reason("diskcache")

    @classmethod
    def version(cls) -> str | None:
        return dist_version("diskcache")

    def describe(self) -> dict[str, object]:
        return {"sync": self.sync, "settings": dict(self._kwargs), "batch": "cache.transact()"}

    def put(self, key: bytes, value: bytes) -> None:
        self.cache.set(key, value)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.cache.get(key)
        return value

    def delete(self, key: bytes) -> None:
        self.cache.delete(key)

    def write_batch(self, ops: Sequence[BatchOp]) -> None:
        with self.cache.transact():
            for key, value in ops:
                if value is None:
                    self.cache.delete(key)
                else:
                    self.cache.set(key, value)

    def scan(
        self, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[Pair]:
        if start is not None or stop is not None:
            raise UnsupportedError("diskcache cannot seek (only iterkeys() from the start)")
        return closing_scan(self._walk(), limit)

    def _walk(self) -> Iterator[Pair]:
        for key in self.cache.iterkeys():
            value = self.cache.get(key)
            if value is not None:
                yield key, value

    def close(self) -> None:
        self.cache.close()
