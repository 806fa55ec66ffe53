"""Damage-tolerant readers of a database's files, shared by :mod:`lsm.dump`
(``verify``) and :mod:`lsm.repair`: they read every record of a write-ahead
log or manifest and every block of a table, and return the damage they meet
(:class:`~lsm.dumprecords.Damage`, :class:`~lsm.errors.CorruptionError`)
instead of raising, so a caller sees everything that survives.

Recovery reads the same files strictly, by the rules of doc/design.md
(lsm/recovery.py, lsm/manifest.py); nothing here decides policy or writes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .batch import BatchDecodeError, decode_batch
from .dumprecords import Damage, Finding
from .errors import CorruptionError, DiskError, Error
from .fs import FileSystem
from .keys import MAX_SEQUENCE
from .manifest import KNOWN_VERSIONS as MANIFEST_VERSIONS, VersionEdit
from .rangedel import end_bound
from .record import EDIT, FORMAT_VERSION as RECORD_FORMAT_VERSION, HEADER_BYTES, MAGIC, OVERHEAD, iter_records
from .recovery import lock_database
from .sstable import TableReader
from .wal import BATCH, INGEST, START, scan_log

__all__ = ["TableScan", "damage_finding", "iter_log_ops", "locked", "read_edits", "scan_table"]

_RECORD_HEADER = struct.Struct("<HBBI")  # lsm.record framing starts magic, version, type, length


@contextmanager
def locked(fs: FileSystem, dbpath: str, *, shared: bool) -> Iterator[None]:
    """Hold the database's lock (shared: beside other readers, not a writer),
    as a DB open does (lsm.recovery.lock_database): a shared lock needs no
    write access and creates nothing (read commands write nothing)."""
    lock = lock_database(fs, dbpath, shared=shared)
    try:
        yield
    finally:
        lock.release()


# -- logs and manifests (record by record) -------------------------------------


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


def _iter_records(data: bytes, path: str, zero_tail_ok: bool = False) -> Iterator[tuple[int, int, bytes] | Damage]:
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


def iter_log_ops(data: bytes, path: str, zero_tail_ok: bool
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


def read_edits(fs: FileSystem, path: str) -> tuple[list[tuple[int, VersionEdit]], list[Damage | Error]]:
    """Every decodable edit of a manifest, and every problem met (never raises
    for damage). A problem stops the edit list: later edits may depend on it."""
    edits: list[tuple[int, VersionEdit]] = []
    problems: list[Damage | Error] = []
    for rec in _iter_records(fs.read_file(path), path):
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
                known = ", ".join(map(str, MANIFEST_VERSIONS))
                raise CorruptionError(path, offset, f"unsupported manifest format version "
                                      f"{edit.format_version} (this reader knows {known})")
        except CorruptionError as e:
            problems.append(e)
            continue
        edits.append((offset, edit))
    return edits, problems


# -- tables (block by block) ---------------------------------------------------


@dataclass
class TableScan:
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


def scan_table(fs: FileSystem, path: str, number: int, keep: bool = False, global_seq: int = 0) -> TableScan:
    """Read every block of a table with checksum verification; never raises
    for damage (it is returned), only collects it. ``global_seq``: an
    ingested table's sequence (its entries are read at it)."""
    s = TableScan(kept=[] if keep else None)
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


# -- findings -----------------------------------------------------------------


def damage_finding(d: Damage | Error, what: str) -> Finding:
    """The finding for a damaged region or an error met reading a ``what``
    (``"log"``, ``"manifest"``, ``"table"``, ...): a torn final record is a
    warning (recovery drops it), anything else an error."""
    if isinstance(d, Damage):
        if d.torn:
            return Finding("warning", d.path, d.offset, f"torn final {what} record ({d.nbytes} bytes; "
                           "an interrupted append, dropped by recovery)")
        return Finding("error", d.path, d.offset, f"{d.reason} ({d.nbytes} bytes damaged)")
    if isinstance(d, CorruptionError):
        return Finding("error", d.path, d.offset, d.reason)
    return Finding("error", getattr(d, "filename", None) or "?", None, str(d))
