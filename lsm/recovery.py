"""Opening a database directory: the lock, ``CURRENT`` -> manifest ->
version, and write-ahead-log replay under the ``wal_recovery`` policy.

Format readers only report damage (STYLE habit 6); this module decides what
each ``wal_recovery`` mode does with it:

=================  ==========================================================
mode               on a damaged region of a log
=================  ==========================================================
tolerate_tail      drop it if no intact record follows (a torn last write);
                   otherwise raise CorruptionError
absolute           raise CorruptionError
point_in_time      stop replay there; later records and later logs are ignored
skip_corrupt       skip it and go on with the next intact record
=================  ==========================================================

A record whose batch does not start right after the previous record's last
sequence (within a log or across logs) follows lost records: reported as
damage at its offset, never at the tail (see ``replay_logs``).
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

from .batch import BatchDecodeError, decode_batch
from .errors import CorruptionError, DiskError, Error
from .filenames import (FileType, make_current_name, make_lock_name, make_log_name,
                        make_manifest_name, make_table_name, make_temp_name, parse_name)
from .fs import FileLock, FileSystem
from .memtable import Memtable
from .options import Options
from .version import VersionSet
from .wal import BATCH, OVERHEAD, has_intact_record, iter_records

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
            if kind is FileType.TABLE or (
                    kind is FileType.LOG and fs.file_size(os.path.join(dbpath, name)) > 0):
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
    to cover what was replayed. Raises: CorruptionError per ``wal_recovery``.
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
    mode = options.wal_recovery
    stop_all = False
    contents = {n: fs.read_file(make_log_name(dbpath, n)) for n in logs}
    # A log can end in a torn write only if nothing was written after it: no
    # later log holds an intact record (a power cut can leave an empty newer
    # log whose creation was made durable before the old log's tail was).
    last_with_records = max((n for n in logs if has_intact_record(contents[n])), default=-1)
    # Sequence numbers are contiguous over the records replayed here, within
    # a log and from one log to the next: the commit leader numbers each
    # record right after the previous one (a group's records too), a write
    # that uses no sequence (an empty batch, a failed compare-and-swap, a
    # flush request) writes no record, a log whose memtable was flushed is
    # below log_number and not replayed, and each open starts a fresh log
    # after the last sequence it recovered (written to tables before that
    # log may get a record). So a record that does not start right after the
    # previous one follows lost records: damage, even though every byte
    # checks out (an older log cut at a record boundary). The first record
    # may start anywhere: the manifest's last_sequence can be ahead of it.
    expect = [0]  # first sequence of the next record; 0: not known (start, or after skipped damage)
    for number in logs:
        versions.mark_file_number_used(number)
        if stop_all:
            continue
        path = make_log_name(dbpath, number)
        data = contents[number]
        stats.logs += 1
        halted = [False]
        newest = number >= last_with_records

        def report(offset: int, nbytes: int, reason: str, at_tail: bool, path: str = path,
                   halted: list = halted, newest: bool = newest, data: bytes = data) -> bool:
            # Only the last log with records can end in a torn write: an
            # older log was complete before anything was written to the next.
            tail = at_tail and newest
            if tail and getattr(reason, "zero_fill", False):
                # Zeros to the end of the newest log: the space a preallocating
                # writer extended it by (lsm.fs), or a length that reached the
                # disk before its data. Not a record, and in no mode damage.
                return True
            if mode == "absolute" or (mode == "tolerate_tail" and not tail):
                raise CorruptionError(path, offset, reason)
            stats.problems.append(f"{path} at offset {offset}: {reason} ({nbytes} bytes dropped)")
            stats.bytes_dropped += nbytes
            if mode == "point_in_time":
                halted[0] = True
                stats.bytes_dropped += len(data) - offset - nbytes  # the rest of this log
                return False
            expect[0] = 0  # what the skipped region held is unknown: no gap to tell after it
            return True  # skip_corrupt, or tolerate_tail at the tail (nothing follows)

        for offset, rtype, payload in iter_records(data, report, path):
            if rtype != BATCH:
                if not report(offset, len(payload) + OVERHEAD, f"record type {rtype} in a write-ahead log",
                              False):
                    break
                continue
            try:
                first_seq, ops = decode_batch(payload)
            except BatchDecodeError as e:
                # the checksum matched, so this is not a torn write: never "tail"
                if not report(offset, len(payload) + OVERHEAD, str(e), False):
                    break
                continue
            if expect[0] and first_seq != expect[0]:
                if first_seq > expect[0]:
                    why = (f"sequence gap: the record starts at sequence {first_seq}, the previous one "
                           f"ended at {expect[0] - 1} (sequences {expect[0]}..{first_seq - 1} are lost)")
                else:
                    why = (f"sequence goes back: the record starts at sequence {first_seq}, the previous "
                           f"one ended at {expect[0] - 1}")
                # nothing of this record is damaged: 0 bytes for the region itself
                if not report(offset, 0, why, False):
                    break
            expect[0] = first_seq + len(ops)
            seq = first_seq
            for kind, key, value in ops:
                mem.add(seq, kind, key, value)
                seq += 1
            stats.records += 1
            stats.entries += len(ops)
            if seq - 1 > versions.last_sequence:
                versions.last_sequence = seq - 1
        if halted[0]:
            stop_all = True
            stats.bytes_dropped += sum(fs.file_size(make_log_name(dbpath, n)) for n in logs if n > number)
    stats.seconds += time.monotonic() - start
    return mem, logs


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

