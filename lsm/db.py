"""The public database object: ``DB``, ``Snapshot``, ``open()``.

The write path (doc/design.md#write-path): validate -> enqueue in the commit
queue -> leader assigns sequences, makes room (may switch memtable) -> WAL
write (+ fsync) with the mutex released -> memtable insert -> publish the
last sequence -> wake the group.

Reads take ``self._sv``, an immutable ``SuperVersion`` (active memtable,
immutable memtables, table version) that is replaced wholesale under the
mutex, so one read always sees one consistent tree without locking; the read
path is the ``Reads`` mixin (lsm/reads.py), the background work the
``Background`` mixin (lsm/background.py).

Locking: ``_mu`` guards every field marked ``# guarded by _mu``. The WAL I/O,
memtable inserts, table writes and compaction merges run without it. The
manifest append + fsync runs with it held (VersionSet's rule).
"""

from __future__ import annotations

import enum
import functools
import itertools
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING

from . import forks
from .background import Background, ManualCompaction, StopSignal, background_main, syncer_main
from .builder import build_memtable
from .checkpoint import Checkpoints
from .commit import CommitQueue
from .errors import BackgroundError, ClosedError, DiskError
from .filenames import make_table_name
from .fs import FileSystem, OsFileSystem, check_path
from .ingest import Ingest
from .invariants import make_lock
from .manifest import VersionEdit
from .memtable import Memtable
from .metrics import Metrics
from .options import Options
from .prefixed import PrefixedDB
from .reads import Reads
from .recovery import RecoveryStats, lock_and_load, replay_logs
from .sizes import Sizes
from .snapshot import Entry, Snapshot, SuperVersion, View, delete_present
from .tablecache import BlockCache, TableCache
from .typed import TypedView
from .version import apply_edit
from .wal import WalWriter
from .worker import CompactionWorker
from .writes import Writes

if TYPE_CHECKING:  # annotations only
    from .serde import Serializer
    from .typed import K, V

__all__ = ["DB", "Entry", "Snapshot", "open"]

_SAMPLE_EVERY = 16  # metrics: every 16th call of an operation is timed and counts for 16
CLOSE_FLUSH_SECONDS = 5.0  # close() waits this long at most for memtables waiting for flush
class _Missing(enum.Enum):
    """get()'s default where None could be a value: an enum member, so that
    ``v is _MISSING`` narrows ``v``'s type for a type checker."""
    MISSING = 0


_MISSING = _Missing.MISSING


class _Clock:
    """Wall-clock for TTL that never goes backwards: within the process, and
    across reopens from the time the manifest last recorded (every manifest
    edit records it, and close() writes one), so an entry seen expired stays
    expired if the system clock steps back."""

    __slots__ = ("_last",)

    def __init__(self, floor: float = 0.0) -> None:
        self._last = floor

    def __call__(self) -> float:
        t = time.time()
        if t < self._last:
            return self._last
        self._last = t
        return t


