"""The DB's write half: ``put``, ``delete``, ``write``, ``compare_and_swap``,
and what they need: the log, the memtable switch and its back-pressure
(doc/design.md#write-path).

``Writes`` is a mixin of :class:`lsm.db.DB`, like ``Reads`` and
``Background``: it shares the DB's state and locking rules
(doc/design.md#locking-rules).

Two ways in, one order of effects (log append, memtable insert, publish):

* **The fast path.** A write that needs no fsync, when no writer is queued
  and the memtable has room, takes ``_mu`` and does everything itself: the
  next sequence number, one log record (built with one ``join``), the
  memtable insert, the publish. No writer object, no queue, no hand-off.
* **The commit queue** (lsm.commit) for everything else: synchronous writes
  (their fsync is shared by the group: group commit), compare-and-swap, a
  write that must first switch the memtable or wait for room, and any write
  arriving while another is queued (so no write overtakes a queued one).

Either way a write is in the log before it is in the memtable, and in the
memtable before its sequence number is published (``last_sequence``); a
reader reads at the published sequence, so it never sees part of a batch.
"""

from __future__ import annotations

import struct
import time

from .batch import _PREFIX, _SMALL_KEY, _SMALL_VALUE, VARINT, WriteBatch, encode_ttl_value, op_prefix, varint
from .commit import CommitSteps, Writer
from .dbstate import DBState
from .errors import BackgroundError, ClosedError, Error, ReadOnlyError
from .filenames import make_log_name
from .invariants import assert_held
from .keys import DELETE, MAX_KEY_BYTES, MAX_SEQUENCE, MAX_VALUE_BYTES, PUT, PUT_TTL, check_key, check_value
from .memtable import Memtable
from .snapshot import SuperVersion
from .wal import BATCH, START, WalWriter

__all__ = ["Writes", "WAL_STEP_BYTES"]

_SAMPLE_MASK = 15  # metrics: every 16th write is timed and counts for 16 (as reads do)
_SLOWDOWN_SECONDS = 0.001  # one delay per write past l0_slowdown_trigger, as LevelDB
# A log's length runs this far ahead of its records (reserved with
# posix_fallocate, written through a memory map): an append is a store, and
# the fdatasync after a synchronous one has no size change to make durable.
# The log is cut back to its records when it is switched or closed.
WAL_STEP_BYTES = 1 << 20
# record := rtype:u8 first_seq:u64le count:u32le synced:u64le op*  (lsm.wal, lsm.batch)
_RECORD_HEAD = struct.Struct("<BQIQ")

# A group's log write, from its encoding to its publish (lsm.commit
# CommitSteps): its records, the log, the older logs to fsync first
# (sync_mode="never" left them unsynced), whether to fsync, its user bytes.
# A plain tuple: one is made per group of the commit queue.
GroupLog = tuple[list[bytes], WalWriter, list[WalWriter], bool, int]


