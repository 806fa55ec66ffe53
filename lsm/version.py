"""Versions: which SSTables make up the tree at one moment (LevelDB's
``version_set``), and the VersionSet that moves from one to the next through
manifest edits.

A :class:`Version` is immutable once built. Readers hold a reference to the
version they started with; Python's reference counting is the version's
reference count. ``VersionSet.live_versions`` is a ``WeakSet``: a table file
may be deleted only when no version in it (current, or held by a snapshot,
iterator or in-flight read) lists the file.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator

from .errors import CorruptionError, DiskError, Error
from .filenames import make_table_name
from .fs import FileSystem
from .invariants import ENABLED, check
from .manifest import (
    FORMAT_VERSION,
    FileMeta,
    ManifestWriter,
    VersionEdit,
    install_current,
    read_current,
    read_manifest,
)
from .memory import INT, SLOT, bytes_object
from .options import Options
from .rangedel import Fragments

__all__ = ["NUM_LEVELS", "Version", "VersionSet"]

# A FileMeta (8 slots, with its GC header) and its five ints: the keys come on top.
FILE_META_BYTES = 96 + 5 * INT
NUM_LEVELS = 7  # L0..L6, as LevelDB: with multiplier 10 and 64 MiB L1, L6 targets 6.4 PB
MANIFEST_ROLL_BYTES = 4 << 20  # write a fresh snapshot manifest past this size


class Version:
    """The table files of each level at one moment. Immutable, but for the
    ``seek_file`` hint.

    L0 files may overlap and are ordered newest first (by ``max_seq``); each
    deeper level is sorted by ``smallest`` with no two files overlapping.
    """

    __slots__ = ("levels", "_largest", "smallest", "deep_levels", "deep", "rd_files", "_frags", "seek_file",
                 "__weakref__")

    def __init__(self, levels: list[list[FileMeta]]) -> None:
        self.levels = levels
        # non-empty levels >= 1: point reads visit only these
        self.deep_levels = [lv for lv in range(1, len(levels)) if levels[lv]]
        # per level >= 1: the largest keys, for bisecting to the one candidate file
        self._largest = [[f.largest for f in lvl] for lvl in levels]
        self.smallest = [[f.smallest for f in lvl] for lvl in levels]
        # what a point read walks after L0: (largest keys, files) of each non-empty deeper level
        self.deep = [(self._largest[lv], levels[lv]) for lv in self.deep_levels]
        # the tables holding range tombstones, and (built on first use) their fragments
        self.rd_files = [f for lvl in levels for f in lvl if f.range_dels]
        self._frags: Fragments | None = None
        # The one mutable hint: a table whose allowed seeks point reads used
        # up (set by a reader, without a lock; read by the compaction picker).
        self.seek_file: FileMeta | None = None

    def fragments(self) -> Fragments | None:
        """Every range tombstone of this version's tables (the manifest's
        copies), fragmented; None when no table holds one. Built once, by
        whichever reader needs it first (racing threads build the same)."""
        if not self.rd_files:
            return None
        f = self._frags
        if f is None:
            f = self._frags = Fragments.build(t for m in self.rd_files for t in m.range_dels)
        return f

    def files(self) -> Iterator[tuple[int, FileMeta]]:
        for level, lvl in enumerate(self.levels):
            for f in lvl:
                yield level, f

    def numbers(self) -> set[int]:
        return {f.number for lvl in self.levels for f in lvl}

    def largest(self, level: int) -> list[bytes]:
        """The largest key of each file of ``level`` (L1+: ascending)."""
        return self._largest[level]

    def candidates(self, key: bytes) -> list[FileMeta]:
        """The files a point read of ``key`` must consult, in the order it must
        consult them: L0 files whose range holds the key (newest first), then
        the one candidate of each deeper non-empty level."""
        out = [f for f in self.levels[0] if f.smallest <= key <= f.largest]
        for level in self.deep_levels:
            lvl = self.levels[level]
            i = bisect_left(self._largest[level], key)
            if i < len(lvl) and lvl[i].smallest <= key:
                out.append(lvl[i])
        return out

    def overlapping(self, level: int, lo: bytes | None, hi: bytes | None) -> list[FileMeta]:
        """Files of ``level`` whose [smallest, largest] meets [lo, hi] (None = unbounded)."""
        return [f for f in self.levels[level]
                if (lo is None or f.largest >= lo) and (hi is None or f.smallest <= hi)]

    def level_bytes(self, level: int) -> int:
        return sum(f.size for f in self.levels[level])

    def memory_bytes(self) -> int:
        """Memory the table metadata of this version holds (lsm.memory): a
        FileMeta with its two keys per table, and this version's lists of
        them (the levels, their smallest and largest keys: 3 slots a table).
        Versions that snapshots keep alive share most FileMetas."""
        return sum(FILE_META_BYTES + bytes_object(len(f.smallest)) + bytes_object(len(f.largest)) + 3 * SLOT
                   for lvl in self.levels for f in lvl)

    def _check(self, fs: FileSystem | None = None, dbpath: str | None = None) -> None:
        """Invariants: unique file numbers; L0 newest first; L1+ sorted and
        disjoint; every file exists on disk (when ``fs`` is given)."""
        seen: set[int] = set()
        for level, lvl in enumerate(self.levels):
            for f in lvl:
                check(f.number not in seen, f"file {f.number} appears twice")
                seen.add(f.number)
                check(f.smallest <= f.largest, f"file {f.number} has smallest > largest")
                if fs is not None and dbpath is not None:
                    check(fs.exists(make_table_name(dbpath, f.number)), f"file {f.number} missing")
            if level == 0:
                check(all(a.max_seq >= b.max_seq for a, b in zip(lvl, lvl[1:])), "L0 not newest first")
            else:
                check(all(a.largest < b.smallest for a, b in zip(lvl, lvl[1:])),
                      f"L{level} files overlap or are unsorted")


def apply_edit(base: Version, edit: VersionEdit) -> Version:
    """The version after ``edit``. Pure; raises ValueError on an inconsistent edit."""
    levels = [list(lvl) for lvl in base.levels]
    for level, number in edit.deleted:
        lvl = levels[level]
        for i, f in enumerate(lvl):
            if f.number == number:
                del lvl[i]
                break
        else:
            raise ValueError(f"edit deletes file {number} which is not in L{level}")
    for level, meta in edit.added:
        if level >= NUM_LEVELS:
            raise ValueError(f"edit adds file {meta.number} to level {level} >= {NUM_LEVELS}")
        levels[level].append(meta)
    levels[0].sort(key=lambda f: (f.max_seq, f.number), reverse=True)
    for lvl in levels[1:]:
        lvl.sort(key=lambda f: f.smallest)
    return Version(levels)


class VersionSet:
    """The current version, the file-number counter, the last sequence, and
    the manifest that records them.

    Locking: every method that changes state is called with the DB mutex held
    (the ``_locked`` methods of the DB call in). ``log_and_apply`` performs the
    manifest write + fsync while that mutex is held: edits are small, and
    holding it keeps edits totally ordered without a second lock.
    """

    def __init__(self, fs: FileSystem, dbpath: str, options: Options) -> None:
        self.fs = fs
        self.dbpath = dbpath
        self.options = options
        self.current = Version([[] for _ in range(NUM_LEVELS)])
        self.live_versions: weakref.WeakSet[Version] = weakref.WeakSet()
        self.live_versions.add(self.current)
        self.next_file = 2  # 1 is the first manifest
        self.last_sequence = 0
        self.log_number = 0  # logs numbered below this are fully in tables
        self.manifest_number = 0
        self.compact_pointers: dict[int, bytes] = {}
        # The database's clock as last recorded (TAG_CLOCK; 0: never), and
        # the clock each edit records (set by the DB: its TTL clock).
        self.clock_floor = 0.0
        self.clock: Callable[[], float] | None = None
        self._manifest: ManifestWriter | None = None
        # A failed manifest write (append, fsync, or a new manifest and its
        # CURRENT): what the files now hold is unknown (the edit's bytes may be
        # there, or a fsync may have dropped them). No edit may follow it.
        self._failed: BaseException | None = None

    def new_file_number(self) -> int:
        n = self.next_file
        self.next_file += 1
        return n

    def mark_file_number_used(self, number: int) -> None:
        if number >= self.next_file:
            self.next_file = number + 1

    # -- recovery ---------------------------------------------------------

    def recover(self) -> str:
        """Rebuild state from ``CURRENT`` and its manifest; return the manifest path.

        Raises: CorruptionError on a damaged or inconsistent manifest.
        """
        path = read_current(self.fs, self.dbpath)
        version = self.current
        for offset, edit in read_manifest(self.fs, path):
            try:
                version = apply_edit(version, edit)
            except ValueError as e:
                raise CorruptionError(path, offset, str(e)) from None
            if edit.log_number is not None:
                self.log_number = edit.log_number
            if edit.next_file is not None:
                self.next_file = max(self.next_file, edit.next_file)
            if edit.last_sequence is not None:
                self.last_sequence = max(self.last_sequence, edit.last_sequence)
            if edit.clock is not None:
                self.clock_floor = max(self.clock_floor, edit.clock)
            for level, key in edit.compact_pointers:
                self.compact_pointers[level] = key
        for _, f in version.files():
            self.mark_file_number_used(f.number)
            if not self.fs.exists(make_table_name(self.dbpath, f.number)):
                raise CorruptionError(path, 0, f"the manifest lists table {f.number:06d}.sst, which is "
                                      "missing; run `lsm-dump repair` to rebuild from the tables present")
        self._install(version)
        self.manifest_number = int(path.rsplit("-", 1)[1])
        self.mark_file_number_used(self.manifest_number)
        return path

    def _snapshot_edit(self) -> VersionEdit:
        edit = VersionEdit(format_version=FORMAT_VERSION, log_number=self.log_number,
                           next_file=self.next_file, last_sequence=self.last_sequence,
                           clock=self.clock() if self.clock is not None else self.clock_floor or None)
        edit.compact_pointers = sorted(self.compact_pointers.items())
        for level, f in self.current.files():
            edit.add_file(level, f)
        return edit

    def write_new_manifest(self) -> None:
        """Start a new manifest holding a full snapshot and point CURRENT at it.

        Crash points: before the rename the old manifest stays current (the
        new file is an orphan, removed at next open); after it, the new one.
        """
        number = self.new_file_number()
        temp = self.new_file_number()
        writer = ManifestWriter(self.fs, self.dbpath, number)
        try:
            edit = self._snapshot_edit()
            edit.next_file = self.next_file
            writer.append(edit)
            install_current(self.fs, self.dbpath, number, temp)
        except BaseException:
            writer.close()
            raise
        old = self._manifest
        self._manifest = writer
        self.manifest_number = number
        if old is not None:
            old.close()

    # -- edits --------------------------------------------------------------

    def log_and_apply(self, edit: VersionEdit) -> Version:
        """Record ``edit`` durably in the manifest, then make it current.

        Requires: DB mutex held. If the write fails nothing is installed,
        and every later call raises Error without writing: the failed edit
        may or may not be in the file, so none may follow it (the caller
        enters the background-error state; reopening recovers from what the
        manifest holds).
        """
        if self._failed is not None:
            raise Error(f"{self.dbpath}: no manifest edit after a failed manifest write "
                        f"({self._failed}); reopen the database") from self._failed
        if edit.next_file is None:
            edit.next_file = self.next_file
        if edit.last_sequence is None:
            edit.last_sequence = self.last_sequence
        if edit.clock is None and self.clock is not None:
            edit.clock = self.clock()
        version = apply_edit(self.current, edit)
        try:
            self._write_edit(edit, version)
        except BaseException as e:
            self._failed = e
            raise
        for level, key in edit.compact_pointers:
            self.compact_pointers[level] = key
        self._install(version)
        return version

    def _write_edit(self, edit: VersionEdit, version: Version) -> None:
        """log_and_apply's write: append ``edit``, or roll to a new manifest."""
        if self._manifest is None or self._manifest.size > MANIFEST_ROLL_BYTES:
            # the snapshot edit of a new manifest already includes this edit's effect
            prev_current, prev_log = self.current, self.log_number
            prev_pointers = dict(self.compact_pointers)
            prev_seq, prev_next = self.last_sequence, self.next_file
            self.current = version
            if edit.log_number is not None:
                self.log_number = edit.log_number
            for level, key in edit.compact_pointers:  # part of the snapshot too
                self.compact_pointers[level] = key
            # The snapshot records the set's counters: an edit may carry larger
            # ones (an ingest's sequence), which an append would have recorded.
            self.last_sequence = max(self.last_sequence, edit.last_sequence or 0)
            self.next_file = max(self.next_file, edit.next_file or 0)
            try:
                self.write_new_manifest()
            except BaseException:
                self.current, self.log_number = prev_current, prev_log
                self.compact_pointers = prev_pointers
                self.last_sequence, self.next_file = prev_seq, prev_next
                raise
        else:
            self._manifest.append(edit)
            if edit.log_number is not None:
                self.log_number = edit.log_number

    def install(self, version: Version) -> None:
        """Make ``version`` current without a manifest write (recovery, before
        the first manifest of this open is written). Requires: DB mutex held."""
        self._install(version)

    def _install(self, version: Version) -> None:
        if ENABLED:
            version._check(self.fs, self.dbpath)
        self.current = version
        self.live_versions.add(version)

    def live_files(self) -> set[int]:
        """Numbers of every table some live version lists."""
        live = self.current.numbers()
        for v in list(self.live_versions):
            live |= v.numbers()
        return live

    def close(self) -> None:
        if self._manifest is not None:
            try:
                self._manifest.close()
            except DiskError:
                pass
            self._manifest = None
