"""Repair: rebuild a database's manifest from the tables and logs present
(LevelDB ``repair.cc``), behind ``lsm-dump repair``.

It takes the exclusive ``LOCK``, reads what is left of the old manifest (for
the log number, the last sequence and the tables an edit already deleted),
reads every table in full (rewriting damaged ones from their good blocks,
setting aside unreadable ones), converts unflushed logs into tables, places
the tables in levels so that every point read finds the newest version, and
installs a new manifest with the engine's own writer and
``install_current``. It never deletes: files it stops using go to
``<db>/lost/``. See :func:`repair` for the steps and their crash safety.
"""

from __future__ import annotations

import heapq
import os
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence

from .builder import write_tables
from .dumprecords import Damage, RepairReport, TableFile
from .errors import DiskError, Error
from .filenames import (
    LOST_DIR,
    FileType,
    check_path,
    make_current_name,
    make_log_name,
    make_manifest_name,
    make_table_name,
    parse_name,
)
from .filescan import damage_finding, iter_log_ops, locked, read_edits, scan_table
from .fs import FileSystem, OsFileSystem
from .keys import RANGE_DELETE
from .manifest import (
    FORMAT_VERSION as MANIFEST_FORMAT_VERSION,
    FileMeta,
    ManifestWriter,
    VersionEdit,
    install_current,
    read_current,
)
from .options import Options
from .sstable import TableReader
from .sstable.props import EXTERNAL_PROP
from .version import NUM_LEVELS, Version, apply_edit

__all__ = ["place_tables", "repair"]


def repair(dbpath: str | os.PathLike, *, options: Options | None = None, fs: FileSystem | None = None) -> RepairReport:
    """Rebuild the manifest of ``dbpath`` from the tables and logs present.

    Steps: (0) from the readable part of the old manifest, if any, take the
    log number, the last sequence, and the tables an edit deleted (obsolete:
    set aside). (1) Read every other table fully; one with damaged data blocks
    is rewritten from its intact blocks, one that cannot be opened is set aside.
    (2) Every log not known to be in a table already is converted into a
    table, skipping damaged records (a log is known flushed when it is
    numbered below the old manifest's log number, or when every sequence in
    it is at or below the newest table's: flushes go in log order). (3)
    Tables whose key ranges overlap with interleaved sequence ranges (e.g. a
    compaction's output beside its undeleted inputs), and where the keys they
    share show that the one read first does not always hold the newer version,
    are merged into new tables keeping every version; repeated until no such
    pair is left. (4) The rest are placed in levels: newest
    first, each one level below the deepest newer table it overlaps, so every
    read finds the newest version first; files with no overlap share L1. When
    that needs more than L6, the deepest six layers keep L1..L6 and the newer
    layers share L0 (ordered by max sequence, as the engine reads it).
    (5) A new manifest snapshot is written and installed with the engine's
    writer and ``install_current``. (6) Files no longer used (old manifests,
    converted logs, replaced and unreadable tables) are moved into ``lost/``;
    the old ``CURRENT`` is saved there as ``CURRENT.bak`` first.

    Durability: crash-safe at every step. Until ``CURRENT`` is renamed, the
    old state is untouched (new tables and the new manifest are orphans);
    afterwards the new manifest lists only fsynced tables, and moving files
    aside is idempotent. Running ``repair`` again is safe.
    Caveat (as LevelDB's repairer): when no manifest is readable, an obsolete
    table left behind by a crash may bring back versions that a compaction had
    already dropped.
    Also ``lsm.repair(path)``:

    >>> import lsm, os, tempfile
    >>> path = tempfile.mkdtemp()
    >>> with lsm.open(path) as db:
    ...     _ = db.put(b"k", b"v")
    >>> os.remove(os.path.join(path, "CURRENT"))              # the manifest is lost
    >>> report = lsm.repair(path)
    >>> with lsm.open(path) as db:
    ...     db.get(b"k")
    b'v'

    Raises: TypeError/ValueError for a bad ``dbpath``; LockError when any
    process has the database open (takes the exclusive ``LOCK``); Error when
    ``dbpath`` is not a directory; DiskError.
    """
    dbpath = check_path(dbpath, "dbpath")
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be an lsm.Options or None, not {type(options).__name__}")
    fs = fs if fs is not None else OsFileSystem()
    if not os.path.isdir(dbpath):
        raise Error(f"{dbpath}: no such database directory")
    with locked(fs, dbpath, shared=False):
        return _Repairer(fs, dbpath, options if options is not None else Options()).run()


