"""TableWriter: builds one SSTable (doc/format.md#sstable).

    table := data_block* filter_block props_block index_block footer

Every block is framed as ``payload compression:u8 checksum:u32le``; the
footer (52 bytes) locates the index, filter and properties blocks.
"""

from __future__ import annotations

from ..fs import WritableFile
from ..keys import DELETE, PUT_TTL
from .block import BlockBuilder, encode_index_block
from .bloom import build_filter
from .format import (COMPRESSION_NONE, COMPRESSION_ZSTD, FORMAT_VERSION, BlockHandle, Footer,
                     encode_block_record, encode_footer, new_compressor)
from .props import encode_props

__all__ = ["TableWriter"]


class TableWriter:
    """Writes entries, in order, into a new table file.

    Requires: ``add`` is called with (key ascending, sequence descending), and
    never with the same (key, sequence) twice.
    Durability: ``finish`` fsyncs and closes the file; the caller makes the
    directory entry durable and records the table in the manifest.
    Thread safety: none; one writer per thread.
    """

    def __init__(self, file: WritableFile, *, block_bytes: int = 16 << 10,
                 bloom_bits_per_key: int = 10, compression: str = "zstd") -> None:
        self.file = file
        self.block_bytes = block_bytes
        self.bloom_bits_per_key = bloom_bits_per_key
        self.compression = COMPRESSION_ZSTD if compression == "zstd" else COMPRESSION_NONE
        self._compressor = new_compressor() if self.compression == COMPRESSION_ZSTD else None
        self._block = BlockBuilder()
        self._offset = 0
        self._index_keys: list[bytes] = []
        self._index_handles: list[BlockHandle] = []
        self._filter_keys: list[bytes] = []
        self._last_key: bytes | None = None
        self.entries = 0
        self.deletions = 0
        self.ttl_entries = 0
        self.raw_key_bytes = 0
        self.raw_value_bytes = 0
        self.data_bytes = 0
        self.min_seq = 1 << 64
        self.max_seq = 0
        self.smallest = b""

    @property
    def estimated_size(self) -> int:
        """Bytes written so far plus the pending block (uncompressed)."""
        return self._offset + self._block.nbytes

    @property
    def last_key(self) -> bytes | None:
        return self._last_key

    def add(self, key: bytes, seq: int, kind: int, value: bytes) -> None:
        last = self._last_key
        if key != last:
            if self._block.nbytes >= self.block_bytes:
                self._flush_block()
            if last is None:
                self.smallest = key
            self._filter_keys.append(key)
            self._last_key = key
        self._block.add(key, seq << 8 | kind, value)
        self.entries += 1
        if kind == DELETE:
            self.deletions += 1
        elif kind == PUT_TTL:
            self.ttl_entries += 1
        self.raw_key_bytes += len(key)
        self.raw_value_bytes += len(value)
        if seq < self.min_seq:
            self.min_seq = seq
        if seq > self.max_seq:
            self.max_seq = seq

    def _write_block(self, payload: bytes, compressible: bool) -> BlockHandle:
        compression = COMPRESSION_NONE
        if compressible and self._compressor is not None:
            packed = self._compressor.compress(payload)
            # keep the compressed form only when it saves at least 1/8 (LevelDB's rule)
            if len(packed) < len(payload) - len(payload) // 8:
                payload, compression = packed, COMPRESSION_ZSTD
        record = encode_block_record(payload, compression)
        handle = BlockHandle(self._offset, len(payload))
        self.file.write(record)
        self._offset += len(record)
        return handle

    def _flush_block(self) -> None:
        if not len(self._block):
            return
        payload = self._block.finish()
        self.data_bytes += len(payload)
        self._index_handles.append(self._write_block(payload, True))
        self._index_keys.append(self._last_key)
        self._block = BlockBuilder()

    def finish(self) -> dict:
        """Write the filter, properties, index and footer; fsync and close.

        Returns the table's properties (see ``props.INT_PROPS``) plus ``file_size``.
        """
        self._flush_block()
        filt = self._write_block(build_filter(self._filter_keys, self.bloom_bits_per_key), False)
        props = {
            "entries": self.entries, "deletions": self.deletions, "ttl_entries": self.ttl_entries,
            "data_blocks": len(self._index_handles), "raw_key_bytes": self.raw_key_bytes,
            "raw_value_bytes": self.raw_value_bytes, "data_bytes": self.data_bytes,
            "min_seq": self.min_seq if self.entries else 0, "max_seq": self.max_seq,
            "bloom_bits_per_key": self.bloom_bits_per_key, "compression": self.compression,
            "unique_keys": len(self._filter_keys),
            "smallest": self.smallest, "largest": self._last_key or b"",
        }
        prop_handle = self._write_block(encode_props(props), False)
        index = self._write_block(encode_index_block(self._index_keys, self._index_handles), False)
        self.file.write(encode_footer(Footer(index, filt, prop_handle, FORMAT_VERSION)))
        self.file.sync()
        self.file.close()
        props["file_size"] = self.file.size
        return props

    def abandon(self) -> None:
        """Close without finishing (the caller deletes the file)."""
        try:
            self.file.close()
        except OSError:
            pass
