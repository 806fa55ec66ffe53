"""A writer of SSTable format 1, as the release that wrote it did (the format
is frozen: doc/format.md#format-1-tables). The package only reads format 1;
tests use this to put old tables anywhere (``tests/fixtures/v1db`` holds
tables the old release itself wrote).
"""

from __future__ import annotations

import struct
from array import array

from lsm.coding import checksum
from lsm.keys import DELETE, PUT_TTL
from lsm.manifest import FileMeta
from lsm.sstable.block import encode_index_block
from lsm.sstable.bloom import build_classic
from lsm.sstable.format import MAGIC, BlockHandle, encode_block_record, new_compressor
from lsm.sstable.props import TableProps, encode_props
from lsm.sstable.writer import TableWriter

_U32 = struct.Struct("<I")


def encode_v1_block(entries: list[tuple[bytes, int, bytes]]) -> bytes:
    """``count key_len:u16{count} value_len:u32{count} tag:u64{count} keys values``."""
    return b"".join((_U32.pack(len(entries)), array("H", [len(k) for k, _, _ in entries]).tobytes(),
                     array("I", [len(v) for _, _, v in entries]).tobytes(),
                     array("Q", [t for _, t, _ in entries]).tobytes(),
                     b"".join(k for k, _, _ in entries), b"".join(v for _, _, v in entries)))


def encode_v1_footer(index: BlockHandle, filt: BlockHandle, props: BlockHandle) -> bytes:
    head = struct.pack("<QIQIQII", index.offset, index.size, filt.offset, filt.size, props.offset, props.size, 1)
    return head + struct.pack("<IQ", checksum(head), MAGIC)


def write_v1_table(entries, *, block_bytes: int = 16 << 10, bloom_bits_per_key: int = 10,
                   compression: str = "zstd") -> bytes:
    """The bytes of a format 1 table of ``(key, seq, kind, value)`` in table order."""
    return _v1_table(entries, block_bytes=block_bytes, bloom_bits_per_key=bloom_bits_per_key,
                     compression=compression)[0]


def _v1_table(entries, *, block_bytes: int, bloom_bits_per_key: int, compression: str) -> tuple[bytes, dict]:
    """The bytes of a format 1 table and the values of its properties block."""
    out = bytearray()
    comp = new_compressor() if compression == "zstd" else None
    index_keys, handles, filter_keys = [], [], []
    block: list[tuple[bytes, int, bytes]] = []
    nbytes = 4
    stats = dict(entries=0, deletions=0, ttl_entries=0, raw_key_bytes=0, raw_value_bytes=0, data_bytes=0)
    seqs = []
    last = None

    def put_block(payload: bytes, compressible: bool) -> BlockHandle:
        c = 0
        if compressible and comp is not None:
            packed = comp.compress(payload)
            if len(packed) < len(payload) - len(payload) // 8:
                payload, c = packed, 1
        h = BlockHandle(len(out), len(payload))
        out.extend(encode_block_record(payload, c))
        return h

    def flush() -> None:
        nonlocal block, nbytes
        if block:
            payload = encode_v1_block(block)
            stats["data_bytes"] += len(payload)
            handles.append(put_block(payload, True))
            index_keys.append(block[-1][0])
            block, nbytes = [], 4

    for key, seq, kind, value in entries:
        if key != last:
            if nbytes >= block_bytes:
                flush()
            filter_keys.append(key)
            last = key
        block.append((key, seq << 8 | kind, value))
        nbytes += 14 + len(key) + len(value)
        stats["entries"] += 1
        stats["deletions"] += kind == DELETE
        stats["ttl_entries"] += kind == PUT_TTL
        stats["raw_key_bytes"] += len(key)
        stats["raw_value_bytes"] += len(value)
        seqs.append(seq)
    flush()
    filt = put_block(build_classic(filter_keys, bloom_bits_per_key), False)
    props = dict(stats, data_blocks=len(handles), min_seq=min(seqs, default=0), max_seq=max(seqs, default=0),
                 bloom_bits_per_key=bloom_bits_per_key, compression=1 if comp else 0,
                 unique_keys=len(filter_keys), smallest=entries[0][0] if entries else b"",
                 largest=entries[-1][0] if entries else b"")
    ph = put_block(encode_props(props), False)
    ih = put_block(encode_index_block(index_keys, handles), False)
    out.extend(encode_v1_footer(ih, filt, ph))
    return bytes(out), props


def v1_meta(number: int, data: bytes, entries) -> FileMeta:
    seqs = [e[1] for e in entries]
    return FileMeta(number, len(data), len(entries), entries[0][0], entries[-1][0], min(seqs), max(seqs))


class V1TableWriter:
    """A stand-in for ``lsm.sstable.TableWriter`` that writes format 1 with
    :func:`write_v1_table` (entries are kept in memory until ``finish``).
    Patched over ``lsm.builder._new_writer``, it makes flushes and in-process
    compactions write format 1 tables, as the old release did, anywhere in a
    live database. Format 1 cannot hold range tombstones: a table given any
    is written in the current format."""

    def __init__(self, file, *, block_bytes: int, bloom_bits_per_key: int, compression: str) -> None:
        self.file = file
        self.block_bytes = block_bytes
        self.bloom_bits_per_key = bloom_bits_per_key
        self.compression = compression
        self.entries: list[tuple[bytes, int, int, bytes]] = []
        self.range_dels: list[tuple[bytes, bytes, int]] = []
        self.estimated_size = 0

    @property
    def last_key(self) -> bytes | None:
        return self.entries[-1][0] if self.entries else None

    def add(self, key: bytes, seq: int, kind: int, value: bytes) -> None:
        self.entries.append((key, seq, kind, value))
        self.estimated_size += 14 + len(key) + len(value)

    def add_many(self, keys, tags, values, unique: bool = False) -> None:
        for k, t, v in zip(keys, tags, values):
            self.add(k, t >> 8, t & 0xFF, v)

    def add_range_del(self, start: bytes, end: bytes, seq: int) -> None:
        self.range_dels.append((start, end, seq))

    def finish(self) -> TableProps:
        if self.range_dels:
            w = TableWriter(self.file, block_bytes=self.block_bytes, bloom_bits_per_key=self.bloom_bits_per_key,
                            compression=self.compression)
            for e in self.entries:
                w.add(*e)
            for d in self.range_dels:
                w.add_range_del(*d)
            return w.finish()
        data, props = _v1_table(self.entries, block_bytes=self.block_bytes,
                                bloom_bits_per_key=self.bloom_bits_per_key, compression=self.compression)
        self.file.write(data)
        self.file.sync()
        self.file.close()
        return TableProps.from_block(props, len(data))

    def abandon(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
