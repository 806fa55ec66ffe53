"""``DBState``: the state of a :class:`lsm.DB`, declared once.

``DB`` (lsm/db.py) is assembled from mixins, one per concern: ``Background``
(lsm/background.py), ``Reads``, ``Writes``, ``Sizes``, ``Checkpoints`` and
``Ingest``. Each reads and writes attributes that ``DB.__init__`` creates and
calls methods that another part defines. They all inherit this class, which
names every such attribute with its type, grouped by the lock that guards it
(doc/design.md#locking-rules), and the methods one part calls on another.
The annotations create nothing at run time; ``DB.__init__`` and ``DB._open``
assign the values.

It also lets a module below lsm.db ask "is this a DB" without importing it:
:class:`lsm.PrefixedDB` checks ``isinstance(db, DBState)``.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: these modules sit above or beside this one
    from .background import ManualCompaction, StopSignal
    from .commit import CommitQueue, Writer
    from .errors import ClosedError
    from .fs import FileLock, FileSystem
    from .invariants import DebugLock
    from .metrics import Metrics
    from .options import Options
    from .recovery import RecoveryStats
    from .snapshot import Entry, SuperVersion, View
    from .tablecache import BlockCache, TableCache
    from .version import VersionSet
    from .wal import WalWriter
    from .worker import CompactionWorker
    from .writes import GroupLog

__all__ = ["DBState"]


class DBState:
    """What every :class:`lsm.DB` is an instance of, and the attributes it has."""

    # Set once by __init__/_open, then only read (any thread).
    _path: str
    _opts: Options
    _fs: FileSystem
    _pid: int  # the process that opened it: a forked child finds the DB closed (lsm.forks)
    _lock: FileLock  # the directory's LOCK, held until close
    _versions: VersionSet  # its manifest writes and `current` are guarded by _mu
    _now: Callable[[], float]  # TTL's clock, which never goes back
    _block_cache: BlockCache | None
    _tables: TableCache  # thread-safe on its own
    _metrics: Metrics | None
    _recovery: RecoveryStats
    _sync_always: bool
    _memtable_bytes: int
    _threads: list[threading.Thread]
    _syncer_stop: StopSignal  # set by close(): the periodic syncer sleeps on it

    # The mutex, the condition the background threads and stalled writers
    # wait on (over _mu), and the commit queue (which runs under _mu).
    _mu: threading.Lock | DebugLock
    _bg_cv: threading.Condition
    _queue: CommitQueue[GroupLog]
    _waiting: deque[Writer]  # writers queued (the queue itself): the fast path waits its turn behind them

    # guarded by _mu (readers may also read them racily where noted in the code)
    _sv: SuperVersion  # replaced wholesale: a reader takes it without the lock
    _closed: bool
    _stop: bool
    _fast: bool  # the write fast path may run (see DB._install_sv_locked)
    _bg_error: BaseException | None
    _bg_active: int  # flush/compaction jobs running now
    _manual: list[ManualCompaction]
    _pending_outputs: set[int]  # file numbers obsolete-file deletion skips
    _checkpoint_pins: dict[int, int]  # log number -> checkpoints copying it
    _compacting: tuple[int, bytes, bytes] | None  # (output level, smallest, largest) of the running merge
    _obsolete_due: bool  # a view was released: files it pinned may be deletable
    _obsolete_note: str | None  # the last failure of an obsolete-file pass
    _counters: dict[str, int | float]
    # written under _mu (fast path) or by the commit leader
    _log: WalWriter | None
    _synced_seq: int  # the last sequence known durable
    _synced_pos: int  # the current log's size at its last fsync
    _unsynced_logs: list[WalWriter]  # older logs a switch left unsynced
    _wal_bytes_done: int  # log bytes of logs already switched away from

    # guarded by _log_sync_mu (serialises log sync/close with the periodic syncer)
    _log_sync_mu: threading.Lock
    _log_sync_error: BaseException | None  # a failed log fsync

    # guarded by _views_mu (never held across I/O)
    _views_mu: threading.Lock
    _views: weakref.WeakSet[View]  # open snapshots, scans and cursors: what they pin
    _scans: weakref.WeakSet[object]  # open scans and cursors, closed by close()

    # Statistics counted without a lock (a race may lose an increment).
    _writes: int
    _gets: int
    _user_bytes: int
    _bloom_checked: int
    _bloom_useful: int

    # Compaction workers (processes): each written only by the thread that uses it.
    _worker: CompactionWorker | None
    _flush_worker: CompactionWorker | None
    _worker_failures: int
    _flush_worker_failures: int
    _worker_note: str | None

    if TYPE_CHECKING:  # methods one part of the DB calls on another (defined in db, reads, writes)
        def _check_open(self) -> None: ...
        def _closed_error(self) -> ClosedError: ...
        def _set_bg_error_locked(self, exc: BaseException, what: str) -> None: ...
        def _install_sv_locked(self, sv: SuperVersion) -> None: ...
        def _get_entry(self, sv: SuperVersion, key: bytes, seq: int, count: int = 0,
                       now: float | None = None) -> Entry[bytes] | None: ...
        def _submit(self, w: Writer) -> Writer: ...
        def _check_writable_locked(self) -> None: ...
        def _make_room_locked(self, force: bool) -> None: ...
        def _close_log(self, log: WalWriter) -> None: ...
        def _sync_logs(self, log: WalWriter, older: list[WalWriter]) -> None: ...
        def _close_obsolete_logs_locked(self) -> None: ...
