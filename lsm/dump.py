"""Inspection and verification of a database directory: the library behind
``lsm-dump`` (LevelDB ``dumpfile.h``); repair is in :mod:`lsm.repair`.

Every function here returns or yields plain records (frozen dataclasses, keys
and values as ``bytes``; defined in :mod:`lsm.dumprecords`, re-exported
here); :mod:`lsm.cli` only parses arguments and formats these records as
text tables or JSON. Nothing here prints.

=====================  ==================================  =====================
function               reads                               lock taken
=====================  ==================================  =====================
describe_manifest()    CURRENT + manifest (or one file)    shared ``LOCK``
describe_sst()         one SSTable, every block            none (one file)
iter_sst()             one SSTable's entries               none (one file)
iter_wal()             one write-ahead log                 none (one file)
open_read_only()       a read-only ``DB`` (get/scan/stats)  shared ``LOCK``
verify()               every live file of the database     shared ``LOCK``
lsm.repair()           rebuilds the manifest               exclusive ``LOCK``
=====================  ==================================  =====================

Nothing here writes; only :func:`lsm.repair` does, and it never
deletes: files it stops using are moved into ``<db>/lost/``.

Raises: :class:`~lsm.errors.LockError` when the lock conflicts (a writer has
the database open, or, for ``repair``, any process has), and
:class:`~lsm.errors.Error` (often :class:`~lsm.errors.CorruptionError` with
the file and offset) for anything else that stops a command.
"""

from __future__ import annotations

import importlib
import math
import os
import random
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from .batch import BatchDecodeError, decode_batch
from .db import DB
from .dumprecords import (BlockInfo, BloomInfo, Damage, EditInfo, Finding, ManifestInfo, RepairReport, TableEntry,
                          TableFile, TableInfo, WalOp, _user_value, kind_name)
from .errors import CorruptionError, DiskError, Error
from .filenames import FileType, make_current_name, make_log_name, make_table_name, parse_name
from .fs import FileSystem, OsFileSystem
from .keys import MAX_SEQUENCE
from .manifest import KNOWN_VERSIONS as MANIFEST_VERSIONS, FileMeta, VersionEdit, read_current, read_manifest
from .options import WAL_RECOVERY_MODES, Options
from .rangedel import end_bound
from .recovery import lock_database
from .sstable import TableReader
from .sstable.bloom import BlockedBloom
from .sstable.format import (BLOCK_TRAILER_BYTES, COMPRESSION_NONE, COMPRESSION_ZSTD, MAX_FOOTER_BYTES,
                             decode_footer, unwrap_block)
from .version import NUM_LEVELS, Version, apply_edit
from .record import EDIT, FORMAT_VERSION as RECORD_FORMAT_VERSION, HEADER_BYTES, MAGIC, OVERHEAD, iter_records
from .sstable.props import EXTERNAL_PROP
from .wal import BATCH, INGEST, START, scan_log

__all__ = [
    "BlockInfo", "BloomInfo", "Damage", "EditInfo", "Finding", "ManifestInfo", "RepairReport",
    "TableEntry", "TableFile", "TableInfo", "WalOp", "describe_manifest", "describe_sst",
    "WAL_RECOVERY_MODES", "iter_sst", "iter_wal", "kind_name", "open_read_only", "verify",
]

LOST_DIR = "lost"  # repair moves every file it stops using here, never deletes
FP_PROBES = 10_000  # random absent keys tried per bloom filter: ±0.1% at a 1% rate
_RECORD_HEADER = struct.Struct("<HBBI")  # lsm.wal framing starts magic, version, type, length
_COMPRESSION = {COMPRESSION_NONE: "none", COMPRESSION_ZSTD: "zstd"}
_RECORD_TYPES = {BATCH: "write batch", EDIT: "version edit"}


# -- locking and opening ---------------------------------------------------------


def _require_db(fs: FileSystem, dbpath: str) -> None:
    """Raises: Error unless ``dbpath`` is a directory holding ``CURRENT``. Checked
    before taking the lock, so that a wrong path never gets a ``LOCK`` file."""
    if not os.path.isdir(dbpath):
        raise Error(f"{dbpath}: no such database directory")
    if not fs.exists(make_current_name(dbpath)):
        raise Error(f"{dbpath}: not a database (no CURRENT file); "
                    "`lsm-dump repair` rebuilds one from the tables present")


