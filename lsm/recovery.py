"""Opening a database directory: the lock, ``CURRENT`` -> manifest ->
version, and write-ahead-log replay under the ``wal_recovery`` policy.

Format readers only report damage (they never decide policy); this module decides what
each ``wal_recovery`` mode does with it. Every record carries its sequence
numbers (consecutive across all logs, and each log starts by naming its
first one) and ``synced``, the last sequence that was durable when it was
written. So a replay knows, at any damaged region, whether writes were
lost there (the next intact record does not continue the sequence: a
*hole*), and whether what was lost had been made durable (a later record
says it was synced) or not (it was in flight, or never fsynced, when a
process crash or power cut came):

=================  ==========================================================
mode               on damage, or on a hole
=================  ==========================================================
tolerate_tail      damage at the end of the last log: drop it (a torn last
                   write). A hole whose writes no later record saw synced:
                   stop there (writes never durable, lost to a power cut;
                   nothing after them can be replayed without a gap). A
                   hole of synced writes, or a record that does not decode:
                   raise CorruptionError. Damage with no writes lost: go on.
absolute           raise CorruptionError on any damage or hole
point_in_time      stop replay at the first damage or hole; later records
                   and later logs are ignored
skip_corrupt       skip damaged regions and holes; replay every intact record
=================  ==========================================================

Zero bytes to the end of the last log are its unwritten (preallocated) end,
not damage, in every mode. Logs of write-ahead log format 2 carry no
``synced``: a hole before one of their records counts as synced (raise).
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

from .batch import BatchDecodeError, decode_batch
from .errors import CorruptionError, DiskError, Error
from .filenames import (
    FileType,
    make_current_name,
    make_lock_name,
    make_log_name,
    make_manifest_name,
    make_table_name,
    make_temp_name,
    parse_name,
)
from .fs import FileLock, FileSystem
from .memtable import Memtable
from .options import Options
from .record import DamageReason
from .version import VersionSet
from .wal import BATCH, FILE_HEADER, FRAGMENT_HEADER, INGEST, START, scan_log

__all__ = ["RecoveryStats", "lock_and_load", "lock_database", "obsolete_files", "replay_logs"]


@dataclass
class RecoveryStats:
    seconds: float = 0.0
    logs: int = 0
    records: int = 0
    entries: int = 0
    bytes_dropped: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "logs": self.logs, "records_replayed": self.records,
                "entries_replayed": self.entries, "bytes_dropped": self.bytes_dropped,
                "problems": list(self.problems)}


def lock_and_load(fs: FileSystem, dbpath: str, options: Options) -> tuple[FileLock, VersionSet, bool]:
    """Take the LOCK and load the manifest. Returns ``(lock, versions, is_new)``.

    For a new database nothing is written yet: the caller writes the first
    manifest. Raises: LockError, Error (missing / existing database per
    options), CorruptionError.
    """
    if not fs.exists(dbpath):
        if options.read_only or not options.create_if_missing:
            raise Error(f"{dbpath}: database does not exist (create_if_missing="
                        f"{options.create_if_missing}, read_only={options.read_only})")
        fs.makedirs(dbpath)
    if options.read_only and not fs.exists(make_current_name(dbpath)):
        # checked before locking: a read-only open must not even create LOCK
        raise Error(f"{dbpath}: database does not exist: no CURRENT file (read_only=True)")
    lock = lock_database(fs, dbpath, shared=options.read_only)
    try:
        versions = VersionSet(fs, dbpath, options)
        if fs.exists(make_current_name(dbpath)):
            if options.error_if_exists:
                raise Error(f"{dbpath}: database already exists (error_if_exists=True)")
            versions.recover()
            return lock, versions, False
        if options.read_only or not options.create_if_missing:
            raise Error(f"{dbpath}: database does not exist: no CURRENT file (create_if_missing="
                        f"{options.create_if_missing}, read_only={options.read_only})")
        leftovers = []
        for name in fs.listdir(dbpath):
            parsed = parse_name(name)
            kind = parsed[0] if parsed else None
            # Data lives in tables and logs. A manifest alone (a creation that
            # stopped before CURRENT was installed) holds none: it is replaced.
            if kind is FileType.TABLE or (kind is FileType.LOG and _holds_writes(fs, os.path.join(dbpath, name))):
                leftovers.append(name)
        if leftovers:
            # Tables or written logs without CURRENT: a damaged database,
            # not an empty one. Creating a new one here would delete them all.
            raise CorruptionError(make_current_name(dbpath), 0, "CURRENT is missing but the directory holds "
                                  f"database files ({', '.join(sorted(leftovers)[:5])}...); "
                                  "run `lsm-dump repair` to rebuild the manifest")
        return lock, versions, True
    except BaseException:
        lock.release()
        raise


class _DatabaseLock:
    """``LOCK`` and, when taken too, the directory's lock: released together."""

    __slots__ = ("path", "_locks")

    def __init__(self, path: str, locks: list[FileLock]) -> None:
        self.path = path
        self._locks = locks

    def release(self) -> None:
        locks, self._locks = self._locks, []
        for lk in reversed(locks):
            lk.release()


