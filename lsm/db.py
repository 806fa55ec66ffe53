"""The public database object (SPEC §2): ``DB``, ``Snapshot``, ``open()``.

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

import functools
import itertools
import os
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Iterator, MutableMapping

from . import forks
from .batch import WriteBatch, encode_batch, encode_ttl_value
from .cache import BlockCache, TableCache
from .commit import CommitQueue, Writer
from .background import Background, ManualCompaction, StopSignal, background_main, syncer_main
from .reads import Reads
from .compaction import drop_obsolete, write_tables
from .errors import BackgroundError, ClosedError, DiskError, Error, ReadOnlyError
from .filenames import make_log_name, make_table_name
from .fs import FileSystem, OsFileSystem, check_path
from .invariants import assert_held, make_lock
from .keys import DELETE, MAX_KEY_BYTES, MAX_SEQUENCE, MAX_VALUE_BYTES, PUT, PUT_TTL, check_key, check_value
from .manifest import VersionEdit
from .metrics import Metrics
from .memtable import Memtable
from .options import Options
from .recovery import RecoveryStats, lock_and_load, replay_logs
from .snapshot import Entry, Snapshot, SuperVersion, View
from .version import apply_edit
from .wal import WalWriter, encode_record
from .worker import CompactionWorker

if TYPE_CHECKING:  # annotations only: typed and serde sit above db
    from .serde import Serializer
    from .typed import TypedView

__all__ = ["DB", "Entry", "Snapshot", "open"]

_typed_view_class = None  # set by lsm.typed (see DB.typed)
_SAMPLE_EVERY = 16  # metrics: every 16th call of an operation is timed and counts for 16
_SLOWDOWN_SECONDS = 0.001  # one delay per write past l0_slowdown_trigger, as LevelDB
# With sync_mode="always" the log's length runs this far ahead of its records
# (lsm.fs preallocate), so the fdatasync after an append has no size change to
# make durable: on ext4 that is one metadata write (or journal commit) less per
# synced put. The log is trimmed back to its records when switched or closed.
WAL_PREALLOCATE_BYTES = 1 << 20
_MISSING = object()


def register_typed_view(cls) -> None:
    """Called once by ``lsm.typed`` at import (see :meth:`DB.typed`)."""
    global _typed_view_class
    _typed_view_class = cls


class _Clock:
    """Wall-clock for TTL that never goes backwards within the process, so an
    entry seen expired stays expired if the system clock steps back."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self) -> float:
        t = time.time()
        if t < self._last:
            return self._last
        self._last = t
        return t


