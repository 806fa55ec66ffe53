"""The manifest: a log of version edits, and ``CURRENT`` which names it
(doc/format.md#manifest).

A manifest is a sequence of records (lsm.wal framing, type ``EDIT``), each one
encoded :class:`VersionEdit`. Replaying every edit from an empty state gives
the current version. A new manifest starts with one edit holding a full
snapshot of the version. ``CURRENT`` holds ``MANIFEST-NNNNNN\\n``.

    edit  := field*
    field := tag:varint body                    (tags below; never renumber)

Durability: :meth:`ManifestWriter.append` returns after write + fsync.
:func:`install_current` is write temp + fsync + rename + fsync directory, so
``CURRENT`` always names a complete manifest, old or new.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .coding import DecodeError, decode_varint, encode_varint, get_length_prefixed, put_length_prefixed
from .errors import CorruptionError, DiskError
from .filenames import make_current_name, make_manifest_name, make_temp_name
from .fs import FileSystem
from .record import EDIT, RecordWriter, iter_records

if TYPE_CHECKING:  # annotations only
    from .sstable import TableProps, TableReader

__all__ = ["FORMAT_VERSION", "KNOWN_VERSIONS", "FileMeta", "ManifestWriter", "VersionEdit", "install_current",
           "read_current", "read_manifest"]

# Of the database as a whole, carried by the first edit of every manifest: 2
# since SSTable format 2 and WAL format 3 (so a release that cannot read them
# refuses the database at open instead of misreading it). Readers take 1 and 2.
FORMAT_VERSION = 2
KNOWN_VERSIONS = (1, 2)

# Field tags. Persistent: never renumber or reuse a retired value.
TAG_LOG_NUMBER = 1
TAG_NEXT_FILE = 2
TAG_LAST_SEQUENCE = 3
TAG_COMPACT_POINTER = 4
TAG_DELETED_FILE = 5
TAG_NEW_FILE = 6
TAG_FORMAT_VERSION = 7
# number:varint seq:varint -- the global sequence of a table this edit adds
# (NEW_FILE): an ingested external table whose entries are all read at
# ``seq`` (lsm.ingest). Only written for such tables, so a version 1 reader
# never meets it in a database that has none.
TAG_GLOBAL_SEQ = 8
# number:varint count:varint (start:lp end:lp seq:varint){count} -- the range
# tombstones of a table this edit adds (NEW_FILE), a copy of its range-del
# block: reads see every tombstone of a version without opening its tables.
# Only written for tables that have any.
TAG_RANGE_DELS = 9
# micros:varint -- the database's clock (wall-clock microseconds, never going
# back) when the edit was written: TTL expiry is judged against at least
# this after a reopen, so a clock set back does not revive expired entries.
TAG_CLOCK = 10

_CURRENT_RE = re.compile(rb"MANIFEST-(\d{6,})\n")


SEEK_BYTES = 16 << 10  # FileMeta.allowed_seeks: one seek per this many bytes of the table ...
SEEK_MIN = 100  # ... and at least this many


class FileMeta:
    """What the manifest records about one SSTable. Immutable by convention.

    ``smallest``/``largest`` are user keys, inclusive bounds of the keys the
    table holds and of its range tombstones (a tombstone's exclusive end
    counts as a bound: the bounds may name one key more than the table
    covers); ``min_seq``/``max_seq`` bound the sequence numbers inside;
    ``range_dels`` are its range tombstones ``(start, end, seq)``
    (``TAG_RANGE_DELS``). ``global_seq`` (0: none) is the one sequence
    every entry of an ingested external table is read at (then ``min_seq``
    and ``max_seq`` are it too); see ``TAG_GLOBAL_SEQ``.
    """

    __slots__ = ("number", "size", "entries", "smallest", "largest", "min_seq", "max_seq", "global_seq",
                 "range_dels", "reader", "allowed_seeks")
    _FIELDS = ("number", "size", "entries", "smallest", "largest", "min_seq", "max_seq", "global_seq", "range_dels")

    def __init__(self, number: int, size: int, entries: int, smallest: bytes, largest: bytes,
                 min_seq: int, max_seq: int, global_seq: int = 0, *,
                 range_dels: tuple[tuple[bytes, bytes, int], ...] = ()) -> None:
        self.number = number
        self.size = size
        self.entries = entries
        self.smallest = smallest
        self.largest = largest
        self.min_seq = min_seq
        self.max_seq = max_seq
        self.global_seq = global_seq
        self.range_dels = range_dels
        # Not recorded anywhere: the open reader of this table while the DB's
        # table cache holds it (lsm.tablecache.TableCache sets and clears it), so
        # that a read reaches the table with one attribute load.
        self.reader: TableReader | None = None
        # Not recorded either: point reads that may still look in this table
        # first and then go on to another before a compaction pushes it down
        # (LevelDB's seek compaction; lsm.reads charges it, lsm.compaction
        # picks the table once it reaches zero). One seek costs about what
        # compacting 16 KiB does, so a table is worth compacting after
        # size / 16 KiB of them (at least 100).
        self.allowed_seeks = max(SEEK_MIN, size // SEEK_BYTES)

    @classmethod
    def from_props(cls, number: int, props: TableProps) -> FileMeta:
        """The record of table ``number``, from what ``TableWriter.finish`` returned."""
        return cls(number, props.file_size, props.entries, props.smallest, props.largest,
                   props.min_seq, props.max_seq, range_dels=props.range_dels)

    def to_wire(self) -> list:
        """JSON-friendly values for the worker protocol (lsm/worker.py):
        ``[number, size, entries, smallest_hex, largest_hex, min_seq, max_seq,
        [[start_hex, end_hex, seq]]]``. ``global_seq`` is not carried: only
        tables a job wrote cross, and those have none. :meth:`from_wire` reads it."""
        return [self.number, self.size, self.entries, self.smallest.hex(), self.largest.hex(),
                self.min_seq, self.max_seq, [[a.hex(), b.hex(), q] for a, b, q in self.range_dels]]

    @classmethod
    def from_wire(cls, w: list) -> FileMeta:
        """The inverse of :meth:`to_wire`."""
        n, size, entries, sm, lg, mn, mx, rd = w
        return cls(n, size, entries, bytes.fromhex(sm), bytes.fromhex(lg), mn, mx,
                   range_dels=tuple((bytes.fromhex(a), bytes.fromhex(b), q) for a, b, q in rd))

    def __repr__(self) -> str:
        return (f"FileMeta(#{self.number}, {self.size}B, {self.entries} entries, "
                f"{self.smallest!r}..{self.largest!r}, seq {self.min_seq}..{self.max_seq}"
                + (f", global seq {self.global_seq}" if self.global_seq else "")
                + (f", {len(self.range_dels)} range tombstones)" if self.range_dels else ")"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileMeta) and all(
            getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]


class VersionEdit:
    """A change from one version to the next. Fields left ``None`` are unchanged.

    >>> e = VersionEdit(log_number=7, next_file=9, last_sequence=100)
    >>> e.deleted.add((0, 4))
    >>> VersionEdit.decode(e.encode(), "MANIFEST", 0).deleted
    {(0, 4)}
    """

    def __init__(self, *, log_number: int | None = None, next_file: int | None = None,
                 last_sequence: int | None = None, format_version: int | None = None,
                 clock: float | None = None) -> None:
        self.clock = clock  # wall-clock seconds (TAG_CLOCK)
        self.log_number = log_number
        self.next_file = next_file
        self.last_sequence = last_sequence
        self.format_version = format_version
        self.compact_pointers: list[tuple[int, bytes]] = []
        self.deleted: set[tuple[int, int]] = set()  # (level, number)
        self.added: list[tuple[int, FileMeta]] = []

    def add_file(self, level: int, meta: FileMeta) -> None:
        self.added.append((level, meta))

    def delete_file(self, level: int, number: int) -> None:
        self.deleted.add((level, number))

    def encode(self) -> bytes:
        out = bytearray()
        v = encode_varint
        if self.format_version is not None:
            out += v(TAG_FORMAT_VERSION) + v(self.format_version)
        if self.log_number is not None:
            out += v(TAG_LOG_NUMBER) + v(self.log_number)
        if self.next_file is not None:
            out += v(TAG_NEXT_FILE) + v(self.next_file)
        if self.last_sequence is not None:
            out += v(TAG_LAST_SEQUENCE) + v(self.last_sequence)
        if self.clock is not None:
            out += v(TAG_CLOCK) + v(max(0, int(self.clock * 1e6)))
        for level, key in self.compact_pointers:
            out += v(TAG_COMPACT_POINTER) + v(level)
            put_length_prefixed(out, key)
        for level, number in sorted(self.deleted):
            out += v(TAG_DELETED_FILE) + v(level) + v(number)
        for level, m in self.added:
            out += v(TAG_NEW_FILE) + v(level) + v(m.number) + v(m.size) + v(m.entries)
            put_length_prefixed(out, m.smallest)
            put_length_prefixed(out, m.largest)
            out += v(m.min_seq) + v(m.max_seq)
            if m.global_seq:
                out += v(TAG_GLOBAL_SEQ) + v(m.number) + v(m.global_seq)
            if m.range_dels:
                out += v(TAG_RANGE_DELS) + v(m.number) + v(len(m.range_dels))
                for start, end, seq in m.range_dels:
                    put_length_prefixed(out, start)
                    put_length_prefixed(out, end)
                    out += v(seq)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, path: str, offset: int) -> VersionEdit:
        """Raises: CorruptionError (at the record's offset) on an unknown tag or bad field."""
        e = cls()
        pos = 0
        d = decode_varint
        try:
            while pos < len(data):
                tag, pos = d(data, pos)
                if tag == TAG_LOG_NUMBER:
                    e.log_number, pos = d(data, pos)
                elif tag == TAG_NEXT_FILE:
                    e.next_file, pos = d(data, pos)
                elif tag == TAG_LAST_SEQUENCE:
                    e.last_sequence, pos = d(data, pos)
                elif tag == TAG_FORMAT_VERSION:
                    e.format_version, pos = d(data, pos)
                elif tag == TAG_COMPACT_POINTER:
                    level, pos = d(data, pos)
                    key, pos = get_length_prefixed(data, pos)
                    e.compact_pointers.append((level, key))
                elif tag == TAG_DELETED_FILE:
                    level, pos = d(data, pos)
                    number, pos = d(data, pos)
                    e.deleted.add((level, number))
                elif tag == TAG_NEW_FILE:
                    level, pos = d(data, pos)
                    number, pos = d(data, pos)
                    size, pos = d(data, pos)
                    entries, pos = d(data, pos)
                    smallest, pos = get_length_prefixed(data, pos)
                    largest, pos = get_length_prefixed(data, pos)
                    min_seq, pos = d(data, pos)
                    max_seq, pos = d(data, pos)
                    e.added.append((level, FileMeta(number, size, entries, smallest, largest,
                                                    min_seq, max_seq)))
                elif tag == TAG_GLOBAL_SEQ:
                    number, pos = d(data, pos)
                    seq, pos = d(data, pos)
                    for _, m in e.added:
                        if m.number == number:
                            m.global_seq = seq
                            break
                    else:
                        raise DecodeError(f"GLOBAL_SEQ for table {number}, which this edit does not add")
                elif tag == TAG_CLOCK:
                    micros, pos = d(data, pos)
                    e.clock = micros / 1e6
                elif tag == TAG_RANGE_DELS:
                    number, pos = d(data, pos)
                    count, pos = d(data, pos)
                    dels = []
                    for _ in range(count):
                        start, pos = get_length_prefixed(data, pos)
                        end, pos = get_length_prefixed(data, pos)
                        seq, pos = d(data, pos)
                        if not start < end:
                            raise DecodeError(f"range tombstone of table {number} is empty: {start!r}..{end!r}")
                        dels.append((start, end, seq))
                    for _, m in e.added:
                        if m.number == number:
                            m.range_dels = tuple(dels)
                            break
                    else:
                        raise DecodeError(f"RANGE_DELS for table {number}, which this edit does not add")
                else:
                    raise DecodeError(f"unknown version-edit tag {tag}")
        except DecodeError as err:
            raise CorruptionError(path, offset, f"bad version edit: {err}") from None
        return e


def read_current(fs: FileSystem, dbpath: str) -> str:
    """Path of the manifest that ``CURRENT`` names.

    Raises: CorruptionError if ``CURRENT`` is malformed; DiskError (ENOENT) if missing.
    """
    path = make_current_name(dbpath)
    data = fs.read_file(path)
    m = _CURRENT_RE.fullmatch(data)
    if not m:
        raise CorruptionError(path, 0, f"CURRENT does not name a manifest: {data[:40]!r}")
    manifest = make_manifest_name(dbpath, int(m.group(1)))
    if not fs.exists(manifest):
        raise CorruptionError(path, 0, f"CURRENT names {os.path.basename(manifest)}, which does not exist")
    return manifest


def read_manifest(fs: FileSystem, path: str) -> Iterator[tuple[int, VersionEdit]]:
    """Yield ``(offset, edit)`` for every edit in the manifest at ``path``.

    A *truncated* last record is dropped: it is an edit whose append never
    completed, so nothing that depends on it was acknowledged or deleted. A
    complete record that fails its checksum is corruption even at the end (as
    in LevelDB): its append did complete, and what it recorded (a flushed log,
    compacted inputs) may already be gone.
    Raises: CorruptionError for any other damage, or a format version this
    reader does not know.
    """
    data = fs.read_file(path)

    def report(offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
        if not (at_tail and getattr(reason, "truncated", False)):
            raise CorruptionError(path, offset, reason)
        return False

    first = True
    for offset, rtype, payload in iter_records(data, report, path):
        if rtype != EDIT:
            raise CorruptionError(path, offset, f"record type {rtype} in a manifest (want {EDIT})")
        edit = VersionEdit.decode(payload, path, offset)
        if first:
            if edit.format_version not in KNOWN_VERSIONS:
                raise CorruptionError(path, offset, f"unsupported manifest format version "
                                      f"{edit.format_version} (this reader knows "
                                      f"{', '.join(map(str, KNOWN_VERSIONS))})")
            first = False
        yield offset, edit
    if first:
        raise CorruptionError(path, 0, "manifest holds no complete edit")


class ManifestWriter:
    """Appends edits to one manifest file.

    Durability: ``append`` returns after the record is written and fsynced.
    Thread safety: none; the VersionSet serialises appends under its lock.
    """

    def __init__(self, fs: FileSystem, dbpath: str, number: int) -> None:
        self.number = number
        self.path = make_manifest_name(dbpath, number)
        self._log = RecordWriter(fs.open_writable(self.path), number)

    @property
    def size(self) -> int:
        return self._log.size

    def append(self, edit: VersionEdit) -> None:
        self._log.add_record(edit.encode(), EDIT)
        self._log.sync()

    def close(self) -> None:
        self._log.close()


def install_current(fs: FileSystem, dbpath: str, manifest_number: int, temp_number: int) -> None:
    """Point ``CURRENT`` at ``MANIFEST-<manifest_number>`` atomically and durably.

    Steps (each a crash point): write ``<temp>.dbtmp``; fsync it; rename over
    ``CURRENT``; fsync the directory. Before the rename the old manifest is
    current, after it the new one; both are complete files.
    """
    tmp = make_temp_name(dbpath, temp_number)
    f = fs.open_writable(tmp)
    try:
        f.write(f"MANIFEST-{manifest_number:06d}\n".encode())
        f.sync()
    finally:
        f.close()
    try:
        fs.rename(tmp, make_current_name(dbpath))
    except DiskError:
        try:
            fs.remove(tmp)
        except DiskError:
            pass
        raise
    fs.fsync_dir(dbpath)
