"""Engine adapters: one small class per store, all with the same methods.

Every workload talks to an :class:`Engine`; an adapter maps each method to the
store's nearest primitive and says in its class docstring what it does for
durability (``sync``) and batching, because that is where benchmarks quietly
stop being comparable.

Durability levels (the ``sync`` flag given at open):

- ``sync=False`` (every workload but ``fillsync``): an acknowledged write has
  been handed to the OS (``write(2)``), so it survives a crash of the process but
  not of the machine. This is ``lsm``'s ``sync_mode="never"``.
- ``sync=True`` (``fillsync``): each put is fsynced before it returns (a store
  with group commit may share one fsync between concurrent writers).

Thread safety: every adapter may be called from several threads at once
(``fillsync`` with 4/16 threads, ``readwhilewriting``) - except the *direct
paths* below, which are for one thread.

Direct paths (``lsm-bench compare``, ``lsm_bench.compare``; ``seekrandom`` seeks
through :meth:`Engine.seek_next` too): :meth:`Engine.getter`,
:meth:`Engine.putter`, :meth:`Engine.put_batch`, :meth:`Engine.range_iter`,
:meth:`Engine.seek_next`, :meth:`Engine.bulk_load`, :meth:`Engine.settle` and
:meth:`Engine.finish_load` hand out the store's own bound methods and iterators
where it has them, so that a tight timed loop pays for the store, not for an
adapter frame or a wrapping generator (which cost ~0.1 us per call and ~0.05
us per scanned entry: a tenth of LevelDB's readseq). The defaults fall back on
the methods above.
"""

from __future__ import annotations

import abc
import importlib
import importlib.metadata
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import ClassVar

from lsm_bench.config import OptionValue

Pair = tuple[bytes, bytes]
BatchOp = tuple[bytes, bytes | None]  # (key, value); value None deletes
Getter = Callable[[bytes], "bytes | None"]
Putter = Callable[[bytes, bytes], object]

ITERATE = "iterate"  # walk the whole store in key order
SEEK = "seek"  # start a key-ordered walk at any key (range and prefix scans)
DELETE_RANGE = "delete_range"  # delete every key of [start, stop) in one operation

LSM_BLOCK_CACHE_BYTES = 64 << 20  # lsm Options.block_cache_bytes default, matched by peers
LSM_MEMTABLE_BYTES = 8 << 20  # lsm Options.memtable_bytes default, matched by peers
LSM_BLOOM_BITS = 10  # lsm Options.bloom_bits_per_key default, matched by peers


class UnsupportedError(Exception):
    """The engine has no primitive for this operation (the workload is skipped)."""