class DB(Background, Reads, Writes, Sizes, Checkpoints, Ingest, MutableMapping):
    """An open LSM-tree database. Obtain one with :func:`open`.

    Methods by role:

    * point reads: ``get``, ``get_entry``, ``multi_get``, ``key in db``, ``db[key]``
    * writes: ``put``, ``delete``, ``compare_and_swap``, ``write``/``write_batch``,
      ``db[key] = value``, ``del db[key]``
    * ranges and views: ``scan``, ``cursor`` (seek, next, prev), ``snapshot``
    * namespaces and typed views: ``prefixed``, ``typed``
    * sizes for sharding and planning: ``approximate_sizes``, ``approximate_count``
    * maintenance: ``flush``, ``compact_range``, ``wait_for_compactions``, ``stats``, ``close``
    * operations: ``checkpoint`` (and, on a closed database's directory,
      ``lsm.destroy`` and ``lsm.repair``)

    Thread safety: one ``DB`` may be shared by any number of threads. Reads
    never wait for a flush or compaction. Writes are linearized by the commit
    queue; each returns its sequence number (its version).

    Durability: per ``Options.sync_mode`` and the per-call ``sync=``; see
    doc/design.md. Every acknowledged write has at least reached the OS.

    >>> import tempfile
    >>> with open(tempfile.mkdtemp()) as db:
    ...     v = db.put(b"k", b"v")
    ...     db.get(b"k"), db.get_entry(b"k").version == v
    (b'v', True)
    """

    def __init__(self, path: str | os.PathLike, options: Options | None = None, *,
                 fs: FileSystem | None = None) -> None:
        self._path = check_path(path)
        if options is not None and not isinstance(options, Options):
            raise TypeError(f"options must be an lsm.Options, not {type(options).__name__}")
        self._opts = options if options is not None else Options()
        self._fs: FileSystem = fs if fs is not None else OsFileSystem()
        self._closed = False
        self._pid = os.getpid()  # a forked child finds this DB closed (lsm.forks)
        self._mu = make_lock()
        self._bg_cv = threading.Condition(self._mu)  # type: ignore[arg-type]
        self._queue = CommitQueue(self._mu, self._commit_steps())  # commit protocol, our steps (lsm.writes)
        self._waiting = self._queue.waiting  # writers queued: the fast path waits its turn behind them
        self._now = _Clock()
        self._block_cache = BlockCache(self._opts.block_cache_bytes) if self._opts.block_cache_bytes else None
        self._tables = TableCache(self._fs, lambda n: make_table_name(self._path, n),
                                  self._opts.max_open_files, self._block_cache, self._opts.paranoid_checks)
        self._views: weakref.WeakSet[View] = weakref.WeakSet()  # guarded by _views_mu
        # guarded by _views_mu: open scans and cursors, closed by close()
        self._scans: weakref.WeakSet = weakref.WeakSet()
        self._views_mu = threading.Lock()  # never held across I/O: views never wait for the manifest
        # guarded by _mu: file numbers obsolete-file deletion skips (outputs
        # being written, logs a checkpoint is copying)
        self._pending_outputs: set[int] = set()
        self._checkpoint_pins: dict[int, int] = {}  # guarded by _mu: log number -> checkpoints copying it
        # guarded by _mu: (output level, smallest, largest) of the compaction
        # merging now, or None (lsm.ingest places no table where it writes)
        self._compacting: tuple[int, bytes, bytes] | None = None
        self._obsolete_due = False  # a view was released: files it pinned may be deletable
        self._bg_error: BaseException | None = None  # guarded by _mu
        self._bg_active = 0  # guarded by _mu: flush/compaction jobs running now
        self._manual: list[ManualCompaction] = []  # guarded by _mu
        self._log: WalWriter | None = None  # written under _mu (fast path) or by the commit leader
        self._log_sync_mu = threading.Lock()  # serialises log sync/close with the periodic syncer
        self._log_sync_error: BaseException | None = None  # guarded by _log_sync_mu: a failed log fsync
        # Durability bookkeeping (written under _mu; lsm.writes): the last
        # sequence known durable, which every record carries (lsm.batch
        # "synced"); the current log's size at its last fsync; older logs
        # left unsynced by a switch in sync_mode="never" (a synced write syncs
        # them first); log bytes of logs already switched away from.
        self._synced_seq = 0
        self._synced_pos = 0
        self._unsynced_logs: list[WalWriter] = []
        self._wal_bytes_done = 0
        # Write path state read on every write (lsm.writes): see _install_sv_locked.
        self._fast = False
        self._sync_always = self._opts.sync_mode == "always"
        self._memtable_bytes = self._opts.memtable_bytes
        self._writes = 0  # writes counted for metrics sampling (statistics: races may lose one)
        self._user_bytes = 0  # key + value bytes written by users
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._syncer_stop = StopSignal()  # set by close(): the periodic syncer sleeps on it
        self._recovery = RecoveryStats()
        self._counters = {
            "compactions": 0, "flushes": 0, "compaction_bytes_read": 0, "compaction_bytes_written": 0,
            "flush_bytes_written": 0,
            "stall_seconds": 0.0, "slowdown_writes": 0,
            "trivial_moves": 0, "intra_l0_compactions": 0, "seek_compactions": 0, "entries_dropped": 0,
            "compactions_in_worker": 0,
            "flushes_in_worker": 0,
            "obsolete_file_errors": 0,
        }
        self._obsolete_note: str | None = None  # the last failure of an obsolete-file pass
        self._metrics = Metrics() if self._opts.metrics else None
        # Counted by the read path without a lock (statistics: a race may lose an increment).
        self._gets = 0
        self._bloom_checked = 0
        self._bloom_useful = 0
        # The worker process reads and writes real files only: a custom
        # filesystem (fault injection in tests) keeps compaction in-process.
        use_worker = self._opts.compaction_process and type(self._fs) is OsFileSystem and not self._opts.read_only
        # Two workers: a flush must never wait behind a long merge.
        self._worker = CompactionWorker() if use_worker else None
        self._flush_worker = CompactionWorker() if use_worker else None
        self._worker_failures = 0  # written only by the compaction thread (stats reads it racily)
        self._flush_worker_failures = 0  # written only by the flush thread
        self._worker_note: str | None = None
        try:
            self._open()
        except BaseException:
            self._closed = True  # a failed open is closed for good (see _open; __del__ skips it)
            raise
        if self._metrics is not None:
            self._instrument()

    def _instrument(self) -> None:
        """Shadow the public operations with sampling wrappers (instance
        attributes), so a DB opened with ``metrics=False`` pays nothing."""
        metrics = self._metrics
        assert metrics is not None  # called only for a DB opened with metrics
        record = metrics.record
        # get, put, delete, write and compare_and_swap sample themselves
        # (lsm.reads, lsm.writes): a wrapper frame would cost more than a hit
        for name, op in (("get_entry", "get"), ("scan", "scan"), ("multi_get", "multi_get")):
            setattr(self, name, _sampled(getattr(self, name), op, record))

    # -- opening and closing ---------------------------------------------

    def _open(self) -> None:
        fs, path, opts = self._fs, self._path, self._opts
        t0 = time.monotonic()
        self._lock, self._versions, is_new = lock_and_load(fs, path, opts)
        # TTL's clock starts where the last session's left it (recorded in
        # the manifest), and every edit records it from now on.
        self._now = _Clock(self._versions.clock_floor)
        self._versions.clock = self._now
        try:
            mem, old_logs = replay_logs(fs, path, self._versions, opts, self._recovery)
            vs = self._versions
            if opts.read_only:
                mem.immutable = True
                self._install_sv_locked(SuperVersion(Memtable(0), (mem,) if len(mem) else (), vs.current))
            else:
                # Recovered writes go to an L0 table and a fresh log; the new
                # manifest snapshot records both, then old logs become obsolete.
                log_number = vs.new_file_number()
                self._log = self._new_log(log_number)
                fs.fsync_dir(path)
                edit = VersionEdit(log_number=log_number)
                if len(mem):
                    mem.immutable = True
                    for meta in build_memtable(fs, path, mem, [], opts, vs.new_file_number):
                        edit.add_file(0, meta)
                    fs.fsync_dir(path)
                with self._mu:
                    vs.install(apply_edit(vs.current, edit))
                    vs.log_number = log_number
                    vs.write_new_manifest()
                    self._synced_seq = vs.last_sequence  # recovered writes are in tables now
                    self._install_sv_locked(SuperVersion(Memtable(log_number), (), vs.current))
                    self._delete_obsolete_locked()
                self._start_threads()
                forks.track(self)
        except BaseException:
            # A failed open leaves nothing running and is closed for good:
            # nothing of it may touch the directory later (e.g. from GC).
            self._closed = True
            self._stop = True
            if self._log is not None:
                try:
                    self._log.close()
                except DiskError:
                    pass
            self._versions.close()
            self._lock.release()
            raise
        self._recovery.seconds = time.monotonic() - t0

    def _start_threads(self) -> None:
        # The threads get a weak reference, not bound methods: a DB dropped
        # without close() stays collectable (see __del__, background_main).
        ref = weakref.ref(self)
        targets: list[tuple[str, Callable[..., None], tuple[object, ...]]] = [
            ("flush", background_main, (ref, "flush")), ("compact", background_main, (ref, "compact"))]
        if self._opts.sync_mode == "periodic":
            targets.append(("sync", syncer_main, (ref, self._syncer_stop, self._opts.sync_interval)))
        for name, target, args in targets:
            t = threading.Thread(target=target, args=args, name=f"lsm-{name}:{self._path}", daemon=True)
            self._threads.append(t)
            t.start()

    def __del__(self) -> None:
        """A DB dropped without close(): release what it holds and warn, as
        an unclosed file does. Nothing is synced or deleted (every
        acknowledged write is already in the OS; the next open recovers).

        Runs in whatever thread collected the DB, at any allocation, so it
        must not wait for a lock that thread may hold: the background
        threads hold ``_mu`` without a reference to the DB while they wait
        (background_main), so ``_mu`` is only tried, never waited for (they
        notice within a second that the DB is gone). Every other lock of
        the DB is only ever held by a thread that holds the DB itself, so it
        is free here."""
        if getattr(self, "_closed", True) or self._pid != os.getpid():
            return  # closed, a failed open, or a forked child's copy (lsm.forks)
        self._closed = True
        self._stop = True
        try:
            warnings.warn(f"unclosed database {self._path!r}", ResourceWarning, stacklevel=1, source=self)
        except Exception:  # noqa: BLE001 - e.g. a filter that turns warnings into errors
            pass
        try:
            self._syncer_stop.set()
            if self._mu.acquire(blocking=False):
                try:
                    self._bg_cv.notify_all()
                finally:
                    self._mu.release()
            steps = []
            for worker in (self._worker, self._flush_worker):
                if worker is not None:
                    steps += [worker.abort, worker.close]
            self._worker = self._flush_worker = None
            steps += [log.close for log in self._unsynced_logs + [self._log] if log is not None]
            steps += [self._versions.close, self._tables.close, self._lock.release]
        except Exception:  # noqa: BLE001 - interpreter teardown: nothing left to release
            return
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - best effort, nothing to report to
                pass

    def close(self) -> None:
        """Wait for in-flight writes and background work, sync the log, release
        the lock. Idempotent. Memtables waiting for flush are flushed first (for
        up to :data:`CLOSE_FLUSH_SECONDS`); the active memtable's data stays in
        the WAL and is replayed at the next open.

        Every step runs whatever an earlier one raised: once close() returns
        or raises, the threads are joined, the files closed and the LOCK
        released. A failure (e.g. of the final log fsync) is raised after
        that, the first one if several steps failed.

        In a child forked from the opening process it does nothing: the DB is
        the parent's (lsm.forks)."""
        if self._pid != os.getpid():
            return  # before any lock: a parent thread may have held one at fork()
        errors: list[BaseException] = []
        with self._mu:
            if self._closed:
                return
            self._closed = True
            self._fast = False
            # Let the flush thread write the switched memtables still waiting
            # (a flush takes a fraction of a second in the flush worker), so
            # the next open replays at most the active memtable's log instead
            # of 1 + max_immutable_memtables memtables of it: replay costs
            # ~7 us an entry in the opening thread, a few times the flush's.
            # Bounded: a flush that has not finished by then is abandoned below.
            deadline = time.monotonic() + CLOSE_FLUSH_SECONDS
            while (self._sv.imms and self._threads and self._bg_error is None
                   and time.monotonic() < deadline):  # read-only: no flush thread, nothing to wait for
                self._bg_cv.notify_all()
                self._bg_cv.wait(0.05)
            self._stop = True
            # Abandon a merge or flush in a worker rather than wait for it (it
            # may be long, or hung): LevelDB too stops compactions at shutdown.
            # Its outputs are orphans; the inputs (tables, or the memtable's
            # log, replayed at the next open) stay live. In-process jobs are
            # small (WORKER_MIN_BYTES) and run to the end.
            for w in (self._worker, self._flush_worker):
                if w is not None:
                    w.abort()
            self._syncer_stop.set()
            while not self._queue.idle_locked() or self._bg_active:
                self._bg_cv.notify_all()
                self._bg_cv.wait(0.05)
            self._bg_cv.notify_all()
            if not self._opts.read_only and self._bg_error is None:
                _attempt(errors, self._delete_obsolete_locked)
        with self._views_mu:
            scans = list(self._scans)
        for chunks in scans:  # an open scan or cursor raises ClosedError from its next use on
            _attempt(errors, lambda c=chunks: c._shut(self._closed_error()))
        for t in self._threads:
            t.join()
        workers = (self._worker, self._flush_worker)
        self._worker = self._flush_worker = None
        for w in workers:
            if w is not None:
                _attempt(errors, w.close)
        if self._log is not None:
            _attempt(errors, self._close_logs)
            if self._bg_error is None and not errors:
                # The clock, so that a reopen with the system clock set back
                # does not revive what expired in this session.
                _attempt(errors, self._record_clock)
        _attempt(errors, self._versions.close)
        _attempt(errors, self._tables.close)
        _attempt(errors, self._lock.release)  # last: nothing may touch the directory after it
        if errors:
            raise errors[0]

    def _record_clock(self) -> None:
        with self._mu:
            self._versions.log_and_apply(VersionEdit())

    def _close_logs(self) -> None:
        """close(): sync the logs (per sync_mode, unless a background error
        says not to trust them), then close every one whatever failed."""
        errors: list[BaseException] = []
        log = self._log
        assert log is not None  # close() calls this only when the DB has a log
        with self._log_sync_mu:
            if self._bg_error is None:
                # Older logs left unsynced by a switch (sync_mode="never")
                # first, oldest first, so that a power cut after close()
                # leaves a prefix of the writes.
                for old in self._unsynced_logs:
                    if not errors:
                        _attempt(errors, old.sync)
                if self._opts.sync_mode != "never" and not errors:
                    _attempt(errors, log.trim)
                    if not errors:
                        _attempt(errors, log.sync)
            for old in self._unsynced_logs + [log]:
                _attempt(errors, lambda lg=old: self._close_log(lg))
            self._unsynced_logs = []
        if errors:
            raise errors[0]

    def __enter__(self) -> DB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> ClosedError:
        return ClosedError(f"database {self._path} is closed{forks.fork_note(self._pid)}")

    def _forked(self) -> None:
        """In a forked child (lsm.forks): closed, without touching files or locks."""
        self._closed = True
        self._fast = False
        self._stop = True

    @property
    def path(self) -> str:
        return self._path

    @property
    def options(self) -> Options:
        return self._opts

    def _set_bg_error_locked(self, exc: BaseException, what: str) -> None:
        if self._bg_error is None:
            self._bg_error = BackgroundError(f"{what}: {exc}")
            self._bg_error.__cause__ = exc
        self._fast = False
        self._bg_cv.notify_all()

    def _install_sv_locked(self, sv: SuperVersion) -> None:
        """Make ``sv`` the super version reads start from, and recompute
        whether writes may take the fast path (no back-pressure due, no
        error, open). Requires: ``_mu`` held."""
        self._sv = sv
        opts = self._opts
        self._fast = (self._bg_error is None and not self._closed and not opts.read_only and (
            opts.disable_auto_compactions or len(sv.version.levels[0]) < opts.l0_slowdown_trigger))

    # -- mapping sugar -------------------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        delete_present(self, key)

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[call-overload]  # Mapping's key: object

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.scan(keys_only=True))

    def __len__(self) -> int:
        """Number of live keys. Complexity: a full scan."""
        return sum(1 for _ in self.scan(keys_only=True))

    def typed(self, key_serde: Serializer[K], value_serde: Serializer[V]) -> TypedView[K, V]:
        """A :class:`lsm.typed.TypedView` over this DB with the given serializers
        (lsm/typed.py)."""
        self._check_open()
        return TypedView(self, key_serde, value_serde)

    def prefixed(self, prefix: bytes) -> PrefixedDB:
        """A :class:`lsm.PrefixedDB`: the keys that start with ``prefix``, with
        the whole key/value API and keys relative to it (plyvel's
        ``prefixed_db``; lsm/prefixed.py).

        >>> import tempfile
        >>> with open(tempfile.mkdtemp()) as db:
        ...     _ = db.prefixed(b"users:").put(b"1", b"ada")
        ...     db.get(b"users:1")
        b'ada'
        """
        self._check_open()
        return PrefixedDB(self, prefix)

