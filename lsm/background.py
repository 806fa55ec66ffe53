"""The DB's background half: the flush/compaction thread, the periodic WAL
syncer, obsolete-file deletion, the maintenance calls that wait on them
(``flush``, ``compact_range``, ``wait_for_compactions``) and ``stats()``.

``Background`` is a mixin of :class:`lsm.db.DB`: it shares the DB's state and
its locking rules (doc/design.md#locking-rules). Every ``*_locked`` method
runs with ``_mu`` held and documents where it drops it.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref

from .builder import FlushJob, build_memtable
from .commit import Writer
from .compaction import (
    Compaction,
    JobSpec,
    level_scores,
    max_bytes_for_level,
    output_reservation,
    pick_cleanup,
    pick_compaction,
    run_job,
    seek_level,
    setup_compaction,
)
from .dbstate import DBState
from .errors import BackgroundError, DiskError
from .invariants import assert_held
from .keys import check_key
from .manifest import VersionEdit
from .recovery import obsolete_files
from .snapshot import SuperVersion
from .version import NUM_LEVELS
from .worker import WorkerAborted, WorkerUnavailable

__all__ = ["Background", "ManualCompaction", "StopSignal", "WORKER_MIN_BYTES", "background_main", "syncer_main"]

WORKER_MIN_BYTES = 1 << 20  # smaller merges run in-process: a round trip to the worker costs more
# A worker job gets WORKER_TIMEOUT_FLOOR seconds plus one per WORKER_TIMEOUT_RATE
# bytes of input before it counts as hung (killed, rerun in-process). Merges
# run at 5-20 MiB/s here: the bound is tens of times slack, for loaded machines.
WORKER_TIMEOUT_FLOOR = 120.0
WORKER_TIMEOUT_RATE = 256 << 10
_FLUSH_RESERVE = 4  # file numbers reserved for a flush in the worker (it writes one table)


class StopSignal:
    """A one-shot signal for a thread that sleeps between rounds of work.

    A raw lock, held until :meth:`set`: setting only releases it, so it
    never blocks and takes no other lock (unlike ``threading.Event.set``),
    which keeps it safe to call from anywhere, a finalizer included.
    One waiter; once :meth:`wait` returns True the waiter must stop.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if the signal was set."""
        return self._lock.acquire(timeout=timeout)


# -- thread bodies ------------------------------------------------------------------
#
# The DB's threads reach it only through a weak reference, taken for one
# round of work at a time and never held while they wait: a DB dropped
# without close() can then be collected, and its finalizer (DB.__del__) stops
# them (each exits once the reference is dead). A bound method as the target
# would keep the DB, its LOCK and its files alive as long as the process.


def background_main(ref: weakref.ref, role: str) -> None:
    """The flush (``role="flush"``) or compaction (``"compact"``) thread of
    the DB ``ref`` refers to. Runs rounds (``DB._bg_round_locked``) with the
    DB mutex held, which ``_bg_cv.wait`` releases between them."""
    db = ref()
    if db is None:
        return
    cv = db._bg_cv  # its lock is the DB's _mu
    del db
    with cv:
        while True:
            db = ref()
            if db is None or db._stop:
                return
            busy = db._bg_round_locked(role)
            del db  # not held while waiting
            if not busy:
                cv.wait(1.0)  # notified when work comes; the timeout bounds a finalizer's wait


def syncer_main(ref: weakref.ref, stop: StopSignal, interval: float) -> None:
    """``sync_mode="periodic"``: every ``interval`` seconds, one round of
    ``DB._periodic_sync`` of the DB ``ref`` refers to, until ``stop`` is set
    (by close() or the finalizer) or an fsync fails."""
    while not stop.wait(interval):
        db = ref()
        if db is None or db._stop:
            return
        ok = db._periodic_sync()
        del db  # not held while waiting
        if not ok:
            return


class ManualCompaction:
    """A ``compact_range`` request, queued in ``DB._manual`` (guarded by
    ``_mu``). ``done`` is set once its last compaction is installed: a
    request can also leave the queue unfinished (a failed job, or one
    abandoned when close() killed the worker)."""

    __slots__ = ("start", "stop", "done")

    def __init__(self, start: bytes | None, stop: bytes | None) -> None:
        self.start = start
        self.stop = stop
        self.done = False


class Background(DBState):
    """Mixin of :class:`lsm.db.DB` holding everything the background thread does."""

    def flush(self) -> None:
        """Write the memtable to an L0 table; return once it is durable on disk.

        Waits for the memtable this call switched and every older one (flushes
        go oldest first), not for memtables that later writes fill, so it
        returns under a continuous write load too.
        """
        w = Writer([], [], 0, False)
        w.force_switch = True
        self._submit(w)
        with self._mu:
            # newest memtable holding writes made before this call: the one we
            # switched, or, if the memtable was empty, the newest pending one
            target = w.switched if w.switched is not None else (self._sv.imms[0] if self._sv.imms else None)
            while target is not None and any(m is target for m in self._sv.imms) \
                    and self._bg_error is None and not self._stop:
                self._bg_cv.notify_all()
                self._bg_cv.wait(0.1)
            self._raise_bg_error_locked()
            if target is not None and any(m is target for m in self._sv.imms):
                raise self._closed_error()  # close() stopped the flush thread first

    def _raise_bg_error_locked(self) -> None:
        if self._bg_error is not None:
            raise BackgroundError(str(self._bg_error)) from self._bg_error

    def compact_range(self, start: bytes | None = None, stop: bytes | None = None) -> None:
        """Compact every key in [start, stop] (None: unbounded) down to the
        deepest level in use; return when done."""
        if start is not None:
            start = check_key(start, "start")
        if stop is not None:
            stop = check_key(stop, "stop")
        self.flush()
        request = ManualCompaction(start, stop)
        with self._mu:
            self._manual.append(request)
            self._bg_cv.notify_all()
            # by identity: an equal request from another thread is not ours
            while any(r is request for r in self._manual) and self._bg_error is None and not self._stop:
                self._bg_cv.wait(0.1)
            self._raise_bg_error_locked()
            if not request.done:  # still queued, or abandoned by close() (a killed worker)
                raise self._closed_error()

    def wait_for_compactions(self) -> None:
        """Return once no flush or compaction is due or running (at once on a
        read-only DB, where none ever runs: its recovered writes stay in memory)."""
        self._check_open()
        if self._opts.read_only:
            return
        with self._mu:
            while self._bg_error is None and not self._stop and self._work_due_locked():
                self._bg_cv.notify_all()
                self._bg_cv.wait(0.1)
            self._raise_bg_error_locked()
            if self._stop and self._work_due_locked():
                raise self._closed_error()  # close() stopped the background threads first

    def _work_due_locked(self) -> bool:
        return bool(self._bg_active or self._sv.imms or self._manual or self._compaction_due_locked())

    def _compaction_due_locked(self) -> bool:
        if self._opts.disable_auto_compactions:
            return False
        v = self._sv.version
        if level_scores(v, self._opts)[0][0] >= 1:
            return True
        if v.seek_file is not None and seek_level(v) is not None:
            return True
        return bool(v.rd_files) and pick_cleanup(v, self._oldest_snapshot_locked()) is not None

    def _oldest_snapshot_locked(self) -> int | None:
        snaps = self._snapshot_seqs_locked()
        return snaps[0] if snaps else None

    def _pick_flush_locked(self):
        """Flush thread: writes immutable memtables to L0, oldest first. Kept
        apart from compaction so that a long merge never holds up a flush
        (writers stall on full memtables, not on compactions)."""
        return self._flush_job_locked if self._sv.imms else None

    def _pick_compaction_locked(self):
        """Compaction thread: manual requests first, then the level with the
        highest score >= 1. One compaction at a time."""
        if self._manual:
            return self._manual_job_locked
        if self._compaction_due_locked():
            return self._auto_job_locked
        return None

    def _bg_round_locked(self, role: str) -> bool:
        """One round of the flush (``role="flush"``) or compaction thread
        (:func:`background_main`): run the job that is due, else the
        obsolete-file pass if one is due. Returns True if a job ran (the
        thread then looks for the next at once), False to wait."""
        job = None
        if self._bg_error is None:
            job = self._pick_flush_locked() if role == "flush" else self._pick_compaction_locked()
        if job is None:
            if self._obsolete_due and self._bg_error is None:
                try:
                    self._delete_obsolete_locked()  # never raises OSError (best-effort)
                except BaseException as e:  # noqa: BLE001 - a bug: recorded, not a thread ended unseen
                    self._set_bg_error_locked(e, "obsolete-file pass failed")
            return False
        self._bg_active += 1
        try:
            job()
            del job  # drop the job's references before looking for obsolete files
            self._delete_obsolete_locked()
        except WorkerAborted:
            # close() killed the worker: the job is abandoned, not failed
            # (inputs intact, outputs orphans removed by close or the next open)
            assert self._stop
        except BaseException as e:  # noqa: BLE001 - recorded, surfaces on writes
            self._set_bg_error_locked(e, "background flush/compaction failed")
        finally:
            self._bg_active -= 1
            self._bg_cv.notify_all()
        return True

    def _periodic_sync(self) -> bool:
        """One round of the periodic syncer (:func:`syncer_main`): fsync the log
        if something was written since the last fsync. False once an fsync
        failed (recorded as the background error; the syncer then stops)."""
        log = self._log
        if log is None or log.size == self._synced_pos:
            return True
        # The published sequence first, then the log's size: every write at
        # or below that sequence was appended before it was published, so
        # the fsync below covers it.
        seq = self._versions.last_sequence
        failed = None
        with self._log_sync_mu:
            if self._log is not log:
                return True  # switched meanwhile: the switch synced it
            pos = log.size
            try:
                log.sync()
            except BaseException as e:  # noqa: BLE001
                failed = self._log_sync_error = e
        # _mu only after _log_sync_mu is released: the documented order
        # is _mu -> _log_sync_mu (a memtable switch takes both).
        with self._mu:
            if failed is not None:
                self._set_bg_error_locked(failed, "periodic WAL fsync failed")
                return False
            if self._log is log:
                self._synced_pos = max(self._synced_pos, pos)
                self._synced_seq = max(self._synced_seq, seq)
        return True

    def _snapshot_seqs_locked(self) -> list[int]:
        with self._views_mu:
            return sorted({v.seq for v in list(self._views)})

    def _flush_job_locked(self) -> None:
        """Write the oldest immutable memtable to L0, record it, drop its log.

        Crash points: during the table write (orphan table, removed at open;
        the log still holds the data); after the manifest append (the log is
        obsolete and removed at open if not yet deleted).
        """
        sv = self._sv
        imm = sv.imms[-1]
        next_log = sv.imms[-2].log_number if len(sv.imms) > 1 else sv.mem.log_number
        snaps = self._snapshot_seqs_locked()
        vs = self._versions
        numbers: set[int] = set()

        def new_number() -> int:
            with self._mu:
                n = vs.new_file_number()
                self._pending_outputs.add(n)
                numbers.add(n)
                return n

        worker = self._flush_worker
        in_worker = False
        if worker is not None and imm.nbytes >= WORKER_MIN_BYTES:
            # Reserve the output numbers now (one table; a few spare), as a
            # compaction does: the worker cannot ask for them.
            first = vs.next_file
            vs.next_file += _FLUSH_RESERVE
            numbers.update(range(first, first + _FLUSH_RESERVE))
            self._pending_outputs |= numbers
        try:
            self._mu.release()
            try:
                metas = None
                if worker is not None and numbers:
                    # The memtable crosses as one marshal'd bytes object (a
                    # fraction of the GIL time building the table would take
                    # here). Any failure of the worker leaves the flush to
                    # this thread: the memtable is authoritative and intact.
                    try:
                        job = FlushJob(self._path, self._opts, imm.export(), snaps, first, _FLUSH_RESERVE)
                        metas = worker.run(job, WORKER_TIMEOUT_FLOOR + imm.nbytes / WORKER_TIMEOUT_RATE)[0]
                        in_worker = True
                    except WorkerAborted:
                        raise
                    except Exception as e:  # noqa: BLE001 - retried in-process, recorded in stats
                        self._flush_worker_failures += 1
                        self._worker_note = f"flush: {e}"
                        if self._flush_worker_failures >= 3:
                            self._flush_worker = None
                if metas is None:
                    metas = build_memtable(self._fs, self._path, imm, snaps, self._opts, new_number)
                    if metas:
                        self._fs.fsync_dir(self._path)
            finally:
                self._mu.acquire()
            edit = VersionEdit(log_number=next_log)
            for m in metas:
                edit.add_file(0, m)
            vs.log_and_apply(edit)
        finally:
            self._pending_outputs.difference_update(numbers)  # on failure too
        cur = self._sv
        self._install_sv_locked(SuperVersion(cur.mem, tuple(m for m in cur.imms if m is not imm), vs.current))
        self._close_obsolete_logs_locked()
        c = self._counters
        c["flushes"] += 1
        c["flushes_in_worker"] += in_worker
        c["flush_bytes_written"] += sum(m.size for m in metas)

    def _manual_job_locked(self) -> None:
        request = self._manual[0]
        start, stop = request.start, request.stop
        try:
            # Push the range down level by level until it sits in the deepest one in use.
            deepest = max((lv for lv in range(NUM_LEVELS) if self._sv.version.levels[lv]), default=0)
            for level in range(0, max(deepest, 1)):
                v = self._sv.version
                files = v.overlapping(level, start, stop)
                if not files:
                    continue
                c = setup_compaction(v, self._opts, level, files, "manual", manual=True)
                self._run_compaction_locked(c)
            request.done = True
        finally:
            self._manual.pop(0)

    def _auto_job_locked(self) -> None:
        c = pick_compaction(self._sv.version, self._opts, self._versions.compact_pointers,
                            self._oldest_snapshot_locked())
        if c is not None:
            self._run_compaction_locked(c)

    def _run_compaction_locked(self, c: Compaction) -> None:
        """Merge ``c``'s inputs into its output level and install the result.

        Crash points: while writing outputs (orphans, removed at open; inputs
        intact); after the manifest append (inputs obsolete, removed at open or
        once no reader holds them).
        """
        vs = self._versions
        edit = VersionEdit()
        if c.level > 0:
            edit.compact_pointers.append((c.level, max(f.largest for f in c.inputs[0])))
        if c.is_trivial_move():
            f = c.inputs[0][0]
            edit.delete_file(c.level, f.number)
            edit.add_file(c.output_level, f)
            vs.log_and_apply(edit)
            self._install_sv_locked(SuperVersion(self._sv.mem, self._sv.imms, vs.current))
            self._counters["trivial_moves"] += 1
            return
        snaps = self._snapshot_seqs_locked()
        version = vs.current
        inputs = c.all_inputs()
        deeper = [(f.smallest, f.largest) for lv in range(c.output_level + 1, NUM_LEVELS)
                  for f in version.levels[lv]]
        if c.is_intra_l0():
            # L0 tables left out are newer and share no key with the inputs
            # (see intra_l0_instead); listed anyway, so that a tombstone is
            # never dropped over a table that might hold its key
            taken = {f.number for _, f in inputs}
            deeper += [(f.smallest, f.largest) for f in version.levels[0] if f.number not in taken]
        input_bytes = c.input_bytes()
        reserved = output_reservation(input_bytes, c.grandparents, self._opts)
        first = vs.next_file
        vs.next_file += reserved  # recorded by the edit below (or the next one)
        numbers = set(range(first, first + reserved))
        self._pending_outputs |= numbers
        # The level this merge writes and the key range its outputs may span:
        # an ingest must not place a table there meanwhile (lsm.ingest).
        self._compacting = (c.output_level, min(f.smallest for _, f in inputs), max(f.largest for _, f in inputs))
        # Runs of key-disjoint inputs, newest first: each L0 table alone (in the
        # version's order, newest first), then a level's files in key order.
        first_runs = ([[f.number] for f in sorted(c.inputs[0], key=lambda f: (f.max_seq, f.number), reverse=True)]
                      if c.level == 0 else [[f.number for f in c.inputs[0]]])
        runs = first_runs + ([[f.number for f in c.inputs[1]]] if c.inputs[1] else [])
        spec = JobSpec(self._path, self._opts, runs, snaps, deeper,
                       self._now(), c.grandparents, first, reserved, split=not c.is_intra_l0())
        spec.global_seqs = {f.number: f.global_seq for _, f in inputs if f.global_seq}
        worker = self._worker if input_bytes >= WORKER_MIN_BYTES else None
        use_worker = worker is not None
        self._mu.release()
        try:
            try:
                metas, dropped = (worker.run(spec, WORKER_TIMEOUT_FLOOR + input_bytes / WORKER_TIMEOUT_RATE)
                                  if worker is not None else run_job(self._fs, spec))
            except WorkerUnavailable as e:
                # The merge itself is fine in-process (only slower): rerun it
                # here, into the same reserved numbers (outputs a dead worker
                # left are overwritten or, past the last used, removed as
                # orphans once the reservation ends). After three failures stop
                # trying the worker for this DB.
                self._worker_failures += 1
                self._worker_note = str(e)
                if self._worker_failures >= 3:
                    self._worker = None
                use_worker = False
                metas, dropped = run_job(self._fs, spec)
        except BaseException:
            with self._mu:
                self._pending_outputs -= numbers
                self._compacting = None
            raise
        finally:
            self._mu.acquire()
        try:
            for level, f in inputs:
                edit.delete_file(level, f.number)
            for m in metas:
                edit.add_file(c.output_level, m)
            vs.log_and_apply(edit)
        finally:
            self._pending_outputs -= numbers
            self._compacting = None
        self._install_sv_locked(SuperVersion(self._sv.mem, self._sv.imms, vs.current))
        k = self._counters
        k["compactions"] += 1
        k["compactions_in_worker"] += 1 if use_worker else 0
        k["intra_l0_compactions"] += 1 if c.is_intra_l0() else 0
        k["seek_compactions"] += 1 if c.reason.endswith(" seeks") else 0
        k["compaction_bytes_read"] += input_bytes
        k["compaction_bytes_written"] += sum(m.size for m in metas)
        k["entries_dropped"] += dropped

    def _delete_obsolete_locked(self) -> None:
        """Remove files no live version, reader or recovery needs.

        Best-effort, wherever it runs (a background thread's idle branch,
        after a flush or compaction, at open and at close): a failure to list
        the directory (EMFILE, ENOMEM, EIO) or to remove a file is counted in
        ``stats()["compaction"]["obsolete_file_errors"]`` and otherwise
        ignored, never raised. A leftover file is removed at a later pass or
        at open, while a raise here would end a background thread (writers
        would then wait forever for flushes) or fail a job that succeeded.

        Requires _mu; releases it while removing and re-takes it (an unlink
        can take milliseconds, and every writer needs _mu to enqueue; LevelDB
        unlocks here too). That is safe because the list is final once made
        under _mu: file numbers are never reused, outputs being written are in
        _pending_outputs, and no reader can start to use a table that no live
        Version lists (readers only ever take the current super version).
        """
        assert_held(self._mu)
        if self._bg_error is not None:
            # A failed manifest write may have left its edit in the file:
            # outputs that edit names look unreferenced here but would be
            # live after a reopen. What is obsolete is known again only then.
            return
        self._obsolete_due = False
        vs = self._versions
        live = vs.live_files()
        try:
            doomed = list(obsolete_files(self._fs, self._path, vs, live, self._pending_outputs,
                                         self._log.number if self._log else -1))
        except OSError as e:  # DiskError, or a raw OSError from a custom filesystem
            self._obsolete_failed_locked(e)
            return
        if not doomed:
            return
        self._mu.release()
        try:
            for path in doomed:
                try:
                    self._fs.remove(path)
                except OSError as e:
                    if e.errno != errno.ENOENT:  # ENOENT: a concurrent pass removed it first
                        with self._mu:
                            self._obsolete_failed_locked(e)
                    continue
                if path.endswith(".sst"):
                    self._tables.evict(int(os.path.basename(path)[:-4]))
        finally:
            self._mu.acquire()

    def _obsolete_failed_locked(self, exc: OSError) -> None:
        self._counters["obsolete_file_errors"] += 1
        self._obsolete_note = str(exc)

    # -- stats -----------------------------------------------------------------

    def stats(self) -> dict:
        """Counters grouped by subsystem. JSON-serialisable."""
        self._check_open()
        sv = self._sv
        v = sv.version
        c = dict(self._counters)
        levels = []
        for level, files in enumerate(v.levels):
            levels.append({
                "level": level, "files": [{"number": f.number, "bytes": f.size, "entries": f.entries,
                                           "smallest": f.smallest.hex(), "largest": f.largest.hex()}
                                          for f in files],
                "bytes": sum(f.size for f in files), "entries": sum(f.entries for f in files),
                "target_bytes": None if level == 0 else max_bytes_for_level(self._opts, level),
            })
        live_bytes = sum(f.size for _, f in v.files())
        total = 0
        try:
            for name in self._fs.listdir(self._path):
                try:
                    total += self._fs.file_size(os.path.join(self._path, name))
                except DiskError:
                    pass
        except DiskError:
            pass
        user = self._user_bytes
        wal_bytes = self._wal_bytes_done + (self._log.size if self._log else 0)
        written = c["flush_bytes_written"] + c["compaction_bytes_written"] + wal_bytes
        bottom = max((lv for lv in range(NUM_LEVELS) if v.levels[lv]), default=0)
        bottom_bytes = v.level_bytes(bottom) if bottom else 0
        return {
            "levels": levels,
            "memtable": {"bytes": sv.mem.nbytes, "entries": sv.mem.entries,
                         "immutable": len(sv.imms), "immutable_bytes": sum(m.nbytes for m in sv.imms)},
            "wal": {"bytes": self._log.size if self._log else 0,
                    "number": self._log.number if self._log else None,
                    "bytes_written": wal_bytes},
            "recovery": self._recovery.as_dict(),
            "compaction": {"count": c["compactions"], "in_worker": c["compactions_in_worker"],
                           "worker_failures": self._worker_failures, "worker_note": self._worker_note,
                           "flushes": c["flushes"], "flushes_in_worker": c["flushes_in_worker"],
                           "flush_worker_failures": self._flush_worker_failures,
                           "obsolete_file_errors": c["obsolete_file_errors"],
                           "obsolete_file_note": self._obsolete_note,
                           "trivial_moves": c["trivial_moves"],
                           "intra_l0": c["intra_l0_compactions"],
                           "seek": c["seek_compactions"],
                           "bytes_read": c["compaction_bytes_read"],
                           "bytes_written": c["compaction_bytes_written"],
                           "flush_bytes_written": c["flush_bytes_written"],
                           "entries_dropped": c["entries_dropped"],
                           "write_amplification": (written / user) if user else 0.0,
                           "stall_seconds": c["stall_seconds"], "slowdown_writes": c["slowdown_writes"],
                           "pending": self._compaction_due_locked() if not self._opts.read_only else False},
            "bloom": {"checked": self._bloom_checked, "useful": self._bloom_useful},
            "block_cache": self._block_cache.stats() if self._block_cache else
            {"hits": 0, "misses": 0, "bytes": 0, "capacity": 0, "blocks": 0},  # the same keys as BlockCache.stats()
            "disk": {"live_bytes": live_bytes, "total_bytes": total,
                     "space_amplification": (live_bytes / bottom_bytes) if bottom_bytes else 1.0},
            "memory": self._memory_stats(sv),
            **(self._metrics.snapshot() if self._metrics is not None else {"qps": {}, "latency": {}}),
            "sequence": self._versions.last_sequence,
            "snapshots": self._views_stats_locked(sv),
            # DB.ingest (lsm.ingest): files and bytes ingested, bytes copied (0 for hard links)
            "ingest": {"files": c.get("ingested_files", 0), "bytes": c.get("ingested_bytes", 0),
                       "bytes_copied": c.get("ingest_bytes_copied", 0)},
            "background_error": str(self._bg_error) if self._bg_error else None,
        }

    def _views_stats_locked(self, sv: SuperVersion) -> dict:
        """``stats()["snapshots"]``: open snapshots and iterators, the oldest
        sequence they keep versions for, and what iterators pin beyond the
        current super version (memtables already flushed, tables already
        compacted away: held until the iterators finish)."""
        with self._views_mu:
            views = list(self._views)
        snaps = [v for v in views if v.sv is None]
        iters = [v for v in views if v.sv is not None]
        current_mems = {id(m) for m in (sv.mem,) + sv.imms}
        current_tables = sv.version.numbers()
        mems: dict[int, int] = {}
        tables: dict[int, int] = {}
        for v in iters:
            for m in (v.sv.mem,) + v.sv.imms:  # type: ignore[union-attr]
                if id(m) not in current_mems:
                    mems[id(m)] = m.memory_bytes
            for _, f in v.sv.version.files():  # type: ignore[union-attr]
                if f.number not in current_tables:
                    tables[f.number] = f.size
        return {"count": len(snaps), "iterators": len(iters),
                "oldest_sequence": min((v.seq for v in views), default=None),
                "pinned_memtable_bytes": sum(mems.values()), "pinned_tables": len(tables),
                "pinned_table_bytes": sum(tables.values())}

    def _memory_stats(self, sv: SuperVersion) -> dict:
        """``stats()["memory"]``: heap bytes the database holds, by kind
        (doc/design.md#memory). ``total`` adds them up; ``mapped`` (table
        bytes memory-mapped for reading: page cache, not heap) is beside it,
        not in it."""
        tables = self._tables.memory()
        out = {
            "memtables": sv.mem.memory_bytes,
            "immutable_memtables": sum(m.memory_bytes for m in sv.imms),
            "block_cache": self._block_cache.bytes if self._block_cache else 0,
            "table_readers": tables["readers"],
            "index_blocks": tables["index"],
            "bloom_filters": tables["filters"],
            "table_metadata": sv.version.memory_bytes(),
        }
        out["total"] = sum(out.values())
        out["open_tables"] = self._tables.open_count()
        out["open_tables_limit"] = self._tables.capacity  # max_open_files, clipped to the descriptor limit
        out["mapped"] = tables["mapped"]
        return out