def prefix_stop(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``.

    >>> prefix_stop(b"ab"), prefix_stop(b"a\\xff"), prefix_stop(b"\\xff")
    (b'ac', b'b', None)
    """
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def dist_version(*names: str) -> str | None:
    """The installed version of the first distribution in ``names`` that exists."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


class Engine(abc.ABC):
    """A key-value store opened in a fresh directory for one workload.

    Ownership: the adapter owns the store and ``close()`` releases it; the
    runner deletes the directory afterwards.

    :param path: an empty directory that the store may fill.
    :param sync: fsync every write before acknowledging it (see module doc).
    :param options: pass-through options from ``--opt ENGINE:key=value``.
    """

    name: ClassVar[str] = ""
    features: ClassVar[frozenset[str]] = frozenset({ITERATE, SEEK})

    def __init__(self, path: Path, *, sync: bool, options: dict[str, OptionValue]) -> None:
        self.path = path
        self.sync = sync
        self.options = dict(options)

    # -- discovery ---------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` when the store can be used here, else why not (for the report)."""
        return None

    @classmethod
    def version(cls) -> str | None:
        """The store's package version, for the report."""
        return None

    def describe(self) -> dict[str, object]:
        """The effective settings of this open store (sync, batching, caches)."""
        return {"sync": self.sync, **self.options}

    # -- operations --------------------------------------------------------

    @abc.abstractmethod
    def put(self, key: bytes, value: bytes) -> None:
        """Insert or overwrite ``key``."""

    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or ``None`` if absent."""

    @abc.abstractmethod
    def delete(self, key: bytes) -> None:
        """Remove ``key`` (absent keys are fine)."""

    def delete_range(self, start: bytes, stop: bytes) -> None:
        """Remove every key ``start <= k < stop`` (engines with :data:`DELETE_RANGE`)."""
        raise UnsupportedError(f"{self.name} has no range deletion")

    @abc.abstractmethod
    def write_batch(self, ops: Sequence[BatchOp]) -> None:
        """Apply ``ops`` atomically with one durability point (one commit)."""

    @abc.abstractmethod
    def scan(
        self, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[Pair]:
        """Pairs with ``start <= key < stop`` in ascending order, at most ``limit``.

        Callers exhaust or close the iterator; an engine without :data:`SEEK`
        raises :class:`UnsupportedError` unless ``start`` and ``stop`` are None.
        """

    def scan_prefix(self, prefix: bytes) -> Iterator[Pair]:
        """Pairs whose key starts with ``prefix``, ascending (default: a range scan)."""
        return self.scan(prefix, prefix_stop(prefix))

    def quiesce(self) -> None:  # noqa: B027 - an optional hook: a no-op unless an engine buffers writes
        """Untimed: push buffered writes to the on-disk structure and wait for
        background work, so the next phase starts from a settled store."""

    def stats(self) -> dict[str, object] | None:
        """The store's own statistics (``lsm``: ``db.stats()``), if it has any."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; idempotent."""

    # -- direct paths (one thread; see module doc) ---------------------------

    def getter(self) -> Getter:
        """``get(key) -> value | None``: the store's own get where it has one."""
        return self.get

    def multi_getter(self) -> Callable[[list[bytes]], list[bytes | None]]:
        """``multi_get(keys) -> [value | None, ...]`` in the keys' order: the
        store's own multi-get where it has one, else a loop of :meth:`getter`."""
        get = self.getter()
        return lambda keys: [get(k) for k in keys]

    def putter(self) -> Putter:
        """``put(key, value)``, one write each: the store's own put where it has one."""
        return self.put

    def put_batch(self, pairs: Sequence[Pair]) -> None:
        """Write ``pairs`` as one atomic batch through the store's native batch."""
        self.write_batch(pairs)

    def range_iter(self, start: bytes | None, stop: bytes | None) -> Iterator[Pair]:
        """Pairs with ``start <= key < stop`` ascending (``None``: unbounded), as the
        store's own iterator; the caller exhausts it or closes it if it can."""
        return self.scan(start, stop)

    def seek_next(self, key: bytes, n: int) -> list[Pair]:
        """The first ``n`` pairs from the first key ``>= key`` (a seek, then ``n`` reads)."""
        return list(self.scan(key, None, n))

    def bulk_load(self, pairs: Iterable[Pair], batch: int) -> None:
        """Untimed: write every pair, ``batch`` pairs per atomic batch."""
        it = iter(pairs)
        while True:
            part = list(islice(it, batch))
            if not part:
                return
            self.put_batch(part)

    def settle(self) -> None:
        """Untimed, after :meth:`bulk_load`: bring the store to the settled shape
        read comparisons run on (default: :meth:`quiesce`)."""
        self.quiesce()

    def finish_load(self) -> None:
        """After a timed write load, timed on its own: until the load is in the
        store's files and its background work is done (default: :meth:`quiesce`).
        The store may be closed afterwards."""
        self.quiesce()


def closing_scan(it: Iterator[Pair], limit: int | None) -> Iterator[Pair]:
    """Yield from ``it`` (at most ``limit`` items), then close it if it can be closed."""
    try:
        yield from (it if limit is None else islice(it, limit))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _import_lsm() -> ModuleType:
    return importlib.import_module("lsm")


class LsmEngine(Engine):
    """``lsm`` through its public API (``lsm.__all__``): ``lsm.open(path, **options)``.

    Sync: ``sync_mode="always"`` (group commit) for ``sync=True``, else
    ``sync_mode="never"``; an explicit ``--opt sync_mode=...`` wins.
    Batching: ``write_batch`` uses ``db.write_batch()`` (one WAL record).
    Scans: ``db.scan(start=, stop=)``, and ``db.scan(prefix=)`` natively.
    ``quiesce``: ``db.flush()`` then ``db.wait_for_compactions()``.
    Direct paths: ``db.get``, ``db.put``, ``lsm.WriteBatch`` + ``db.write``;
    ``seek_next`` opens a ``db.cursor()``, ``seek(key)``, then ``next()`` until
    it has ``n`` entries, and closes it (a new cursor per seek, as LevelDB's
    db_bench makes a new iterator per seek).
    """

    name = "lsm"
    features = frozenset({ITERATE, SEEK, DELETE_RANGE})

    def __init__(self, path: Path, *, sync: bool, options: dict[str, OptionValue]) -> None:
        super().__init__(path, sync=sync, options=options)
        lsm = _import_lsm()
        self._opts: dict[str, OptionValue] = {"sync_mode": "always" if sync else "never"}
        self._opts.update(options)
        self._batch_cls = lsm.WriteBatch
        self.db = lsm.open(str(path), **self._opts)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            lsm = _import_lsm()
        except ImportError as exc:
            return f"cannot import lsm: {exc}"
        if not callable(getattr(lsm, "open", None)):
            return "lsm.open is not implemented yet"
        return None

    @classmethod
    def version(cls) -> str | None:
        try:
            return str(getattr(_import_lsm(), "__version__", None))
        except ImportError:
            return None

    def describe(self) -> dict[str, object]:
        return {"sync": self.sync, "open_options": dict(self._opts), "batch": "db.write_batch()"}

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def delete_range(self, start: bytes, stop: bytes) -> None:
        self.db.delete_range(start, stop)

    def write_batch(self, ops: Sequence[BatchOp]) -> None:
        with self.db.write_batch() as batch:
            for key, value in ops:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    def scan(
        self, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[Pair]:
        return closing_scan(self.db.scan(start=start, stop=stop), limit)

    def scan_prefix(self, prefix: bytes) -> Iterator[Pair]:
        return closing_scan(self.db.scan(prefix), None)

    def quiesce(self) -> None:
        self.db.flush()
        wait = getattr(self.db, "wait_for_compactions", None)
        if wait is not None:
            wait()

    def stats(self) -> dict[str, object] | None:
        stats = getattr(self.db, "stats", None)
        return stats() if stats is not None else None

    def close(self) -> None:
        self.db.close()

    def getter(self) -> Getter:
        get: Getter = self.db.get
        return get

    def multi_getter(self) -> Callable[[list[bytes]], list[bytes | None]]:
        mget = getattr(self.db, "multi_get", None)  # lsm releases before multi_get: a loop
        return mget if mget is not None else super().multi_getter()

    def putter(self) -> Putter:
        put: Putter = self.db.put
        return put

    def put_batch(self, pairs: Sequence[Pair]) -> None:
        batch = self._batch_cls()
        add = batch.put
        for key, value in pairs:
            add(key, value)
        self.db.write(batch)

    def range_iter(self, start: bytes | None, stop: bytes | None) -> Iterator[Pair]:
        it: Iterator[Pair] = self.db.scan(start=start, stop=stop)
        return it

    def seek_next(self, key: bytes, n: int) -> list[Pair]:
        # A new cursor per seek, positioned with seek(), then n - 1 next()s.
        out: list[Pair] = []
        with self.db.cursor() as c:
            ok = c.seek(key)
            while ok:
                out.append((c.key, c.value))
                if len(out) == n:
                    break
                ok = c.next()
        return out


class SqliteEngine(Engine):
    """stdlib ``sqlite3``: one table ``kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID``.

    Set-up mirrors LevelDB's ``benchmarks/db_bench_sqlite3.cc``: WAL journal,
    ``locking_mode=EXCLUSIVE``, a prepared ``INSERT OR REPLACE`` per put. The page
    cache is 64 MiB (``cache_size=-65536``) to match ``lsm``'s block cache.

    Sync: ``sync=True`` uses ``synchronous=FULL`` and one commit per put (a WAL
    fsync per put). ``sync=False`` uses ``synchronous=NORMAL``: in WAL mode the
    WAL is fsynced only at checkpoints, the closest match to ``lsm``'s
    ``sync_mode="never"`` (WAL left to the OS, tables fsynced when written).
    db_bench_sqlite3 uses ``OFF``; pass ``--opt sqlite3:synchronous=OFF`` for that.

    Batching: single puts autocommit, one transaction per put, exactly as
    db_bench_sqlite3's ``fillrandom`` (``entries_per_batch=1``), so every
    acknowledged put has reached the OS as with the other engines.
    ``--opt sqlite3:txn_ops=N`` instead commits every N single puts (and at
    ``quiesce``), as its ``fillrandbatch`` does with N=1000 - faster, but then a
    process crash can lose up to N-1 acknowledged puts. ``write_batch`` is one
    ``BEGIN ... COMMIT`` (``fillbatch``: 1000 puts per transaction). In sync mode
    ``txn_ops`` is always 1.

    Scans: ``WHERE k >= ? AND k < ? ORDER BY k LIMIT ?`` (BLOBs compare with
    memcmp, the same order as ``bytes``). ``quiesce``: commit, then
    ``PRAGMA wal_checkpoint(TRUNCATE)``.

    Threads: one connection, guarded by a lock, so writers and readers on
    several threads take turns (SQLite allows one writer at a time anyway).
    Other ``--opt sqlite3:name=value`` options become ``PRAGMA name=value``.

    Direct paths: prepared statements straight on the connection, without the
    lock; a batch is ``executemany`` inside ``BEGIN ... COMMIT`` and
    ``bulk_load`` is one transaction; ``seek_next`` is ``k >= ? ... LIMIT n``.
    """

    name = "sqlite3"
    features = frozenset({ITERATE, SEEK, DELETE_RANGE})

    def __init__(self, path: Path, *, sync: bool, options: dict[str, OptionValue]) -> None:
        super().__init__(path, sync=sync, options=options)
        opts = dict(options)
        self.txn_ops = 1 if sync else int(opts.pop("txn_ops", 1))
        self.pragmas: dict[str, OptionValue] = {
            "journal_mode": "WAL",
            "locking_mode": "EXCLUSIVE",
            "synchronous": "FULL" if sync else "NORMAL",
            "cache_size": -(LSM_BLOCK_CACHE_BYTES >> 10),
        }
        self.pragmas.update(opts)
        self._lock = threading.Lock()
        self._pending = 0  # guarded by _lock: puts in the open transaction
        self.conn = sqlite3.connect(
            str(path / "lsm_bench.sqlite"), isolation_level=None, check_same_thread=False
        )
        for name, value in self.pragmas.items():
            self.conn.execute(f"PRAGMA {name}={value}")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
        )

    @classmethod
    def version(cls) -> str | None:
        return sqlite3.sqlite_version

    def describe(self) -> dict[str, object]:
        return {
            "sync": self.sync,
            "pragmas": dict(self.pragmas),
            "txn_ops": self.txn_ops,
            "batch": "BEGIN; INSERT OR REPLACE x N; COMMIT",
        }

    def _write_locked(self, sql: str, args: tuple[bytes, ...]) -> None:
        """Run one write statement: autocommit, or inside the open ``txn_ops`` transaction."""
        if self.txn_ops == 1:
            self.conn.execute(sql, args)
            return
        if self._pending == 0:
            self.conn.execute("BEGIN")
        self.conn.execute(sql, args)
        self._pending += 1
        if self._pending >= self.txn_ops:
            self._commit_locked()

    def _commit_locked(self) -> None:
        if self._pending:
            self.conn.execute("COMMIT")
            self._pending = 0

    def put(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._write_locked("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            row = self.conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def delete(self, key: bytes) -> None:
        with self._lock:
            self._write_locked("DELETE FROM kv WHERE k = ?", (key,))

    def delete_range(self, start: bytes, stop: bytes) -> None:
        with self._lock:
            self._write_locked("DELETE FROM kv WHERE k >= ? AND k < ?", (start, stop))

    def write_batch(self, ops: Sequence[BatchOp]) -> None:
        with self._lock:
            self._commit_locked()
            self.conn.execute("BEGIN")
            try:
                for key, value in ops:
                    if value is None:
                        self.conn.execute("DELETE FROM kv WHERE k = ?", (key,))
                    else:
                        self.conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def scan(
        self, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[Pair]:
        where: list[str] = []
        args: list[object] = []
        if start is not None:
            where.append("k >= ?")
            args.append(start)
        if stop is not None:
            where.append("k < ?")
            args.append(stop)
        sql = "SELECT k, v FROM kv"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY k"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            cursor = self.conn.execute(sql, args)
        return iter(cursor)

    def quiesce(self) -> None:
        with self._lock:
            self._commit_locked()
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                self._commit_locked()
                self.conn.close()
                self.conn = None  # type: ignore[assignment]

    def getter(self) -> Getter:
        execute = self.conn.execute

        def get(key: bytes) -> bytes | None:
            row = execute(_SQL_GET, (key,)).fetchone()
            return None if row is None else row[0]

        return get

    def putter(self) -> Putter:
        if self.txn_ops != 1:
            return self.put
        execute = self.conn.execute

        def put(key: bytes, value: bytes) -> None:
            execute(_SQL_PUT, (key, value))  # autocommit: one transaction per put

        return put

    def put_batch(self, pairs: Sequence[Pair]) -> None:
        self._many(pairs)

    def _many(self, pairs: Iterable[Pair]) -> None:
        with self._lock:
            self._commit_locked()
            self.conn.execute("BEGIN")
            try:
                self.conn.executemany(_SQL_PUT, pairs)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def range_iter(self, start: bytes | None, stop: bytes | None) -> Iterator[Pair]:
        if start is None:
            return self.scan(start, stop)
        if stop is None:
            it: Iterator[Pair] = iter(self.conn.execute(_SQL_FROM, (start,)))
        else:
            it = iter(self.conn.execute(_SQL_RANGE, (start, stop)))
        return it

    def seek_next(self, key: bytes, n: int) -> list[Pair]:
        rows: list[Pair] = self.conn.execute(_SQL_SEEK, (key, n)).fetchall()
        return rows

    def bulk_load(self, pairs: Iterable[Pair], batch: int) -> None:
        self._many(pairs)  # one transaction, as db_bench_sqlite3 and the study load


_SQL_GET = "SELECT v FROM kv WHERE k = ?"
_SQL_PUT = "INSERT OR REPLACE INTO kv VALUES (?, ?)"
_SQL_FROM = "SELECT k, v FROM kv WHERE k >= ? ORDER BY k"
_SQL_RANGE = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k"
_SQL_SEEK = "SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?"