def _attempt(errors: list[BaseException], step) -> None:
    """Run ``step()``; keep what it raises in ``errors`` instead of raising,
    so that close() goes on releasing everything else."""
    try:
        step()
    except BaseException as e:  # noqa: BLE001 - re-raised by the caller once all steps ran
        errors.append(e)


def _sampled(fn, op: str, record):
    """Wrap bound method ``fn``: every :data:`_SAMPLE_EVERY`-th call is timed
    and recorded as that many calls of ``op`` (throughput exact to within one
    sample period, latency from one call in sixteen). ``get`` and ``put`` get
    wrappers with their exact signatures: ``*args`` forwarding costs more than
    a memtable hit."""
    tick = itertools.count(1).__next__
    clock = time.perf_counter
    mask = _SAMPLE_EVERY - 1

    def timed(*args, **kwargs):
        t = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            record(op, clock() - t, n=_SAMPLE_EVERY)

    def call_get(key, default=None):
        if tick() & mask:
            return fn(key, default)
        return timed(key, default)

    def call_put(key, value, *, ttl=None, sync=None):
        if tick() & mask:
            return fn(key, value, ttl=ttl, sync=sync)
        return timed(key, value, ttl=ttl, sync=sync)

    def call_any(*args, **kwargs):
        if tick() & mask:
            return fn(*args, **kwargs)
        return timed(*args, **kwargs)

    call = call_get if fn.__name__ == "get" else call_put if fn.__name__ == "put" else call_any
    return functools.update_wrapper(call, fn)


def open(path: str | os.PathLike, **options) -> DB:  # noqa: A001 - lsm.open shadows the builtin on purpose
    """Open (creating if needed) the database at ``path``: ``DB(path, Options(**options))``.

    >>> import tempfile
    >>> with open(tempfile.mkdtemp(), sync_mode="never") as db:
    ...     _ = db.put(b"hello", b"world")
    ...     db[b"hello"]
    b'world'
    """
    return DB(path, Options(**options))
