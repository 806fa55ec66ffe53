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

import math
import os
import random
from collections.abc import Iterator

from .db import DB
from .dumprecords import (
    BlockInfo,
    BloomInfo,
    Damage,
    EditInfo,
    Finding,
    ManifestInfo,
    RepairReport,
    TableEntry,
    TableFile,
    TableInfo,
    WalOp,
    _user_value,
    kind_name,
)
from .errors import CorruptionError, Error
from .filenames import FileType, make_current_name, make_log_name, make_table_name, parse_name
from .filescan import TableScan, damage_finding, iter_log_ops, locked, read_edits, scan_table
from .fs import FileSystem, OsFileSystem
from .keys import MAX_SEQUENCE
from .manifest import FileMeta, VersionEdit, read_current, read_manifest
from .options import WAL_RECOVERY_MODES, Options
from .sstable import TableReader
from .sstable.bloom import BlockedBloom
from .sstable.format import (
    BLOCK_TRAILER_BYTES,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    MAX_FOOTER_BYTES,
    decode_footer,
    unwrap_block,
)
from .sstable.props import EXTERNAL_PROP
from .version import NUM_LEVELS, Version, apply_edit

__all__ = [
    "BlockInfo", "BloomInfo", "Damage", "EditInfo", "Finding", "ManifestInfo", "RepairReport",
    "TableEntry", "TableFile", "TableInfo", "WalOp", "describe_manifest", "describe_sst",
    "WAL_RECOVERY_MODES", "iter_sst", "iter_wal", "kind_name", "open_read_only", "verify",
]

FP_PROBES = 10_000  # random absent keys tried per bloom filter: ±0.1% at a 1% rate
_COMPRESSION = {COMPRESSION_NONE: "none", COMPRESSION_ZSTD: "zstd"}


# -- locking and opening ---------------------------------------------------------


def _require_db(fs: FileSystem, dbpath: str) -> None:
    """Raises: Error unless ``dbpath`` is a directory holding ``CURRENT``. Checked
    before taking the lock, so that a wrong path never gets a ``LOCK`` file."""
    if not os.path.isdir(dbpath):
        raise Error(f"{dbpath}: no such database directory")
    if not fs.exists(make_current_name(dbpath)):
        raise Error(f"{dbpath}: not a database (no CURRENT file); "
                    "`lsm-dump repair` rebuilds one from the tables present")


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
        with locked(fs, path, shared=True):
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
    for rec in iter_log_ops(data, path, zero_tail_ok):
        if isinstance(rec, Damage):
            yield rec
            continue
        offset, seq, kind, key, stored, index, size = rec
        value, expires = _user_value(kind, stored)
        yield WalOp(offset, seq, kind_name(kind), key, value, expires, index, size)


# -- verification -------------------------------------------------------------------


def _props_mismatch(scan: TableScan, meta: FileMeta | None, size: int) -> list[str]:
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
    with locked(fs, dbpath, shared=True):
        yield from _verify_locked(fs, dbpath)


def _verify_locked(fs: FileSystem, dbpath: str) -> Iterator[Finding]:
    try:
        manifest = read_current(fs, dbpath)
    except Error as e:
        yield damage_finding(e, "CURRENT")
        return
    if not fs.exists(manifest):
        yield Finding("error", make_current_name(dbpath), 0, f"CURRENT names {os.path.basename(manifest)}, "
                      "which does not exist")
        return
    edits, problems = read_edits(fs, manifest)
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
        yield damage_finding(p, "manifest")
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
    scan = scan_table(fs, path, meta.number, global_seq=meta.global_seq)
    if scan.error is not None:
        yield damage_finding(scan.error, "table")
        return
    for e in scan.block_errors:
        yield damage_finding(e, "table")
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
            finding = damage_finding(rec, "log")
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
