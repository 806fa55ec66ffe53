"""Record framing of manifests and persistent-cache logs, and of write-ahead
logs written before WAL format 3 (doc/format.md#log-records).

    record       := header payload[length] checksum:u32le
    header       := magic:u16le version:u8 type:u8 length:u32le header_check:u32le
    header_check := xxh32(magic .. length)            (the 8 bytes before it)
    checksum     := xxh32(header .. payload)          (every byte of the record before it)

``magic`` is 0xB1A5 and ``version`` is :data:`FORMAT_VERSION`. ``type`` says what
the payload is: :data:`EDIT` (a version edit) in manifests, :data:`CACHE` in
persistent-cache logs, :data:`BATCH` (a write batch, lsm.batch) in
write-ahead logs of the first releases (lsm.wal reads those; it writes its
own block framing). A log is a plain concatenation of records; there is no
file header and no padding.

Why a header check: it makes ``length`` trustworthy. A record whose header
checks out but whose bytes run past the end of the file is a torn last write
(its extent is known, so nothing inside it is ever mistaken for a record); a
header that does not check out is damage, and the reader resynchronises on
the next intact record.

Readers never decide policy (what to do with damage is the caller's:
lsm.recovery's ``wal_recovery`` modes, lsm.repair): :func:`iter_records` yields every
intact record and reports each damaged region to an ``on_corruption``
callback, which says whether to go on. The one exception: a record written
by a newer format version always raises, whatever the callback would do.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from .coding import checksum
from .errors import CorruptionError
from .fs import WritableFile

__all__ = ["BATCH", "CACHE", "EDIT", "FORMAT_VERSION", "HEADER_BYTES", "MAGIC", "OVERHEAD", "DamageReason",
           "RecordWriter", "encode_record", "frame_record", "has_intact_record", "iter_records", "strict_reporter"]

MAGIC = 0xB1A5
FORMAT_VERSION = 2  # 2: header check added. Readers refuse any other version.
BATCH = 1  # payload: lsm.batch encoding
EDIT = 2   # payload: lsm.manifest VersionEdit encoding
CACHE = 3  # payload: lsm.pcache.log operations

_HEAD = struct.Struct("<HBBI")
_U32 = struct.Struct("<I")
HEADER_BYTES = _HEAD.size + 4  # 12
OVERHEAD = HEADER_BYTES + 4  # 16
_MAGIC_BYTES = struct.pack("<H", MAGIC)
_MAX_PAYLOAD = (1 << 32) - 1


class DamageReason(str):
    """The reason string given to ``on_corruption``, plus ``truncated``: True
    when the region is a record cut short by the end of the data (a torn
    last write), False for damaged bytes; and ``zero_fill``: True when the
    region runs to the end of the data and every byte of it is zero (space a
    preallocating writer extended the file by, or bytes whose length reached
    the disk before their data: never a record)."""

    truncated: bool
    zero_fill: bool

    def __new__(cls, reason: str, truncated: bool = False, zero_fill: bool = False) -> DamageReason:
        self = super().__new__(cls, reason)
        self.truncated = truncated
        self.zero_fill = zero_fill
        return self


def _zeros_to_end(data: bytes, pos: int) -> bool:
    return data.count(0, pos) == len(data) - pos


OnCorruption = Callable[[int, int, str, bool], bool]
"""``on_corruption(offset, nbytes, reason, at_tail) -> keep_going``.