@contextmanager
def _lock(fs: FileSystem, dbpath: str, *, shared: bool) -> Iterator[None]:
    """Hold the database's lock (shared: beside other readers, not a writer),
    as a DB open does (lsm.recovery.lock_database): a shared lock needs no
    write access and creates nothing (read commands write nothing)."""
    lock = lock_database(fs, dbpath, shared=shared)
    try:
        yield
    finally:
        lock.release()


def open_read_only(dbpath: str, *, wal_recovery: str = "tolerate_tail",
                   fs: FileSystem | None = None) -> DB:
    """Open ``dbpath`` with ``read_only=True`` (shared ``LOCK``) for get, scan and stats.

    ``wal_recovery`` is the Options field: ``"skip_corrupt"`` or
    ``"point_in_time"`` read a database whose log is damaged mid-way (nothing
    is written either way). The caller closes the returned DB.
    Raises: Error when ``dbpath`` holds no database; LockError when a writer
    has it open; CorruptionError per ``wal_recovery``; ValueError for an unknown mode.
    """
    fs = fs if fs is not None else OsFileSystem()
    dbpath = os.path.abspath(dbpath)
    options = Options(read_only=True, wal_recovery=wal_recovery)
    _require_db(fs, dbpath)
    return DB(dbpath, options, fs=fs)


# -- manifest ------------------------------------------------------------------------


def _edit_info(offset: int, e: VersionEdit) -> EditInfo:
    return EditInfo(offset, e.format_version, e.log_number, e.next_file, e.last_sequence,
                    tuple(e.compact_pointers), tuple(sorted(e.deleted)),
                    tuple(TableFile.of(level, m) for level, m in e.added))


def describe_manifest(path: str, *, history: bool = False, fs: FileSystem | None = None) -> ManifestInfo:
    """Replay the manifest of database ``path`` (or the manifest file ``path``).

    Reads edits as recovery does (lsm.manifest.read_manifest: a torn last edit
    is ignored). With ``history`` every edit is returned too.
    Raises: CorruptionError (file, offset) on a damaged or inconsistent manifest.

    >>> import lsm, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with lsm.open(d) as db:
    ...     _ = db.put(b"k", b"v"); db.flush()
    >>> [(f.level, f.entries, f.smallest) for f in describe_manifest(d).files]
    [(0, 1, b'k')]
    """
    fs = fs if fs is not None else OsFileSystem()
    path = os.path.abspath(path)
    if os.path.isdir(path):
        _require_db(fs, path)
        with _lock(fs, path, shared=True):
            return _describe_manifest_file(fs, read_current(fs, path), history)
    return _describe_manifest_file(fs, path, history)


def _describe_manifest_file(fs: FileSystem, path: str, history: bool) -> ManifestInfo:
    version = Version([[] for _ in range(NUM_LEVELS)])
    log_number = next_file = last_sequence = 0
    pointers: dict[int, bytes] = {}
    edits: list[EditInfo] = []
    count = 0
    for offset, edit in read_manifest(fs, path):
        count += 1
        try:
            version = apply_edit(version, edit)
        except ValueError as e:
            raise CorruptionError(path, offset, str(e)) from None
        log_number = edit.log_number if edit.log_number is not None else log_number
        next_file = max(next_file, edit.next_file or 0)
        last_sequence = max(last_sequence, edit.last_sequence or 0)
        pointers.update(edit.compact_pointers)
        if history:
            edits.append(_edit_info(offset, edit))
    return ManifestInfo(path, fs.file_size(path), log_number, next_file, last_sequence,
                        tuple(TableFile.of(level, m) for level, m in version.files()),
                        tuple(sorted(pointers.items())), count, tuple(edits))


# -- SSTables ------------------------------------------------------------------------


def _table_number(path: str) -> int:
    parsed = parse_name(os.path.basename(path))
    return parsed[1] if parsed is not None and parsed[0] is FileType.TABLE else 0