# Errnos with which a filesystem refuses an flock on a directory (NFS maps
# flock to POSIX locks, and an exclusive one needs a file open for writing).
_NO_DIRECTORY_LOCK = frozenset((errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP))


def lock_database(fs: FileSystem, dbpath: str, *, shared: bool) -> FileLock:
    """Take the database's lock: exclusive for a writer (and for repair),
    shared for read-only opens and lsm-dump's read commands.

    ``LOCK`` is the lock file. A shared lock opens it read-only and never
    creates it, so a reader needs no write access to the directory. Without
    a ``LOCK`` (a copied database, say) a reader flocks the directory itself
    instead, and so a writer, after taking ``LOCK``, also takes the
    directory exclusively: then a writer and a reader conflict whichever
    came first and whichever file each found. Where a filesystem cannot
    flock a directory that second lock is skipped (``LOCK`` still protects
    every open that finds it).

    Raises: LockError when another holder conflicts, DiskError.
    """
    path = make_lock_name(dbpath)
    if shared:
        if fs.exists(path):
            return fs.lock(path, shared=True)
        return _DatabaseLock(path, _directory_lock(fs, dbpath, shared=True))
    lock = fs.lock(path, shared=False)
    try:
        return _DatabaseLock(path, [lock] + _directory_lock(fs, dbpath, shared=False))
    except BaseException:
        lock.release()
        raise


def _directory_lock(fs: FileSystem, dbpath: str, *, shared: bool) -> list[FileLock]:
    try:
        return [fs.lock(dbpath, shared=shared)]
    except DiskError as e:
        if e.errno in _NO_DIRECTORY_LOCK:
            return []
        raise


def replay_logs(fs: FileSystem, dbpath: str, versions: VersionSet, options: Options,
                stats: RecoveryStats) -> tuple[Memtable, list[int]]:
    """Replay every log numbered >= the manifest's log number into one memtable.

    Returns ``(memtable, log_numbers)``; ``versions.last_sequence`` is raised
    to cover what was replayed. Raises: CorruptionError per ``wal_recovery``
    (module docstring).
    """
    start = time.monotonic()
    logs = sorted(n for n, t in _list(fs, dbpath) if t is FileType.LOG and n >= versions.log_number)
    if versions.log_number and versions.log_number not in logs:
        # The log a manifest names is created (and its name made durable)
        # before any edit names it, and removed only after a later edit moves
        # past it. Missing, it means the manifest lost edits or the log was
        # deleted: replaying what is left would silently serve older values.
        raise CorruptionError(make_log_name(dbpath, versions.log_number), 0,
                              "the manifest's current write-ahead log is missing (a manifest cut "
                              "short or a deleted log); run `lsm-dump repair`")
    mem = Memtable(0)
    for number in logs:
        versions.mark_file_number_used(number)
    events = _log_events(fs, dbpath, logs, stats)
    _Replay(events, options.wal_recovery, mem, versions, stats).run()
    stats.seconds += time.monotonic() - start
    return mem, logs


# An event of a replay, in log order: a record (a batch, or a log's start)
# or a damaged region. ``synced`` of a record from a format 2 log is INF.
_INF = float("inf")


class _Event:
    __slots__ = ("path", "offset", "nbytes", "damage", "first_seq", "ops", "synced", "start", "hint", "intact",
                 "ingest")

    def __init__(self, path: str, offset: int, nbytes: int, damage: DamageReason | None = None,
                 first_seq: int = 0, ops: list | None = None, synced: float = 0, start: bool = False,
                 hint: bool = False, intact: bool = False, ingest: bool = False) -> None:
        self.ingest = ingest  # an INGEST record: sequence first_seq taken, no ops
        self.path = path
        self.offset = offset
        self.nbytes = nbytes
        self.damage = damage
        self.first_seq = first_seq
        self.ops = ops
        self.synced = synced
        self.start = start
        self.hint = hint
        self.intact = intact  # damage that is an intact record (checksum good) that is no batch


