"""Building tables: the one way entries become SSTables, for flush, recovery,
compaction and repair (LevelDB's ``db/builder.cc``).

Two shapes of input:

* entries one at a time, ``(key, seq, kind, value)`` in table order
  (:func:`write_tables`): the general path, where per-entry rules apply
  (versions a snapshot needs, tombstones a compaction may drop);
* columns (:class:`ColumnTables`): keys, tags and values as lists, handed to
  ``TableWriter.add_many``, when nothing needs deciding per entry — a flush
  with no snapshot to serve, a compaction merge whose inputs have one
  version per key in view.

Every table is fsynced before it is listed; the caller fsyncs the directory
before recording them. On any error every file written by the call is
removed and the error is re-raised.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence

from .errors import DiskError, Error
from .filenames import make_table_name
from .fs import FileSystem
from .keys import DELETE, PUT_TTL
from .manifest import FileMeta
from .memtable import Memtable
from .options import Options
from .rangedel import Fragments, clip, key_successor
from .sstable import TableWriter

__all__ = ["ColumnTables", "FlushJob", "build_memtable", "drop_obsolete", "drop_range_dels", "run_flush",
           "write_tables"]

_F64 = struct.Struct("<d")


def _new_writer(fs: FileSystem, dbpath: str, number: int, options: Options) -> TableWriter:
    return TableWriter(fs.open_writable(make_table_name(dbpath, number)), block_bytes=options.block_bytes,
                       bloom_bits_per_key=options.bloom_bits_per_key, compression=options.compression)


def _remove_all(fs: FileSystem, dbpath: str, numbers: list[int]) -> None:
    for number in numbers:
        try:
            fs.remove(make_table_name(dbpath, number))
        except DiskError:
            pass  # an orphan; removed at the next open


def write_tables(fs: FileSystem, dbpath: str, entries: Iterable[tuple[bytes, int, int, bytes]],
                 options: Options, new_number: Callable[[], int], *, split_bytes: int | None = None,
                 split_before: Callable[[bytes], bool] | None = None,
                 range_dels: Sequence[tuple[bytes, bytes, int]] = ()) -> list[FileMeta]:
    """Write ``entries`` (table order) into one or more tables; return their metas.

    A new table is started once the current one reaches ``split_bytes`` or
    ``split_before(key)`` says so, but never between two versions of one user
    key, so each level's files hold disjoint key ranges.

    ``range_dels`` are cut at the same places: a table that ends at key ``m``
    keeps the part of each tombstone below ``m + b"\\x00"`` (every key up to
    ``m``) and the next table the rest, so the tables' bounds stay disjoint
    and together cover every tombstone whole. With no entries, the
    tombstones make one table of their own.
    """
    metas: list[FileMeta] = []
    numbers: list[int] = []
    writer: TableWriter | None = None
    lower: bytes | None = None  # where this table's share of the tombstones starts

    def finish(upper: bytes | None) -> None:
        nonlocal writer, lower
        assert writer is not None
        for start, end, seq_ in clip(range_dels, lower, upper):
            writer.add_range_del(start, end, seq_)
        metas.append(FileMeta.from_props(numbers[-1], writer.finish()))
        writer = None
        lower = upper

    try:
        for key, seq, kind, value in entries:
            if writer is not None and key != writer.last_key and (
                    (split_bytes is not None and writer.estimated_size >= split_bytes)
                    or (split_before is not None and split_before(key))):
                last = writer.last_key
                assert last is not None  # the writer holds the entry before this key
                finish(key_successor(last))
            if writer is None:
                numbers.append(new_number())
                writer = _new_writer(fs, dbpath, numbers[-1], options)
            writer.add(key, seq, kind, value)
        if writer is None and range_dels:  # no entries at all (a split always opens the next table)
            numbers.append(new_number())
            writer = _new_writer(fs, dbpath, numbers[-1], options)
        if writer is not None:
            finish(None)  # the last table takes every tombstone above its lower bound
    except BaseException:
        if writer is not None:
            writer.abandon()
        _remove_all(fs, dbpath, numbers)
        raise
    return metas


class ColumnTables:
    """Writes column chunks into one or more tables, splitting (between
    chunks) at ``split_bytes`` or where ``split_before(first key of the
    chunk)`` says so. Use as a context manager: leaving it with an exception
    removes every table it wrote.

    Requires: chunks in key order, each holding every version of its keys.
    """

    def __init__(self, fs: FileSystem, dbpath: str, options: Options, new_number: Callable[[], int], *,
                 split_bytes: int | None = None, split_before: Callable[[bytes], bool] | None = None) -> None:
        self.fs = fs
        self.dbpath = dbpath
        self.options = options
        self.new_number = new_number
        self.split_bytes = split_bytes
        self.split_before = split_before
        self.metas: list[FileMeta] = []
        self.numbers: list[int] = []
        self.writer: TableWriter | None = None

    def add(self, keys: Sequence[bytes], tags: Sequence[int], values: Sequence[bytes],
            unique: bool = False) -> None:
        """Append a chunk (``unique``: no key appears twice in it)."""
        if not keys:
            return
        w = self.writer
        if w is not None and ((self.split_bytes is not None and w.estimated_size >= self.split_bytes)
                              or (self.split_before is not None and self.split_before(keys[0]))):
            self._finish()
            w = None
        if w is None:
            self.numbers.append(self.new_number())
            w = self.writer = _new_writer(self.fs, self.dbpath, self.numbers[-1], self.options)
        w.add_many(keys, tags, values, unique)

    def add_range_del(self, start: bytes, end: bytes, seq: int) -> None:
        if self.writer is None:
            self.numbers.append(self.new_number())
            self.writer = _new_writer(self.fs, self.dbpath, self.numbers[-1], self.options)
        self.writer.add_range_del(start, end, seq)

    def _finish(self) -> None:
        w, self.writer = self.writer, None
        if w is not None:
            self.metas.append(FileMeta.from_props(self.numbers[-1], w.finish()))

    def __enter__(self) -> ColumnTables:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._finish()
            return
        if self.writer is not None:
            self.writer.abandon()
            self.writer = None
        _remove_all(self.fs, self.dbpath, self.numbers)


def build_memtable(fs: FileSystem, dbpath: str, mem: Memtable, snapshots: list[int], options: Options,
                   new_number: Callable[[], int]) -> list[FileMeta]:
    """Write an immutable memtable as an L0 table (none if it is empty):
    every version some snapshot can see (``snapshots``: the open views'
    sequences, ascending), tombstones and range tombstones included.

    With no snapshot inside the memtable's sequence range, only the newest
    version of each key can be seen: the table is built from columns
    (Memtable.newest_columns), with no per-entry work.
    """
    dels = sorted(mem.range_dels, key=lambda d: (d[0], -d[2]))
    if not mem.has_older() or not any(s < mem.max_seq for s in snapshots):
        keys, tags, values = mem.newest_columns()
        with ColumnTables(fs, dbpath, options, new_number) as out:
            out.add(keys, tags, values, unique=True)
            for start, end, seq in dels:
                out.add_range_del(start, end, seq)
        return out.metas
    # Per entry: versions shadowed within a snapshot stripe go; tombstones
    # stay (older data may live below).
    entries = drop_obsolete(mem.iter_entries(), snapshots, _never, 0.0)
    return write_tables(fs, dbpath, entries, options, new_number, range_dels=dels)


class FlushJob:
    """A flush by value, for the worker process: the memtable as
    ``Memtable.export`` bytes, the open views' sequences, and file numbers
    ``first_number .. first_number + reserved - 1`` that the caller reserved
    (and protects from deletion) for the output."""

    __slots__ = ("dbpath", "options", "memtable", "snapshots", "first_number", "reserved")

    def __init__(self, dbpath: str, options: Options, memtable: bytes, snapshots: list[int],
                 first_number: int, reserved: int) -> None:
        self.dbpath = dbpath
        self.options = options
        self.memtable = memtable
        self.snapshots = snapshots
        self.first_number = first_number
        self.reserved = reserved


def run_flush(fs: FileSystem, job: FlushJob) -> list[FileMeta]:
    """:func:`build_memtable` on an exported memtable into reserved numbers,
    then fsync the directory. Raises: ValueError (a malformed export), Error
    (reservation exhausted), DiskError; outputs written are removed."""
    mem = Memtable.from_export(job.memtable)
    numbers = iter(range(job.first_number, job.first_number + job.reserved))

    def new_number() -> int:
        n = next(numbers, None)
        if n is None:
            raise Error(f"flush used all {job.reserved} reserved file numbers")
        return n

    metas = build_memtable(fs, job.dbpath, mem, job.snapshots, job.options, new_number)
    if metas:
        fs.fsync_dir(job.dbpath)
    return metas


def _never(key: bytes) -> bool:
    return False


def drop_obsolete(entries: Iterable[tuple[bytes, int, int, bytes]], snapshots: list[int],
                  is_bottommost: Callable[[bytes], bool], now: float,
                  counters: dict | None = None,
                  range_dels: Fragments | None = None) -> Iterator[tuple[bytes, int, int, bytes]]:
    """Filter ``(key, seq, kind, value)`` in table order down to what some reader may need.

    ``snapshots`` is the ascending list of sequence numbers that open snapshots
    and iterators read at. They cut each key's history into stripes; in each
    stripe only the newest version can be seen, so older ones in the same
    stripe are dropped. A tombstone or an entry expired at ``now`` that is the
    newest of the lowest stripe (visible to no snapshot as anything but
    "absent") is dropped too when ``is_bottommost(key)``: no deeper level may
    hold an older version it hides, so dropping it cannot resurrect anything.

    ``range_dels``: the range tombstones of the inputs. A version that one of
    them covers, with no snapshot between the version and the tombstone, is
    visible to no reader (every view that sees it sees the tombstone too)
    and is dropped.
    """
    last_key = None
    last_stripe = -1
    dropped_rest = False  # the rest of this key's (older) history is gone
    nsnap = len(snapshots)
    if range_dels is not None:
        starts, ends, cover = range_dels.starts, range_dels.ends, range_dels.seqs
        nfrag = len(starts)
        fi = 0  # the first fragment that ends after the current key (keys ascend)
    for key, seq, kind, value in entries:
        stripe = bisect_left(snapshots, seq) if nsnap else 0
        if key != last_key:
            last_key = key
            dropped_rest = False
        elif dropped_rest or stripe == last_stripe:
            if counters is not None:
                counters["dropped"] = counters.get("dropped", 0) + 1
            continue
        last_stripe = stripe
        # keys.split_ttl, inlined (the expiry only)
        if stripe == 0 and (kind == DELETE or (kind == PUT_TTL and _F64.unpack_from(value)[0] <= now)) \
                and is_bottommost(key):
            dropped_rest = True
            if counters is not None:
                counters["dropped"] = counters.get("dropped", 0) + 1
            continue
        if range_dels is not None:
            while fi < nfrag and ends[fi] <= key:
                fi += 1
            if fi < nfrag and starts[fi] <= key:
                seqs = cover[fi]
                j = bisect_right(seqs, seq)  # the oldest tombstone newer than this version
                if j < len(seqs) and (bisect_left(snapshots, seqs[j]) if nsnap else 0) == stripe:
                    if counters is not None:
                        counters["dropped"] = counters.get("dropped", 0) + 1
                    continue
        yield key, seq, kind, value


def drop_range_dels(range_dels: Fragments, snapshots: list[int],
                    deeper: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, int]]:
    """The tombstones of ``range_dels`` a compaction must write out: all but
    those in the lowest snapshot stripe (every reader sees them, and
    :func:`drop_obsolete` dropped every version they cover) whose range no
    deeper table's bounds ``deeper`` meet (nothing older is left to hide)."""
    out = []
    for start, end, seq in range_dels.tombstones():
        if (not snapshots or snapshots[0] >= seq) and not any(lo < end and start <= hi for lo, hi in deeper):
            continue
        out.append((start, end, seq))
    return out