def describe_sst(path: str, *, fp_probes: int = FP_PROBES, seed: int = 0,
                 fs: FileSystem | None = None) -> TableInfo:
    """Properties, blocks and bloom filter of the SSTable at ``path``.

    Reads and checks every block (checksums, decoding, index agreement). The
    false-positive rate is measured on ``fp_probes`` random 16-byte keys drawn
    from ``random.Random(seed)`` that the table does not hold.
    Raises: CorruptionError (file, offset) on the first damaged byte; DiskError.
    """
    fs = fs if fs is not None else OsFileSystem()
    f = fs.open_readable(path)
    try:
        reader = TableReader(f, _table_number(path), None, True)
        tail = min(f.size, MAX_FOOTER_BYTES)
        footer = decode_footer(f.read_at(f.size - tail, tail), path, f.size)
        blocks = []
        for i in range(len(reader.index)):
            keys, _, _ = reader.columns(i)  # checks the block
            h = reader.index.handle(i)
            raw = f.read_at(h.offset, h.size + BLOCK_TRAILER_BYTES)
            payload = unwrap_block(raw, h, path, True, reader.data_limit)
            blocks.append(BlockInfo(i, h.offset, h.size, len(payload),
                                    _COMPRESSION.get(raw[-5], f"unknown({raw[-5]})"), len(keys),
                                    reader.index.keys[i]))
        data_bytes = sum(b.size for b in blocks)
        raw_bytes = sum(b.raw_size for b in blocks)
        return TableInfo(path, reader.number, f.size, dict(reader.props), tuple(blocks), data_bytes,
                         raw_bytes, raw_bytes / data_bytes if data_bytes else 1.0, footer.index.size,
                         footer.filter.size, footer.props.size, _measure_bloom(reader, fp_probes, seed),
                         reader.version, len(reader.range_dels), tuple(reader.range_dels))
    finally:
        f.close()


def _measure_bloom(reader: TableReader, probes: int, seed: int) -> BloomInfo | None:
    filt = reader.filter
    if filt is None:
        return None
    n = int(reader.props["unique_keys"]) or 1
    k = filt.probes
    if isinstance(filt, BlockedBloom):
        bits = 64 * filt.nwords
        # keys per 64-bit word are Poisson(n / words); each sets k of its word's bits
        lam = n / filt.nwords
        expected = 0.0
        term = math.exp(-lam)
        for j in range(0, 200):
            if j:
                term *= lam / j
            expected += term * (1.0 - (1.0 - 1.0 / 64) ** (k * j)) ** k
        kind = "blocked"
    else:
        bits = filt.m
        expected = (1.0 - math.exp(-k * n / bits)) ** k
        kind = "classic"
    rng = random.Random(seed)
    tested = positives = 0
    for _ in range(probes):
        key = rng.randbytes(16)
        if filt.may_contain(key):
            if reader.get(key, MAX_SEQUENCE) is not None:
                continue  # actually present: not an absent key
            positives += 1
        tested += 1
    return BloomInfo(bits, k, bits / n, expected, tested, positives,
                     positives / tested if tested else 0.0, kind)


def iter_sst(path: str, *, fs: FileSystem | None = None) -> Iterator[TableEntry]:
    """Yield every entry of the SSTable at ``path`` in table order (key
    ascending, newest version first), checking each block's checksum.

    Raises: CorruptionError (file, block offset) when a damaged block is reached.
    """
    fs = fs if fs is not None else OsFileSystem()
    f = fs.open_readable(path)
    try:
        reader = TableReader(f, _table_number(path), None, True)
        for key, seq, kind, stored in reader.iter_entries():
            value, expires = _user_value(kind, stored)
            yield TableEntry(key, seq, kind_name(kind), value, expires)
    finally:
        f.close()


# -- write-ahead logs ------------------------------------------------------------


def _is_torn(data: bytes, offset: int, reason: str) -> bool:
    """True when the damage at ``offset`` is a record cut short by the end of
    the file (an interrupted append), rather than bytes that changed. The
    framing reader says so when it knows (``reason.truncated``)."""
    truncated = getattr(reason, "truncated", None)
    if truncated is not None:
        return bool(truncated)
    n = len(data)
    if n - offset < HEADER_BYTES:
        return True
    magic, version, _, length = _RECORD_HEADER.unpack_from(data, offset)
    return magic == MAGIC and version == RECORD_FORMAT_VERSION and offset + length + OVERHEAD > n


