"""Tests for lsm.wal: the write-ahead log's block framing (format 3,
doc/format.md#write-ahead-log), its writer, and what its reader reports for
every kind of damage. Reading logs of format 2 (lsm.record framing) is
covered too. What recovery does with the reports is tests/test_recovery.py.
"""

from __future__ import annotations

import os
import struct

import pytest
import xxhash
from hypothesis import given, settings, strategies as st

from lsm.batch import encode_batch
from lsm.errors import CorruptionError
from lsm.fs import OsFileSystem
from lsm.keys import PUT
from lsm.record import encode_record
from lsm.wal import (
    BATCH,
    BLOCK_BYTES,
    FILE_HEADER,
    FIRST,
    FORMAT_VERSION,
    FRAGMENT_HEADER,
    FULL,
    LAST,
    MIDDLE,
    WalWriter,
    frame_fragments,
    scan_log,
)

FAST = settings(max_examples=40, deadline=None)


class MemFile:
    """An in-memory WritableFile."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.path = "/db/000007.log"

    @property
    def size(self) -> int:
        return len(self.buf)

    def write(self, data: bytes) -> None:
        self.buf += data

    def sync(self) -> None:
        pass

    def trim(self) -> bool:
        return False

    def close(self) -> None:
        pass


def write_log(*payloads: bytes) -> tuple[bytes, list[int]]:
    """A log holding ``payloads`` as records (rtype included), and each record's offset."""
    f = MemFile()
    w = WalWriter(f, 7)
    offsets = []
    for p in payloads:
        pos = w.pos
        if BLOCK_BYTES - pos % BLOCK_BYTES < FRAGMENT_HEADER:
            pos += BLOCK_BYTES - pos % BLOCK_BYTES
        offsets.append(pos)
        w.append(p)
    return bytes(f.buf), offsets