class DB(Background, Reads, MutableMapping):
    """An open LSM-tree database. Obtain one with :func:`open`.

    Methods by role:

    * point reads: ``get``, ``get_entry``, ``key in db``, ``db[key]``
    * writes: ``put``, ``delete``, ``compare_and_swap``, ``write``/``write_batch``,
      ``db[key] = value``, ``del db[key]``
    * ranges and views: ``scan``, ``snapshot``
    * maintenance: ``flush``, ``compact_range``, ``wait_for_compactions``, ``stats``, ``close``

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
        self._queue = CommitQueue(self._mu)
        self._now = _Clock()
        self._block_cache = BlockCache(self._opts.block_cache_bytes) if self._opts.block_cache_bytes else None
        self._tables = TableCache(self._fs, lambda n: make_table_name(self._path, n),
                                  self._opts.max_open_files, self._block_cache, self._opts.paranoid_checks)
        self._views: weakref.WeakSet[View] = weakref.WeakSet()  # guarded by _views_mu
        self._views_mu = threading.Lock()  # never held across I/O: views never wait for the manifest
        self._pending_outputs: set[int] = set()  # guarded by _mu
        self._obsolete_due = False  # a view was released: files it pinned may be deletable
        self._bg_error: BaseException | None = None  # guarded by _mu
        self._bg_active = 0  # guarded by _mu: flush/compaction jobs running now
        self._manual: list[ManualCompaction] = []  # guarded by _mu
        self._log: WalWriter | None = None  # owned by the commit leader
        self._log_sync_mu = threading.Lock()  # serialises log sync/close with the periodic syncer
        self._unsynced = False
        self._log_sync_error: BaseException | None = None  # guarded by _log_sync_mu: a failed log fsync
        # Older logs still holding records that were never fsynced, oldest
        # first (sync_mode="never" only: the other modes fsync a log when it is
        # switched). Kept open so that a synced write can fsync them before
        # its own record (a power cut must not keep it and lose older
        # writes); closed once that happened, or once their memtable's flush
        # made them obsolete, or at close(). Guarded by _log_sync_mu.
        self._older_logs: list[WalWriter] = []
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._syncer_stop = StopSignal()  # set by close(): the periodic syncer sleeps on it
        self._recovery = RecoveryStats()
        self._counters = {
            "compactions": 0, "flushes": 0, "compaction_bytes_read": 0, "compaction_bytes_written": 0,
            "flush_bytes_written": 0, "wal_bytes_written": 0, "user_bytes_written": 0,
            "stall_seconds": 0.0, "slowdown_writes": 0, "bloom_checked": 0, "bloom_useful": 0,
            "trivial_moves": 0, "intra_l0_compactions": 0, "entries_dropped": 0, "compactions_in_worker": 0,
            "obsolete_file_errors": 0,
        }
        self._obsolete_note: str | None = None  # the last failure of an obsolete-file pass
        self._metrics = Metrics() if self._opts.metrics else None
        # The worker process reads and writes real files only: a custom
        # filesystem (fault injection in tests) keeps compaction in-process.
        use_worker = self._opts.compaction_process and type(self._fs) is OsFileSystem and not self._opts.read_only
        self._worker = CompactionWorker() if use_worker else None
        self._worker_failures = 0  # written only by the compaction thread (stats reads it racily)
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
        record = self._metrics.record
        for name, op in (("get", "get"), ("get_entry", "get"), ("put", "put"), ("delete", "delete"),
                         ("write", "write"), ("compare_and_swap", "cas"), ("scan", "scan")):
            setattr(self, name, _sampled(getattr(self, name), op, record))

    # -- opening and closing ---------------------------------------------

    def _open(self) -> None:
        fs, path, opts = self._fs, self._path, self._opts
        t0 = time.monotonic()
        self._lock, self._versions, is_new = lock_and_load(fs, path, opts)
        try:
            mem, old_logs = replay_logs(fs, path, self._versions, opts, self._recovery)
            vs = self._versions
            if opts.read_only:
                mem.immutable = True
                self._sv = SuperVersion(Memtable(0), (mem,) if len(mem) else (), vs.current)
            else:
                # Recovered writes go to an L0 table and a fresh log; the new
                # manifest snapshot records both, then old logs become obsolete.
                log_number = vs.new_file_number()
                self._log = self._new_log(log_number)
                fs.fsync_dir(path)
                edit = VersionEdit(log_number=log_number)
                if len(mem):
                    for meta in write_tables(fs, path, drop_obsolete(mem.iter_entries(), [], lambda k: False, 0.0),
                                             opts, vs.new_file_number):
                        edit.add_file(0, meta)
                    fs.fsync_dir(path)
                with self._mu:
                    vs.install(apply_edit(vs.current, edit))
                    vs.log_number = log_number
                    vs.write_new_manifest()
                    self._sv = SuperVersion(Memtable(log_number), (), vs.current)
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
        targets = [("flush", background_main, (ref, "flush")), ("compact", background_main, (ref, "compact"))]
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
            warnings.warn(f"unclosed database {self._path!r}", ResourceWarning, source=self)
        except Exception:  # noqa: BLE001 - e.g. a filter that turns warnings into errors
            pass
        try:
            self._syncer_stop.set()
            if self._mu.acquire(blocking=False):
                try:
                    self._bg_cv.notify_all()
                finally:
                    self._mu.release()
            worker, self._worker = self._worker, None
            steps = [worker.abort, worker.close] if worker is not None else []
            steps += [log.close for log in self._older_logs + [self._log] if log is not None]
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
        the lock. Idempotent. Unflushed memtable data stays in the WAL and is
        replayed at the next open.

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
            self._stop = True
            if self._worker is not None:
                # Abandon a merge in the worker rather than wait for it (it may
                # be long, or hung): LevelDB too stops compactions at shutdown.
                # Its outputs are orphans; the inputs stay live. In-process
                # merges are small (WORKER_MIN_BYTES) and run to the end.
                self._worker.abort()
            self._syncer_stop.set()
            while not self._queue.idle_locked() or self._bg_active:
                self._bg_cv.notify_all()
                self._bg_cv.wait(0.05)
            self._bg_cv.notify_all()
            if not self._opts.read_only and self._bg_error is None:
                _attempt(errors, self._delete_obsolete_locked)
        for t in self._threads:
            t.join()
        worker, self._worker = self._worker, None
        if worker is not None:
            _attempt(errors, worker.close)
        if self._log is not None:
            _attempt(errors, self._close_logs)
        _attempt(errors, self._versions.close)
        _attempt(errors, self._tables.close)
        _attempt(errors, self._lock.release)  # last: nothing may touch the directory after it
        if errors:
            raise errors[0]

    def _close_logs(self) -> None:
        """close(): sync the logs (per sync_mode, unless a background error
        says not to trust them), then close every one whatever failed."""
        errors: list[BaseException] = []
        with self._log_sync_mu:
            if self._bg_error is None:
                if self._older_logs:
                    # "never" mode: older logs first, so that a power cut
                    # after close() leaves a prefix of the writes
                    _attempt(errors, self._sync_older_logs)
                if self._opts.sync_mode != "never" and not errors:
                    _attempt(errors, self._log.trim)
                    if not errors:
                        _attempt(errors, self._log.sync)
            for log in self._older_logs + [self._log]:
                _attempt(errors, log.close)
            self._older_logs.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> "DB":
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
        self._stop = True

    @property
    def path(self) -> str:
        return self._path

    @property
    def options(self) -> Options:
        return self._opts

    # -- writes -------------------------------------------------------------

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None, sync: bool | None = None) -> int:
        """Set ``key`` to ``value``; return the write's sequence number (its version).

        :param ttl: seconds until the entry expires (stored as wall-clock time).
        :param sync: force (True) or skip (False) the fsync; None follows ``sync_mode``.
        Raises: TypeError/ValueError for bad arguments (nothing written),
        ReadOnlyError, BackgroundError, ClosedError, DiskError.
        """
        # fast path: plain bytes under the limits skip the validator's frame
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
            value = check_value(value)
        if ttl is None:
            op = (PUT, key, value)
        else:
            op = (PUT_TTL, key, encode_ttl_value(ttl, value))
        return self._submit(Writer([op], len(key) + len(value), self._want_sync(sync))).seq

    def delete(self, key: bytes, *, sync: bool | None = None) -> int:
        """Delete ``key`` (absent keys too); return the tombstone's sequence number."""
        if type(key) is not bytes:
            key = check_key(key)
        return self._submit(Writer([(DELETE, key, b"")], len(key), self._want_sync(sync))).seq

    def write(self, batch: WriteBatch, *, sync: bool | None = None) -> int:
        """Apply ``batch`` atomically; return the last sequence it used (0 if empty).

        Each operation gets its own consecutive sequence number.
        """
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        if not batch.ops:
            self._check_open()
            return 0
        return self._submit(Writer(list(batch.ops), batch.nbytes, self._want_sync(sync))).seq

    def write_batch(self, *, sync: bool | None = None) -> WriteBatch:
        """A batch applied when its ``with`` block exits cleanly (discarded if it raises).

        >>> import tempfile
        >>> db = open(tempfile.mkdtemp())
        >>> with db.write_batch() as b:
        ...     _ = b.put(b"a", b"1").put(b"b", b"2")
        >>> db.get(b"b")
        b'2'
        >>> db.close()
        """
        self._check_open()
        self._want_sync(sync)  # a bad sync raises here, not when the block ends
        b = WriteBatch()
        b._db = self
        b._sync = sync
        return b

    def compare_and_swap(self, key: bytes, expected_version: int, value: bytes | None, *,
                         ttl: float | None = None, sync: bool | None = None) -> int | None:
        """Write ``value`` (or delete, for None) only if ``key``'s version is
        ``expected_version`` (0: absent). Return the new version, or None on mismatch.

        The check and the write happen at one point in the commit order (the
        leader's turn), so no other write can come between them.
        """
        key = check_key(key)
        if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
            raise TypeError(f"expected_version must be a non-negative int, not {expected_version!r}")
        if value is None:
            if ttl is not None:
                raise ValueError("ttl cannot be given when value is None (a delete)")
            op = (DELETE, key, b"")
        else:
            value = check_value(value)
            op = (PUT, key, value) if ttl is None else (PUT_TTL, key, encode_ttl_value(ttl, value))
        w = Writer([op], len(key) + len(op[2]), self._want_sync(sync))
        w.cas = (key, expected_version)
        self._submit(w)
        return w.seq or None

    def _want_sync(self, sync: bool | None) -> bool:
        if sync is None:
            return self._opts.sync_mode == "always"
        if sync is True or sync is False:
            return sync
        # not truthiness: sync="no" must not mean an fsync, nor sync=0 a skipped one
        raise TypeError(f"sync must be True, False or None, not {type(sync).__name__}")

    def _submit(self, w: Writer) -> Writer:
        if self._closed:
            raise self._closed_error()
        if self._opts.read_only:
            raise ReadOnlyError(f"database {self._path} was opened read-only")
        return self._queue.submit(w, self._run_group_locked)

    def _run_group_locked(self, group: list[Writer]) -> None:
        """Leader: make room, assign sequences, log, insert, publish. Mutex held
        on entry and exit; released around the WAL I/O and memtable inserts."""
        assert_held(self._mu)
        lead = group[0]
        if self._bg_error is not None or (self._closed and not lead.force_switch):
            self._check_writable_locked()
        sv = self._sv
        if lead.force_switch or sv.mem.nbytes >= self._opts.memtable_bytes or (
                len(sv.version.levels[0]) >= self._opts.l0_slowdown_trigger
                and not self._opts.disable_auto_compactions):
            self._make_room_locked(force=lead.force_switch)
            if lead.force_switch:
                if self._sv.mem is not sv.mem:
                    lead.switched = sv.mem
                return
        vs = self._versions
        if lead.cas is not None:
            # The check may read tables: not under _mu (installs and every
            # writer's enqueue need it). Still atomic with the write below: the
            # leader is the only writer until it returns, so no write and no
            # memtable switch can come between; an install meanwhile only
            # replaces the super version, and the one read here stays valid.
            sv = self._sv
            self._mu.release()
            try:
                matches = self._cas_matches(sv, *lead.cas)
            finally:
                self._mu.acquire()
            if not matches:
                return  # lead.seq stays 0: mismatch
        first = vs.last_sequence + 1
        if len(group) == 1:
            ops = lead.ops
            last = lead.seq = first + len(ops) - 1
            records = encode_record(encode_batch(first, ops))
            sync = lead.sync
            nbytes = lead.nbytes
        else:
            parts = []
            seq = first
            sync = False
            nbytes = 0
            for w in group:
                parts.append(encode_record(encode_batch(seq, w.ops)))
                seq += len(w.ops)
                w.seq = seq - 1
                sync = sync or w.sync
                nbytes += w.nbytes
            last = seq - 1
            records = b"".join(parts)
        if last > MAX_SEQUENCE:
            raise Error("sequence numbers exhausted")
        mem = self._sv.mem
        log = self._log
        self._mu.release()
        try:
            try:
                log.file.write(records)
                if sync:
                    # Under _log_sync_mu: if the periodic syncer's fsync failed
                    # first, ours could return 0 with the data lost (the kernel
                    # reports a writeback error once): check its verdict too.
                    with self._log_sync_mu:
                        if self._older_logs:  # oldest first: what survives a cut stays a prefix
                            self._sync_older_logs()
                        log.sync()
                        if self._log_sync_error is not None:
                            raise self._log_sync_error
                        self._unsynced = False  # the leader is the only writer: nothing came after
                else:
                    self._unsynced = True
            except BaseException as e:
                # The log may now end in a torn record: no later write may go
                # after it, and a failed fsync is never retried as if it worked.
                with self._mu:
                    self._set_bg_error_locked(e, "write-ahead log append/fsync failed")
                raise
            add = mem.add
            s = first
            with mem.lock:
                for w in group:
                    for kind, key, value in w.ops:
                        add(s, kind, key, value)
                        s += 1
        finally:
            self._mu.acquire()
        vs.last_sequence = last
        c = self._counters
        c["user_bytes_written"] += nbytes
        c["wal_bytes_written"] += len(records)

    def _check_writable_locked(self) -> None:
        if self._closed:
            raise ClosedError(f"database {self._path} is closed")
        if self._bg_error is not None:
            raise BackgroundError(f"database {self._path} refuses writes after a background error: "
                                  f"{self._bg_error}") from self._bg_error

    def _cas_matches(self, sv: SuperVersion, key: bytes, expected: int) -> bool:
        """Requires: called by the leader (mutex held or not), with ``sv`` the
        super version as of its turn: every earlier write is in it and no
        later one can start until the leader is done."""
        e = self._get_entry(sv, key, MAX_SEQUENCE)
        return (e.version if e is not None else 0) == expected

    def _make_room_locked(self, force: bool) -> None:
        """Switch the memtable when full (or ``force``d), stalling while too
        many memtables or L0 files wait. Requires: mutex held, caller is leader."""
        assert_held(self._mu)
        opts = self._opts
        slowed = False
        while True:
            if self._bg_error is not None:
                raise BackgroundError(f"database {self._path} refuses writes after a background error: "
                                      f"{self._bg_error}") from self._bg_error
            sv = self._sv
            # With auto compactions off nothing would ever shrink L0: its
            # triggers do not apply (bulk loads; the user compacts by hand).
            l0 = 0 if opts.disable_auto_compactions else len(sv.version.levels[0])
            if not slowed and not force and l0 >= opts.l0_slowdown_trigger:
                # let compaction catch up: one short delay per write
                slowed = True
                t = time.monotonic()
                self._mu.release()
                try:
                    time.sleep(_SLOWDOWN_SECONDS)
                finally:
                    self._mu.acquire()
                self._counters["stall_seconds"] += time.monotonic() - t
                self._counters["slowdown_writes"] += 1
                continue
            if not force and sv.mem.nbytes < opts.memtable_bytes:
                return
            if force and not len(sv.mem):
                return
            if len(sv.imms) >= opts.max_immutable_memtables or l0 >= opts.l0_stop_trigger:
                if self._closed:
                    return
                t = time.monotonic()
                self._bg_cv.notify_all()
                self._bg_cv.wait(1.0)
                self._counters["stall_seconds"] += time.monotonic() - t
                continue
            self._switch_memtable_locked()
            return

    def _switch_memtable_locked(self) -> None:
        """Start a new log and memtable; queue the old memtable for flush.

        Crash points: after creating the new log (an empty log replays to
        nothing); the old log stays until its table is in the manifest.
        """
        fs, path = self._fs, self._path
        old = self._log
        # Old log first: once a newer log exists, damage at this one's end is
        # no longer a torn tail for recovery. (In "never" mode it stays
        # unsynced; recovery accepts a damaged end when no later log holds a
        # record, which is all a power cut can leave here.)
        # A preallocated log is cut back to its records first, durably: zeros
        # are accepted only at the end of the newest log that holds a record.
        if self._opts.sync_mode != "never":
            with self._log_sync_mu:
                try:
                    if old.trim() or self._unsynced:
                        old.sync()
                except BaseException as e:
                    self._set_bg_error_locked(e, "fsync of the write-ahead log failed")
                    raise
                self._unsynced = False
        number = self._versions.new_file_number()
        new_log = self._new_log(number)
        try:
            # The new log's name must be durable before any manifest edit can
            # name it as log_number (recovery treats a missing one as damage).
            # Once per memtable, so every sync mode pays it. A failure is a
            # background error: a retried directory fsync may report success
            # for entries the failed one lost.
            fs.fsync_dir(path)
        except BaseException as e:
            new_log.close()
            self._set_bg_error_locked(e, "fsync of the database directory failed")
            raise
        with self._log_sync_mu:
            try:
                if self._unsynced:
                    # Only in "never" mode (the others synced it above): not
                    # fsynced now, so that a switch stays cheap; the next
                    # synced write fsyncs it first (see _older_logs).
                    self._older_logs.append(old)
                else:
                    old.close()
            except BaseException as e:
                self._set_bg_error_locked(e, "closing the write-ahead log failed")
                new_log.close()
                raise
            self._log = new_log
            self._unsynced = False
        sv = self._sv
        sv.mem.immutable = True
        self._sv = SuperVersion(Memtable(number), (sv.mem,) + sv.imms, sv.version)
        self._bg_cv.notify_all()

    def _sync_older_logs(self) -> None:
        """Fsync and close every log in ``_older_logs``, oldest first.
        Requires: ``_log_sync_mu`` held. A failure propagates (the caller
        records it as a background error: a failed fsync is never retried
        as if it had worked); the failed log stays listed, closed at close()."""
        while self._older_logs:
            log = self._older_logs[0]
            log.sync()
            del self._older_logs[0]
            log.close()

    def _close_flushed_logs_locked(self, log_number: int) -> None:
        """Close the older logs numbered below ``log_number``, unsynced: their
        memtables are in tables that the manifest lists, so recovery never
        reads them again. Requires: ``_mu`` held (then ``_log_sync_mu`` is taken)."""
        assert_held(self._mu)
        with self._log_sync_mu:
            while self._older_logs and self._older_logs[0].number < log_number:
                log = self._older_logs.pop(0)
                try:
                    log.close()
                except OSError:
                    pass  # nothing of it is needed any more

    def _new_log(self, number: int) -> WalWriter:
        """Create log ``number``; preallocated when every write is fsynced
        (``periodic`` fsyncs too seldom for the saving to matter)."""
        prealloc = WAL_PREALLOCATE_BYTES if self._opts.sync_mode == "always" else 0
        return WalWriter(self._fs.open_writable(make_log_name(self._path, number), preallocate=prealloc), number)

    def _set_bg_error_locked(self, exc: BaseException, what: str) -> None:
        if self._bg_error is None:
            self._bg_error = BackgroundError(f"{what}: {exc}")
            self._bg_error.__cause__ = exc
        self._bg_cv.notify_all()

    # -- mapping sugar -------------------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v  # type: ignore[return-value]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        if self.get(key, _MISSING) is _MISSING:
            raise KeyError(key)
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.scan(keys_only=True))

    def __len__(self) -> int:
        """Number of live keys. Complexity: a full scan."""
        return sum(1 for _ in self.scan(keys_only=True))

    def typed(self, key_serde: "Serializer", value_serde: "Serializer") -> "TypedView":
        """A :class:`lsm.typed.TypedView` over this DB with the given serializers (SPEC §5).

        ``lsm.typed`` sits above ``db`` in the layering, so it registers its
        class here on import (``lsm/__init__`` imports it) instead of ``db``
        importing upwards.
        """
        self._check_open()
        if _typed_view_class is None:
            raise Error("lsm.typed is not imported")
        return _typed_view_class(self, key_serde, value_serde)


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

    if fn.__name__ == "get":
        def call(key, default=None):
            if tick() & mask:
                return fn(key, default)
            return timed(key, default)
    elif fn.__name__ == "put":
        def call(key, value, *, ttl=None, sync=None):
            if tick() & mask:
                return fn(key, value, ttl=ttl, sync=sync)
            return timed(key, value, ttl=ttl, sync=sync)
    else:
        def call(*args, **kwargs):
            if tick() & mask:
                return fn(*args, **kwargs)
            return timed(*args, **kwargs)
    return functools.update_wrapper(call, fn)


def open(path: str | os.PathLike, **options) -> DB:  # noqa: A001 - the public name (SPEC §2)
    """Open (creating if needed) the database at ``path``: ``DB(path, Options(**options))``.

    >>> import tempfile
    >>> with open(tempfile.mkdtemp(), sync_mode="never") as db:
    ...     _ = db.put(b"hello", b"world")
    ...     db[b"hello"]
    b'world'
    """
    return DB(path, Options(**options))