def _log_events(fs: FileSystem, dbpath: str, logs: list[int], stats: RecoveryStats) -> list[_Event]:
    events: list[_Event] = []
    for number in logs:
        path = make_log_name(dbpath, number)
        scan = scan_log(fs.read_file(path), path)
        stats.logs += 1
        found: list[_Event] = [_Event(path, off, nbytes, damage=d) for off, nbytes, d in scan.damage]
        for off, rtype, body in scan.records:
            size = len(body) + 1
            if scan.version >= 3 and rtype == START and len(body) == 8:
                found.append(_Event(path, off, size, first_seq=int.from_bytes(body, "little"), start=True))
                continue
            if scan.version >= 3 and rtype == INGEST and len(body) == 8:
                # a sequence taken by an ingest: a write of no ops, for the
                # sequence check (its tables are in the manifest)
                found.append(_Event(path, off, size, first_seq=int.from_bytes(body, "little"), ops=[],
                                    ingest=True))
                continue
            if rtype != BATCH:
                found.append(_Event(path, off, size, damage=DamageReason(f"record type {rtype} in a write-ahead log"),
                                    intact=True))
                continue
            try:
                b = decode_batch(body, 2 if scan.version >= 3 else 1)
            except BatchDecodeError as e:
                # the checksum matched, so this is not a torn write: a writer bug or a format mismatch
                found.append(_Event(path, off, size, damage=DamageReason(str(e)), intact=True))
                continue
            found.append(_Event(path, off, size, first_seq=b.first_seq, ops=b.ops,
                                synced=b.synced if scan.version >= 3 else _INF))
        for off, rtype, body in scan.hints:
            # Records that check out inside damage: never replayed, but they
            # show that writes came after the damage, and what was durable then.
            try:
                synced = decode_batch(body, 2).synced if rtype == BATCH else 0
            except BatchDecodeError:
                synced = 0
            found.append(_Event(path, off, 0, synced=synced, hint=True))
        found.sort(key=lambda e: e.offset)
        events += found
    return events