def rec(i: int, size: int = 20) -> bytes:
    return bytes((BATCH,)) + (b"%06d" % i) * (size // 6 + 1)


def records(data: bytes) -> list[bytes]:
    return [bytes((t,)) + body for _, t, body in scan_log(data).records]


# --- the bytes -----------------------------------------------------------------------------

def test_file_header_and_one_record_match_format_doc() -> None:
    data, offs = write_log(b"\x01hi")
    assert data[:8] == FILE_HEADER == b"LSMWAL\x03\x00" and FORMAT_VERSION == 3
    crc = xxhash.xxh32_intdigest(b"\x01hi", seed=3 << 8 | FULL)
    assert data[8:] == struct.pack("<IHB", crc, 3, FULL) + b"\x01hi"
    assert offs == [8]
    scan = scan_log(data)
    assert scan.version == 3 and scan.records == [(8, 1, b"hi")] and scan.damage == []


def test_a_record_too_big_for_its_block_is_split_at_block_boundaries() -> None:
    big = bytes((BATCH,)) + bytes(range(256)) * 300  # 76,801 bytes: three blocks
    data, offs = write_log(rec(1), big, rec(2))
    assert records(data) == [rec(1), big, rec(2)]
    # fragments: FIRST in block 0, MIDDLE in block 1, LAST in block 2
    types = []
    pos = offs[1]
    while True:
        crc, n, t = struct.unpack_from("<IHB", data, pos)
        assert pos // BLOCK_BYTES == (pos + FRAGMENT_HEADER + n - 1) // BLOCK_BYTES  # never crosses a block
        types.append(t)
        pos += FRAGMENT_HEADER + n
        if t == LAST:
            break
    assert types == [FIRST, MIDDLE, LAST]


def test_fewer_than_a_header_left_in_a_block_is_zero_padding() -> None:
    # fill block 0 up to 3 bytes before its end
    first = bytes((BATCH,)) + b"x" * (BLOCK_BYTES - len(FILE_HEADER) - FRAGMENT_HEADER - 3 - 1)
    data, offs = write_log(first, rec(2))
    assert data[BLOCK_BYTES - 3:BLOCK_BYTES] == bytes(3)
    assert offs[1] == BLOCK_BYTES
    assert records(data) == [first, rec(2)]
    assert b"".join(frame_fragments(rec(2), BLOCK_BYTES - 3)) == bytes(3) + data[BLOCK_BYTES:]


@given(st.lists(st.integers(1, 3 * BLOCK_BYTES), min_size=1, max_size=12))
@FAST
def test_any_records_round_trip(sizes: list[int]) -> None:
    payloads = [bytes((BATCH,)) + os.urandom(n - 1) if n > 1 else bytes((BATCH,)) for n in sizes]
    data, _ = write_log(*payloads)
    scan = scan_log(data)
    assert scan.damage == [] and [bytes((t,)) + b for _, t, b in scan.records] == payloads


def test_writer_on_a_mapped_file(tmp_path) -> None:
    path = str(tmp_path / "000009.log")
    fs = OsFileSystem()
    w = WalWriter(fs.open_mapped(path, step=1 << 16), 9)
    for i in range(300):
        w.append(rec(i, 400))
    assert os.path.getsize(path) > w.size  # the file runs ahead of the records, in zeros
    assert [bytes((t,)) + b for _, t, b in scan_log(fs.read_file(path)).records] == [rec(i, 400) for i in range(300)]
    assert scan_log(fs.read_file(path)).damage == []  # the zeros are the log's end, not damage
    w.sync()
    w.close()
    assert os.path.getsize(path) == w.size


# --- damage -----------------------------------------------------------------------------------

def test_damage_is_skipped_to_the_next_block() -> None:
    payloads = [rec(i, 3000) for i in range(30)]  # ~3 KiB each: ten per block
    data, offs = write_log(*payloads)
    bad = bytearray(data)
    bad[offs[3] + 20] ^= 1  # inside record 3, in block 0
    scan = scan_log(bytes(bad))
    got = [bytes((t,)) + b for _, t, b in scan.records]
    lost = [i for i, p in enumerate(payloads) if p not in got]
    # record 3 and the rest of its block are lost; everything from the next block on is read
    assert lost[0] == 3 and all(offs[i] // BLOCK_BYTES == 0 for i in lost)
    assert all(p in got for i, p in enumerate(payloads) if offs[i] >= BLOCK_BYTES)
    (off, n, d), = scan.damage
    assert off == offs[3] and not d.truncated


def test_a_record_inside_a_value_is_never_read_as_a_record() -> None:
    """A damaged header makes the reader skip to the next block, where a
    fragment always starts: bytes inside a user value, even a whole framed
    record, are never replayed."""
    inner = b"".join(frame_fragments(bytes((BATCH,)) + encode_batch(999, [(PUT, b"a", b"INJECTED")]), 0))
    evil = bytes((BATCH,)) + encode_batch(2, [(PUT, b"b", b"prefix" + inner + b"suffix")])
    data, offs = write_log(bytes((BATCH,)) + encode_batch(1, [(PUT, b"a", b"1")]), evil,
                           bytes((BATCH,)) + encode_batch(3, [(PUT, b"c", b"3")]))
    bad = bytearray(data)
    bad[offs[1]] ^= 0xFF  # the evil record's header checksum
    scan = scan_log(bytes(bad))
    assert all(b"INJECTED" not in body for _, _, body in scan.records)
    assert len(scan.damage) == 1 and scan.damage[0][0] == offs[1]


@pytest.mark.parametrize("cut", [1, FRAGMENT_HEADER - 1, FRAGMENT_HEADER, FRAGMENT_HEADER + 5])
def test_a_record_cut_short_is_a_truncated_tail(cut: int) -> None:
    data, offs = write_log(rec(1), rec(2))
    scan = scan_log(data[:offs[1] + cut])
    assert [bytes((t,)) + b for _, t, b in scan.records] == [rec(1)]
    (off, n, d), = scan.damage
    assert (off, n, d.truncated) == (offs[1], cut, True)


def test_a_fragmented_record_cut_between_fragments_is_a_truncated_tail() -> None:
    big = bytes((BATCH,)) + b"y" * (2 * BLOCK_BYTES)
    data, offs = write_log(rec(1), big)
    scan = scan_log(data[:BLOCK_BYTES + 100])
    assert [bytes((t,)) + b for _, t, b in scan.records] == [rec(1)]
    (off, _, d), = scan.damage
    assert off == offs[1] and d.truncated


def test_zeros_to_the_end_are_the_end_of_the_log() -> None:
    data, _ = write_log(rec(1), rec(2))
    for zeros in (1, 6, 7, 100, 3 * BLOCK_BYTES):
        scan = scan_log(data + bytes(zeros))
        assert scan.damage == [] and len(scan.records) == 2
    assert scan_log(bytes(4096)).records == [] and scan_log(b"").records == []


def test_zeros_followed_by_records_are_reported() -> None:
    # ten records of 3,269 bytes fill block 0 exactly (8 + 10 * (7 + 3269) = 32768)
    payloads = [bytes((BATCH,)) + bytes([i]) * 3268 for i in range(25)]
    data, offs = write_log(*payloads)
    assert offs[10] == BLOCK_BYTES
    bad = bytearray(data)
    bad[offs[2]:BLOCK_BYTES] = bytes(BLOCK_BYTES - offs[2])  # pages never written back
    scan = scan_log(bytes(bad))
    (off, n, d), = scan.damage
    assert (off, n) == (offs[2], BLOCK_BYTES - offs[2]) and d.zero_fill and not d.truncated
    assert [bytes((t,)) + b for _, t, b in scan.records] == payloads[:2] + payloads[10:]


def test_orphan_middle_or_last_fragments_are_damage() -> None:
    big = bytes((BATCH,)) + b"z" * (BLOCK_BYTES + 100)
    data, offs = write_log(rec(1), big, rec(2))
    bad = bytearray(data)
    bad[offs[1] + 10] ^= 1  # the FIRST fragment: its LAST (in block 1) is now an orphan
    scan = scan_log(bytes(bad))
    assert [bytes((t,)) + b for _, t, b in scan.records] == [rec(1), rec(2)]
    assert [o for o, _, _ in scan.damage] == [offs[1]] or len(scan.damage) == 2


def test_damaged_file_header_is_reported_and_the_rest_read() -> None:
    data, _ = write_log(rec(1), rec(2))
    bad = b"XXXXXX" + data[6:]
    scan = scan_log(bad)
    assert [bytes((t,)) + b for _, t, b in scan.records] == [rec(1), rec(2)]
    assert scan.damage[0][:2] == (0, 8)


def test_a_newer_log_format_is_refused() -> None:
    data, _ = write_log(rec(1))
    with pytest.raises(CorruptionError, match="format version 4") as ei:
        scan_log(data[:6] + b"\x04" + data[7:], "/db/000007.log")
    assert (ei.value.path, ei.value.offset) == ("/db/000007.log", 6)


def test_format_2_logs_are_read() -> None:
    data = encode_record(encode_batch(1, [(PUT, b"a", b"1")])[:0] + b"payload-one") + encode_record(b"two")
    scan = scan_log(data + b"\x00" * 30)
    assert scan.version == 2 and [b for _, _, b in scan.records] == [b"payload-one", b"two"] and scan.damage == []
    scan = scan_log(data[:-3])
    assert len(scan.records) == 1 and scan.damage[0][2].truncated
