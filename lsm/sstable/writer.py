"""TableWriter: builds one SSTable of the current format (doc/format.md#sstable).

    table := data_block* [range_del_block] filter_block props_block index_block footer

Every block is framed as ``payload compression:u8 checksum:u32le``; the
64-byte footer locates the index, filter, properties and range-deletion
blocks (the last with handle (0, 0) when the table has no range tombstones).

Entries arrive one at a time (:meth:`TableWriter.add`) or a column at a
time (:meth:`TableWriter.add_many`: a flush or a merge hands over lists of
keys, tags and values, and blocks are cut and joined per column, with no
Python code per entry).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate
from operator import add

from ..fs import WritableFile
from ..keys import DELETE, PUT_TTL
from ..rangedel import end_bound
from .block import encode_data_block, encode_index_block, encode_range_dels
from .bloom import build_blocked
from .format import (
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    EMPTY_HANDLE,
    FORMAT_VERSION,
    BlockHandle,
    Footer,
    encode_block_record,
    encode_footer,
    new_compressor,
)
from .props import TableProps, encode_props

__all__ = ["TableWriter"]

_WRITE_BYTES = 256 << 10  # block records are written to the file in batches of about this size


class TableWriter:
    """Writes entries, in order, into a new table file.

    Requires: entries arrive in (key ascending, sequence descending) order,
    never the same (key, sequence) twice.
    Durability: ``finish`` fsyncs and closes the file; the caller makes the
    directory entry durable and records the table in the manifest.
    Thread safety: none; one writer per thread.
    """

    def __init__(self, file: WritableFile, *, block_bytes: int = 4 << 10,
                 bloom_bits_per_key: int = 10, compression: str = "none",
                 extra_props: dict[str, int] | None = None) -> None:
        self.file = file
        # optional properties to record too (props.OPTIONAL_INT_PROPS: e.g.
        # the external-table marker written by lsm.external)
        self.extra_props = dict(extra_props or {})
        self.block_bytes = block_bytes
        self.bloom_bits_per_key = bloom_bits_per_key
        self.compression = COMPRESSION_ZSTD if compression == "zstd" else COMPRESSION_NONE
        self._compressor = new_compressor() if self.compression == COMPRESSION_ZSTD else None
        # the pending block, as columns
        self._keys: list[bytes] = []
        self._tags: list[int] = []
        self._values: list[bytes] = []
        self._pending = 0  # payload bytes of the pending block, roughly (no offset columns)
        self._out: list[bytes] = []  # block records not yet written to the file
        self._out_bytes = 0
        self._offset = 0
        self._index_keys: list[bytes] = []
        self._index_handles: list[BlockHandle] = []
        self._filter_keys: list[bytes] = []
        self._range_dels: list[tuple[bytes, bytes, int]] = []
        self._last_key: bytes | None = None
        self._unique_run = False  # the add_many call in progress promised unique keys
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
        return self._offset + self._pending

    @property
    def last_key(self) -> bytes | None:
        return self._last_key

    def add(self, key: bytes, seq: int, kind: int, value: bytes) -> None:
        """Append one entry. A block is cut only between two user keys."""
        last = self._last_key
        if key != last:
            if self._pending >= self.block_bytes:
                self._flush_block()
            if last is None:
                self.smallest = key
            self._last_key = key
        self._keys.append(key)
        self._tags.append(seq << 8 | kind)
        self._values.append(value)
        self._pending += 8 + len(key) + len(value)

    def add_many(self, keys: Sequence[bytes], tags: Sequence[int], values: Sequence[bytes],
                 unique: bool = False) -> None:
        """Append ``keys[i], tags[i], values[i]`` (``tag = seq << 8 | kind``).

        Requires: the order of :meth:`add`, and ``keys[0]`` greater than every
        key added before (a user key's versions arrive in one call).
        ``unique``: the caller knows no key appears twice (saves a check per block).
        """
        if unique:
            self._unique_run = True
        n = len(keys)
        if not n:
            return
        if self._last_key is None:
            self.smallest = keys[0]
        # cum[j]: bytes of entries [0, j) of this call (key + value + 8-byte tag each)
        cum = list(accumulate(map(add, map(len, keys), map(len, values)), initial=0))
        cum = list(map(add, cum, range(0, 8 * n + 1, 8)))
        pos = 0
        bb = self.block_bytes
        while pos < n:
            if self._pending >= bb:
                self._flush_block()
            # take entries until the block reaches block_bytes, then to the end of that key
            j = bisect_left(cum, cum[pos] + bb - self._pending, pos + 1)
            end = min(j, n)
            while end < n and keys[end] == keys[end - 1]:
                end += 1
            self._keys.extend(keys[pos:end])
            self._tags.extend(tags[pos:end])
            self._values.extend(values[pos:end])
            self._pending += cum[end] - cum[pos]
            pos = end
        self._last_key = keys[-1]
        self._unique_run = False

    def add_range_del(self, start: bytes, end: bytes, seq: int) -> None:
        """Record a range tombstone: keys in ``[start, end)`` written before ``seq`` are deleted."""
        self._range_dels.append((start, end, seq))

    def _write_block(self, payload: bytes, compressible: bool) -> BlockHandle:
        compression = COMPRESSION_NONE
        if compressible and self._compressor is not None:
            packed = self._compressor.compress(payload)
            # keep the compressed form only when it saves at least 1/8 (LevelDB's rule)
            if len(packed) < len(payload) - len(payload) // 8:
                payload, compression = packed, COMPRESSION_ZSTD
        record = encode_block_record(payload, compression)
        handle = BlockHandle(self._offset, len(payload))
        self._out.append(record)
        self._out_bytes += len(record)
        self._offset += len(record)
        if self._out_bytes >= _WRITE_BYTES:
            self._drain()
        return handle

    def _drain(self) -> None:
        if self._out:
            self.file.write(b"".join(self._out))
            self._out.clear()
            self._out_bytes = 0

    def _flush_block(self) -> None:
        keys, tags, values = self._keys, self._tags, self._values
        if not keys:
            return
        payload = encode_data_block(keys, tags, values)
        n = len(keys)
        self.entries += n
        kinds = array("Q", tags).tobytes()[0 if _LITTLE else 7::8]  # the low byte of each tag
        self.deletions += kinds.count(DELETE)
        self.ttl_entries += kinds.count(PUT_TTL)
        lo, hi = min(tags) >> 8, max(tags) >> 8
        if lo < self.min_seq:
            self.min_seq = lo
        if hi > self.max_seq:
            self.max_seq = hi
        self.raw_key_bytes += sum(map(len, keys))
        self.raw_value_bytes += sum(map(len, values))
        if self._unique_run or len(set(keys)) == n:
            self._filter_keys.extend(keys)
        else:  # several versions of a key: the filter and unique_keys count it once
            self._filter_keys.extend(k for k, nxt in zip(keys, keys[1:]) if k != nxt)
            self._filter_keys.append(keys[-1])
        self.data_bytes += len(payload)
        self._index_handles.append(self._write_block(payload, True))
        self._index_keys.append(keys[-1])
        self._keys, self._tags, self._values = [], [], []
        self._pending = 0

    def finish(self) -> TableProps:
        """Write the filter, properties, index and footer; fsync and close.

        Returns the table's properties, its range tombstones and its size.
        """
        self._flush_block()
        dels = sorted(self._range_dels, key=lambda d: (d[0], -d[2]))
        range_del = EMPTY_HANDLE
        smallest, largest = self.smallest, self._last_key or b""
        if dels:
            range_del = self._write_block(encode_range_dels(dels), False)
            lo = min(d[0] for d in dels)
            hi = end_bound(max(d[1] for d in dels))  # inclusive bounds; a tombstone's end is exclusive
            smallest = lo if not self.entries or lo < smallest else smallest
            largest = hi if not self.entries or hi > largest else largest
            seqs = [d[2] for d in dels]
            self.min_seq = min(self.min_seq, *seqs)
            self.max_seq = max(self.max_seq, *seqs)
        filt = self._write_block(build_blocked(self._filter_keys, self.bloom_bits_per_key), False)
        props = TableProps(
            entries=self.entries, deletions=self.deletions, ttl_entries=self.ttl_entries,
            data_blocks=len(self._index_handles), raw_key_bytes=self.raw_key_bytes,
            raw_value_bytes=self.raw_value_bytes, data_bytes=self.data_bytes,
            min_seq=self.min_seq if self.entries or dels else 0, max_seq=self.max_seq,
            bloom_bits_per_key=self.bloom_bits_per_key, compression=self.compression,
            unique_keys=len(self._filter_keys),
            smallest=smallest, largest=largest, range_deletions=len(dels),
            extra=tuple(self.extra_props.items()), range_dels=tuple(dels),
        )
        prop_handle = self._write_block(encode_props(props.block_props()), False)
        index = self._write_block(encode_index_block(self._index_keys, self._index_handles), False)
        self._out.append(encode_footer(Footer(index, filt, prop_handle, FORMAT_VERSION, range_del)))
        self._drain()
        self.file.sync()
        self.file.close()
        return props.with_file_size(self.file.size)

    def abandon(self) -> None:
        """Close without finishing (the caller deletes the file)."""
        try:
            self.file.close()
        except OSError:
            pass


_LITTLE = array("Q", [1]).tobytes()[0] == 1