def _seq_interleave(a: FileMeta, b: FileMeta) -> bool:
    return not (a.min_seq > b.max_seq or b.min_seq > a.max_seq)


def _read_order(m: FileMeta) -> tuple[int, int]:
    """Sort key (descending) of the order :func:`place_tables` reads tables in."""
    return (m.max_seq, m.number)


def _conflict_groups(metas: list[FileMeta],
                     confirm: Callable[[FileMeta, FileMeta], bool] | None = None) -> list[list[FileMeta]]:
    """Connected sets (two or more) of tables that must be merged.

    Two tables conflict when their key ranges overlap and their sequence
    ranges interleave, so the metadata cannot prove that the one
    :func:`place_tables` reads first holds the newer version of every shared
    key; ``confirm(a, b)``, when given, looks at the keys to say whether it
    really does not (returns True for a real conflict).
    Complexity: a sweep by smallest key, O(n log n + overlapping pairs) plus
    the confirmations.
    """
    order = sorted(metas, key=lambda m: m.smallest)
    parent = {m.number: m.number for m in metas}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.smallest > a.largest:
                break
            if _seq_interleave(a, b) and root(a.number) != root(b.number) and (
                    confirm is None or confirm(a, b)):
                parent[root(a.number)] = root(b.number)
    groups: dict[int, list[FileMeta]] = {}
    for m in metas:
        groups.setdefault(root(m.number), []).append(m)
    return [g for g in groups.values() if len(g) > 1]


def place_tables(metas: list[FileMeta]) -> list[list[FileMeta]]:
    """Levels for tables with no conflicts (see :func:`repair`, step 4).

    Requires: of two tables whose key ranges overlap, the one with the higher
    ``(max_seq, number)`` holds the newer version of every key they share
    (always true when their sequence ranges are disjoint). Guarantees: L1+
    levels are key-disjoint; where two tables overlap, the shallower (in L0,
    the earlier) is that one, so a read's first hit is the newest version.
    Complexity: O(n * layers * log n).

    >>> a = FileMeta(1, 10, 1, b"a", b"m", 1, 5)
    >>> b = FileMeta(2, 10, 1, b"k", b"z", 6, 9)
    >>> c = FileMeta(3, 10, 1, b"n", b"p", 1, 2)
    >>> [[f.number for f in lvl] for lvl in place_tables([a, b, c])][:3]
    [[], [2], [1, 3]]
    """
    order = sorted(metas, key=_read_order, reverse=True)
    # layers[d]: the key-disjoint tables of depth d + 1, as sorted smallest / largest lists
    layers: list[tuple[list[bytes], list[bytes], list[FileMeta]]] = []
    depth: list[tuple[FileMeta, int]] = []
    for m in order:  # newest first: every overlapping table already placed is newer
        d = len(layers)
        while d > 0 and not _layer_overlaps(layers[d - 1], m):
            d -= 1
        if d == len(layers):
            layers.append(([], [], []))
        lo, hi, files = layers[d]
        i = bisect_left(lo, m.smallest)
        lo.insert(i, m.smallest)
        hi.insert(i, m.largest)
        files.insert(i, m)
        depth.append((m, d + 1))
    levels: list[list[FileMeta]] = [[] for _ in range(NUM_LEVELS)]
    # Too many layers: the deepest ones keep L1..L6 and the newest share L0,
    # where reads go newest-first by max_seq (right, since overlapping tables
    # there have disjoint sequence ranges).
    shift = max(0, len(layers) - (NUM_LEVELS - 1))
    for m, d in depth:
        if d - shift <= 0:
            levels[0].append(m)  # already newest first
    for d, (_, _, files) in enumerate(layers, start=1):
        if d - shift > 0:
            levels[d - shift] = files
    return levels


def _layer_overlaps(layer: tuple[list[bytes], list[bytes], list[FileMeta]], m: FileMeta) -> bool:
    """Whether ``m``'s key range meets a table of ``layer`` (sorted and disjoint,
    so only the last table starting at or before ``m.largest`` can)."""
    lo, hi, _ = layer
    i = bisect_right(lo, m.largest)
    return i > 0 and hi[i - 1] >= m.smallest


