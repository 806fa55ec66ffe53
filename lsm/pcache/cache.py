"""PersistentCache: a sharded, bounded LRU of bytes that survives restarts
(part of the public API, ``lsm.PersistentCache``), built on the engine's
record framing (lsm.record, record type ``CACHE``).

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
:mod:`lsm.pcache.log` and doc/format.md#persistent-cache.

A shard (lsm/pcache/shard.py) owns its recovery, checkpoints (log
compaction) and expiry; this module routes keys, checks arguments, runs the
housekeeping thread and sums the shards' stats.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable

from .. import forks
from ..errors import ClosedError
from ..fs import FileLock, FileSystem, OsFileSystem, check_path
from ..keys import MAX_KEY_BYTES, MAX_VALUE_BYTES, check_key, check_value
from ..options import SYNC_MODES
from . import shard
from .log import FORMAT_VERSION, NAME_RE, Op, shard_hash as _xxh
from .shard import Shard, ShardConfig

__all__ = ["FORMAT_VERSION", "Op", "PersistentCache"]

MAX_SHARDS = 4096  # shard numbers are part of file names; more shards only cost memory
SYNC_INTERVAL = 0.05  # seconds between background fsyncs for sync_mode="periodic" (as the DB)

_INF = math.inf
_COUNTERS = ("hits", "misses", "evictions", "expirations", "checkpoints", "items", "bytes", "log_bytes")


def _check_ttl(ttl: object, name: str) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(ttl).__name__}")
    if not 0 < ttl < _INF:
        raise ValueError(f"{name} must be a finite number of seconds > 0; got {ttl!r}")
    try:
        return float(ttl)
    except OverflowError:  # an int past the float range (a float cannot overflow float())
        assert isinstance(ttl, int)
        raise ValueError(f"{name} must be a finite number of seconds > 0; got an int of "
                         f"{ttl.bit_length()} bits, past the float range") from None


def _check_bound(value: object, name: str, shards: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value < shards:
        raise ValueError(f"{name} must be >= shards ({shards}): each shard holds {name} // shards; "
                         f"got {value}")
    return value


def _housekeeper_main(ref: weakref.ref[PersistentCache], stop: threading.Event, periodic: bool) -> None:
    """Sample every shard's QPS counters about once per ``shard.QPS_BUCKET``; with
    ``periodic``, also fsync every shard log written since its last fsync,
    every SYNC_INTERVAL."""
    bucket = shard.QPS_BUCKET  # the shards' samplers were built with this bucket
    period = SYNC_INTERVAL if periodic else bucket
    next_sample = time.monotonic() + bucket
    while not stop.wait(period):
        now = time.monotonic()
        sample = now >= next_sample - period / 2
        if sample:
            next_sample = now + bucket
        if not _housekeeping_tick(ref, periodic, sample):
            return


def _housekeeping_tick(ref: weakref.ref[PersistentCache], sync: bool, sample: bool) -> bool:
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
    :param sync_mode: ``"always"``, ``"periodic"`` or ``"never"`` (as the DB's: :class:`lsm.Options`).
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
        max_items = _check_bound(max_items, "max_items", shards)
        max_bytes = _check_bound(max_bytes, "max_bytes", shards)
        self._shard_max_items = None if max_items is None else max_items // shards
        self._shard_max_bytes = None if max_bytes is None else max_bytes // shards
        self._default_ttl = None if default_ttl is None else _check_ttl(default_ttl, "default_ttl")
        if sync_mode not in SYNC_MODES:
            raise ValueError(f"sync_mode must be one of {', '.join(map(repr, SYNC_MODES))}; got {sync_mode!r}")
        if not callable(clock):
            raise TypeError("clock must be callable")
        self._path = check_path(path)
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._nshards = shards
        self._sync_mode = sync_mode
        self._fs: FileSystem = fs if fs is not None else OsFileSystem()
        self._clock = clock
        self._closed = False
        self._pid = os.getpid()  # a forked child finds this cache closed (lsm.forks)
        self._close_mu = threading.Lock()
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._shards: list[Shard] = []
        t0 = time.monotonic()
        self._fs.makedirs(self._path)
        self._lock: FileLock = self._fs.lock(os.path.join(self._path, "LOCK"), shared=False)
        try:
            self._check_shard_count()
            cfg = ShardConfig(self._path, shards, self._fs, clock, sync_mode,
                              self._shard_max_items, self._shard_max_bytes)
            self._shards = [Shard(cfg, i) for i in range(shards)]
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
            forks.track(self)
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

    def _shard(self, key: bytes) -> Shard:
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
        # costs ~20% of a hit) and follows Shard's locking rules: everything
        # below runs under the shard's _mu. acquire/release instead of
        # ``with`` saves another ~0.1 us.
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        s = self._shard_list[_xxh(key) % self._nshards]
        mu = s._mu
        mu.acquire()
        try:
            if s._closed:
                raise ClosedError(f"persistent cache {self._path} is closed{forks.fork_note(self._pid)}")
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
                           "dropped_tail_bytes": sum(s.dropped_tail_bytes for s in self._shards),
                           "skipped_zeroed_bytes": sum(s.skipped_zeroed_bytes for s in self._shards)}
        out.update(shards=self._nshards, max_items=self._max_items, max_bytes=self._max_bytes,
                   default_ttl=self._default_ttl, sync_mode=self._sync_mode)
        return out

    def close(self) -> None:
        """Log pending expirations, fsync the logs (unless ``sync_mode="never"``),
        release the lock. Idempotent; any later use raises ClosedError.

        In a child forked from the opening process it does nothing: the cache
        is the parent's (lsm.forks).

        Raises: DiskError if a final write or fsync failed (the lock is released anyway).
        """
        if self._pid != os.getpid():
            return
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

    def _forked(self) -> None:
        """In a forked child (lsm.forks): closed, without touching files or
        locks. Fresh locks replace the inherited ones (a parent thread may have
        held one at fork()), so that calls reach the closed check and raise."""
        self._closed = True
        self._close_mu = threading.Lock()
        for s in self._shards:
            s._forked()

    def __enter__(self) -> PersistentCache:
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
