"""PersistentCache: a sharded, bounded LRU of bytes that survives restarts
(SPEC §2), built on the engine's record framing (lsm.wal, record type ``CACHE``).

Files, in the cache directory::

    LOCK                     flock target (exclusive), as for a DB
    cache-SSS-of-NNN.log     the log of shard SSS out of NNN shards
    cache-SSS-of-NNN.tmp     a checkpoint being written; removed at open

One log per shard, not one shared log: a shard's lock then covers its map, its
recency list and its log, so writers to different shards never meet on a
global lock, and recovery, compaction and fsyncs are per shard. The shard of a
key is ``xxh3_64(key) % NNN`` (stable across processes, unlike ``hash()``); the
count is part of every file name and of every log's header, so reopening with
another ``shards`` value raises ``ValueError`` instead of mis-routing keys.

The log grammar (the operations inside each record) is in
:mod:`lsm.cachelog` and doc/format.md#persistent-cache.

Recovery (per shard): a leftover ``.tmp`` is deleted (a checkpoint that never
got renamed; the log is still authoritative); records are replayed; a torn or
corrupt *last* region is dropped and truncated away (it is a write that was
never acknowledged), and so are the zeros a mapped log runs ahead in; a
region that starts with zeros before intact records is skipped (pages not
written back before a power cut); other damage followed by an intact record
raises :class:`~lsm.errors.CorruptionError` naming the file and offset. Entries that
expired while closed are dropped and bounds are re-applied (the cache may be
reopened with smaller bounds), and both are logged.

Checkpoint (log compaction), when a shard's log exceeds
``max(CHECKPOINT_FLOOR_BYTES, CHECKPOINT_RATIO * live)``, at the start of the
next write to that shard (or at open), under the shard's lock:

1. write the header and every live entry (LRU first) to ``.tmp``;
2. fsync ``.tmp``;
3. rename ``.tmp`` over ``.log``: the old log is gone with the rename;
4. fsync the directory.

A crash before 3 leaves the old log (and a ``.tmp`` removed at open); after 3
the new one; both hold the same entries, so every crash point gives the old
or the new state. A failure in 1–3 removes ``.tmp`` and fails the write that
triggered it (nothing of it is logged). A failure in 4 fails that write too and
leaves the directory fsync pending: every later write retries it first, so no
write is acknowledged on a log whose name might not survive a power cut.

Expiry: lazy on ``get`` (an expired entry is a miss, removed at once) plus a
heap per shard of ``(expires_at, key)``, popped by ``put`` — up to
``PROACTIVE_EXPIRE`` entries per call, and all of the expired ones before a
live entry would be evicted, so an expired entry never pushes out a live one.
The heap costs O(log n) per TTL put and no thread: writers already hold the
shard lock and are about to write a record, and the EXPIRE operations ride in
that record. A background sweeper would need wakeups and its own writes;
random sampling (Redis-style) gives no bound on how long garbage stays.
Stale heap items (overwritten, deleted or evicted keys) are skipped when
popped and the heap is rebuilt once it is twice the shard's size.
Reclamations made by ``get`` are logged as EXPIRE in the shard's next record
(or by ``close``), so ``get`` never does I/O; if the process dies first,
nothing is lost: the entry has expired by wall clock and is dropped at open.
"""

from __future__ import annotations

import heapq
import math
import mmap
import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import Callable

from .cachelog import (FORMAT_VERSION, OP_DELETE, OP_EVICT, OP_EXPIRE, OP_HEADER, OP_PUT, Op, decode_header,
                       NAME_RE, encode_header, encode_key_op, encode_put, iter_ops, make_log_name,
                       make_temp_name, shard_hash as _xxh, shard_of)
from .errors import BackgroundError, ClosedError, CorruptionError, DiskError
from .fs import FileLock, FileSystem, OsFileSystem
from .keys import MAX_KEY_BYTES, MAX_VALUE_BYTES, check_key, check_value
from .metrics import SampledRate
from .options import SYNC_MODES
from .wal import CACHE, HEADER_BYTES, WalWriter, encode_record, frame_record, iter_records

__all__ = ["FORMAT_VERSION", "Op", "PersistentCache"]

MAX_SHARDS = 4096  # shard numbers are part of file names; more shards only cost memory
CHECKPOINT_FLOOR_BYTES = 1 << 20  # per shard: don't rewrite small logs for nothing
CHECKPOINT_RATIO = 2.0  # rewrite when the log is this many times the live data
ENTRY_LOG_OVERHEAD = 16  # bytes per entry in a checkpoint besides key and value (op, varints, f64)
CHECKPOINT_RECORD_BYTES = 256 << 10  # checkpoint records are cut at about this size
PROACTIVE_EXPIRE = 8  # expired entries one put reclaims before it needs room; bounds its latency
SYNC_INTERVAL = 0.05  # seconds between background fsyncs for sync_mode="periodic" (as the DB)
QPS_WINDOW, QPS_BUCKET = 10.0, 1.0  # seconds: a cache's rate should react quickly
# A log's file length runs ahead of its records by up to one step (fs.open_mapped):
# MAP_STEP, or less with many shards so that all of them reserve at most about
# MAP_TOTAL (never less than MAP_MIN_STEP each; remapping costs ~50 us a step).
MAP_STEP, MAP_MIN_STEP, MAP_TOTAL = 256 << 10, 64 << 10, 2 << 20