class _Repairer:
    """One run of :func:`repair`. Requires: the exclusive ``LOCK`` is held."""

    def __init__(self, fs: FileSystem, dbpath: str, options: Options) -> None:
        self.fs = fs
        self.dbpath = dbpath
        self.options = options
        self.report = RepairReport(dbpath)
        self.next_number = 2
        self.aside: list[tuple[str, str]] = []  # (path, why): moved into lost/ after the install
        self.global_seqs: dict[int, int] = {}  # table number -> global sequence, from the old manifest

    def new_number(self) -> int:
        n = self.next_number
        self.next_number += 1
        return n

    def run(self) -> RepairReport:
        fs, dbpath, rep = self.fs, self.dbpath, self.report
        files: dict[FileType, list[int]] = {}
        for name in fs.listdir(dbpath):
            parsed = parse_name(name)
            if parsed is not None:
                files.setdefault(parsed[0], []).append(parsed[1])
                self.next_number = max(self.next_number, parsed[1] + 1)
        old_log_number, old_last_seq, obsolete = self._old_manifest_state(files.get(FileType.MANIFEST, []))
        for n in sorted(obsolete & set(files.get(FileType.TABLE, []))):
            self.aside.append((make_table_name(dbpath, n), "obsolete: the old manifest deleted it"))
            rep.tables_obsolete.append(n)
        metas = self._collect_tables(sorted(set(files.get(FileType.TABLE, [])) - obsolete))
        table_max = max((m.max_seq for m in metas), default=0)
        metas += self._convert_logs(sorted(files.get(FileType.LOG, [])), old_log_number, table_max)
        while groups := _conflict_groups(metas, self._really_conflict):
            for group in groups:  # merged outputs may conflict anew: look again
                numbers = {m.number for m in group}
                metas = [m for m in metas if m.number not in numbers] + self._merge(group)
                rep.tables_merged.extend(sorted(numbers))
                for n in sorted(numbers):
                    self.aside.append((make_table_name(dbpath, n), "merged into new tables"))
        levels = place_tables(metas)
        last_seq = max([old_last_seq] + [m.max_seq for m in metas])
        self._install(levels, last_seq, files.get(FileType.MANIFEST, []))
        self._move_aside()
        return rep

    # step 0: what the old manifest still tells ----------------------------------

    def _old_manifest_state(self, manifests: list[int]) -> tuple[int, int, set[int]]:
        """``(log_number, last_sequence, obsolete_tables)`` from the readable
        prefix of the manifest CURRENT names (else the newest one). Obsolete
        tables are those an edit removed: a durable edit means their data
        lives on elsewhere, so bringing them back could only resurrect."""
        path = None
        try:
            path = read_current(self.fs, self.dbpath)
        except Error:
            if manifests:
                path = make_manifest_name(self.dbpath, max(manifests))
        if path is None or not self.fs.exists(path):
            return 0, 0, set()
        try:
            edits, problems = read_edits(self.fs, path)
        except DiskError as e:
            self.report.problems.append(f"old manifest unreadable: {e}")
            return 0, 0, set()
        self.report.problems.extend(f"old manifest {path}: {damage_finding(p, 'manifest').message}"
                                    for p in problems)
        log_number = last_seq = 0
        version = Version([[] for _ in range(NUM_LEVELS)])
        seen: set[int] = set()
        for _, edit in edits:
            # ingested tables: the sequence their entries are read at (lsm.ingest)
            self.global_seqs.update((m.number, m.global_seq) for _, m in edit.added if m.global_seq)
            try:
                version = apply_edit(version, edit)
            except ValueError as err:
                self.report.problems.append(f"old manifest {path}: {err}")
                break
            seen.update(n for _, n in edit.deleted)
            log_number = edit.log_number if edit.log_number is not None else log_number
            last_seq = max(last_seq, edit.last_sequence or 0)
        return log_number, last_seq, seen - version.numbers()

    # step 1: tables ------------------------------------------------------------

    def _collect_tables(self, numbers: list[int]) -> list[FileMeta]:
        metas = []
        for number in numbers:
            path = make_table_name(self.dbpath, number)
            gseq = self.global_seqs.get(number, 0)
            scan = scan_table(self.fs, path, number, global_seq=gseq)
            self.report.tables_checked += 1
            if not gseq and scan.error is None and scan.props.get(EXTERNAL_PROP) == 1:
                # an ingested table whose sequence no readable edit tells: read at
                # sequence 0 it would sink below older values. Set aside for re-ingest.
                why = "an ingested external table whose global sequence is lost (ingest it again)"
                self.report.problems.append(f"{path}: {why}")
                self.aside.append((path, why))
                continue
            if scan.error is not None:
                self.report.problems.append(f"{path}: unreadable: {scan.error}")
                self.aside.append((path, f"unreadable: {scan.error}"))
                continue
            if scan.block_errors or not scan.entries_or_dels:
                why = (f"{len(scan.block_errors)} damaged blocks, first: {scan.block_errors[0]}"
                       if scan.block_errors else "holds no entries")
                self.report.problems.append(f"{path}: {why}")
                self.aside.append((path, why))
                kept = scan_table(self.fs, path, number, keep=True).kept if scan.entries else None
                if kept or scan.range_dels:  # read again keeping entries: only damaged tables are held in memory
                    metas += self._write(kept or [], scan.range_dels)
                    self.report.tables_salvaged.append(number)
                continue
            metas.append(FileMeta(number, self.fs.file_size(path), scan.entries, scan.smallest,
                                  scan.largest, scan.min_seq, scan.max_seq, gseq,
                                  range_dels=tuple(scan.range_dels)))
        return metas

    # step 2: logs ----------------------------------------------------------------

    def _convert_logs(self, numbers: list[int], old_log_number: int, table_max: int) -> list[FileMeta]:
        """Entries of every log not yet in a table, written as tables; every log is set aside."""
        versions: dict[tuple[bytes, int], tuple[int, bytes]] = {}
        range_dels: dict[tuple[bytes, bytes, int], None] = {}
        for number in numbers:
            path = make_log_name(self.dbpath, number)
            ops = []
            for rec in iter_log_ops(self.fs.read_file(path), path, zero_tail_ok=True):  # zeros hold nothing to salvage
                if isinstance(rec, Damage):
                    self.report.problems.append(f"{path} at offset {rec.offset}: {rec.reason} "
                                                f"({rec.nbytes} bytes skipped)")
                else:
                    ops.append(rec)
            if number < old_log_number or (ops and max(o[1] for o in ops) <= table_max):
                self.aside.append((path, "obsolete log: its writes are already in tables"))
                continue
            for _, seq, kind, key, stored, _, _ in ops:
                if kind == RANGE_DELETE:
                    range_dels[(key, stored, seq)] = None  # a range tombstone: start, end
                else:
                    versions[(key, seq)] = (kind, stored)
            if ops:
                self.report.logs_converted.append(number)
            self.aside.append((path, "converted into a table" if ops else "empty log"))
        entries = sorted(((k, s, kind, v) for (k, s), (kind, v) in versions.items()),
                         key=lambda e: (e[0], -e[1]))
        self.report.wal_entries_recovered = len(entries) + len(range_dels)
        return self._write(entries, list(range_dels)) if entries or range_dels else []

    # steps 3-5: merge, write, install ---------------------------------------------

    def _really_conflict(self, a: FileMeta, b: FileMeta) -> bool:
        """Whether some key both tables hold has a version in the table read
        later (lower ``(max_seq, number)``) at least as new as one in the
        table read first. Reads only the overlapping key range of each."""
        first, later = (a, b) if _read_order(a) > _read_order(b) else (b, a)
        lo, hi = max(a.smallest, b.smallest), min(a.largest, b.largest)
        readers = []
        try:
            for m in (first, later):
                f = self.fs.open_readable(make_table_name(self.dbpath, m.number))
                readers.append(TableReader(f, m.number, None, True, global_seq=m.global_seq))
            newer = _key_seq_ranges(readers[0], lo, hi)
            older = _key_seq_ranges(readers[1], lo, hi)
            x, y = next(newer, None), next(older, None)
            while x is not None and y is not None:
                if x[0] < y[0]:
                    x = next(newer, None)
                elif y[0] < x[0]:
                    y = next(older, None)
                elif x[1] <= y[2]:  # first's oldest version is not newer than later's newest
                    return True
                else:
                    x, y = next(newer, None), next(older, None)
            return False
        finally:
            for r in readers:
                r.close()

    def _merge(self, group: list[FileMeta]) -> list[FileMeta]:
        readers = []
        try:
            for m in group:
                f = self.fs.open_readable(make_table_name(self.dbpath, m.number))
                readers.append(TableReader(f, m.number, None, True, global_seq=m.global_seq))
            merged = heapq.merge(*(r.iter_forward(b"", None) for r in readers))
            return self._write(((k, -ns, kind, v) for k, ns, kind, v in _dedupe(merged)),
                               [t for r in readers for t in r.range_dels])
        finally:
            for r in readers:
                r.close()

    def _write(self, entries: Iterable[tuple[bytes, int, int, bytes]],
               range_dels: Sequence[tuple[bytes, bytes, int]] = ()) -> list[FileMeta]:
        """Write table-ordered entries (and range tombstones) into tables split
        at ``target_file_bytes`` (never between versions of one key); fsync
        them and the directory."""
        metas = write_tables(self.fs, self.dbpath, entries, self.options, self.new_number,
                             split_bytes=self.options.target_file_bytes, range_dels=range_dels)
        self.fs.fsync_dir(self.dbpath)
        return metas

    def _install(self, levels: list[list[FileMeta]], last_seq: int, old_manifests: list[int]) -> None:
        fs, dbpath, rep = self.fs, self.dbpath, self.report
        number, temp, log = self.new_number(), self.new_number(), self.new_number()
        # The manifest's log must exist (recovery refuses a missing one): an
        # empty log, its name made durable with the manifest's below.
        fs.open_writable(make_log_name(dbpath, log)).close()
        edit = VersionEdit(format_version=MANIFEST_FORMAT_VERSION, log_number=log,
                           next_file=self.next_number, last_sequence=last_seq)
        for level, lvl in enumerate(levels):
            for m in lvl:
                edit.add_file(level, m)
        writer = ManifestWriter(fs, dbpath, number)
        try:
            writer.append(edit)
        finally:
            writer.close()
        fs.fsync_dir(dbpath)
        current = make_current_name(dbpath)
        if fs.exists(current):
            self._save_copy(current, "CURRENT.bak")
        install_current(fs, dbpath, number, temp)
        rep.manifest = writer.path
        rep.log_number, rep.next_file, rep.last_sequence = log, self.next_number, last_seq
        rep.files = [TableFile.of(level, m) for level, lvl in enumerate(levels) for m in lvl]
        for n in sorted(old_manifests):
            self.aside.append((make_manifest_name(dbpath, n), "replaced by the rebuilt manifest"))

    # step 6: set aside -----------------------------------------------------------

    def _lost_path(self, name: str) -> str:
        lost = os.path.join(self.dbpath, LOST_DIR)
        self.fs.makedirs(lost)
        dst, i = os.path.join(lost, name), 0
        while self.fs.exists(dst):
            i += 1
            dst = os.path.join(lost, f"{name}.{i}")
        return dst

    def _save_copy(self, path: str, name: str) -> None:
        dst = self._lost_path(name)
        f = self.fs.open_writable(dst)
        try:
            f.write(self.fs.read_file(path))
            f.sync()
        finally:
            f.close()
        self.fs.fsync_dir(os.path.dirname(dst))
        self.fs.fsync_dir(self.dbpath)  # the lost/ directory entry itself
        self.report.moved.append((path, dst, "copy of the old CURRENT"))

    def _move_aside(self) -> None:
        if not self.aside:
            return
        for path, why in self.aside:
            if not self.fs.exists(path):
                continue
            dst = self._lost_path(os.path.basename(path))
            self.fs.rename(path, dst)
            self.report.moved.append((path, dst, why))
        self.fs.fsync_dir(os.path.join(self.dbpath, LOST_DIR))
        self.fs.fsync_dir(self.dbpath)


def _key_seq_ranges(reader: TableReader, lo: bytes, hi: bytes) -> Iterator[tuple[bytes, int, int]]:
    """``(key, min_seq, max_seq)`` per user key of ``reader`` in [lo, hi], ascending."""
    cur: list = []
    for key, neg_seq, _, _ in reader.iter_forward(lo, None):
        if key > hi:
            break
        if cur and cur[0] == key:
            cur[1] = -neg_seq  # versions come newest first: the last one is the oldest
        else:
            if cur:
                yield cur[0], cur[1], cur[2]
            cur = [key, -neg_seq, -neg_seq]
    if cur:
        yield cur[0], cur[1], cur[2]


def _dedupe(entries: Iterator[tuple[bytes, int, int, bytes]]) -> Iterator[tuple[bytes, int, int, bytes]]:
    """Drop repeats of one ``(key, -seq)``: the same version kept in two tables."""
    last = None
    for e in entries:
        if (e[0], e[1]) != last:
            last = (e[0], e[1])
            yield e