class Writes(DBState):
    """Mixin of :class:`lsm.db.DB` holding the write path."""

    # -- the public writes ------------------------------------------------------

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None, sync: bool | None = None) -> int:
        """Set ``key`` to ``value``; return the write's sequence number (its version).

        :param ttl: seconds until the entry expires (stored as wall-clock time).
        :param sync: force (True) or skip (False) the fsync; None follows ``sync_mode``.
        Raises: TypeError/ValueError for bad arguments (nothing written),
        ReadOnlyError, BackgroundError, ClosedError, DiskError.
        """
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
            value = check_value(value)
        kind = PUT
        if ttl is not None:
            value = encode_ttl_value(ttl, value)
            kind = PUT_TTL
        return self._write_one(kind, key, value, sync, "put")

    def delete(self, key: bytes, *, sync: bool | None = None) -> int:
        """Delete ``key`` (absent keys too); return the tombstone's sequence number."""
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        return self._write_one(DELETE, key, b"", sync, "delete")

    def delete_range(self, start: bytes, stop: bytes, *, sync: bool | None = None) -> int:
        """Delete every key ``start <= k < stop``; return the range tombstone's
        sequence number (0 for an empty range, which writes nothing).

        One record in the log and one tombstone in the memtable, whatever the
        number of keys (RocksDB's ``DeleteRange``): reads, scans and
        snapshots taken after it no longer see the keys, snapshots taken
        before still do, keys written after it are not affected, and
        compaction drops the covered entries, then the tombstone itself once
        nothing older is left below it. Atomic, and also available inside a
        batch (``WriteBatch.delete_range``).

        >>> import lsm, tempfile
        >>> db = lsm.open(tempfile.mkdtemp())
        >>> for k in (b"a", b"b1", b"b2", b"c"): _ = db.put(k, b"v")
        >>> _ = db.delete_range(b"b", b"c")
        >>> list(db.scan(keys_only=True))
        [b'a', b'c']
        >>> db.close()

        Raises: TypeError/ValueError for bad arguments (nothing written; a
        ``start`` after ``stop`` is a ValueError), and what ``write`` raises.
        """
        batch = WriteBatch().delete_range(start, stop)
        if not batch.ops:
            if sync is not None and type(sync) is not bool:
                raise TypeError(f"sync must be a bool or None, not {type(sync).__name__}")
            self._check_open()
            if self._opts.read_only:
                raise ReadOnlyError(f"database {self._path} was opened read-only")
            return 0
        return self.write(batch, sync=sync)

    def _write_one(self, kind: int, key: bytes, value: bytes, sync: bool | None, op: str) -> int:
        """One checked op, by the fast path when it can (module docstring)."""
        n = self._writes + 1
        self._writes = n
        if not n & _SAMPLE_MASK and self._metrics is not None:
            return self._timed(op, self._write_queued, kind, key, value, sync)
        if sync is None:
            if self._sync_always:
                return self._write_queued(kind, key, value, True)
        elif sync is not False:
            if sync is not True:
                raise TypeError(f"sync must be a bool or None, not {type(sync).__name__}")
            return self._write_queued(kind, key, value, True)
        mu = self._mu
        mu.acquire()
        held = True
        try:
            sv = self._sv
            mem = sv.mem
            if self._waiting or not self._fast or mem.nbytes >= self._memtable_bytes:
                mu.release()
                held = False
                return self._write_queued(kind, key, value, False)
            vs = self._versions
            seq = vs.last_sequence + 1
            nk = len(key)
            nv = len(value)
            # op_prefix and varint, inlined for the common sizes
            prefix = _PREFIX[kind][nk] if nk < _SMALL_KEY else op_prefix(kind, nk)
            record = b"".join((_RECORD_HEAD.pack(BATCH, seq, 1, self._synced_seq), prefix, key,
                               VARINT[nv] if nv < _SMALL_VALUE else varint(nv), value) if kind != DELETE else
                              (_RECORD_HEAD.pack(BATCH, seq, 1, self._synced_seq), prefix, key))
            log = self._log
            assert log is not None  # None only in a read-only DB, which never writes
            try:
                log.append(record)
            except BaseException as e:
                # The log may now end in a torn record: no later write may follow it.
                self._set_bg_error_locked(e, "write-ahead log append failed")
                raise
            try:
                mem.add(seq, kind, key, value)
            except BaseException as e:
                self._set_bg_error_locked(e, "memtable insert failed after the log append")
                raise
            vs.last_sequence = seq
            self._user_bytes += len(key) + len(value)
            return seq
        finally:
            if held:
                mu.release()

    def _write_queued(self, kind: int, key: bytes, value: bytes, sync: bool | None) -> int:
        if sync is None:
            sync = self._sync_always
        parts = [op_prefix(kind, len(key)), key] if kind == DELETE else \
            [op_prefix(kind, len(key)), key, varint(len(value)), value]
        return self._submit(Writer([(kind, key, value)], parts, len(key) + len(value), sync)).seq

    def _timed(self, op: str, fn, *args):
        """Run ``fn(*args)``, recording it as :data:`_SAMPLE_MASK` + 1 calls of ``op``."""
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._metrics.record(op, time.perf_counter() - t, n=_SAMPLE_MASK + 1)  # type: ignore[union-attr]

    def write(self, batch: WriteBatch, *, sync: bool | None = None) -> int:
        """Apply ``batch`` atomically; return the last sequence it used (0 if empty).

        Each operation gets its own consecutive sequence number.
        """
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        if sync is not None and type(sync) is not bool:
            raise TypeError(f"sync must be a bool or None, not {type(sync).__name__}")
        if not batch.ops:  # nothing to log, but a read-only DB refuses writes all the same
            self._check_open()
            if self._opts.read_only:
                raise ReadOnlyError(f"database {self._path} was opened read-only")
            return 0
        n = self._writes + 1
        self._writes = n
        if not n & _SAMPLE_MASK and self._metrics is not None:
            return self._timed("write", self._write_batch, batch, sync)
        return self._write_batch(batch, sync)

    def _write_batch(self, batch: WriteBatch, sync: bool | None) -> int:
        ops = batch.ops
        if not (sync or (sync is None and self._sync_always)):
            mu = self._mu
            mu.acquire()
            try:
                sv = self._sv
                mem = sv.mem
                if not self._waiting and self._fast and mem.nbytes < self._memtable_bytes:
                    vs = self._versions
                    first = vs.last_sequence + 1
                    last = first + len(ops) - 1
                    if last > MAX_SEQUENCE:
                        raise Error("sequence numbers exhausted")
                    record = b"".join([_RECORD_HEAD.pack(BATCH, first, len(ops), self._synced_seq)] + batch._parts)
                    log = self._log
                    assert log is not None  # None only in a read-only DB, which never writes
                    try:
                        log.append(record)
                    except BaseException as e:
                        self._set_bg_error_locked(e, "write-ahead log append failed")
                        raise
                    mem.add_ops(first, ops)
                    vs.last_sequence = last
                    self._user_bytes += batch.nbytes
                    return last
            finally:
                mu.release()
        return self._submit(Writer(list(ops), list(batch._parts), batch.nbytes,
                                   bool(sync) if sync is not None else self._sync_always)).seq

    def write_batch(self, *, sync: bool | None = None) -> WriteBatch:
        """A batch applied when its ``with`` block exits cleanly (discarded if it raises).

        >>> import tempfile, lsm
        >>> db = lsm.open(tempfile.mkdtemp())
        >>> with db.write_batch() as b:
        ...     _ = b.put(b"a", b"1").put(b"b", b"2")
        >>> db.get(b"b")
        b'2'
        >>> db.close()
        """
        self._check_open()
        if sync is not None and type(sync) is not bool:  # here, not when the block ends
            raise TypeError(f"sync must be a bool or None, not {type(sync).__name__}")
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
        if sync is not None and type(sync) is not bool:
            raise TypeError(f"sync must be a bool or None, not {type(sync).__name__}")
        if value is None:
            if ttl is not None:
                raise ValueError("ttl cannot be given when value is None (a delete)")
            kind, stored = DELETE, b""
        else:
            value = check_value(value)
            kind, stored = (PUT, value) if ttl is None else (PUT_TTL, encode_ttl_value(ttl, value))
        parts = [op_prefix(kind, len(key)), key] if kind == DELETE else \
            [op_prefix(kind, len(key)), key, varint(len(stored)), stored]
        w = Writer([(kind, key, stored)], parts, len(key) + len(stored),
                   self._sync_always if sync is None else sync)
        w.cas = (key, expected_version)
        n = self._writes + 1
        self._writes = n
        if not n & _SAMPLE_MASK and self._metrics is not None:
            self._timed("cas", self._submit, w)
        else:
            self._submit(w)
        return w.seq or None

    # -- the commit queue --------------------------------------------------------

    def _submit(self, w: Writer) -> Writer:
        if self._closed:
            raise self._closed_error()
        if self._opts.read_only:
            raise ReadOnlyError(f"database {self._path} was opened read-only")
        return self._queue.submit(w)

    def _commit_steps(self) -> CommitSteps[GroupLog]:
        """The DB's steps of the group commit protocol (lsm.commit ``commit_group``)."""
        return CommitSteps(prepare=self._prepare_group_locked, last_sequence=self._last_sequence,
                           encode=self._encode_group_locked, write_log=self._write_group_log,
                           apply=self._apply_group, publish=self._publish_group_locked)

    def _prepare_group_locked(self, group: list[Writer]) -> bool:
        """Leader, before sequences: refuse, run a control request, make room,
        check a CAS. False when that completed the group. Mutex held on entry
        and exit; released while a CAS reads and while making room waits."""
        assert_held(self._mu)
        lead = group[0]
        if self._bg_error is not None or (self._closed and not lead.force_switch):
            self._check_writable_locked()
        if lead.control is not None:
            lead.control()  # e.g. an ingest (lsm.ingest): mutex held, no other writer runs
            return False
        sv = self._sv
        if lead.force_switch or sv.mem.nbytes >= self._memtable_bytes or not self._fast:
            self._make_room_locked(force=lead.force_switch)
            if lead.force_switch:
                if self._sv.mem is not sv.mem:
                    lead.switched = sv.mem
                return False
        if lead.cas is not None:
            # The check may read tables: not under _mu (installs and every
            # writer's enqueue need it). Still atomic with the write that
            # follows: the leader is the only writer until it returns, so no
            # write and no memtable switch can come between; an install
            # meanwhile only replaces the super version, and the one read
            # here stays valid.
            sv = self._sv
            self._mu.release()
            try:
                matches = self._cas_matches(sv, *lead.cas)
            finally:
                self._mu.acquire()
            if not matches:
                return False  # lead.seq stays 0: mismatch
        return True

    def _last_sequence(self) -> int:
        return self._versions.last_sequence

    def _encode_group_locked(self, group: list[Writer], first: int, sync: bool) -> GroupLog:
        """The group's records, one per writer, each carrying the last
        sequence known durable; and the log state its write needs."""
        synced = self._synced_seq
        records = []
        seq = first
        nbytes = 0
        for w in group:
            records.append(b"".join([_RECORD_HEAD.pack(BATCH, seq, len(w.ops), synced)] + w.parts))
            seq += len(w.ops)
            nbytes += w.nbytes
        log = self._log
        assert log is not None  # None only in a read-only DB, which never writes
        return records, log, self._unsynced_logs if sync else [], sync, nbytes

    def _sync_logs(self, log: WalWriter, older: list[WalWriter]) -> None:
        """fsync ``older`` logs still unsynced, then ``log``: what a synced
        write (or an ingest) needs before it is acknowledged. Mutex released;
        raises what an fsync raised (the caller records the background error).

        Under _log_sync_mu: if the periodic syncer's fsync failed first, ours
        could return 0 with the data lost (the kernel reports a writeback
        error once), so its verdict is checked too. Older logs go first
        (sync_mode="never" leaves them unsynced at a switch): a synced write
        is durable only if everything written before it is. One a flush has
        retired since (closed, under this lock) needs none: its writes are in
        a table."""
        with self._log_sync_mu:
            for old in older:
                if old in self._unsynced_logs:
                    old.sync()
            log.sync()
            if self._log_sync_error is not None:
                raise self._log_sync_error

    def _write_group_log(self, g: GroupLog) -> None:
        """Append the group's records (and fsync, older unsynced logs first,
        when it asks to). Mutex released. A failure is a background error."""
        records, log, older, sync, _ = g
        try:
            append = log.append
            for r in records:
                append(r)
            if sync:
                self._sync_logs(log, older)
        except BaseException as e:
            # The log may now end in a torn record: no later write may go
            # after it, and a failed fsync is never retried as if it worked.
            with self._mu:
                self._set_bg_error_locked(e, "write-ahead log append/fsync failed")
            raise

    def _apply_group(self, group: list[Writer], first: int) -> None:
        """Insert the group into the active memtable (only the leader switches
        it). Mutex released. A failure is a background error."""
        mem = self._sv.mem
        try:
            s = first
            for w in group:
                mem.add_ops(s, w.ops)
                s += len(w.ops)
        except BaseException as e:
            # The log holds the group, the memtable part of it: no later
            # write may take these sequences (a reopen replays the log).
            with self._mu:
                self._set_bg_error_locked(e, "memtable insert failed after the log append")
            raise

    def _publish_group_locked(self, last: int, g: GroupLog) -> None:
        """Publish ``last``; after a synced group, note the log durable up to it."""
        _, log, older, sync, nbytes = g
        self._versions.last_sequence = last
        if sync:
            # Everything up to last is durable now: later records say so
            # (lsm.recovery tells lost unsynced writes from damage by it).
            self._synced_seq = last
            self._synced_pos = log.size
            if older:
                for old in older:
                    self._close_log(old)
                self._unsynced_logs = [x for x in self._unsynced_logs if x not in older]
        self._user_bytes += nbytes

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

    # -- room: memtable switches and back-pressure ----------------------------------

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
        assert old is not None  # None only in a read-only DB, which never writes
        # The old log is cut back to its records (its preallocated end given
        # back) and, unless sync_mode="never", fsynced before a newer log
        # exists. In "never" mode it stays open, unsynced: a synchronous write
        # syncs it first (_write_group_log), and it is closed once its
        # memtable's table makes it obsolete.
        with self._log_sync_mu:
            try:
                trimmed = old.trim()
                if self._opts.sync_mode != "never":
                    if trimmed or old.size != self._synced_pos:
                        old.sync()
                    self._synced_seq = self._versions.last_sequence
            except BaseException as e:
                self._set_bg_error_locked(e, "fsync of the write-ahead log failed")
                raise
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
            self._wal_bytes_done += old.size
            if self._opts.sync_mode == "never":
                self._unsynced_logs = self._unsynced_logs + [old]
            else:
                try:
                    old.close()
                except BaseException as e:
                    self._set_bg_error_locked(e, "closing the write-ahead log failed")
                    new_log.close()
                    raise
            self._log = new_log
            self._synced_pos = new_log.size
        sv = self._sv
        sv.mem.immutable = True
        self._install_sv_locked(SuperVersion(Memtable(number), (sv.mem,) + sv.imms, sv.version))
        self._bg_cv.notify_all()

    def _new_log(self, number: int) -> WalWriter:
        """Create log ``number`` (mapped, its length reserved ahead), starting
        with the sequence its first write will have (lsm.wal START), so a
        replay knows where each log begins."""
        log = WalWriter(self._fs.open_mapped(make_log_name(self._path, number), step=WAL_STEP_BYTES), number)
        try:
            log.append(bytes((START,)) + struct.pack("<Q", self._versions.last_sequence + 1))
        except BaseException:
            log.close()
            raise
        return log

    def _close_log(self, log: WalWriter) -> None:
        """Close an old log kept open unsynced; a failure only leaves it to recovery."""
        try:
            log.close()
        except OSError:
            pass

    def _close_obsolete_logs_locked(self) -> None:
        """Close the unsynced old logs whose memtables are in tables now
        (numbered below the version set's log number): nothing needs them."""
        keep = [x for x in self._unsynced_logs if x.number >= self._versions.log_number]
        if len(keep) != len(self._unsynced_logs):
            # Under _log_sync_mu: a synced write's leader may be about to
            # fsync these (it took the list under _mu, then let it go).
            with self._log_sync_mu:
                for x in self._unsynced_logs:
                    if x not in keep:
                        self._close_log(x)
                self._unsynced_logs = keep