``offset`` is where the damaged region starts, ``nbytes`` its length up to the
next intact record (or the end), ``reason`` a :class:`DamageReason`, ``at_tail``
true when no intact record follows. Return ``True`` to skip the region and
continue, ``False`` to stop. It may also raise, which propagates.
"""


def encode_record(payload: bytes, rtype: int = BATCH) -> bytes:
    """Frame ``payload`` as one record.

    >>> encode_record(b"hi").hex()
    'a5b1020102000000c10a8b346869074cb9a0'
    """
    n = len(payload)
    if n > _MAX_PAYLOAD:
        raise ValueError(f"record payload of {n} bytes exceeds {_MAX_PAYLOAD}")
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, rtype, n)
    body = head + _U32.pack(checksum(head)) + payload
    return body + _U32.pack(checksum(body))


def frame_record(buf: bytearray, rtype: int = BATCH) -> bytearray:
    """Frame a record in place and return ``buf``: its first :data:`HEADER_BYTES`
    bytes are reserved (any value) and the payload follows them. Gives the
    same bytes as ``encode_record(buf[HEADER_BYTES:], rtype)`` without copying
    the payload twice, which matters on small hot records (the cache's puts).

    >>> frame_record(bytearray(HEADER_BYTES) + b"hi") == encode_record(b"hi")
    True
    """
    n = len(buf) - HEADER_BYTES
    if n < 0:
        raise ValueError(f"buf has {len(buf)} bytes; the {HEADER_BYTES} header bytes must be reserved")
    if not 0 <= rtype <= 0xFF:
        raise ValueError(f"record type must fit a byte; got {rtype}")
    key = n << 8 | rtype
    head = _FRAMED_HEADS.get(key)
    if head is None:
        if n > _MAX_PAYLOAD:
            raise ValueError(f"record payload of {n} bytes exceeds {_MAX_PAYLOAD}")
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, rtype, n)
        head += _U32.pack(checksum(head))
        if n < _FRAMED_HEADS_BELOW:
            _FRAMED_HEADS[key] = head
    buf[:HEADER_BYTES] = head
    buf += _U32.pack(checksum(buf))
    return buf


# Complete headers (with their check) of small records, by length << 8 | type:
# at most 3 * 4096 entries of 12 bytes. Filled on first use; a racing fill
# stores equal bytes.
_FRAMED_HEADS: dict[int, bytes] = {}
_FRAMED_HEADS_BELOW = 4096


def _header_at(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """``(version, type, length)`` if a header that checks out starts at ``pos``."""
    if len(data) - pos < HEADER_BYTES:
        return None
    magic, version, rtype, length = _HEAD.unpack_from(data, pos)
    if magic != MAGIC or _U32.unpack_from(data, pos + 8)[0] != checksum(memoryview(data)[pos:pos + 8]):
        return None
    return version, rtype, length


def _intact_at(data: bytes, pos: int) -> bool:
    h = _header_at(data, pos)
    if h is None:
        return False
    end = pos + HEADER_BYTES + h[2]
    return end + 4 <= len(data) and _U32.unpack_from(data, end)[0] == checksum(memoryview(data)[pos:end])


def _resync(data: bytes, pos: int) -> int | None:
    """Offset of the next intact record at or after ``pos``, or None."""
    while True:
        pos = data.find(_MAGIC_BYTES, pos)
        if pos < 0:
            return None
        if _intact_at(data, pos):
            return pos
        pos += 1


def iter_records(data: bytes, on_corruption: OnCorruption, path: str = "<log>"
                 ) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(offset, type, payload)`` for each intact record in ``data``.

    Damage is classified and reported through ``on_corruption``:

    * fewer than 12 bytes left, or a header that checks out with a length
      running past the end: a truncated last record (``truncated=True``,
      ``at_tail=True``); nothing after it is examined;
    * a header that checks out, with a bad record checksum: that record's
      extent is skipped (``at_tail`` when no intact record follows);
    * a header that does not check out: skipped up to the next intact
      record, found by scanning for the magic (``at_tail`` if there is none).

    A region reported with ``at_tail`` that holds only zero bytes has
    ``zero_fill=True`` (a preallocated log's unwritten end, doc/format.md).

    Raises: CorruptionError (naming ``path``) for a record of a format version
    this reader does not know: newer data is never skipped silently.
    """
    pos = 0
    n = len(data)
    view = memoryview(data)
    while pos < n:
        h = _header_at(data, pos)
        if h is not None:
            version, rtype, length = h
            if version != FORMAT_VERSION:
                raise CorruptionError(path, pos, f"record format version {version}, this reader knows "
                                      f"{FORMAT_VERSION} (written by a newer lsm?)")
            end = pos + HEADER_BYTES + length
            if end + 4 > n:
                on_corruption(pos, n - pos, DamageReason(
                    f"truncated record: {length}-byte payload and checksum need {length + 4} bytes, "
                    f"{n - pos - HEADER_BYTES} present", truncated=True), True)
                return
            want = _U32.unpack_from(data, end)[0]
            got = checksum(view[pos:end])
            if got == want:
                yield pos, rtype, data[pos + HEADER_BYTES:end]
                pos = end + 4
                continue
            nxt = end + 4
            # at_tail means "no intact record follows", not "ends the data":
            # a torn group commit can leave several damaged records at the end.
            tail = nxt >= n or _resync(data, nxt) is None
            if not on_corruption(pos, nxt - pos, DamageReason(f"record checksum 0x{got:08x} != stored 0x{want:08x}"),
                                 tail):
                return
            pos = nxt
            continue
        if n - pos < HEADER_BYTES:  # no record fits: a header cut short
            on_corruption(pos, n - pos, DamageReason(f"truncated record header ({n - pos} of {HEADER_BYTES} bytes)",
                                               truncated=True, zero_fill=_zeros_to_end(data, pos)), True)
            return
        resync = _resync(data, pos + 1)
        stop = n if resync is None else resync
        damage = DamageReason("bad record header (magic or header check)",
                        zero_fill=resync is None and _zeros_to_end(data, pos))
        if not on_corruption(pos, stop - pos, damage, resync is None) \
                or resync is None:
            return
        pos = resync


def has_intact_record(data: bytes) -> bool:
    """True when ``data`` holds at least one intact record anywhere."""
    return _intact_at(data, 0) or _resync(data, 0) is not None


def strict_reporter(path: str) -> OnCorruption:
    """An ``on_corruption`` that raises :class:`CorruptionError` for any damage."""

    def report(offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
        raise CorruptionError(path, offset, reason)

    return report


class RecordWriter:
    """Appends records to one log file (a manifest, a cache shard's log).

    Durability: ``add_record`` returns once the bytes are in the OS (one
    ``write``); ``sync`` makes them survive a power cut.
    Thread safety: none; one owner calls it. A failed write may leave a torn
    record at the end of the file; the owner must stop using the writer and
    recovery drops the torn tail.
    """

    __slots__ = ("file", "number")

    def __init__(self, file: WritableFile, number: int = 0) -> None:
        self.file = file
        self.number = number

    @property
    def size(self) -> int:
        return self.file.size

    def add_record(self, payload: bytes, rtype: int) -> None:
        self.file.write(encode_record(payload, rtype))

    def sync(self) -> None:
        self.file.sync()

    def trim(self) -> bool:
        """Give back preallocated space past the last record (True if there
        was some); durable after the next ``sync``."""
        return self.file.trim()

    def close(self) -> None:
        self.file.close()
