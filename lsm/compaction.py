"""Compaction: the picker (which tables merge into which level) and the
merge job (tables in, tables out; what it may drop is lsm.builder's rule).

Nothing here takes the DB mutex: jobs run on inputs the caller chose under
it and return :class:`~lsm.manifest.FileMeta` for the caller to install.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import compress
from typing import Any

from .builder import ColumnTables, drop_obsolete, drop_range_dels, write_tables
from .errors import Error
from .filenames import make_table_name
from .fs import FileSystem
from .iterators import merge
from .keys import DELETE, PUT_TTL
from .manifest import FileMeta
from .options import Options
from .rangedel import Fragments
from .sstable import TableReader
from .sstable.reader import read_props
from .version import NUM_LEVELS, Version

__all__ = ["INTRA_L0_RATIO", "Compaction", "JobSpec", "drop_obsolete", "intra_l0_instead", "pick_cleanup",
           "pick_compaction", "pick_seek", "run_job", "seek_level"]

_F64 = struct.Struct("<d")

INTRA_L0_RATIO = 1.5
"""An L0->L1 compaction that would rewrite more than this many bytes (and
entries) of L1 per byte (and entry) it moves down from L0 merges its L0
inputs into one L0 table instead (an *intra-L0* compaction), so that L0
batches grow until pushing them into L1 is worth it. The price: up to
1/this of the L1 overlap can wait in L0 (newer versions shadowing L1's, so
more space under overwrites). See :func:`pick_compaction`."""


# -- picking ---------------------------------------------------------------


class Compaction:
    """Inputs chosen by the picker: ``inputs[0]`` from ``level``, ``inputs[1]``
    the overlapping files of ``level + 1`` (the output level)."""

    __slots__ = ("level", "output_level", "inputs", "grandparents", "reason", "manual")

    def __init__(self, level: int, output_level: int, inputs: tuple[list[FileMeta], list[FileMeta]],
                 grandparents: list[FileMeta], reason: str, manual: bool = False) -> None:
        self.level = level
        self.output_level = output_level
        self.inputs = inputs
        self.grandparents = grandparents
        self.reason = reason
        self.manual = manual

    def all_inputs(self) -> list[tuple[int, FileMeta]]:
        return [(self.level, f) for f in self.inputs[0]] + [(self.output_level, f) for f in self.inputs[1]]

    def input_bytes(self) -> int:
        return sum(f.size for _, f in self.all_inputs())

    def is_intra_l0(self) -> bool:
        """L0 tables merged into one L0 table (see :data:`INTRA_L0_RATIO`)."""
        return self.level == 0 and self.output_level == 0

    def is_trivial_move(self) -> bool:
        """One input file, nothing to merge with, little grandparent overlap: just relink it."""
        return (len(self.inputs[0]) == 1 and not self.inputs[1] and not self.manual
                and self.output_level != self.level
                and sum(f.size for f in self.grandparents) <= 10 * self.inputs[0][0].size)


def max_bytes_for_level(options: Options, level: int) -> float:
    return options.level_base_bytes * options.level_multiplier ** (level - 1)


def level_scores(version: Version, options: Options) -> list[tuple[float, int]]:
    """``(score, level)`` for L0..L(n-2), highest first. A score >= 1 needs compaction."""
    scores = [(len(version.levels[0]) / options.l0_compaction_trigger, 0)]
    for level in range(1, NUM_LEVELS - 1):
        scores.append((version.level_bytes(level) / max_bytes_for_level(options, level), level))
    scores.sort(reverse=True)
    return scores


def _range(files: list[FileMeta]) -> tuple[bytes, bytes]:
    return min(f.smallest for f in files), max(f.largest for f in files)


def expand_l0(version: Version, files: list[FileMeta]) -> list[FileMeta]:
    """Grow a set of L0 inputs until no other L0 file overlaps their range
    (L0 files overlap each other; taking part of an overlapping cluster could
    move an older version below a newer one)."""
    chosen = list(files)
    while True:
        lo, hi = _range(chosen)
        more = [f for f in version.overlapping(0, lo, hi) if f not in chosen]
        if not more:
            return chosen
        chosen += more


def setup_compaction(version: Version, options: Options, level: int, inputs: list[FileMeta],
                     reason: str, manual: bool = False) -> Compaction:
    if level == 0:
        inputs = expand_l0(version, inputs)
    lo, hi = _range(inputs)
    out_level = level + 1
    parents = version.overlapping(out_level, lo, hi)
    grand = version.overlapping(out_level + 1, *_range(inputs + parents)) if out_level + 1 < NUM_LEVELS else []
    inputs0 = sorted(inputs, key=lambda f: f.smallest) if level else inputs
    return Compaction(level, out_level, (inputs0, parents), grand, reason, manual)


def pick_compaction(version: Version, options: Options, pointers: dict[int, bytes],
                    oldest_snapshot: int | None = None) -> Compaction | None:
    """The compaction the tree needs most, or None when every score is below 1.

    For L1+ the input is the first file after that level's compaction pointer
    (wrapping around), so successive compactions sweep the whole key space.

    For L0 the input is the oldest file expanded to its overlapping cluster.
    When pushing that cluster into L1 would rewrite more than
    :data:`INTRA_L0_RATIO` times its size of L1 (random writes into a large
    L1), the cluster is merged into one L0 table instead: the file count that
    triggered the compaction drops just the same, at the cost of rewriting the
    L0 bytes rather than the much larger L1 overlap, and the next L0->L1
    compaction moves a bigger batch per byte of L1 rewritten.
    """
    score, level = level_scores(version, options)[0]
    if score < 1:
        return pick_seek(version, options) or pick_cleanup(version, oldest_snapshot)
    files = version.levels[level]
    if level == 0:
        c = setup_compaction(version, options, 0, [files[-1]], f"L0 files {len(files)}")
        return intra_l0_instead(c) or c
    ptr = pointers.get(level)
    pick = files[0]
    if ptr is not None:
        for f in files:
            if f.largest > ptr:
                pick = f
                break
    return setup_compaction(version, options, level, [pick], f"L{level} score {score:.2f}")


def seek_level(version: Version) -> int | None:
    """The level of ``version.seek_file`` when a compaction can push it down
    (it is still in this version, with a level below it), else None."""
    f = version.seek_file
    if f is None:
        return None
    for level in range(NUM_LEVELS - 1):
        if any(g is f for g in version.levels[level]):
            return level
    return None


def pick_seek(version: Version, options: Options) -> Compaction | None:
    """LevelDB's seek compaction: the table point reads looked in first and
    then passed by so often that it used up its ``allowed_seeks``
    (:class:`~lsm.manifest.FileMeta`), merged into the level below with what
    overlaps it there, so that those reads find one table fewer in their way.
    An L0 table takes its overlapping L0 cluster along; never intra-L0.
    Only when no level needs compacting by size."""
    level = seek_level(version)
    if level is None:
        return None
    f = version.seek_file
    assert f is not None
    return setup_compaction(version, options, level, [f], f"L{level} seeks")


def pick_cleanup(version: Version, oldest_snapshot: int | None) -> Compaction | None:
    """A table of L1 or deeper whose range tombstones can all be dropped now,
    rewritten on its own in its level; or None.

    A range tombstone leaves the tree only when a compaction writes it at
    the bottom of its range, and a table already at the bottom is not
    compacted again until data above it comes down: its tombstones would
    stay (and keep every read on the slower path that consults them). Once
    no deeper table meets the table's range and no open snapshot is older
    than its tombstones (``oldest_snapshot``: the lowest open view's
    sequence, None if none), rewriting it drops every one of them
    (``drop_range_dels``) and the entries they hide."""
    for level in range(1, NUM_LEVELS):
        for f in version.levels[level]:
            if not f.range_dels:
                continue
            if oldest_snapshot is not None and max(t[2] for t in f.range_dels) > oldest_snapshot:
                continue
            if any(version.overlapping(lv, f.smallest, f.largest) for lv in range(level + 1, NUM_LEVELS)):
                continue
            return Compaction(level, level, ([f], []), [], f"L{level} range tombstones at the bottom")
    return None


def intra_l0_instead(c: Compaction) -> Compaction | None:
    """The intra-L0 compaction that should run instead of the L0->L1
    compaction ``c``, or None (see :func:`pick_compaction`).

    Its inputs are ``c``'s L0 inputs: an overlapping cluster that the picker
    starts from the oldest L0 file, so every L0 file it leaves out is newer
    and shares no key with it, and the output's place in L0 (by ``max_seq``)
    keeps every key's versions newest first.

    The ratio must hold in bytes (what the L0->L1 merge would rewrite) and in
    entries, so that L0 tables of small tombstones over large values still go
    down and reclaim the space.
    """
    l0, l1 = c.inputs
    if len(l0) < 2 or c.manual:
        return None
    l0_bytes = sum(f.size for f in l0)
    l1_bytes = sum(f.size for f in l1)
    if l1_bytes <= INTRA_L0_RATIO * l0_bytes \
            or sum(f.entries for f in l1) <= INTRA_L0_RATIO * sum(f.entries for f in l0):
        return None
    return Compaction(0, 0, (list(l0), []), [],
                      f"{c.reason}, intra-L0 (L1 overlap {l1_bytes} > {INTRA_L0_RATIO} x {l0_bytes} bytes)")


def grandparent_splitter(grandparents: Sequence[FileMeta | _Grand], limit: int) -> Callable[[bytes], bool]:
    """``split_before(key)``: True when the output so far overlaps more than
    ``limit`` bytes of the grandparent level, so that a later compaction of
    this output into the next level does not have to rewrite too much."""
    state = {"i": 0, "overlap": 0, "seen": False}
    larg = [g.largest for g in grandparents]

    def split_before(key: bytes) -> bool:
        i = state["i"]
        while i < len(grandparents) and key > larg[i]:
            if state["seen"]:
                state["overlap"] += grandparents[i].size
            i += 1
        state["i"] = i
        state["seen"] = True
        if state["overlap"] > limit:
            state["overlap"] = 0
            return True
        return False

    return split_before


# -- the merge job ---------------------------------------------------------------


class JobSpec:
    """Everything a compaction merge needs, by value, so it can run in another
    process. Picklable. ``runs`` are the input tables as runs of key-disjoint
    tables (each L0 table alone, a level's files in key order), newest run
    first: a key's version in an earlier run is newer than in a later one.
    ``first_number`` .. ``first_number + reserved - 1`` are file numbers the
    caller reserved (and protects from deletion) for outputs."""

    __slots__ = ("dbpath", "options", "runs", "snapshots", "deeper", "now", "grandparents",
                 "first_number", "reserved", "split", "global_seqs")

    def __init__(self, dbpath: str, options: Options, runs: list[list[int]], snapshots: list[int],
                 deeper: list[tuple[bytes, bytes]], now: float, grandparents: list[FileMeta],
                 first_number: int, reserved: int, split: bool = True) -> None:
        self.dbpath = dbpath
        self.options = options
        self.runs = runs
        self.snapshots = snapshots
        self.deeper = deeper
        self.now = now
        self.grandparents = [(g.largest, g.size) for g in grandparents]
        self.first_number = first_number
        self.reserved = reserved
        # False: one output table (an intra-L0 compaction: L0 tables are not
        # split by key range, each holds one contiguous span of sequences)
        self.split = split
        # input number -> its global sequence, for ingested external tables
        # (their entries are read, and so rewritten, at it)
        self.global_seqs: dict[int, int] = {}

    @property
    def inputs(self) -> list[int]:
        """Every input table's number."""
        return [n for run in self.runs for n in run]

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def output_reservation(input_bytes: int, grandparents: list[FileMeta], options: Options) -> int:
    """File numbers to reserve for a job's outputs: every output but the last
    reaches ``target_file_bytes`` (measured in compressed bytes, like the
    inputs) or ends at a grandparent split, so this bound is generous."""
    return 2 * (input_bytes // options.target_file_bytes + len(grandparents)) + 16


def run_job(fs: FileSystem, spec: JobSpec) -> tuple[list[FileMeta], int]:
    """Merge the input tables into new tables; return ``(metas, entries dropped)``.

    Reads every input block with its checksum verified (whatever
    ``paranoid_checks`` says: compaction must never copy corruption forward),
    bypassing the block cache. Outputs are fsynced, then the directory is.
    Raises: CorruptionError, DiskError, Error (reservation exhausted); outputs
    written so far are removed.

    When no open snapshot reads between the inputs' sequences (each key keeps
    one version: its newest) and no input holds range tombstones, the merge
    runs on columns (:func:`_merge_columns`); otherwise entry by entry, with
    :func:`drop_obsolete` deciding each version.
    """
    # Inputs are opened one run at a time as the merge reaches them, and
    # closed once it is past them (_Run): a compaction holds one open table
    # per run (each L0 table is a run, a level's files one run), whatever
    # the number of inputs, so its file descriptors stay bounded. What must
    # be known of every input first comes from its properties alone (and,
    # for the few tables that hold any, their range tombstones).
    gseq = spec.global_seqs
    lo_seq = hi_seq = None
    dels: list[tuple[bytes, bytes, int]] = []
    for n in spec.inputs:
        f = fs.open_readable(make_table_name(spec.dbpath, n))
        owned = False
        try:
            p = read_props(f)
            if p.get("range_deletions"):
                r = TableReader(f, n, None, True)
                owned = True  # the reader closes f
                try:
                    dels += r.range_dels
                finally:
                    r.close()
        finally:
            if not owned:
                f.close()
        mn, mx = (gseq[n], gseq[n]) if gseq.get(n) else (int(p["min_seq"]), int(p["max_seq"]))
        lo_seq = mn if lo_seq is None else min(lo_seq, mn)
        hi_seq = mx if hi_seq is None else max(hi_seq, mx)
    range_dels = bool(dels)
    runs = [_Run(fs, spec.dbpath, run, gseq) for run in spec.runs]
    try:
        deeper = spec.deeper

        def is_bottommost(key: bytes) -> bool:
            for lo, hi in deeper:
                if lo <= key <= hi:
                    return False
            return True

        numbers = iter(range(spec.first_number, spec.first_number + spec.reserved))

        def new_number() -> int:
            n = next(numbers, None)
            if n is None:
                raise Error(f"compaction used all {spec.reserved} reserved file numbers")
            return n

        grand = [_Grand(largest, size) for largest, size in spec.grandparents]
        split_bytes = spec.options.target_file_bytes if spec.split else None
        split_before = grandparent_splitter(grand, 10 * spec.options.target_file_bytes) if spec.split else None
        lo_seq, hi_seq = lo_seq or 0, hi_seq or 0
        if not any(lo_seq <= s < hi_seq for s in spec.snapshots) and not range_dels:
            with ColumnTables(fs, spec.dbpath, spec.options, new_number, split_bytes=split_bytes,
                              split_before=split_before) as out:
                dropped = _merge_columns(runs, deeper, spec.now, out)
            metas = out.metas
        else:
            counters: dict = {}
            merged = ((k, -ns, kind, v) for k, ns, kind, v in merge([run.iter_forward() for run in runs]))
            frags = Fragments.build(dels) if dels else None
            entries = drop_obsolete(merged, spec.snapshots, is_bottommost, spec.now, counters, frags)
            metas = write_tables(fs, spec.dbpath, entries, spec.options, new_number, split_bytes=split_bytes,
                                 split_before=split_before,
                                 range_dels=drop_range_dels(frags, spec.snapshots, deeper) if frags else ())
            dropped = counters.get("dropped", 0)
        if metas:
            fs.fsync_dir(spec.dbpath)
        return metas, dropped
    finally:
        for run in runs:
            run.close()


_MERGE_WINDOW = 2048  # entries a run reads ahead per window in a column merge


class _Run:
    """A run of key-disjoint input tables in key order, each opened when the
    merge reaches it and closed when it is past it (at most one open table).
    Every block is read with its checksum verified, bypassing the block cache."""

    __slots__ = ("fs", "dbpath", "numbers", "ri", "reader", "gseq")

    def __init__(self, fs: FileSystem, dbpath: str, numbers: list[int], gseq: dict[int, int]) -> None:
        self.gseq = gseq  # ingested tables: number -> global sequence
        self.fs = fs
        self.dbpath = dbpath
        self.numbers = numbers
        self.ri = -1  # index of the open table in numbers
        self.reader: TableReader | None = None

    def table(self, i: int) -> TableReader | None:
        """The open reader of the run's ``i``-th table (the previous one is
        closed), or None past the last."""
        if i != self.ri:
            self.close()
            if i >= len(self.numbers):
                return None
            n = self.numbers[i]
            f = self.fs.open_readable(make_table_name(self.dbpath, n))
            try:
                self.reader = TableReader(f, n, None, True, global_seq=self.gseq.get(n, 0))
            except BaseException:
                f.close()
                raise
            self.ri = i
        return self.reader

    def iter_forward(self):
        """Every entry as ``(key, -seq, kind, value)`` in merge order."""
        for i in range(len(self.numbers)):
            yield from self.table(i).iter_forward(b"", None)  # type: ignore[union-attr]
        self.close()

    def close(self) -> None:
        r, self.reader = self.reader, None
        if r is not None:
            r.close()


class _RunColumns:
    """The entries of a run of key-disjoint tables, a window (a few blocks) at a time."""

    __slots__ = ("run", "ri", "bi", "done")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.ri = 0
        self.bi = 0
        self.done = False

    def next_window(self) -> tuple[list, list, list] | None:
        keys: list = []
        tags: list = []
        values: list = []
        while len(keys) < _MERGE_WINDOW:
            r = self.run.table(self.ri)
            if r is None:
                self.done = True
                break
            if self.bi == len(r.ikeys):
                self.ri += 1
                self.bi = 0
                continue
            k, t, v = r.columns(self.bi)
            self.bi += 1
            keys += k
            tags += t
            values += v
        return (keys, tags, values) if keys else None


def _merge_columns(runs: list[_Run], deeper: list[tuple[bytes, bytes]], now: float,
                   out: ColumnTables) -> int:
    """Merge ``runs`` (newest first) into ``out``, keeping each key's newest
    version; tombstones and expired entries are dropped where no deeper level
    may hold the key. Returns the number of entries dropped.

    Chunk by chunk, as scans merge (lsm.iterators): every key up to the
    smallest last key among the runs' windows, so each chunk holds every
    version of its keys. Several runs in a chunk are merged with a dict
    (oldest run first, and within a run oldest version first, so the newest
    version is written last and wins), ``sorted`` and ``map``: no Python
    code per entry unless tombstones or expiries must be dropped.
    """
    dropped = 0
    act: list[list[Any]] = []  # [run, keys, tags, values, pos]
    for run in runs:
        src = _RunColumns(run)
        w = src.next_window()
        if w is not None:
            act.append([src, w[0], w[1], w[2], 0])
    deeper = sorted(deeper)
    while act:
        open_ = [a for a in act if not a[0].done]
        bound = min(a[1][-1] for a in open_) if open_ else None
        parts = []
        for a in act:
            p = a[4]
            e = bisect_right(a[1], bound, p) if bound is not None else len(a[1])
            if e > p:
                parts.append((a[1][p:e], a[2][p:e], a[3][p:e]))
            a[4] = e
        n_in = sum(len(ks) for ks, _, _ in parts)
        if len(parts) == 1 and len(set(parts[0][0])) == len(parts[0][0]):
            keys, tags, values = parts[0]
        else:
            all_t: list = []
            all_v: list = []
            d: dict = {}
            for ks, ts, vs in reversed(parts):  # oldest run first
                base = len(all_t)
                all_t += ts
                all_v += vs
                d.update(zip(reversed(ks), range(base + len(ks) - 1, base - 1, -1)))  # oldest version first
            keys = sorted(d)
            idx = list(map(d.__getitem__, keys))
            tags = list(map(all_t.__getitem__, idx))
            values = list(map(all_v.__getitem__, idx))
        if keys and not _overlaps(deeper, keys[0], keys[-1]):
            keys, tags, values = _drop_dead(keys, tags, values, now)
        dropped += n_in - len(keys)
        out.add(keys, tags, values, unique=True)  # either path above leaves one version per key
        for a in list(act):
            if a[4] == len(a[1]):
                w = a[0].next_window()
                if w is None:
                    act.remove(a)
                else:
                    a[1], a[2], a[3], a[4] = w[0], w[1], w[2], 0
    return dropped


def _overlaps(ranges: list[tuple[bytes, bytes]], lo: bytes, hi: bytes) -> bool:
    """Whether any ``(lo, hi)`` of ``ranges`` (sorted) meets ``[lo, hi]``."""
    i = bisect_right(ranges, (hi, b"\xff" * 70000))
    return any(r_hi >= lo for _, r_hi in ranges[:i])


def _drop_dead(keys: list, tags: list, values: list, now: float) -> tuple[list, list, list]:
    """Without tombstones and entries expired at ``now`` (at the bottom: no
    older version can live below them)."""
    low = array("Q", tags).tobytes()[0 if sys.byteorder == "little" else 7::8]  # each tag's kind
    if DELETE not in low and PUT_TTL not in low:
        return keys, tags, values
    # keys.split_ttl, inlined (the expiry only)
    keep = [k != DELETE and (k != PUT_TTL or _F64.unpack_from(v)[0] > now) for k, v in zip(low, values)]
    return (list(compress(keys, keep)), list(compress(tags, keep)), list(compress(values, keep)))


class _Grand:
    __slots__ = ("largest", "size")

    def __init__(self, largest: bytes, size: int) -> None:
        self.largest = largest
        self.size = size
