"""SSTable framing: block handles, the block trailer and the footer
(doc/format.md#sstable).

    table        := data_block* filter_block props_block index_block footer
    block_record := payload[size] compression:u8 checksum:u32le
    checksum     := xxh32(payload || compression)
    handle       := offset:u64le size:u32le            (size excludes the 5-byte trailer)
    footer       := index:handle filter:handle props:handle version:u32le
                    checksum:u32le magic:u64le          (52 bytes; checksum covers the 40 before it)
"""

from __future__ import annotations

import struct
import threading
from typing import NamedTuple

import zstandard

from ..coding import checksum
from ..errors import CorruptionError

__all__ = ["BLOCK_TRAILER_BYTES", "BlockHandle", "COMPRESSION_NONE", "COMPRESSION_ZSTD",
           "FOOTER_BYTES", "FORMAT_VERSION", "Footer", "MAGIC", "decode_footer",
           "encode_block_record", "encode_footer", "unwrap_block"]

MAGIC = 0x4C534D5353544231  # "LSMSSTB1" read as a big-endian u64; stored little-endian
FORMAT_VERSION = 1  # bump on any incompatible change; readers refuse other versions

COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1

_TRAILER = struct.Struct("<BI")
BLOCK_TRAILER_BYTES = _TRAILER.size  # 5
_FOOTER = struct.Struct("<QIQIQIIIQ")
FOOTER_BYTES = _FOOTER.size  # 52
MAX_BLOCK_BYTES = (256 << 20) + (1 << 20)  # default bound on a zstd frame's claimed size
_ZSTD_LEVEL = 3  # zstd's default: ~3x on typical values at a few hundred MB/s


class BlockHandle(NamedTuple):
    offset: int
    size: int


class Footer(NamedTuple):
    index: BlockHandle
    filter: BlockHandle
    props: BlockHandle
    version: int


def encode_footer(footer: Footer) -> bytes:
    head = _FOOTER.pack(footer.index.offset, footer.index.size, footer.filter.offset,
                        footer.filter.size, footer.props.offset, footer.props.size,
                        footer.version, 0, MAGIC)
    return head[:40] + struct.pack("<I", checksum(head[:40])) + head[44:]


def decode_footer(data: bytes, path: str, file_size: int) -> Footer:
    """Parse and check the last :data:`FOOTER_BYTES` of a table.

    Raises: CorruptionError (with the footer's offset) on a short file, bad
    magic, bad checksum, a format version this reader does not know, or a
    handle that points outside the file.
    """
    offset = file_size - FOOTER_BYTES
    if offset < 0 or len(data) != FOOTER_BYTES:
        raise CorruptionError(path, max(offset, 0),
                              f"file of {file_size} bytes is too short for a {FOOTER_BYTES}-byte footer")
    (io, isz, fo, fsz, po, psz, version, crc, magic) = _FOOTER.unpack(data)
    if magic != MAGIC:
        raise CorruptionError(path, offset + 44, f"bad table magic 0x{magic:016x} (not an lsm SSTable)")
    got = checksum(data[:40])
    if got != crc:
        raise CorruptionError(path, offset + 40, f"footer checksum 0x{got:08x} != stored 0x{crc:08x}")
    if version != FORMAT_VERSION:
        raise CorruptionError(path, offset + 36, f"unsupported table format version {version} "
                              f"(this reader knows {FORMAT_VERSION})")
    for name, o, s in (("index", io, isz), ("filter", fo, fsz), ("props", po, psz)):
        if o + s + BLOCK_TRAILER_BYTES > offset:
            raise CorruptionError(path, offset, f"{name} handle ({o}, {s}) points past the footer")
    return Footer(BlockHandle(io, isz), BlockHandle(fo, fsz), BlockHandle(po, psz), version)


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
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True)
