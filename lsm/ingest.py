"""Ingesting external table files: ``DB.ingest`` (RocksDB's
``IngestExternalFile``; doc/bulkload.md for users, doc/design.md#ingest for
the fsyncs and crash points).

``Ingest`` is a mixin of :class:`lsm.db.DB`, like ``Writes`` and
``Background``: it shares the DB's state and locking rules.

An ingest, in order:

1. **Validate** every file without any lock (:func:`check_external`): it
   opens as a table of the current format, every block checksum holds, keys
   are strictly increasing (one version per key), every entry has sequence
   0, and the properties mark it external. Files must not overlap each
   other. A bad file raises and nothing has changed.
2. **Reserve** one table number per file (protected from obsolete-file
   deletion while in flight, like compaction outputs) and **copy** each file
   to ``NNNNNN.sst`` in the database directory (``move=True``: hard-link it,
   copying when that is impossible, e.g. across filesystems); fsync each,
   then fsync the directory. *Crash here:* orphans, removed at the next open.
3. A **control request through the commit queue**, so no write runs
   meanwhile and every write queued after it is ordered after it. The
   leader, holding the DB mutex:

   a. flushes the memtable (and waits for the flush of immutable ones) only
      if one holds a key in an ingested file's range: the ingested data,
      newer than those keys, must sit above them, and tables sit below
      memtables;
   b. takes ``S = last_sequence + 1`` for the whole ingest and appends an
      ``INGEST S`` record to the write-ahead log, **fsynced** with every
      older log (so the log's sequences continue past S at replay, and every
      write before the ingest is durable before it). *Crash here:* S is
      burned, no table is listed: nothing ingested;
   c. places each file at the lowest level where nothing overlaps it
      (:func:`pick_level`) and appends **one manifest edit** (the files with
      global sequence S, ``last_sequence = S``) + **fsync**: the commit
      point. *Crash before it completes:* nothing ingested (a torn edit is
      dropped); *after:* everything;
   d. installs the new version, then publishes S.

4. With ``move=True`` the source names are removed.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable
from operator import lt
from typing import NamedTuple

from .commit import Writer
from .dbstate import DBState
from .errors import ClosedError, CorruptionError, DiskError, Error, ReadOnlyError
from .filenames import make_table_name
from .fs import FileSystem
from .invariants import assert_held
from .keys import PUT_TTL
from .manifest import FileMeta, VersionEdit
from .memtable import Memtable
from .snapshot import SuperVersion
from .sstable import TableReader
from .sstable.format import FORMAT_VERSION as TABLE_FORMAT
from .sstable.props import EXTERNAL_PROP
from .version import NUM_LEVELS, Version
from .wal import INGEST

__all__ = ["ExternalTable", "Ingest", "check_external", "pick_level"]

_COPY_BYTES = 4 << 20  # a copy reads and writes this much at a time
# link(2) failures that mean "this filesystem will not link these": copy instead
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


class ExternalTable(NamedTuple):
    """What validation learned of one external table file."""

    path: str
    smallest: bytes
    largest: bytes
    entries: int
    size: int


def check_external(fs: FileSystem, path: str) -> ExternalTable:
    """Open ``path`` as an external table and check every byte of it.

    Raises: DiskError (e.g. ENOENT) naming the path; CorruptionError (file
    and offset) for a damaged or future-format table, or keys out of order
    or repeated; Error for a table that is not external (written by a
    database, or older), or holds range tombstones.
    """
    f = fs.open_readable(path)
    try:
        r = TableReader(f, 0, None, True)
    except BaseException:
        f.close()
        raise
    try:
        if r.version != TABLE_FORMAT:
            raise Error(f"{path}: table format {r.version}; external tables are format {TABLE_FORMAT}")
        if r.props.get(EXTERNAL_PROP) != 1:
            raise Error(f"{path}: not an external table (its properties lack {EXTERNAL_PROP}=1: it was not "
                        "written by lsm.TableFileWriter; a database's own tables cannot be ingested)")
        if r.range_dels:
            raise Error(f"{path}: an external table cannot hold range tombstones")
        last = None
        entries = 0
        for i in range(len(r.ikeys)):
            keys, tags, _ = r.columns(i)  # checks the block: checksum, layout, last key
            at = r.offsets[i]
            if last is not None and keys[0] <= last:
                raise CorruptionError(path, at, f"key {keys[0].hex()} does not follow {last.hex()}: keys of an "
                                      "external table must be strictly increasing (one version per key)")
            if not all(map(lt, keys, keys[1:])):
                j = next(j for j in range(1, len(keys)) if not keys[j - 1] < keys[j])
                raise CorruptionError(path, at, f"key {keys[j].hex()} does not follow {keys[j - 1].hex()}: keys "
                                      "of an external table must be strictly increasing (one version per key)")
            if max(tags) > PUT_TTL:  # a tag is seq << 8 | kind: sequence 0 and a known kind
                raise CorruptionError(path, at, "an entry has a sequence number other than 0 (or an unknown "
                                      "kind): not an external table")
            entries += len(keys)
            last = keys[-1]
        if entries != r.props["entries"]:
            raise CorruptionError(path, 0, f"{entries} entries in blocks, properties say {r.props['entries']!r}")
        if not entries:
            raise Error(f"{path}: an external table holds no entries")
        if (r.ikeys and r.ikeys[0] < r.smallest) or last != r.largest:
            raise CorruptionError(path, 0, "the properties' key range does not match the blocks")
        return ExternalTable(path, r.props["smallest"], last, entries, r.file_size)  # type: ignore[arg-type]
    finally:
        r.close()


def pick_level(version: Version, smallest: bytes, largest: bytes,
               compacting: tuple[int, bytes, bytes] | None) -> int:
    """The level an ingested table of keys ``[smallest, largest]`` goes to:
    the lowest level such that nothing at or above it overlaps the table
    (its data is newer than everything there, and deeper levels hold older
    data), so L6 when nothing overlaps, L0 when L0 does. ``compacting``
    ``(level, lo, hi)``: a merge writing ``level`` over ``[lo, hi]`` now,
    whose outputs the table must not collide with (one level up instead).
    """
    if version.overlapping(0, smallest, largest):
        return 0
    target = NUM_LEVELS - 1
    for level in range(1, NUM_LEVELS):
        if version.overlapping(level, smallest, largest):
            target = level - 1
            break
    if compacting is not None and target > 0:
        out, lo, hi = compacting
        if out == target and lo <= largest and hi >= smallest:
            target -= 1
    return target


def _mem_overlaps(mem: Memtable, lo: bytes, hi: bytes) -> bool:
    """Whether ``mem`` holds a key (or a range tombstone) in ``[lo, hi]``."""
    if not len(mem):
        return False
    if mem.keys_in(lo, hi, (True, True), False, 1):
        return True
    return any(start <= hi and end > lo for start, end, _ in mem.range_dels)


class Ingest(DBState):
    """Mixin of :class:`lsm.db.DB` holding ``ingest``."""

    def ingest(self, paths: Iterable[str | os.PathLike], *, move: bool = False) -> None:
        """Add the external table files at ``paths`` (written by
        :class:`lsm.TableFileWriter`) to the database, atomically: after any
        crash either all of them are in it or none.

        Their entries get one sequence number newer than every write before
        the call, so they win over older values and lose to later writes;
        snapshots taken before do not see them. Each file lands at the
        lowest level where nothing overlaps it (the bottom level when its
        keys are new), and nothing is rewritten. The memtable is flushed
        first only if it holds keys in a file's range.

        :param move: hard-link the files into the database (copying when
            they are on another filesystem) and remove the source names on
            success, instead of copying.
        Raises: ValueError (no paths, a path twice, files that overlap each
        other), DiskError (a missing or unreadable file: it names the path),
        CorruptionError (a damaged file, or one of a future format: path
        and offset), Error (a file that is not an external table),
        ReadOnlyError, ClosedError, BackgroundError. On any of these
        nothing has changed, except after a failed log or manifest write,
        which puts the database in the background-error state as any failed
        write does.
        """
        self._check_open()
        if self._opts.read_only:
            raise ReadOnlyError(f"database {self._path} was opened read-only")
        if type(move) is not bool:
            raise TypeError(f"move must be a bool, not {type(move).__name__}")
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise TypeError("paths must be a list of paths, not a single path")
        srcs = [os.path.abspath(os.fspath(getattr(p, "path", p))) for p in paths]
        if not srcs:
            raise ValueError("ingest needs at least one file")
        if len(set(srcs)) != len(srcs):
            raise ValueError(f"a file is listed twice: {sorted(p for p in srcs if srcs.count(p) > 1)[0]}")
        fs = self._fs
        tables = sorted((check_external(fs, p) for p in srcs), key=lambda t: t.smallest)
        for a, b in zip(tables, tables[1:]):
            if b.smallest <= a.largest:
                raise ValueError(f"external files overlap: {a.path} holds {a.smallest.hex()}..{a.largest.hex()} "
                                 f"and {b.path} holds {b.smallest.hex()}..{b.largest.hex()}")
        with self._mu:
            self._check_writable_locked()
            first = self._versions.next_file
            self._versions.next_file += len(tables)  # recorded by the ingest's edit (or a later one)
            numbers = list(range(first, first + len(tables)))
            self._pending_outputs.update(numbers)
        placed: list[str] = []
        copied = 0
        state: dict[str, bool] = {}  # "manifest": the edit was tried
        try:
            for t, number in zip(tables, numbers):
                dst = make_table_name(self._path, number)
                placed.append(dst)
                copied += _place(fs, t.path, dst, move)
            fs.fsync_dir(self._path)
            metas = [FileMeta(n, t.size, t.entries, t.smallest, t.largest, 0, 0) for t, n in zip(tables, numbers)]
            w = Writer([], [], 0, False)
            w.control = lambda: self._ingest_locked(metas, state)
            self._submit(w)
        except BaseException:
            if not state:  # no manifest edit was tried: the copies are ours to remove
                # (after a failed one they may be listed: left to recovery, which
                # removes them at the next open if the edit did not survive)
                for dst in placed:
                    try:
                        fs.remove(dst)
                    except DiskError:
                        pass
            raise
        finally:
            with self._mu:
                self._pending_outputs.difference_update(numbers)
        if move:
            for t in tables:
                try:
                    fs.remove(t.path)
                except DiskError:
                    pass  # the data is in the database; a leftover source name is harmless
        c = self._counters
        c["ingested_files"] = c.get("ingested_files", 0) + len(tables)
        c["ingested_bytes"] = c.get("ingested_bytes", 0) + sum(t.size for t in tables)
        c["ingest_bytes_copied"] = c.get("ingest_bytes_copied", 0) + copied

    def _ingest_locked(self, metas: list[FileMeta], state: dict[str, bool]) -> None:
        """Steps 3a-3d of the module docstring. Runs as the commit queue's
        leader (no other write can run), mutex held; released only while
        waiting for a flush and around the log fsync."""
        assert_held(self._mu)
        ranges = [(m.smallest, m.largest) for m in metas]
        # a. Memtables holding keys in the ranges go to tables first.
        while True:
            if self._stop or self._closed:
                raise ClosedError(f"database {self._path} is closing")
            self._check_writable_locked()
            sv = self._sv
            if any(_mem_overlaps(sv.mem, lo, hi) for lo, hi in ranges):
                self._make_room_locked(force=True)  # switch; the flush thread takes it
                continue
            if not any(_mem_overlaps(m, lo, hi) for m in sv.imms for lo, hi in ranges):
                break
            self._bg_cv.notify_all()
            self._bg_cv.wait(0.05)
        # b. One sequence for the whole ingest, durable in the log first.
        vs = self._versions
        seq = vs.last_sequence + 1
        log = self._log
        assert log is not None  # None only in a read-only DB, which never writes
        older = self._unsynced_logs
        self._mu.release()
        try:
            try:
                log.append(bytes((INGEST,)) + struct.pack("<Q", seq))
                self._sync_logs(log, older)  # a write before the ingest is durable before it
            except BaseException as e:
                with self._mu:
                    self._set_bg_error_locked(e, "write-ahead log append/fsync failed (ingest)")
                raise
        finally:
            self._mu.acquire()
        self._synced_seq = seq
        self._synced_pos = log.size
        if older:
            for old in older:
                self._close_log(old)
            self._unsynced_logs = [x for x in self._unsynced_logs if x not in older]
        # c. Placement and the manifest edit, with no release of the mutex
        # between them: no flush or compaction can install in between.
        edit = VersionEdit(last_sequence=seq)
        version = vs.current
        for m in metas:
            m.min_seq = m.max_seq = m.global_seq = seq
            edit.add_file(pick_level(version, m.smallest, m.largest, self._compacting), m)
        state["manifest"] = True
        try:
            vs.log_and_apply(edit)
        except BaseException as e:
            # the edit may or may not be on disk: no later edit may follow
            self._set_bg_error_locked(e, "manifest write failed (ingest)")
            raise
        # d. Install, then publish: a reader that sees S sees the tables.
        cur = self._sv
        self._install_sv_locked(SuperVersion(cur.mem, cur.imms, vs.current))
        vs.last_sequence = seq
        self._bg_cv.notify_all()  # the new tables may make a compaction due


def _place(fs: FileSystem, src: str, dst: str, move: bool) -> int:
    """Put a durable copy of ``src`` at ``dst`` (a hard link when ``move``
    and the filesystem allows it); return the bytes copied (0 for a link).
    The caller fsyncs the directory."""
    if move:
        try:
            fs.link(src, dst)
        except DiskError as e:
            if e.errno not in _NO_LINK:
                raise
        else:
            f = fs.open_appendable(dst)  # the link shares the data: make sure it is on disk
            try:
                f.sync()
            finally:
                f.close()
            return 0
    inp = fs.open_readable(src)
    try:
        out = fs.open_writable(dst)
        try:
            size = inp.size
            pos = 0
            while pos < size:
                chunk = inp.read_at(pos, min(_COPY_BYTES, size - pos))
                if not chunk:
                    raise DiskError(errno.EIO, "file shrank while being copied", src)
                out.write(chunk)
                pos += len(chunk)
            out.sync()
        finally:
            out.close()
    finally:
        inp.close()
    return size