def _iter_log(data: bytes, path: str, zero_tail_ok: bool = False) -> Iterator[tuple[int, int, bytes] | Damage]:
    """Intact records ``(offset, type, payload)`` and damaged regions, in file order.

    ``zero_tail_ok``: zeros to the end of the data are a preallocated log's
    unwritten space, neither data nor damage (true for the newest write-ahead
    log with records, as in recovery; never for a manifest).

    Raises: CorruptionError naming ``path`` for records the framing reader
    refuses outright (a newer format version).
    """
    pending: list[Damage] = []

    def report(offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
        if zero_tail_ok and at_tail and getattr(reason, "zero_fill", False):
            return True
        pending.append(Damage(path, offset, nbytes, str(reason),
                              at_tail and _is_torn(data, offset, reason)))
        return True  # skip it and keep reading: a dump shows everything that survives

    try:
        for record in iter_records(data, report):
            while pending:
                yield pending.pop(0)
            yield record
    except CorruptionError as e:
        if e.path == path:
            raise
        raise CorruptionError(path, e.offset, e.reason) from None
    yield from pending


def _iter_log_ops(data: bytes, path: str, zero_tail_ok: bool
                  ) -> Iterator[tuple[int, int, int, bytes, bytes, int, int] | Damage]:
    """``(offset, seq, kind, key, stored_value, index, batch_size)`` per operation
    of each intact write-batch record of a write-ahead log (either format),
    and a :class:`Damage` per damaged region, in file order.

    ``zero_tail_ok``: zeros to the end of the data are a preallocated log's
    unwritten space, neither data nor damage (as recovery treats them).

    Raises: CorruptionError naming ``path`` for a log of a newer format.
    """
    scan = scan_log(data, path)
    # A damaged region at the end is a torn last write unless records that
    # check out were found inside it (then bytes changed under later writes).
    events: list = [(off, 0, Damage(path, off, nbytes, str(d),
                                    d.truncated and not any(off < h[0] < off + nbytes for h in scan.hints)))
                    for off, nbytes, d in scan.damage
                    if not (zero_tail_ok and d.zero_fill and off + nbytes == len(data))]
    events += [(off, 1, (rtype, body)) for off, rtype, body in scan.records]
    events.sort(key=lambda e: (e[0], e[1]))
    for offset, is_record, ev in events:
        if not is_record:
            yield ev
            continue
        rtype, payload = ev
        if scan.version >= 3 and rtype in (START, INGEST):
            continue  # a log's first sequence; a sequence an ingest took (its tables are in the manifest)
        if rtype != BATCH:
            yield Damage(path, offset, len(payload) + 1, f"record type {rtype} in a write-ahead log", False)
            continue
        try:
            first_seq, ops, _ = decode_batch(payload, 2 if scan.version >= 3 else 1)
        except BatchDecodeError as e:
            yield Damage(path, offset, len(payload) + 1, f"bad write batch: {e}", False)
            continue
        for i, (kind, key, stored) in enumerate(ops):
            yield offset, first_seq + i, kind, key, stored, i, len(ops)


def iter_wal(path: str, *, fs: FileSystem | None = None, zero_tail_ok: bool = True) -> Iterator[WalOp | Damage]:
    """Yield each operation of the write-ahead log at ``path``, and a
    :class:`Damage` for each damaged region (or undecodable batch), continuing
    past it with the next intact record. Zeros to the end of the file (a
    preallocated log's unwritten space) are skipped unless ``zero_tail_ok``
    is false (they are damage in any log but the newest with records).

    Raises: DiskError when the file cannot be read (at the call: the file is
    read whole before the first record is yielded).

    >>> import lsm, os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with lsm.open(d) as db:
    ...     _ = db.put(b"k", b"v")
    >>> log = [n for n in os.listdir(d) if n.endswith(".log")][0]
    >>> [(op.seq, op.kind, op.key) for op in iter_wal(os.path.join(d, log))]
    [(1, 'PUT', b'k')]
    """
    fs = fs if fs is not None else OsFileSystem()
    return _wal_records(fs.read_file(path), path, zero_tail_ok)


def _wal_records(data: bytes, path: str, zero_tail_ok: bool) -> Iterator[WalOp | Damage]:
    for rec in _iter_log_ops(data, path, zero_tail_ok):
        if isinstance(rec, Damage):
            yield rec
            continue
        offset, seq, kind, key, stored, index, size = rec
        value, expires = _user_value(kind, stored)
        yield WalOp(offset, seq, kind_name(kind), key, value, expires, index, size)


# -- verification -------------------------------------------------------------------


@dataclass
class _TableScan:
    """What reading every block of one table found."""

    error: Error | None = None  # could not even open it (footer, props, index, filter)
    block_errors: list[CorruptionError] = field(default_factory=list)
    props: dict = field(default_factory=dict)
    blocks: int = 0
    entries: int = 0
    smallest: bytes = b""
    largest: bytes = b""
    min_seq: int = 0
    max_seq: int = 0
    range_dels: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    entries_or_dels: int = 0
    kept: list[tuple[bytes, int, int, bytes]] | None = None  # entries of good blocks (salvage)


def _scan_table(fs: FileSystem, path: str, number: int, keep: bool = False, global_seq: int = 0) -> _TableScan:
    """Read every block of a table with checksum verification; never raises
    for damage (it is returned), only collects it. ``global_seq``: an
    ingested table's sequence (its entries are read at it)."""
    s = _TableScan(kept=[] if keep else None)
    try:
        f = fs.open_readable(path)
    except DiskError as e:
        s.error = e
        return s
    try:
        try:
            reader = TableReader(f, number, None, True, global_seq=global_seq)
        except Error as e:
            s.error = e
            return s
        s.props = dict(reader.props)
        last: tuple[bytes, int] | None = None
        min_seq = MAX_SEQUENCE + 1
        for i in range(len(reader.index)):
            try:
                keys, tags, values = reader.columns(i)
                _check_block_order(keys, tags, last, path, reader.index.offsets[i])
            except Error as e:
                s.block_errors.append(e if isinstance(e, CorruptionError)
                                      else CorruptionError(path, reader.index.offsets[i], str(e)))
                continue
            s.blocks += 1
            if not len(keys):
                continue
            if not s.entries:
                s.smallest = keys[0]
            s.entries += len(keys)
            s.largest = keys[-1]
            min_seq = min(min_seq, min(tags) >> 8)
            s.max_seq = max(s.max_seq, max(tags) >> 8)
            last = (keys[-1], tags[-1] >> 8)
            if s.kept is not None:
                s.kept.extend((keys[j], tags[j] >> 8, tags[j] & 0xFF, values[j]) for j in range(len(keys)))
        for start, end, seq in reader.range_dels:
            min_seq = min(min_seq, seq)
            s.max_seq = max(s.max_seq, seq)
            s.smallest = min(s.smallest, start) if s.entries or s.range_dels else start
            s.largest = max(s.largest, end_bound(end)) if s.entries or s.range_dels else end_bound(end)
            s.range_dels.append((start, end, seq))
        s.entries_or_dels = s.entries + len(s.range_dels)
        s.min_seq = min_seq if s.entries_or_dels else 0
    finally:
        f.close()
    return s


def _check_block_order(keys, tags, last: tuple[bytes, int] | None, path: str, offset: int) -> None:
    """Raises: CorruptionError unless entries are (key ascending, sequence
    descending) within the block and after the previous block's last entry."""
    prev = last
    for i, key in enumerate(keys):
        seq = tags[i] >> 8
        if prev is not None and not (prev[0] < key or (prev[0] == key and prev[1] > seq)):
            raise CorruptionError(path, offset, f"entry {i} of the block is out of order")
        prev = (key, seq)


def _props_mismatch(scan: _TableScan, meta: FileMeta | None, size: int) -> list[str]:
    """Disagreements between a table's properties, its entries and its manifest record."""
    p = scan.props
    out = []
    actual = {"entries": scan.entries, "smallest": scan.smallest, "largest": scan.largest,
              "min_seq": scan.min_seq, "max_seq": scan.max_seq}
    for name, value in actual.items():
        if p.get(name) != value:
            out.append(f"properties say {name} {p.get(name)!r}, the blocks hold {value!r}")
    if meta is not None:
        recorded = {"size": (meta.size, size), "entries": (meta.entries, scan.entries),
                    "smallest": (meta.smallest, scan.smallest), "largest": (meta.largest, scan.largest),
                    "min_seq": (meta.min_seq, scan.min_seq), "max_seq": (meta.max_seq, scan.max_seq),
                    "range tombstones": (sorted(meta.range_dels), sorted(scan.range_dels))}
        for name, (want, got) in recorded.items():
            if want != got:
                out.append(f"manifest says {name} {want!r}, the file has {got!r}")
    return out


def _read_edits(fs: FileSystem, path: str) -> tuple[list[tuple[int, VersionEdit]], list[Damage | Error]]:
    """Every decodable edit of a manifest, and every problem met (never raises
    for damage). A problem stops the edit list: later edits may depend on it."""
    edits: list[tuple[int, VersionEdit]] = []
    problems: list[Damage | Error] = []
    for rec in _iter_log(fs.read_file(path), path):
        if isinstance(rec, Damage):
            problems.append(rec)
            continue
        offset, rtype, payload = rec
        if problems:
            continue
        try:
            if rtype != EDIT:
                raise CorruptionError(path, offset, f"record type {rtype} in a manifest (want {EDIT})")
            edit = VersionEdit.decode(payload, path, offset)
            if not edits and edit.format_version not in MANIFEST_VERSIONS:
                raise CorruptionError(path, offset, f"unsupported manifest format version "
                                      f"{edit.format_version} (this reader knows {', '.join(map(str, MANIFEST_VERSIONS))})")
        except CorruptionError as e:
            problems.append(e)
            continue
        edits.append((offset, edit))
    return edits, problems


def _damage_finding(d: Damage | Error, what: str) -> Finding:
    if isinstance(d, Damage):
        if d.torn:
            return Finding("warning", d.path, d.offset, f"torn final {what} record ({d.nbytes} bytes; "
                           "an interrupted append, dropped by recovery)")
        return Finding("error", d.path, d.offset, f"{d.reason} ({d.nbytes} bytes damaged)")
    if isinstance(d, CorruptionError):
        return Finding("error", d.path, d.offset, d.reason)
    return Finding("error", getattr(d, "filename", None) or "?", None, str(d))


def verify(dbpath: str, *, fs: FileSystem | None = None) -> Iterator[Finding]:
    """Check every checksum of every live file of the database at ``dbpath``.

    Reads ``CURRENT``, every manifest record, every block of every table the
    manifest lists, and every record of every log not yet in a table; checks
    that tables agree with their manifest record and that the manifest and the
    directory agree (a listed table missing is an error, a table on disk that
    no edit lists is a warning). Yields one ``ok`` finding per sound file and a
    finding per problem; never raises for damage. Holds the shared ``LOCK``
    while the generator runs.

    Raises: Error when ``dbpath`` holds no database; LockError when a writer has it open.
    """
    fs = fs if fs is not None else OsFileSystem()
    dbpath = os.path.abspath(dbpath)
    _require_db(fs, dbpath)
    with _lock(fs, dbpath, shared=True):
        yield from _verify_locked(fs, dbpath)


def _verify_locked(fs: FileSystem, dbpath: str) -> Iterator[Finding]:
    try:
        manifest = read_current(fs, dbpath)
    except Error as e:
        yield _damage_finding(e, "CURRENT")
        return
    if not fs.exists(manifest):
        yield Finding("error", make_current_name(dbpath), 0, f"CURRENT names {os.path.basename(manifest)}, "
                      "which does not exist")
        return
    edits, problems = _read_edits(fs, manifest)
    version = Version([[] for _ in range(NUM_LEVELS)])
    log_number = next_file = last_seq = 0
    for offset, edit in edits:
        try:
            version = apply_edit(version, edit)
            version._check()  # L0 newest first, L1+ sorted and disjoint, no file twice
        except (ValueError, Error) as e:
            problems.append(CorruptionError(manifest, offset, str(e)))
            break
        log_number = edit.log_number if edit.log_number is not None else log_number
        next_file = max(next_file, edit.next_file or 0)
        last_seq = max(last_seq, edit.last_sequence or 0)
    bad = [p for p in problems if not (isinstance(p, Damage) and p.torn)]
    for p in problems:
        yield _damage_finding(p, "manifest")
    if not edits:
        yield Finding("error", manifest, 0, "manifest holds no complete edit")
    elif not bad:
        yield Finding("ok", manifest, None, f"{len(edits)} edits, {len(version.numbers())} live tables")

    on_disk: dict[FileType, list[int]] = {}
    for name in sorted(fs.listdir(dbpath)):
        parsed = parse_name(name)
        if parsed is not None:
            on_disk.setdefault(parsed[0], []).append(parsed[1])
    tables_on_disk = set(on_disk.get(FileType.TABLE, []))
    for level, meta in version.files():
        path = make_table_name(dbpath, meta.number)
        if meta.number not in tables_on_disk:
            yield Finding("error", path, None, f"listed in the manifest (L{level}) but missing")
            continue
        if next_file and meta.number >= next_file:
            yield Finding("error", path, None, f"file number {meta.number} >= the manifest's next "
                          f"file number {next_file}")
        if meta.max_seq > last_seq:
            yield Finding("error", path, None, f"holds sequence {meta.max_seq}, above the manifest's "
                          f"last sequence {last_seq} (new writes would reuse sequence numbers)")
        yield from _verify_table(fs, path, meta, level)
    for number in sorted(tables_on_disk - version.numbers()):
        yield Finding("warning", make_table_name(dbpath, number), None,
                      "orphan table: not in the manifest (removed at the next writable open)")
    logs = {n: fs.read_file(make_log_name(dbpath, n)) for n in sorted(on_disk.get(FileType.LOG, []))
            if n >= log_number}
    for number, data in logs.items():
        # zeros at the end of a log are its preallocated, unwritten end (recovery
        # checks the sequence runs on across logs; so does this pass)
        yield from _verify_log(make_log_name(dbpath, number), data, True)


def _verify_table(fs: FileSystem, path: str, meta: FileMeta, level: int) -> Iterator[Finding]:
    scan = _scan_table(fs, path, meta.number, global_seq=meta.global_seq)
    if scan.error is not None:
        yield _damage_finding(scan.error, "table")
        return
    for e in scan.block_errors:
        yield _damage_finding(e, "table")
    if scan.block_errors:
        return
    mismatches = _props_mismatch(scan, meta, fs.file_size(path))
    for m in mismatches:
        yield Finding("error", path, None, m)
    if meta.global_seq and scan.props.get(EXTERNAL_PROP) != 1:
        mismatches.append(f"manifest gives it global sequence {meta.global_seq}, but it is not an external table")
        yield Finding("error", path, None, mismatches[-1])
    if not mismatches:
        yield Finding("ok", path, None, f"L{level}, {scan.blocks} blocks, {scan.entries} entries"
                      + (f", ingested at sequence {meta.global_seq}" if meta.global_seq else ""))


def _verify_log(path: str, data: bytes, newest: bool) -> Iterator[Finding]:
    records = ops = 0
    last_seq = -1
    clean = True
    for rec in _wal_records(data, path, zero_tail_ok=newest):
        if isinstance(rec, Damage):
            finding = _damage_finding(rec, "log")
            clean = clean and finding.severity != "error"
            yield finding
            continue
        ops += 1
        records += rec.batch_index == 0
        if rec.seq <= last_seq:
            clean = False
            yield Finding("error", path, rec.offset, f"sequence {rec.seq} does not follow {last_seq}")
        last_seq = rec.seq
    if clean:
        yield Finding("ok", path, None, f"{records} records, {ops} operations")


def _main() -> int:
    """``python -m lsm.dump``: run the ``lsm-dump`` command line.

    The one documented exception to the layering: cli sits above dump (it
    formats dump's records), so dump must not import it at module level; it is
    looked up by name, only when this module runs as the program.
    """
    return int(importlib.import_module("lsm.cli").main())


if __name__ == "__main__":
    raise SystemExit(_main())