_INF = math.inf
_COUNTERS = ("hits", "misses", "evictions", "expirations", "checkpoints", "items", "bytes", "log_bytes")


def map_step(shards: int) -> int:
    """Bytes a shard's log file runs ahead of its records, for ``shards`` shards.

    >>> map_step(8) // 1024, map_step(32) // 1024, map_step(4096) // 1024
    (256, 64, 64)
    """
    step = min(MAP_STEP, MAP_TOTAL // shards)
    return max(MAP_MIN_STEP, step - step % mmap.ALLOCATIONGRANULARITY)


def _check_ttl(ttl: object, name: str) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(ttl).__name__}")
    if not 0 < ttl < _INF:
        raise ValueError(f"{name} must be a finite number of seconds > 0; got {ttl!r}")
    return float(ttl)


def _check_bound(value: object, name: str, shards: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value < shards:
        raise ValueError(f"{name} must be >= shards ({shards}): each shard holds {name} // shards; "
                         f"got {value}")
    return value


# -- one shard -------------------------------------------------------------------

class _Shard:
    """One hash map + recency list + log + expiry heap, behind one lock.

    Thread safety: every field marked ``guarded by _mu`` is read and written
    only with ``_mu`` held; ``_log`` is also guarded by ``_file_mu`` for its
    lifetime (the housekeeping thread fsyncs it holding only ``_file_mu``).
    Lock order: ``_mu`` before ``_file_mu``.
    """

    __slots__ = ("index", "_cache", "_fs", "_clock", "_log_path", "_tmp_path", "_max_items",
                 "_max_bytes", "_mu", "_file_mu", "_map", "_expiry", "_heap", "_bytes", "_pending",
                 "_log", "_map_step", "_dirty", "_dir_dirty", "_log_limit", "_failed", "_closed", "hits", "misses",
                 "evictions", "expirations", "checkpoints", "puts", "deletes", "qps")

    def __init__(self, cache: "PersistentCache", index: int) -> None:
        self.index = index
        self._cache = cache
        self._fs = cache._fs
        self._clock = cache._clock
        self._log_path = make_log_name(cache._path, index, cache._nshards)
        self._tmp_path = make_temp_name(cache._path, index, cache._nshards)
        self._max_items = cache._shard_max_items  # None: unbounded
        self._max_bytes = cache._shard_max_bytes
        self._mu = threading.Lock()
        self._file_mu = threading.Lock()
        # Guarded by _mu: key -> value, LRU first; and key -> expires_at for the
        # entries that have a TTL (a subset of _map's keys). Values sit in the
        # map directly, not in (value, expiry) tuples: a hit then chases one
        # pointer less, and an entry costs one object less (the workload is
        # bound by memory latency as much as by bytecodes).
        self._map: OrderedDict[bytes, bytes] = OrderedDict()
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []  # guarded by _mu: (expires_at, key), may be stale
        self._bytes = 0  # guarded by _mu: sum of len(key) + len(value)
        self._pending = bytearray()  # guarded by _mu: EXPIRE ops from get(), for the next record
        self._log: WalWriter | None = None  # guarded by _mu and _file_mu
        self._map_step = map_step(cache._nshards)
        self._dirty = False  # written since the last fsync (for sync_mode="periodic")
        self._dir_dirty = False  # guarded by _mu: a checkpoint rename awaits its directory fsync
        # Guarded by _mu: put() calls _prepare_log_locked once the log passes this
        # size; that re-evaluates the checkpoint threshold (which moves with the
        # live data) and stores it here. So puts skip the threshold arithmetic,
        # and a checkpoint starts at most at the threshold as of the last
        # evaluation: never below CHECKPOINT_FLOOR_BYTES, never above twice the
        # largest live size seen.
        self._log_limit: float = CHECKPOINT_FLOOR_BYTES
        self._failed: BaseException | None = None  # a failed fsync: writes refused until reopen
        self._closed = False  # guarded by _mu
        # Guarded by _mu. gets are hits + misses; puts and deletes count calls
        # that got past the argument checks, failed ones included.
        self.hits = self.misses = self.evictions = self.expirations = self.checkpoints = 0
        self.puts = self.deletes = 0
        # Sampled from the counters above by the cache's housekeeping thread:
        # counting is then an int increment, with no clock read on get.
        self.qps = {op: SampledRate(QPS_WINDOW, QPS_BUCKET) for op in ("get", "put", "delete")}

    # -- reads -----------------------------------------------------------------

    def _expire_locked(self, key: bytes) -> None:
        """Reclaim the expired entry ``key`` found by a get; logged with the next record."""
        self._remove_locked(key)
        encode_key_op(self._pending, OP_EXPIRE, key)
        self.expirations += 1
        self.misses += 1

    def contains(self, key: bytes) -> bool:
        with self._mu:
            if self._closed:
                raise ClosedError(f"persistent cache {self._cache._path} is closed")
            if key not in self._map:
                return False
            exp = self._expiry.get(key)
            return exp is None or exp > self._clock()

    # -- writes ----------------------------------------------------------------

    def put(self, key: bytes, value: bytes, ttl: float | None) -> None:
        # The hot write path, kept flat (each call and attribute load shows at
        # ~4 us a put): the common case - no TTL, nothing due in the heap, at
        # most LRU evictions - reads no clock and touches no heap. The append
        # is _append_locked's, inlined; its failure handling is shared.
        mu = self._mu
        mu.acquire()
        try:
            if self._closed or self._failed is not None:
                self._check_writable_locked()
            self.puts += 1
            log = self._log
            if log is None or self._dir_dirty or log.file.size > self._log_limit:
                self._prepare_log_locked(self._clock())  # may replace the heap
                log = self._log
            m = self._map
            heap = self._heap
            now = self._clock() if ttl is not None or heap else 0.0
            old = m.get(key)
            size = len(key) + len(value)
            if old is None:
                items = len(m) + 1
                nbytes = self._bytes + size
            else:
                items = len(m)
                nbytes = self._bytes + size - len(key) - len(old)
            out = bytearray(HEADER_BYTES)  # reserved for frame_record
            if self._pending:
                out += self._pending
            popped = expired = evicted = None
            freed = 0  # bytes of the evicted entries
            max_bytes, max_items = self._max_bytes, self._max_items
            if heap and heap[0][0] <= now:
                popped, expired, evicted = self._plan_locked(now, key, items, nbytes)
                freed = sum(len(k) + len(m[k]) for k in evicted)
                for k in expired:
                    encode_key_op(out, OP_EXPIRE, k)
            elif (max_bytes is not None and nbytes > max_bytes) or (max_items is not None and items > max_items):
                evicted, freed = self._plan_evictions_locked(key, items, nbytes)
            encode_put(out, key, value, _INF if ttl is None else now + ttl)
            if evicted:
                for k in evicted:
                    encode_key_op(out, OP_EVICT, k)
            f = log.file
            before = f.size
            try:
                f.write(frame_record(out, CACHE))
            except BaseException as e:
                if popped:
                    for item in popped:
                        heapq.heappush(heap, item)
                self._write_failed_locked(f, before, e)
                raise
            self._dirty = True
            if self._cache._sync_always:
                self._sync_locked(log)  # on failure the put stays unapplied: never acknowledged
            # Logged: apply. Nothing below can fail.
            if self._pending:
                self._pending.clear()
            if expired:
                for k in expired:
                    self._remove_locked(k)
                self.expirations += len(expired)
            expiry = self._expiry
            if evicted:
                for k in evicted:
                    del m[k]
                if expiry:
                    for k in evicted:
                        expiry.pop(k, None)
                self._bytes -= freed
                self.evictions += len(evicted)
            if old is not None:
                self._bytes -= len(key) + len(old)
                m.move_to_end(key)
            m[key] = value
            if ttl is None:
                if expiry:
                    expiry.pop(key, None)
            else:
                expiry[key] = now + ttl
                heapq.heappush(heap, (now + ttl, key))
                if len(heap) > 2 * len(m) + 64:
                    self._rebuild_heap_locked()
            self._bytes += size
        finally:
            mu.release()

    def _plan_evictions_locked(self, key: bytes, items: int, nbytes: int) -> tuple[list[bytes], int]:
        """LRU keys (never ``key``) whose removal brings ``items``/``nbytes`` within
        bounds, and their total size.

        The common case of a full cache with no expired entry due: no heap
        work, just the oldest entries in order.
        """
        evicted: list[bytes] = []
        freed = 0
        m = self._map
        for k in m:  # LRU first
            if k == key:
                continue
            evicted.append(k)
            size = len(k) + len(m[k])
            freed += size
            items -= 1
            nbytes -= size
            if not self._over(items, nbytes):
                break
        return evicted, freed

    def _plan_locked(self, now: float, key: bytes, items: int, nbytes: int
                     ) -> tuple[list[tuple[float, bytes]], dict[bytes, int], list[bytes]]:
        """Choose what a put of ``key`` reclaims and evicts; change nothing but the heap.

        ``items``/``nbytes`` are the shard's totals after the put if nothing
        were removed. Returns ``(popped heap items, expired key -> size,
        evicted keys)``: up to PROACTIVE_EXPIRE expired entries; if the put
        still needs room, every expired entry, then live LRU entries.
        """
        popped: list[tuple[float, bytes]] = []
        expired: dict[bytes, int] = {}  # key -> size, in reclaim order
        evicted: list[bytes] = []
        self._collect_expired_locked(now, key, PROACTIVE_EXPIRE, popped, expired)
        if self._over(items - len(expired), nbytes - sum(expired.values())):
            # Reclaim every expired entry before evicting a live one.
            self._collect_expired_locked(now, key, None, popped, expired)
            items -= len(expired)
            nbytes -= sum(expired.values())
            for k, v in self._map.items():  # LRU first; skips only expired entries and key
                if not self._over(items, nbytes):
                    break
                if k == key or k in expired:
                    continue
                evicted.append(k)
                items -= 1
                nbytes -= len(k) + len(v)
        return popped, expired, evicted

    def delete(self, key: bytes) -> bool:
        with self._mu:
            self._check_writable_locked()
            self.deletes += 1
            if key not in self._map:
                return False  # nothing to undo: the log's state has no key either
            now = self._clock()
            self._prepare_log_locked(now)  # a checkpoint here drops the entry if it has expired
            if key not in self._map:
                return False
            exp = self._expiry.get(key)
            live = exp is None or exp > now
            out = bytearray(HEADER_BYTES) + self._pending
            encode_key_op(out, OP_DELETE if live else OP_EXPIRE, key)
            self._append_locked(out, sync=self._cache._sync_always)
            self._pending.clear()
            self._remove_locked(key)
            if not live:
                self.expirations += 1
            return live

    def _over(self, items: int, nbytes: int) -> bool:
        return ((self._max_items is not None and items > self._max_items)
                or (self._max_bytes is not None and nbytes > self._max_bytes))

    def _collect_expired_locked(self, now: float, skip: bytes, limit: int | None,
                                popped: list[tuple[float, bytes]], expired: dict[bytes, int]) -> None:
        """Pop heap items due by ``now``; add live expired entries (not ``skip``) to ``expired``.

        Pops are recorded in ``popped`` so a failed write can push them back.
        """
        heap, m = self._heap, self._map
        while heap and heap[0][0] <= now and (limit is None or len(expired) < limit):
            item = heapq.heappop(heap)
            popped.append(item)
            exp, k = item
            if self._expiry.get(k) == exp and k != skip and k not in expired:
                expired[k] = len(k) + len(m[k])

    def _remove_locked(self, key: bytes) -> None:
        v = self._map.pop(key)
        self._expiry.pop(key, None)
        self._bytes -= len(key) + len(v)

    def _expired_keys_locked(self, now: float) -> list[bytes]:
        """Keys whose entries have expired by ``now``, in LRU order."""
        expiry = self._expiry
        if not expiry:
            return []
        return [k for k in self._map if expiry.get(k, _INF) <= now]

    def _rebuild_heap_locked(self) -> None:
        self._heap = [(e, k) for k, e in self._expiry.items()]
        heapq.heapify(self._heap)

    def _check_writable_locked(self) -> None:
        if self._closed:
            raise ClosedError(f"persistent cache {self._cache._path} is closed")
        if self._failed is not None:
            raise BackgroundError(f"{self._log_path}: a write or fsync of this log failed earlier "
                                  f"({self._failed}); writes to its shard are refused until the "
                                  f"cache is closed and reopened")

    def _prepare_log_locked(self, now: float) -> None:
        """Make the log writable (finishing an interrupted checkpoint) and compact it if due."""
        if self._log is None:  # a checkpoint's rename succeeded but reopening the log failed
            log = WalWriter(self._fs.open_mapped(self._log_path, step=self._map_step))
            with self._file_mu:
                self._log = log
        if self._dir_dirty:
            self._fs.fsync_dir(self._cache._path)
            self._dir_dirty = False
        if self._log.size > self._checkpoint_threshold_locked():
            self._checkpoint_locked(now)
        self._log_limit = self._checkpoint_threshold_locked()

    def _checkpoint_threshold_locked(self) -> float:
        live = self._bytes + ENTRY_LOG_OVERHEAD * len(self._map)
        return max(CHECKPOINT_FLOOR_BYTES, CHECKPOINT_RATIO * live)

    def _append_locked(self, out: bytearray, *, sync: bool) -> None:
        """Write one record (and fsync it if ``sync``): ``out`` is the payload
        after HEADER_BYTES reserved bytes, framed here in place. (put inlines
        this.)

        A failed write is rewound, so the shard stays usable and the log
        keeps no partial record; if even that fails, or an fsync fails (the
        page cache state is then unknown), the shard refuses further writes.
        Raises: DiskError.
        """
        log = self._log
        assert log is not None
        f = log.file
        before = f.size
        try:
            f.write(frame_record(out, CACHE))
        except BaseException as e:
            self._write_failed_locked(f, before, e)
            raise
        self._dirty = True
        if sync:
            self._sync_locked(log)

    def _write_failed_locked(self, f: object, before: int, error: BaseException) -> None:
        """After a failed append: forget its bytes, or refuse writes if that fails too."""
        try:
            f.rewind(before)  # type: ignore[attr-defined]
        except BaseException:  # noqa: BLE001 - the caller re-raises the write's own error
            self._failed = error

    def _sync_locked(self, log: WalWriter) -> None:
        """fsync after an append; a failure refuses writes until reopen (the
        page cache state is unknown). Raises: DiskError."""
        try:
            log.sync()
        except BaseException as e:
            self._failed = e
            raise
        self._dirty = False

    def sync_background(self) -> None:
        """The housekeeping thread's turn (``"periodic"``): fsync the log if written since the last fsync."""
        if not self._dirty:
            return
        with self._file_mu:
            log = self._log
            if log is None or self._failed is not None:
                return
            self._dirty = False
            try:
                log.sync()
            except BaseException as e:  # noqa: BLE001 - surfaced by the next write
                self._failed = e

    # -- checkpoint ------------------------------------------------------------

    def _checkpoint_locked(self, now: float) -> None:
        """Rewrite the log as the live entries, LRU first (see the module docstring).

        Raises: DiskError; before the rename nothing changed, after it the new
        log is installed and only the directory fsync (or the reopen) is pending.
        """
        fs = self._fs
        f = fs.open_writable(self._tmp_path)
        try:
            try:
                w = WalWriter(f)
                w.add_record(encode_header(self.index, self._cache._nshards), CACHE)
                buf = bytearray()
                expiry = self._expiry
                for k, v in self._map.items():
                    e = expiry.get(k, _INF) if expiry else _INF
                    if e > now:
                        encode_put(buf, k, v, e)
                        if len(buf) >= CHECKPOINT_RECORD_BYTES:
                            w.add_record(bytes(buf), CACHE)
                            buf.clear()
                if buf:
                    w.add_record(bytes(buf), CACHE)
                f.sync()
            finally:
                f.close()
            fs.rename(self._tmp_path, self._log_path)
        except BaseException:
            try:
                fs.remove(self._tmp_path)
            except DiskError:
                pass  # removed at the next open
            raise
        # Installed: the log's name now holds the checkpoint.
        self._dir_dirty = True
        with self._file_mu:
            old, self._log = self._log, None
            self._dirty = False
            try:
                if old is not None:
                    old.close()
            except DiskError:
                pass  # the file is unreachable now; its contents are in the checkpoint
        self._pending.clear()  # its EXPIRE ops are implied: those keys are not in the checkpoint
        for k in self._expired_keys_locked(now):
            self._remove_locked(k)
            self.expirations += 1
        self._rebuild_heap_locked()
        self.checkpoints += 1
        log = WalWriter(fs.open_mapped(self._log_path, step=self._map_step))
        with self._file_mu:
            self._log = log
        fs.fsync_dir(self._cache._path)
        self._dir_dirty = False

    # -- open and close ----------------------------------------------------------

    def recover(self) -> bool:
        """Load this shard's log; return True if the log file had to be (re)created.

        Raises: CorruptionError for damage before the tail or a foreign header.
        """
        fs, path = self._fs, self._log_path
        if fs.exists(self._tmp_path):
            fs.remove(self._tmp_path)  # an interrupted checkpoint; the log is authoritative
        data = fs.read_file(path) if fs.exists(path) else b""
        tail: list[int] = []

        def report(offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
            if at_tail:
                tail.append(offset)
                return False
            head = min(nbytes, HEADER_BYTES)
            if data.count(0, offset, offset + head) == head:
                # Damage that starts with zeros, intact records after it: pages
                # the OS never wrote back before a power cut (the file's length
                # was reserved ahead, and write-back need not go in order). A
                # record never starts with zeros, and bit rot leaves garbage,
                # not a zeroed header. Those writes were never fsynced (or the
                # disk lost them): skip them, as a power cut may.
                self._cache._recovered_skipped_bytes += nbytes
                return True
            raise CorruptionError(path, offset, reason)

        m = self._map
        first = True
        for offset, rtype, payload in iter_records(data, report, path=path):
            if rtype != CACHE:
                raise CorruptionError(path, offset, f"record type {rtype} in a cache log (want {CACHE})")
            for kind, key, value, exp in iter_ops(payload, path, offset):
                if first:
                    if kind != OP_HEADER:
                        raise CorruptionError(path, offset, "cache log does not start with a header")
                    version, shard, shards = decode_header(key)
                    if version != FORMAT_VERSION:
                        raise CorruptionError(path, offset, f"unsupported cache log format version "
                                              f"{version} (this reader knows {FORMAT_VERSION})")
                    if (shard, shards) != (self.index, self._cache._nshards):
                        raise CorruptionError(path, offset, f"log of shard {shard} of {shards} found "
                                              f"where shard {self.index} of {self._cache._nshards} belongs")
                    first = False
                    continue
                old = m.pop(key, None)
                if old is not None:
                    self._bytes -= len(key) + len(old)
                    self._expiry.pop(key, None)
                if kind == OP_PUT:
                    m[key] = value
                    if exp != _INF:
                        self._expiry[key] = exp
                    self._bytes += len(key) + len(value)
                elif kind == OP_HEADER:
                    raise CorruptionError(path, offset, "header op in the middle of a cache log")
        good = tail[0] if tail else len(data)
        # A log's file runs ahead of its records in zeros (fs.open_mapped), so
        # zeros at the end are not data: only the bytes before them count as
        # a torn write.
        torn = len(data[good:].rstrip(b"\0"))
        header = encode_header(self.index, self._cache._nshards)
        if first and good + torn > len(encode_record(header, CACHE)):
            # More than a torn header record and nothing readable: damage (or
            # another format), never a log whose creation was cut short. Resetting
            # it would silently drop every entry.
            raise CorruptionError(path, good, "cache log has no intact header record")
        self._cache._recovered_tail_bytes += torn
        if first:  # no intact header: a new log, or one whose creation was cut short
            if data:
                fs.truncate(path, 0)
            log = WalWriter(fs.open_mapped(path, step=self._map_step))
            log.add_record(header, CACHE)
            log.sync()
            self._log = log
            return True
        if good < len(data):
            fs.truncate(path, good)  # drop the torn tail so new records follow intact ones
        self._log = WalWriter(fs.open_mapped(path, step=self._map_step))
        if good < len(data):
            self._log.sync()
        return False

    def finish_open(self, now: float) -> None:
        """Drop entries that expired while closed, re-apply bounds, log both, compact if due."""
        with self._mu:
            out = bytearray(HEADER_BYTES)
            for k in self._expired_keys_locked(now):
                self._remove_locked(k)
                encode_key_op(out, OP_EXPIRE, k)
                self.expirations += 1
            while self._map and self._over(len(self._map), self._bytes):
                k = next(iter(self._map))
                self._remove_locked(k)
                encode_key_op(out, OP_EVICT, k)
                self.evictions += 1
            if len(out) > HEADER_BYTES:
                self._append_locked(out, sync=self._cache._sync_mode != "never")
            if self._log is not None and self._log.size > self._checkpoint_threshold_locked():
                self._checkpoint_locked(now)
            self._rebuild_heap_locked()

    def close(self) -> BaseException | None:
        """Log pending EXPIREs, fsync (unless ``"never"``), close the log. Returns the first error."""
        err: BaseException | None = None
        with self._mu:
            if self._closed:
                return None
            self._closed = True
            with self._file_mu:
                log, self._log = self._log, None
                if log is not None:
                    try:
                        if self._failed is None:
                            if self._pending:
                                log.add_record(bytes(self._pending), CACHE)
                            if self._cache._sync_mode != "never":
                                log.sync()
                    except BaseException as e:  # noqa: BLE001 - returned to close()
                        err = e
                    try:
                        log.close()
                    except BaseException as e:  # noqa: BLE001
                        err = err or e
            self._pending.clear()
            self._map.clear()
            self._expiry.clear()
            self._heap.clear()
            self._bytes = 0
        return err

    # -- introspection -----------------------------------------------------------

    def op_totals(self) -> dict[str, int]:
        """Calls so far per operation, as the QPS samplers see them.

        Read without ``_mu``: each counter is one int load (atomic), and a
        total a few calls stale is harmless to a rate, while waiting for a
        shard busy in a checkpoint would hold up the housekeeping thread's
        fsyncs of every other shard.
        """
        return {"get": self.hits + self.misses, "put": self.puts, "delete": self.deletes}

    def sample_qps(self) -> None:
        """The housekeeping thread's once-a-bucket sample of :meth:`op_totals`."""
        for op, total in self.op_totals().items():
            self.qps[op].sample(total)

    def _check(self) -> None:
        """Assert the shard's invariants (tests call this; O(n))."""
        with self._mu:
            n = self._cache._nshards
            total = 0
            for k, v in self._map.items():
                assert type(k) is bytes and type(v) is bytes, k
                assert shard_of(k, n) == self.index, f"key {k!r} in shard {self.index}"
                total += len(k) + len(v)
            for k, e in self._expiry.items():
                assert k in self._map and e == e and e != _INF, (k, e)
            assert total == self._bytes, (total, self._bytes)
            assert not self._over(len(self._map), self._bytes), "bounds exceeded"
            in_heap = set(self._heap)
            for k, e in self._expiry.items():
                assert (e, k) in in_heap, f"expiring key {k!r} missing from the heap"


def _housekeeper_main(ref: "weakref.ref[PersistentCache]", stop: threading.Event, periodic: bool) -> None:
    """Sample every shard's QPS counters about once per QPS_BUCKET; with
    ``periodic``, also fsync every shard log written since its last fsync,
    every SYNC_INTERVAL."""
    period = SYNC_INTERVAL if periodic else QPS_BUCKET
    next_sample = time.monotonic() + QPS_BUCKET
    while not stop.wait(period):
        now = time.monotonic()
        sample = now >= next_sample - period / 2
        if sample:
            next_sample = now + QPS_BUCKET
        if not _housekeeping_tick(ref, periodic, sample):
            return


def _housekeeping_tick(ref: "weakref.ref[PersistentCache]", sync: bool, sample: bool) -> bool:
    """One pass of the housekeeper; False once the cache is gone. Its locals die with it."""
    cache = ref()
    if cache is None:
        return False
    shards = cache._shard_list
    if sync:  # first: the fsync interval is the promise; the samples can wait
        for s in shards:
            s.sync_background()
    if sample:
        for s in shards:
            s.sample_qps()
    return True


# -- the public object -----------------------------------------------------------

class PersistentCache:
    """A bounded, persistent LRU cache of ``bytes -> bytes`` with optional TTLs.

    Reading: :meth:`get`, ``key in cache``, ``len(cache)``, :meth:`stats`.
    Writing: :meth:`put`, :meth:`delete`. Lifetime: :meth:`close`, ``with``.

    Entries live in ``shards`` independent shards chosen by ``xxh3_64(key)``,
    each an LRU (a hash map plus a recency list) with its own lock and log, so
    concurrent ``get`` calls — which move the entry to the most-recent end —
    only contend when they hit the same shard. ``max_items`` and ``max_bytes``
    (the sum of ``len(key) + len(value)``) are split evenly: each shard holds at
    most ``max_items // shards`` entries and ``max_bytes // shards`` bytes, and
    evicts its own least recently used entries to stay within them. So the cache
    never exceeds the totals, and may evict before reaching them when keys hash
    unevenly; and one entry may be at most ``max_bytes // shards`` bytes.

    Durability: every put and delete is in the OS before it returns: its
    record is stored into the shard's log through a shared memory map, which
    puts it in the page cache as a ``write(2)`` would (a syscall per put cost
    more than the rest of the put), so it survives a crash of the process; with
    ``sync_mode="always"`` it is also fsynced first (survives a power cut),
    with ``"periodic"`` a background thread fsyncs every 0.05 s, with
    ``"never"`` the OS decides. Evictions and expirations are logged too, so a
    restart never brings back an entry that was evicted, expired or deleted.
    Recency after a restart follows the last logged write of each entry (reads
    are not logged; a checkpoint also keeps the read order it saw).

    TTL: ``ttl`` (or ``default_ttl``) seconds from ``clock()`` (wall-clock, so it
    survives restarts). Expired entries read as absent at once and are
    reclaimed lazily (see the module docstring).

    Thread safety: every method may be called from any thread. A write holds
    its shard's lock across its log append (and, with ``"always"``, its fsync,
    so reads of that one shard wait for it; other shards do not).
    Complexity: get, put, delete and each eviction O(1) (a TTL put adds a heap
    push, O(log n)); checkpoints are O(live entries of one shard), amortised
    O(1) per write because they run only when the log has doubled.

    :param path: directory of the cache; created if missing.
    :param max_bytes: bound on keys + values, or None.
    :param max_items: bound on the number of entries, or None.
    :param default_ttl: seconds an entry lives when ``put`` gives no ``ttl``; None: forever.
    :param sync_mode: ``"always"``, ``"periodic"`` or ``"never"`` (as the DB's, SPEC §3).
    :param shards: number of shards, 1..4096; fixed when the cache is created.
    :param fs: the filesystem (tests pass a fault-injecting one).
    :param clock: wall-clock seconds since the epoch, for TTLs.
    :raises ValueError: naming the argument, for a bad argument or a ``shards``
        that differs from the existing cache's; TypeError for a wrong type.
    :raises lsm.LockError: if another open holds the cache's ``LOCK``.
    :raises lsm.CorruptionError: naming file and offset, for a damaged log.

    >>> import tempfile
    >>> with PersistentCache(tempfile.mkdtemp(), max_items=100, shards=4) as cache:
    ...     cache.put(b"k", b"v")
    ...     cache.get(b"k"), b"k" in cache, len(cache), cache.delete(b"k")
    (b'v', True, 1, True)
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int | None = None,
                 max_items: int | None = None, default_ttl: float | None = None,
                 sync_mode: str = "never", shards: int = 8, fs: FileSystem | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(shards, bool) or not isinstance(shards, int):
            raise TypeError(f"shards must be an int, not {type(shards).__name__}")
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be in 1..{MAX_SHARDS}; got {shards}")
        self._shard_max_items = None if max_items is None else _check_bound(max_items, "max_items", shards) // shards
        self._shard_max_bytes = None if max_bytes is None else _check_bound(max_bytes, "max_bytes", shards) // shards
        self._default_ttl = None if default_ttl is None else _check_ttl(default_ttl, "default_ttl")
        if sync_mode not in SYNC_MODES:
            raise ValueError(f"sync_mode must be one of {', '.join(map(repr, SYNC_MODES))}; got {sync_mode!r}")
        if not callable(clock):
            raise TypeError("clock must be callable")
        self._path = os.path.abspath(os.fspath(path))
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._nshards = shards
        self._sync_mode = sync_mode
        self._sync_always = sync_mode == "always"
        self._fs: FileSystem = fs if fs is not None else OsFileSystem()
        self._clock = clock
        self._closed = False
        self._close_mu = threading.Lock()
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._recovered_tail_bytes = 0
        self._recovered_skipped_bytes = 0  # zeroed regions before intact records (see _Shard.recover)
        self._shards: list[_Shard] = []
        t0 = time.monotonic()
        self._fs.makedirs(self._path)
        self._lock: FileLock = self._fs.lock(os.path.join(self._path, "LOCK"), shared=False)
        try:
            self._check_shard_count()
            self._shards = [_Shard(self, i) for i in range(shards)]
            created = False
            for s in self._shards:
                created = s.recover() or created
            if created:
                self._fs.fsync_dir(self._path)  # new logs' names must survive a power cut
            now = clock()
            for s in self._shards:
                s.finish_open(now)
            self._recovery_seconds = time.monotonic() - t0
            self._shard_list = tuple(self._shards)
            # The thread holds only a weak reference, so an unclosed cache can
            # still be collected (and its __del__ releases the LOCK).
            housekeeper = threading.Thread(
                target=_housekeeper_main, args=(weakref.ref(self), self._stop, sync_mode == "periodic"),
                daemon=True, name=f"lsm-pcache-housekeeper:{self._path}")
            housekeeper.start()  # may fail (no threads left): then nothing stays open
            self._housekeeper = housekeeper
        except BaseException:
            for s in self._shards:
                s.close()
            self._lock.release()
            self._closed = True
            raise

    def _check_shard_count(self) -> None:
        for name in self._fs.listdir(self._path):
            m = NAME_RE.match(name)
            if m and int(m.group(2)) != self._nshards:
                raise ValueError(f"shards={self._nshards} does not match the cache at {self._path}, "
                                 f"which has {int(m.group(2))} shards ({name}); reopen with "
                                 f"shards={int(m.group(2))}")

    def _shard(self, key: bytes) -> _Shard:
        n = self._nshards
        return self._shard_list[_xxh(key) % n] if n > 1 else self._shard_list[0]

    # -- public API --------------------------------------------------------------

    def get(self, key: bytes, default: object = None) -> bytes | None:
        """Return the value of ``key`` and mark it most recently used, or ``default``.

        An expired entry counts as a miss and is removed (logged as EXPIRE with
        the shard's next write; no I/O here).
        Raises: TypeError/ValueError for a bad key; ClosedError after close().
        """
        # The cache's hot path, so the shard's part is inlined here (a call
        # costs ~20% of a hit) and follows _Shard's locking rules: everything
        # below runs under the shard's _mu. acquire/release instead of
        # ``with`` saves another ~0.1 us.
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        s = self._shard_list[_xxh(key) % self._nshards]
        mu = s._mu
        mu.acquire()
        try:
            if s._closed:
                raise ClosedError(f"persistent cache {self._path} is closed")
            v = s._map.get(key)
            if v is None:
                s.misses += 1
                return default  # type: ignore[return-value]
            if s._expiry:
                exp = s._expiry.get(key)
                if exp is not None and exp <= s._clock():
                    s._expire_locked(key)
                    return default  # type: ignore[return-value]
            s._map.move_to_end(key)
            s.hits += 1
            return v
        finally:
            mu.release()

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``key = value`` as the most recently used entry, evicting LRU entries of its shard.

        ``ttl``: seconds from now (``default_ttl`` if None).
        Durability: logged before returning; fsynced first with ``sync_mode="always"``.
        Raises: TypeError/ValueError naming the argument (nothing is logged);
        ValueError if ``len(key) + len(value)`` exceeds the per-shard limit
        ``max_bytes // shards``; DiskError if the log write, its fsync or a
        checkpoint this call started fails (the put is then not applied);
        BackgroundError after an earlier failed fsync; ClosedError after close().
        """
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
            value = check_value(value)
        limit = self._shard_max_bytes
        if limit is not None and len(key) + len(value) > limit:
            raise ValueError(f"key + value is {len(key) + len(value)} bytes; the limit is "
                             f"max_bytes // shards = {limit}")
        ttl = self._default_ttl if ttl is None else _check_ttl(ttl, "ttl")
        self._shard_list[_xxh(key) % self._nshards].put(key, value, ttl)

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; return True if a live (unexpired) entry was removed.

        Durability and Raises: as :meth:`put`.
        """
        key = check_key(key)
        return self._shard(key).delete(key)

    def __contains__(self, key: object) -> bool:
        """True if ``key`` holds an unexpired entry. Changes neither recency nor stats."""
        key = check_key(key)
        return self._shard(key).contains(key)

    def __len__(self) -> int:
        """Entries held, including expired ones not reclaimed yet (as diskcache does)."""
        if self._closed:
            raise ClosedError(f"persistent cache {self._path} is closed")
        return sum(len(s._map) for s in self._shard_list)

    def stats(self) -> dict[str, object]:
        """A JSON-serialisable dict; counters are since this open.

        ``hits``, ``misses``, ``evictions``, ``expirations`` (reclaimed expired
        entries), ``checkpoints``, ``items`` and ``bytes`` (keys + values, as
        :meth:`__len__`), ``log_bytes`` (all shard logs), ``qps`` (``get``,
        ``put``, ``delete`` per second over the last ~10 s), ``recovery``, and
        the configuration.
        """
        if self._closed:
            raise ClosedError(f"persistent cache {self._path} is closed")
        totals = dict.fromkeys(_COUNTERS, 0)
        qps = {"get": 0.0, "put": 0.0, "delete": 0.0}
        for s in self._shard_list:
            with s._mu:
                values = (s.hits, s.misses, s.evictions, s.expirations, s.checkpoints, len(s._map),
                          s._bytes, s._log.size if s._log is not None else 0)
            for name, v in zip(_COUNTERS, values):
                totals[name] += v
            for op, total in s.op_totals().items():
                qps[op] += s.qps[op].rate(total)
        out: dict[str, object] = dict(totals)
        out["qps"] = {k: round(v, 3) for k, v in qps.items()}
        out["recovery"] = {"seconds": round(self._recovery_seconds, 6),
                           "dropped_tail_bytes": self._recovered_tail_bytes,
                           "skipped_zeroed_bytes": self._recovered_skipped_bytes}
        out.update(shards=self._nshards, max_items=self._max_items, max_bytes=self._max_bytes,
                   default_ttl=self._default_ttl, sync_mode=self._sync_mode)
        return out

    def close(self) -> None:
        """Log pending expirations, fsync the logs (unless ``sync_mode="never"``),
        release the lock. Idempotent; any later use raises ClosedError.

        Raises: DiskError if a final write or fsync failed (the lock is released anyway).
        """
        with self._close_mu:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._housekeeper is not None and self._housekeeper is not threading.current_thread():
            self._housekeeper.join()
        err: BaseException | None = None
        try:
            for s in self._shards:
                e = s.close()
                err = err or e
        finally:
            self._lock.release()
        if err is not None:
            raise err

    def __enter__(self) -> "PersistentCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Best effort: release the LOCK of a cache that was never closed.
        try:
            if not self._closed and hasattr(self, "_lock"):
                self.close()
        except Exception:  # noqa: BLE001 - interpreter teardown or a dead filesystem
            pass

    def __repr__(self) -> str:
        return f"<PersistentCache {self._path!r} shards={self._nshards}{' closed' if self._closed else ''}>"

    def _check(self) -> None:
        """Assert every shard's invariants (for tests; O(n))."""
        for s in self._shards:
            s._check()