class _Replay:
    """Applies events to the memtable under one ``wal_recovery`` mode."""

    def __init__(self, events: list[_Event], mode: str, mem: Memtable, versions: VersionSet,
                 stats: RecoveryStats) -> None:
        self.events = events
        self.mode = mode
        self.mem = mem
        self.versions = versions
        self.stats = stats
        # for each i, over events i.. : the highest "synced" a record (or a
        # hint) carries, and how many records (not hints) there are
        self.later_synced = [0.0] * (len(events) + 1)
        self.later_records = [0] * (len(events) + 1)
        for i in range(len(events) - 1, -1, -1):
            e = events[i]
            self.later_synced[i] = max(self.later_synced[i + 1], e.synced)
            self.later_records[i] = self.later_records[i + 1] + (e.damage is None and not e.hint)

    def run(self) -> None:
        events, mode, stats = self.events, self.mode, self.stats
        expected = 0  # the next sequence a record must start at (0: not known yet)
        pending = -1  # index of the first damage since the last record, -1: none
        pending_problem = -1  # its line in stats.problems (skip_corrupt)
        for i, e in enumerate(events):
            if e.hint:
                continue
            if e.damage is not None:
                if e.intact:
                    # an intact record that is not a batch: a writer bug or a
                    # format mismatch, never a torn write
                    if mode in ("tolerate_tail", "absolute"):
                        raise CorruptionError(e.path, e.offset, e.damage)
                    if mode == "point_in_time":
                        self._drop(e, e.damage, self._rest_bytes(i))
                        return
                    self._skip(e, e.damage)
                    continue
                if not self.later_records[i + 1]:
                    # Nothing replayable after it: the end of the last log.
                    if e.damage.zero_fill and self.later_synced[i] == 0:
                        return  # unwritten, preallocated space: not damage in any mode
                    if mode == "absolute" or (mode == "tolerate_tail" and expected
                                              and self.later_synced[i] >= expected):
                        # records found inside the damage say it held durable writes
                        raise CorruptionError(e.path, e.offset, e.damage if mode == "absolute" else
                                              f"{e.damage}; records after it show the writes it held "
                                              "had been made durable")
                    self._drop(e, e.damage, self._rest_bytes(i))
                    return
                if mode == "absolute":
                    raise CorruptionError(e.path, e.offset, e.damage)
                if mode == "point_in_time":
                    self._drop(e, e.damage, self._rest_bytes(i))
                    return
                if mode == "skip_corrupt":
                    self._skip(e, e.damage)
                if pending < 0:
                    pending = i
                    pending_problem = len(stats.problems) - 1
                continue
            first = e.first_seq
            if expected and first != expected:
                # A hole: writes expected..first-1 are missing (lost in the
                # damaged region before this record, or at an older log's end).
                where = events[pending] if pending >= 0 else e
                if first < expected:
                    reason = f"sequence goes back: a record starts at {first}, {expected} was expected"
                else:
                    reason = f"writes {expected}..{first - 1} are missing before this record" + (
                        f" ({where.damage})" if pending >= 0 else "")
                if first < expected:
                    # Not lost writes but reused sequence numbers: no crash
                    # makes those (a record is numbered after the last one
                    # published), so damage in every mode; skip_corrupt
                    # leaves the record out (its sequences are taken).
                    if mode in ("absolute", "tolerate_tail"):
                        raise CorruptionError(e.path, e.offset, reason)
                    if mode == "point_in_time":
                        self._drop(e, reason, self._rest_bytes(i))
                        return
                    self._skip(e, reason)
                    pending = -1
                    continue
                if mode == "absolute":
                    raise CorruptionError(where.path, where.offset, reason)
                if mode == "point_in_time":
                    self._drop(where, reason, self._rest_bytes(i))
                    return
                if mode == "tolerate_tail":
                    if self.later_synced[pending if pending >= 0 else i] >= expected:
                        raise CorruptionError(where.path, where.offset, reason + "; later records show "
                                              "they had been made durable")
                    self._drop(where, reason + "; never made durable (a crash or power cut while "
                               "they were written)", self._rest_bytes(i))
                    return
                # skip_corrupt: one problem per damage (the writes a damaged
                # region lost are added to its line), one per bare hole
                if pending >= 0:
                    stats.problems[pending_problem] += f"; writes {expected}..{first - 1} lost with it"
                else:
                    stats.problems.append(f"{where.path} at offset {where.offset}: {reason}")
            elif pending >= 0 and mode == "tolerate_tail":
                p = events[pending]
                stats.problems.append(f"{p.path} at offset {p.offset}: {p.damage} "
                                      f"({p.nbytes} bytes, no write lost)")
                stats.bytes_dropped += p.nbytes
            pending = -1
            if e.start:
                expected = first
                continue
            if e.ingest:
                expected = first + 1
                if first > self.versions.last_sequence:
                    self.versions.last_sequence = first
                continue
            assert e.ops is not None  # an intact write record has its ops
            self.mem.add_ops(first, e.ops)
            last = first + len(e.ops) - 1
            expected = last + 1
            stats.records += 1
            stats.entries += len(e.ops)
            if last > self.versions.last_sequence:
                self.versions.last_sequence = last

    def _rest_bytes(self, i: int) -> int:
        return sum(e.nbytes for e in self.events[i:])

    def _drop(self, e: _Event, reason: str, nbytes: int) -> None:
        self.stats.problems.append(f"{e.path} at offset {e.offset}: {reason} ({nbytes} bytes dropped)")
        self.stats.bytes_dropped += nbytes

    def _skip(self, e: _Event, reason: str) -> None:
        self.stats.problems.append(f"{e.path} at offset {e.offset}: {reason} ({e.nbytes} bytes skipped)")
        self.stats.bytes_dropped += e.nbytes


def _holds_writes(fs: FileSystem, path: str) -> bool:
    """Whether a log holds any write (or bytes that may have been one): not
    just empty, or a file header and its START record."""
    if fs.file_size(path) <= _START_BYTES:
        return False  # at most a file header and a START record, whole or cut short
    scan = scan_log(fs.read_file(path), path)
    return (any(rtype != START for _, rtype, _ in scan.records)
            or any(off >= _START_BYTES and not d.zero_fill for off, _, d in scan.damage))


_START_BYTES = len(FILE_HEADER) + FRAGMENT_HEADER + 9  # what a new log holds before its first write


def _list(fs: FileSystem, dbpath: str) -> list[tuple[int, FileType]]:
    out = []
    for name in fs.listdir(dbpath):
        parsed = parse_name(name)
        if parsed is not None:
            out.append((parsed[1], parsed[0]))
    return out


def obsolete_files(fs: FileSystem, dbpath: str, versions: VersionSet, live_tables: set[int],
                   pending: set[int], current_log: int) -> list[str]:
    """Paths no reader or recovery can need: tables in no live version, logs
    older than the manifest's log number, old manifests, temp files.

    ``pending`` holds numbers of files being written right now (never deleted).
    """
    out = []
    for number, t in _list(fs, dbpath):
        if number in pending:
            continue
        if t is FileType.TABLE and number not in live_tables:
            out.append(make_table_name(dbpath, number))
        elif t is FileType.LOG and number < versions.log_number and number != current_log:
            out.append(make_log_name(dbpath, number))
        elif t is FileType.MANIFEST and number != versions.manifest_number:
            out.append(make_manifest_name(dbpath, number))
        elif t is FileType.TEMP:
            out.append(make_temp_name(dbpath, number))
    return out

