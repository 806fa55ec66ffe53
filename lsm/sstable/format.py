"""SSTable framing: block handles, the block trailer and the footer
(doc/format.md#sstable).

    table        := data_block* range_del_block filter_block props_block index_block footer   (format 2)
                  | data_block* filter_block props_block index_block footer                   (format 1)
    block_record := payload[size] compression:u8 checksum:u32le
    checksum     := xxh32(payload || compression)
    handle       := offset:u64le size:u32le            (size excludes the 5-byte trailer)
    footer       := index:handle filter:handle props:handle range_del:handle
                    version:u32le checksum:u32le magic:u64le     (format 2: 64 bytes)
                  | index:handle filter:handle props:handle
                    version:u32le checksum:u32le magic:u64le     (format 1: 52 bytes)

Both footers end in ``version checksum magic``, so a reader finds the
version 16 bytes from the end before it knows the footer's size; the
checksum covers every footer byte before it.
"""

from __future__ import annotations

import struct
import threading
from typing import NamedTuple

import zstandard

from ..coding import checksum
from ..errors import CorruptionError

__all__ = ["BLOCK_TRAILER_BYTES", "BlockHandle", "COMPRESSION_NONE", "COMPRESSION_ZSTD",
           "FOOTER_BYTES", "FORMAT_VERSION", "Footer", "MAGIC", "decode_footer", "decode_footer_version",
           "encode_block_record", "encode_footer", "footer_bytes", "unwrap_block"]

MAGIC = 0x4C534D5353544231  # "LSMSSTB1" read as a big-endian u64; stored little-endian
FORMAT_VERSION = 2  # written; readers accept 1 and 2 and refuse any other (KNOWN_VERSIONS)
KNOWN_VERSIONS = (1, 2)

COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1

_TRAILER = struct.Struct("<BI")
BLOCK_TRAILER_BYTES = _TRAILER.size  # 5
_TAIL = struct.Struct("<IIQ")  # version, checksum, magic: the last 16 bytes of every footer
_HANDLE = struct.Struct("<QI")
_HANDLES = {1: 3, 2: 4}  # handles per footer, by format version
FOOTER_BYTES = 12 * _HANDLES[FORMAT_VERSION] + _TAIL.size  # 64 (format 1: 52)
MAX_FOOTER_BYTES = FOOTER_BYTES
MAX_BLOCK_BYTES = (256 << 20) + (1 << 20)  # default bound on a zstd frame's claimed size
ZSTD_LEVEL = 3  # zstd's default: ~3x on typical values at a few hundred MB/s


class BlockHandle(NamedTuple):
    offset: int
    size: int


EMPTY_HANDLE = BlockHandle(0, 0)


class Footer(NamedTuple):
    # shadows tuple.index(), which nothing calls on a Footer; the name matches the block's
    index: BlockHandle  # type: ignore[assignment]
    filter: BlockHandle
    props: BlockHandle
    version: int
    range_del: BlockHandle = EMPTY_HANDLE  # format 2; (0, 0) in format 1 tables


def footer_bytes(version: int) -> int:
    """Size of the footer of a table of format ``version``."""
    return 12 * _HANDLES[version] + _TAIL.size


def encode_footer(footer: Footer) -> bytes:
    handles = [footer.index, footer.filter, footer.props]
    if footer.version >= 2:
        handles.append(footer.range_del)
    head = b"".join(_HANDLE.pack(*h) for h in handles) + struct.pack("<I", footer.version)
    return head + struct.pack("<IQ", checksum(head), MAGIC)


def decode_footer_version(tail: bytes) -> int:
    """The format version in the last 16 bytes of ``tail`` (the end of a table
    file), unchecked: for tools and tests. Readers use :func:`decode_footer`."""
    return _TAIL.unpack_from(tail, len(tail) - _TAIL.size)[0]


