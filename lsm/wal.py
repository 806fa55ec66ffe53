"""Record framing shared by the write-ahead log and the manifest, and the WAL
writer (doc/format.md#log-records).

    record   := magic:u16le version:u8 type:u8 length:u32le payload[length] checksum:u32le
    checksum := xxh32(magic .. payload)       (every byte of the record before it)

``magic`` is 0xB1A5 and ``version`` is :data:`FORMAT_VERSION`. ``type`` says what
the payload is: :data:`BATCH` (a write batch, lsm.batch) in ``NNNNNN.log``
files, :data:`EDIT` (a version edit) in manifests. A log is a plain
concatenation of records; there is no file header and no padding.

Readers never decide policy (STYLE habit 6): :func:`iter_records` yields every
intact record and reports each damaged region to an ``on_corruption``
callback, which says whether to go on.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator

from .coding import checksum
from .errors import CorruptionError
from .fs import WritableFile

__all__ = ["BATCH", "EDIT", "FORMAT_VERSION", "MAGIC", "OVERHEAD", "WalWriter",
           "encode_record", "iter_records"]

MAGIC = 0xB1A5
FORMAT_VERSION = 1  # bump on any incompatible change; readers refuse other versions
BATCH = 1  # payload: lsm.batch encoding
EDIT = 2   # payload: lsm.manifest VersionEdit encoding
CACHE = 3  # payload: lsm.pcache operation

_HEADER = struct.Struct("<HBBI")
_TRAILER = struct.Struct("<I")
HEADER_BYTES = _HEADER.size  # 8
OVERHEAD = HEADER_BYTES + _TRAILER.size  # 12
_MAGIC_BYTES = struct.pack("<HB", MAGIC, FORMAT_VERSION)
_MAX_PAYLOAD = (1 << 32) - 1

OnCorruption = Callable[[int, int, str, bool], bool]
"""``on_corruption(offset, nbytes, reason, at_tail) -> keep_going``.

``offset`` is where the damaged region starts, ``nbytes`` its length up to the
next intact record (or end of file), ``at_tail`` is true when no intact record
follows it. Return ``True`` to skip the region and continue, ``False`` to stop.
It may also raise, which propagates out of :func:`iter_records`.
"""


def encode_record(payload: bytes, rtype: int = BATCH) -> bytes:
    """Frame ``payload`` as one record.

    >>> encode_record(b"hi").hex()
    'a5b1010102000000686947fc73c3'
    """
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds {_MAX_PAYLOAD}")
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, rtype, len(payload)) + payload
    return body + _TRAILER.pack(checksum(body))


def _check_at(data: bytes, pos: int) -> tuple[int, int, str]:
    """Validate the record at ``pos``: return ``(type, end, "")`` or ``(0, 0, reason)``."""
    n = len(data)
    if n - pos < HEADER_BYTES:
        return 0, 0, f"truncated record header ({n - pos} of {HEADER_BYTES} bytes)"
    magic, version, rtype, length = _HEADER.unpack_from(data, pos)
    if magic != MAGIC:
        return 0, 0, f"bad record magic 0x{magic:04x}"
    if version != FORMAT_VERSION:
        return 0, 0, f"unsupported record format version {version} (this reader knows {FORMAT_VERSION})"
    end = pos + HEADER_BYTES + length
    if end + 4 > n:
        return 0, 0, (f"truncated record: {length}-byte payload and checksum need "
                      f"{length + 4} bytes, {n - pos - HEADER_BYTES} present")
    want = _TRAILER.unpack_from(data, end)[0]
    got = checksum(memoryview(data)[pos:end])
    if got != want:
        return 0, 0, f"record checksum 0x{got:08x} != stored 0x{want:08x}"
    return rtype, end + 4, ""


def _resync(data: bytes, pos: int) -> int | None:
    """Offset of the next intact record at or after ``pos``, or None."""
    while True:
        pos = data.find(_MAGIC_BYTES, pos)
        if pos < 0:
            return None
        if _check_at(data, pos)[2] == "":
            return pos
        pos += 1


def iter_records(data: bytes, on_corruption: OnCorruption) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(offset, type, payload)`` for each intact record in ``data``.

    Damaged regions (torn tail, bad magic, bad checksum, unknown version) are
    reported through ``on_corruption`` and skipped up to the next intact
    record, found by scanning for the magic bytes.
    """
    pos = 0
    n = len(data)
    while pos < n:
        rtype, end, reason = _check_at(data, pos)
        if not reason:
            yield pos, rtype, data[pos + HEADER_BYTES:end - 4]
            pos = end
            continue
        nxt = _resync(data, pos + 1)
        stop = n if nxt is None else nxt
        if not on_corruption(pos, stop - pos, reason, nxt is None) or nxt is None:
            return
        pos = nxt


def strict_reporter(path: str) -> OnCorruption:
    """An ``on_corruption`` that raises :class:`CorruptionError` for any damage."""

    def report(offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
        raise CorruptionError(path, offset, reason)

    return report


class WalWriter:
    """Appends records to one log file.

    Durability: ``add_records`` returns once the bytes are in the OS (one
    ``write(2)`` for the whole group); ``sync`` makes them survive a power cut.
    Thread safety: none; the commit leader (or the manifest owner) is the only
    caller. A failed write may leave a torn record at the end of the file; the
    caller must stop using the writer (the DB enters its background-error state)
    and recovery drops the torn tail.
    """

    __slots__ = ("file", "number")

    def __init__(self, file: WritableFile, number: int = 0) -> None:
        self.file = file
        self.number = number

    @property
    def size(self) -> int:
        return self.file.size

    def add_record(self, payload: bytes, rtype: int = BATCH) -> None:
        self.file.write(encode_record(payload, rtype))

    def add_records(self, payloads: list[bytes], rtype: int = BATCH) -> None:
        if len(payloads) == 1:
            self.file.write(encode_record(payloads[0], rtype))
        else:
            self.file.write(b"".join([encode_record(p, rtype) for p in payloads]))

    def sync(self) -> None:
        self.file.sync()

    def close(self) -> None:
        self.file.close()
