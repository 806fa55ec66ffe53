"""One shard of a :class:`~lsm.PersistentCache`: a hash map, a recency
list, an expiry heap and a log, behind one lock (the cache routes each key to
one shard; see lsm/pcache/cache.py for the files and the routing).

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
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BackgroundError, ClosedError, CorruptionError, DiskError
from ..fs import FileSystem
from ..metrics import SampledRate
from ..record import CACHE, HEADER_BYTES, RecordWriter, encode_record, frame_record, iter_records
from .log import (
    FORMAT_VERSION,
    OP_DELETE,
    OP_EVICT,
    OP_EXPIRE,
    OP_HEADER,
    OP_PUT,
    decode_header,
    encode_header,
    encode_key_op,
    encode_put,
    iter_ops,
    make_shard_log_name,
    make_shard_temp_name,
    shard_of,
)

__all__ = ["Shard", "ShardConfig", "map_step"]

CHECKPOINT_FLOOR_BYTES = 1 << 20  # per shard: don't rewrite small logs for nothing
CHECKPOINT_RATIO = 2.0  # rewrite when the log is this many times the live data
ENTRY_LOG_OVERHEAD = 16  # bytes per entry in a checkpoint besides key and value (op, varints, f64)
CHECKPOINT_RECORD_BYTES = 256 << 10  # checkpoint records are cut at about this size
PROACTIVE_EXPIRE = 8  # expired entries one put reclaims before it needs room; bounds its latency
QPS_WINDOW, QPS_BUCKET = 10.0, 1.0  # seconds: a cache's rate should react quickly
# A log's file length runs ahead of its records by up to one step (fs.open_mapped):
# MAP_STEP, or less with many shards so that all of them reserve at most about
# MAP_TOTAL (never less than MAP_MIN_STEP each; remapping costs ~50 us a step).
MAP_STEP, MAP_MIN_STEP, MAP_TOTAL = 256 << 10, 64 << 10, 2 << 20

_INF = math.inf


def map_step(shards: int) -> int:
    """Bytes a shard's log file runs ahead of its records, for ``shards`` shards.

    >>> map_step(8) // 1024, map_step(32) // 1024, map_step(4096) // 1024
    (256, 64, 64)
    """
    step = min(MAP_STEP, MAP_TOTAL // shards)
    return max(MAP_MIN_STEP, step - step % mmap.ALLOCATIONGRANULARITY)


@dataclass(frozen=True)
class ShardConfig:
    """What every shard of one cache shares: set at open, never changed."""

    path: str  # the cache directory
    shards: int  # the shard count (part of every log's name and header)
    fs: FileSystem
    clock: Callable[[], float]  # wall-clock seconds, for TTLs
    sync_mode: str  # "always", "periodic" or "never"
    max_items: int | None  # per shard; None: unbounded
    max_bytes: int | None  # per shard: keys + values


class Shard:
    """One hash map + recency list + log + expiry heap, behind one lock.

    Thread safety: every field marked ``guarded by _mu`` is read and written
    only with ``_mu`` held; ``_log`` is also guarded by ``_file_mu`` for its
    lifetime (the housekeeping thread fsyncs it holding only ``_file_mu``).
    Lock order: ``_mu`` before ``_file_mu``.

    :meth:`PersistentCache.get <lsm.pcache.PersistentCache.get>` inlines a
    shard lookup (a call is ~20% of a hit). It reads ``_mu``, ``_closed``,
    ``_map``, ``_expiry``, ``_clock``, ``hits`` and ``misses`` and calls
    :meth:`_expire_locked`, under the rules above: renaming one means
    changing it there too.
    """

    __slots__ = ("index", "_cfg", "_fs", "_clock", "_sync_always", "_log_path", "_tmp_path", "_max_items",
                 "_max_bytes", "_mu", "_file_mu", "_map", "_expiry", "_heap", "_bytes", "_pending",
                 "_log", "_map_step", "_dirty", "_dir_dirty", "_log_limit", "_failed", "_closed", "hits", "misses",
                 "evictions", "expirations", "checkpoints", "puts", "deletes", "qps",
                 "dropped_tail_bytes", "skipped_zeroed_bytes")

    def __init__(self, cfg: ShardConfig, index: int) -> None:
        self.index = index
        self._cfg = cfg
        self._fs = cfg.fs
        self._clock = cfg.clock
        self._sync_always = cfg.sync_mode == "always"
        self._log_path = make_shard_log_name(cfg.path, index, cfg.shards)
        self._tmp_path = make_shard_temp_name(cfg.path, index, cfg.shards)
        self._max_items = cfg.max_items  # None: unbounded
        self._max_bytes = cfg.max_bytes
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
        self._log: RecordWriter | None = None  # guarded by _mu and _file_mu
        self._map_step = map_step(cfg.shards)
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
        # Set by recover(): bytes of a torn tail dropped, and of zeroed regions skipped.
        self.dropped_tail_bytes = self.skipped_zeroed_bytes = 0

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
                raise ClosedError(f"persistent cache {self._cfg.path} is closed")
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
                assert log is not None  # _prepare_log_locked opened one (or raised)
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
            if self._sync_always:
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
            self._append_locked(out, sync=self._sync_always)
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
            raise ClosedError(f"persistent cache {self._cfg.path} is closed")
        if self._failed is not None:
            raise BackgroundError(f"{self._log_path}: a write or fsync of this log failed earlier "
                                  f"({self._failed}); writes to its shard are refused until the "
                                  f"cache is closed and reopened")

    def _prepare_log_locked(self, now: float) -> None:
        """Make the log writable (finishing an interrupted checkpoint) and compact it if due."""
        if self._log is None:  # a checkpoint's rename succeeded but reopening the log failed
            log = RecordWriter(self._fs.open_mapped(self._log_path, step=self._map_step))
            with self._file_mu:
                self._log = log
        if self._dir_dirty:
            self._fs.fsync_dir(self._cfg.path)
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

    def _sync_locked(self, log: RecordWriter) -> None:
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
                w = RecordWriter(f)
                w.add_record(encode_header(self.index, self._cfg.shards), CACHE)
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
        log = RecordWriter(fs.open_mapped(self._log_path, step=self._map_step))
        with self._file_mu:
            self._log = log
        fs.fsync_dir(self._cfg.path)
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
                self.skipped_zeroed_bytes += nbytes
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
                    if (shard, shards) != (self.index, self._cfg.shards):
                        raise CorruptionError(path, offset, f"log of shard {shard} of {shards} found "
                                              f"where shard {self.index} of {self._cfg.shards} belongs")
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
        header = encode_header(self.index, self._cfg.shards)
        if first and good + torn > len(encode_record(header, CACHE)):
            # More than a torn header record and nothing readable: damage (or
            # another format), never a log whose creation was cut short. Resetting
            # it would silently drop every entry.
            raise CorruptionError(path, good, "cache log has no intact header record")
        self.dropped_tail_bytes = torn
        if first:  # no intact header: a new log, or one whose creation was cut short
            if data:
                fs.truncate(path, 0)
            log = RecordWriter(fs.open_mapped(path, step=self._map_step))
            log.add_record(header, CACHE)
            log.sync()
            self._log = log
            return True
        if good < len(data):
            fs.truncate(path, good)  # drop the torn tail so new records follow intact ones
        self._log = RecordWriter(fs.open_mapped(path, step=self._map_step))
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
                self._append_locked(out, sync=self._cfg.sync_mode != "never")
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
                            if self._cfg.sync_mode != "never":
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

    def _forked(self) -> None:
        """In a forked child (see lsm.forks): fresh locks, closed, nothing written."""
        self._mu = threading.Lock()
        self._file_mu = threading.Lock()
        self._closed = True

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
            n = self._cfg.shards
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