def decode_footer(data: bytes, path: str, file_size: int) -> Footer:
    """Parse and check the footer at the end of ``data``, the last
    ``min(file_size, MAX_FOOTER_BYTES)`` bytes of a table.

    Raises: CorruptionError (with the offset of the bad field) on a short file,
    bad magic, bad checksum, a format version this reader does not know, or a
    handle that points outside the file.
    """
    if file_size < _TAIL.size or len(data) < _TAIL.size:
        raise CorruptionError(path, 0, f"file of {file_size} bytes is too short for a table footer")
    version, crc, magic = _TAIL.unpack_from(data, len(data) - _TAIL.size)
    tail_at = file_size - _TAIL.size
    if magic != MAGIC:
        raise CorruptionError(path, tail_at + 8, f"bad table magic 0x{magic:016x} (not an lsm SSTable)")
    if version not in KNOWN_VERSIONS:
        # The version is not yet checked by the checksum here (the footer's size
        # depends on it): a damaged version byte and a newer release look alike.
        raise CorruptionError(path, tail_at, f"unsupported table format version {version} "
                              f"(this reader knows {', '.join(map(str, KNOWN_VERSIONS))}; "
                              "written by a newer lsm, or a damaged footer)")
    size = footer_bytes(version)
    offset = file_size - size
    if offset < 0 or len(data) < size:
        raise CorruptionError(path, 0, f"file of {file_size} bytes is too short for a {size}-byte footer")
    head = data[len(data) - size:len(data) - 12]
    got = checksum(head)
    if got != crc:
        raise CorruptionError(path, tail_at + 4, f"footer checksum 0x{got:08x} != stored 0x{crc:08x}")
    handles = [BlockHandle(*_HANDLE.unpack_from(head, 12 * i)) for i in range(_HANDLES[version])]
    names = ("index", "filter", "props", "range_del")
    for name, (o, s) in zip(names, handles):
        if (o, s) != (0, 0) and o + s + BLOCK_TRAILER_BYTES > offset:
            raise CorruptionError(path, offset, f"{name} handle ({o}, {s}) points past the footer")
    return Footer(handles[0], handles[1], handles[2], version, handles[3] if version >= 2 else EMPTY_HANDLE)


def encode_block_record(payload: bytes, compression: int) -> bytes:
    """Append the trailer to an (already compressed, if so) block payload."""
    return payload + _TRAILER.pack(compression, checksum(payload + bytes((compression,))))


def unwrap_block(raw: bytes, handle: BlockHandle, path: str, verify: bool,
                 limit: int = MAX_BLOCK_BYTES) -> bytes:
    """Check a block record read from disk and return its uncompressed payload.

    ``raw`` is ``size + 5`` bytes read at ``handle.offset``; ``limit`` bounds
    the decoded size (readers pass the table's ``data_bytes``).
    Raises: CorruptionError naming the block offset on a short read, checksum
    mismatch, unknown compression or an undecodable zstd frame.
    """
    size = handle.size
    if len(raw) != size + BLOCK_TRAILER_BYTES:
        raise CorruptionError(path, handle.offset, f"truncated block: read {len(raw)} of "
                              f"{size + BLOCK_TRAILER_BYTES} bytes")
    compression, crc = _TRAILER.unpack_from(raw, size)
    if verify:
        got = checksum(memoryview(raw)[:size + 1])
        if got != crc:
            raise CorruptionError(path, handle.offset, f"block checksum 0x{got:08x} != stored 0x{crc:08x}")
    if compression == COMPRESSION_NONE:
        return raw[:size]
    if compression == COMPRESSION_ZSTD:
        frame = memoryview(raw)[:size]
        try:
            # The frame header states the decoded size; with checksums off it is
            # unverified, so bound it before zstd allocates that much.
            want = zstandard.frame_content_size(frame)
            # Checked before zstd allocates ``want`` bytes: with checksums off a
            # flipped size field could ask for exabytes. ``limit`` is the
            # table's total uncompressed data (its ``data_bytes`` property),
            # which no valid block exceeds however large its values are.
            if not 0 <= want <= limit:
                raise CorruptionError(path, handle.offset, f"zstd block claims {want} decoded bytes "
                                      f"(limit {limit})")
            return _decompressor().decompress(frame, max_output_size=want)
        except (zstandard.ZstdError, MemoryError) as e:
            raise CorruptionError(path, handle.offset, f"bad zstd block: {e}") from None
    raise CorruptionError(path, handle.offset + size, f"unknown block compression {compression}")


_local = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (they are not thread-safe; creating one per
    block costs more than decompressing a 4-16 KiB block)."""
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def new_compressor() -> zstandard.ZstdCompressor:
    """A compressor for one writer (zstd compressors are not thread-safe)."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
