"""The write-ahead log: format 3 block framing, its writer and its reader
(doc/format.md#write-ahead-log).

    log          := file_header fragment-stream             (blocks of 32 KiB from offset 0)
    file_header  := "LSMWAL" version:u8 0x00                 (version 3; 8 bytes, in block 0)
    fragment     := checksum:u32le length:u16le type:u8 payload[length]
    type         := 1 FULL | 2 FIRST | 3 MIDDLE | 4 LAST
    checksum     := xxh32(payload, seed = length << 8 | type)
    record       := a FULL payload, or FIRST MIDDLE* LAST payloads joined
    record data  := rtype:u8 body              (1 BATCH: a write batch, lsm.batch format 2;
                                                2 START: first_seq:u64le, a log's first record;
                                                3 INGEST: seq:u64le, a sequence an ingest took)

A fragment never crosses a 32 KiB block boundary: when fewer than 7 bytes
(a fragment header) remain in a block, they are zero padding, and a record
that does not fit in what remains is split into fragments. So after damage
a reader resynchronises at the next block start, where a fragment always
begins: it never mistakes bytes inside a user value for a record.

Logs written before format 3 are plain concatenations of lsm.record
records (a header check, type BATCH, batch format 1); :func:`scan_log`
reads both.

Readers never decide policy: :func:`scan_log` returns every intact record
and every damaged region; lsm.recovery decides, by each ``wal_recovery``
mode and the sequence numbers and sync points the records carry.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import xxhash

from .errors import CorruptionError
from .fs import WritableFile
from .record import (
    BATCH as RECORD_BATCH,
    FORMAT_VERSION as RECORD_FORMAT_VERSION,
    MAGIC as RECORD_MAGIC,
    DamageReason,
    iter_records,
)

__all__ = ["BATCH", "BLOCK_BYTES", "FILE_HEADER", "FIRST", "FORMAT_VERSION", "FRAGMENT_HEADER", "FULL", "INGEST",
           "LAST", "MIDDLE", "START", "LogScan", "WalWriter", "frame_fragments", "scan_log"]

FORMAT_VERSION = 3  # of the write-ahead log; 2 was the plain record framing of lsm.record
BLOCK_BYTES = 32 << 10
FILE_HEADER = b"LSMWAL" + bytes((FORMAT_VERSION, 0))
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
BATCH = 1  # rtype of a record holding a write batch (lsm.batch, format 2)
START = 2  # rtype of a log's first record: the sequence its first write will have (u64le)
# rtype of a record saying that sequence ``seq`` (u64le) was taken by an
# ingest of external tables (lsm.ingest), which writes its data to the
# manifest, not to the log: the log's sequence continues past it at replay.
INGEST = 3

_FRAG = struct.Struct("<IHB")
FRAGMENT_HEADER = _FRAG.size  # 7
_ZERO_HEADER = bytes(FRAGMENT_HEADER)
_MAX_FRAGMENT = BLOCK_BYTES - FRAGMENT_HEADER
_LEGACY_START = struct.pack("<HB", RECORD_MAGIC, RECORD_FORMAT_VERSION)  # a5 b1 02
_xxh32 = xxhash.xxh32_intdigest


def frame_fragments(payload: bytes, pos: int) -> list[bytes]:
    """The bytes that append the record ``payload`` to a log whose next byte
    is at offset ``pos``: padding to the next block when a header does not
    fit, then its fragments. (The writer's hot path inlines the one-fragment
    case.)"""
    out = []
    n = len(payload)
    start = 0
    first = True
    while True:
        left = BLOCK_BYTES - pos % BLOCK_BYTES
        if left < FRAGMENT_HEADER:
            out.append(bytes(left))
            pos += left
            left = BLOCK_BYTES
        take = min(n - start, left - FRAGMENT_HEADER)
        last = start + take == n
        ftype = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
        part = payload[start:start + take]
        out.append(_FRAG.pack(_xxh32(part, take << 8 | ftype), take, ftype))
        out.append(part)
        pos += FRAGMENT_HEADER + take
        start += take
        first = False
        if last:
            return out


class WalWriter:
    """Appends records to one write-ahead log file.

    The file is normally a mapped file (``FileSystem.open_mapped``): a record
    is stored into shared memory, which is the page cache, so it survives a
    crash of the process as a ``write(2)`` would; ``sync`` (``fdatasync``)
    makes it survive a power cut.

    Durability: after :meth:`append` returns, the record is in the OS.
    Thread safety: none; the DB's writer (the commit leader, or the one
    writer of the fast path, under the DB mutex) is the only caller. A failed
    append may leave a torn record: the caller must stop writing (the DB
    enters its background-error state) and recovery drops the torn tail.
    """

    __slots__ = ("file", "number", "pos", "write")

    def __init__(self, file: WritableFile, number: int = 0) -> None:
        self.file = file
        self.number = number
        self.write = file.write
        if file.size == 0:
            file.write(FILE_HEADER)
        self.pos = file.size

    @property
    def size(self) -> int:
        return self.pos

    def append(self, payload: bytes) -> None:
        """Append one record (``rtype body``)."""
        pos = self.pos
        n = len(payload)
        left = BLOCK_BYTES - pos % BLOCK_BYTES
        if n + FRAGMENT_HEADER <= left:  # the common case: one FULL fragment in this block
            self.write(_FRAG.pack(_xxh32(payload, n << 8 | FULL), n, FULL) + payload)  # one store
            self.pos = pos + FRAGMENT_HEADER + n
            return
        data = b"".join(frame_fragments(payload, pos))
        self.write(data)
        self.pos = pos + len(data)

    def sync(self) -> None:
        self.file.sync()

    def trim(self) -> bool:
        """Give back preallocated space past the last record (True if there
        was some); durable after the next ``sync``."""
        return self.file.trim()

    def close(self) -> None:
        self.file.close()


class LogScan(NamedTuple):
    """What :func:`scan_log` found in one log: its format version, its intact
    records ``(offset, rtype, body)`` in order, its damaged regions
    ``(offset, nbytes, damage)`` in order, and ``hints``: records that check
    out *inside* damaged regions ``(offset, rtype, body)``.

    Hints are never replayed (a user value can hold a record's bytes); they
    only tell recovery that damage was not at the end of the log, and what
    was durable when the writes after it were made (see lsm.recovery)."""

    version: int
    records: list[tuple[int, int, bytes]]
    damage: list[tuple[int, int, DamageReason]]
    hints: list[tuple[int, int, bytes]] = []


def _zeros_from(data: bytes, pos: int) -> bool:
    return data.count(0, pos) == len(data) - pos


def scan_log(data: bytes, path: str = "<log>") -> LogScan:
    """Every intact record and every damaged region of a write-ahead log.

    Format 3 (starts with :data:`FILE_HEADER`): fragments are read block by
    block. A fragment whose header or checksum is bad, that runs past its
    block, or that breaks the FIRST/MIDDLE/LAST order, is damage; the reader
    goes on at the next block (or at the next FIRST or FULL fragment, for a
    broken order). A record cut short by the end of the data is damage with
    ``truncated`` set. Zero bytes where a fragment should start are
    preallocated space that was never written: at the end of the data they
    are not reported (the end of the log); followed by data they are damage
    (pages a power cut did not write back). A region of damage is reported
    with ``zero_fill`` when all its bytes are zero.

    Format 2 (starts with ``a5 b1 02``): read by lsm.record.iter_records.

    Raises: CorruptionError for a file header naming another WAL format
    version (a newer release's log is never dropped as damage).
    """
    if data.startswith(_LEGACY_START):
        return _scan_legacy(data, path)
    if not data or _zeros_from(data, 0):
        return LogScan(FORMAT_VERSION, [], [])  # created, nothing written (or not yet written back)
    records: list[tuple[int, int, bytes]] = []
    damage: list[tuple[int, int, DamageReason]] = []
    if data.startswith(FILE_HEADER[:6]):
        if data[6] != FORMAT_VERSION:
            raise CorruptionError(path, 6, f"write-ahead log format version {data[6]}, this reader knows "
                                  f"{FORMAT_VERSION} and 2 (written by a newer lsm?)")
    else:  # a damaged file header: report it, and read the fragments after it
        damage.append((0, len(FILE_HEADER), DamageReason("bad write-ahead log file header")))
    n = len(data)
    pos = len(FILE_HEADER)
    start = -1  # offset of the record being assembled, -1: none
    parts: list[bytes] = []
    bad_from = -1  # start of the damaged region being skipped, -1: none

    def close_bad(upto: int) -> None:
        nonlocal bad_from
        if bad_from >= 0:
            if upto > bad_from:
                zero = _zeros_from(data[:upto], bad_from)
                damage.append((bad_from, upto - bad_from, DamageReason("damaged log fragment" if not zero
                                                                 else "unwritten zeros before later records",
                                                                 zero_fill=zero)))
            bad_from = -1

    def bad(at: int) -> None:
        nonlocal bad_from, start
        if start >= 0:  # a record in progress is lost with it
            at, start = start, -1
            parts.clear()
        if bad_from < 0:
            bad_from = at

    while pos < n:
        block_end = (pos // BLOCK_BYTES + 1) * BLOCK_BYTES
        if block_end - pos < FRAGMENT_HEADER:
            pos = block_end  # padding
            continue
        if n - pos < FRAGMENT_HEADER:
            if not _zeros_from(data, pos):
                bad(pos)
            break
        crc, length, ftype = _FRAG.unpack_from(data, pos)
        if not crc and not length and not ftype:
            # zeros: unwritten space. The end of the log if zeros run to the end.
            if _zeros_from(data, pos):
                break
            bad(pos)
            pos = block_end
            continue
        end = pos + FRAGMENT_HEADER + length
        if ftype not in (FULL, FIRST, MIDDLE, LAST) or end > block_end:
            bad(pos)
            pos = block_end
            continue
        if end > n:
            bad(pos)  # cut short by the end of the data: a torn last write
            pos = n
            break
        payload = data[pos + FRAGMENT_HEADER:end]
        if _xxh32(payload, length << 8 | ftype) != crc:
            bad(pos)
            pos = block_end
            continue
        if ftype == FULL or ftype == FIRST:
            if start >= 0:
                bad(start)  # a record left unfinished: its LAST is missing
            close_bad(pos)
            if ftype == FULL:
                if payload:
                    records.append((pos, payload[0], payload[1:]))
                else:
                    damage.append((pos, end - pos, DamageReason("empty log record")))
            else:
                start = pos
                parts[:] = [payload]
        elif start < 0:
            bad(pos)  # MIDDLE or LAST of a record whose FIRST was lost
        else:
            parts.append(payload)
            if ftype == LAST:
                rec = b"".join(parts)
                parts.clear()
                if rec:
                    records.append((start, rec[0], rec[1:]))
                start = -1
        pos = end
    if start >= 0:
        bad(start)
    if bad_from >= 0:
        # the damage runs to the end: a torn tail unless records follow (they cannot: nothing left)
        zero = _zeros_from(data, bad_from)
        damage.append((bad_from, n - bad_from, DamageReason("torn or damaged end of the log", truncated=True,
                                                      zero_fill=zero)))
    hints = [h for off, nbytes, d in damage if not d.zero_fill for h in _hints(data, off + 1, off + nbytes)]
    return LogScan(FORMAT_VERSION, records, damage, hints)


def _hints(data: bytes, lo: int, hi: int) -> list[tuple[int, int, bytes]]:
    """FULL fragments that check out anywhere in ``data[lo:hi]`` (a damaged
    region), as ``(offset, rtype, body)``. A byte-by-byte search: recovery
    only, and only over damage."""
    out = []
    unpack = _FRAG.unpack_from
    pos = lo
    end = min(hi, len(data)) - FRAGMENT_HEADER
    while pos < end:
        crc, length, ftype = unpack(data, pos)
        if ftype == FULL and length and pos + FRAGMENT_HEADER + length <= min(hi, len(data)) and \
                (pos // BLOCK_BYTES) == (pos + FRAGMENT_HEADER + length - 1) // BLOCK_BYTES:
            payload = data[pos + FRAGMENT_HEADER:pos + FRAGMENT_HEADER + length]
            if _xxh32(payload, length << 8 | FULL) == crc:
                out.append((pos, payload[0], payload[1:]))
                pos += FRAGMENT_HEADER + length
                continue
        pos += 1
    return out


def _scan_legacy(data: bytes, path: str) -> LogScan:
    """A write-ahead log of format 2: records of lsm.record framing."""
    damage: list[tuple[int, int, DamageReason]] = []

    def report(offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
        if not (at_tail and getattr(reason, "zero_fill", False)):
            damage.append((offset, nbytes, reason if isinstance(reason, DamageReason) else DamageReason(reason)))
        return True

    records = [(offset, rtype, payload) for offset, rtype, payload in iter_records(data, report, path)]
    # A format 2 batch record's type was RECORD_BATCH; recovery knows by the version.
    assert RECORD_BATCH == BATCH
    return LogScan(2, records, damage, [])
