"""Tests for lsm.sstable (doc/format.md#sstable): block and index encoding,
the bloom filter, properties, the footer, TableWriter/TableReader, and every
reader error path (each must be a CorruptionError naming the file and the
offset of the damaged structure).

One harness (``build``) runs the same randomized cases against a single
``Block`` and against whole tables (uncompressed and zstd), compared with a
sorted-list model.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsm.coding import checksum
from lsm.errors import CorruptionError
from lsm.fs import OsFileSystem
from lsm.keys import DELETE, MAX_KEY_BYTES, MAX_SEQUENCE, MAX_VALUE_BYTES, PUT, PUT_TTL
from lsm.sstable import TableReader, TableWriter
from lsm.sstable.block import Block, BlockBuilder, IndexBlock, encode_index_block
from lsm.sstable.bloom import BloomFilter, build_filter
from lsm.sstable.format import (BLOCK_TRAILER_BYTES, COMPRESSION_NONE, COMPRESSION_ZSTD, FOOTER_BYTES,
                                FORMAT_VERSION, MAGIC, MAX_BLOCK_BYTES, BlockHandle, Footer, decode_footer,
                                encode_block_record, encode_footer, unwrap_block)
from lsm.sstable.props import INT_PROPS, decode_props, encode_props

FAST = settings(max_examples=30, deadline=None)
PATH = "/db/000042.sst"


class MemFile:
    """An in-memory WritableFile + RandomAccessFile (pread semantics: short reads at EOF)."""

    def __init__(self, path: str = PATH, data: bytes = b"") -> None:
        self.path = path
        self.buf = bytearray(data)
        self.size = len(self.buf)
        self.synced = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.buf += data
        self.size = len(self.buf)

    def sync(self) -> None:
        self.synced = True

    def close(self) -> None:
        self.closed = True

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.buf[offset:offset + n])


Entry = tuple[bytes, int, int, bytes]  # key, seq, kind, stored value


def write_table(entries: list[Entry], **kw) -> bytes:
    f = MemFile()
    w = TableWriter(f, **kw)
    for key, seq, kind, value in entries:
        w.add(key, seq, kind, value)
    props = w.finish()
    assert f.synced and f.closed and props["file_size"] == len(f.buf)
    return bytes(f.buf)


def open_table(data: bytes, verify: bool = True) -> TableReader:
    return TableReader(MemFile(PATH, data), 42, None, verify)


def value_for(kind: int, key: bytes, seq: int) -> bytes:
    if kind == DELETE:
        return b""
    v = key + b"@%d" % seq
    return struct.pack("<d", 1e9 + seq) + v if kind == PUT_TTL else v


def sample_entries(nkeys: int, versions: int = 3, value_pad: int = 0) -> list[Entry]:
    out = []
    seq = 1
    for i in range(nkeys):
        key = b"key%05d" % i
        vs = []
        for j in range(1 + i % versions):
            kind = (PUT, DELETE, PUT_TTL)[(i + j) % 3]
            vs.append((key, seq, kind, value_for(kind, key, seq) + b"x" * value_pad))
            seq += 1
        out.extend(sorted(vs, key=lambda e: -e[1]))
    return out


# --- the model --------------------------------------------------------------------------

def model_get(entries: list[Entry], key: bytes, seq: int) -> tuple[int, int, bytes] | None:
    best = None
    for k, s, kind, v in entries:
        if k == key and s <= seq and (best is None or s > best[0]):
            best = (s, kind, v)
    return best


def in_range(k: bytes, lo: bytes, hi: bytes | None) -> bool:
    return k >= lo and (hi is None or k < hi)


def model_forward(entries: list[Entry], lo: bytes, hi: bytes | None) -> list[tuple]:
    return [(k, -s, kind, v) for k, s, kind, v in entries if in_range(k, lo, hi)]


def model_reverse(entries: list[Entry], lo: bytes, hi: bytes | None) -> list[tuple]:
    sel = [(k, s, kind, v) for k, s, kind, v in entries if in_range(k, lo, hi)]
    return sorted(sel, key=lambda e: (e[0], e[1]), reverse=True)


# --- the harness: one interface over Block and TableReader -----------------------------------

class BlockImpl:
    def __init__(self, entries: list[Entry]) -> None:
        bb = BlockBuilder()
        for k, s, kind, v in entries:
            bb.add(k, s << 8 | kind, v)
        payload = bb.finish()
        assert bb.nbytes == len(payload)
        self.block = Block(payload, PATH, 0)
        self.block._check()

    def get(self, key: bytes, seq: int):
        i = self.block.find(key, seq)
        if i < 0:
            return None
        t = self.block.tags[i]
        return t >> 8, t & 0xFF, self.block.value(i)

    def forward(self, lo, hi):
        return list(self.block.iter_forward(lo, hi))

    def reverse(self, lo, hi):
        return list(self.block.iter_reverse(lo, hi))


class TableImpl:
    def __init__(self, entries: list[Entry], compression: str) -> None:
        self.reader = open_table(write_table(entries, block_bytes=64, compression=compression))

    def get(self, key, seq):
        return self.reader.get(key, seq)

    def forward(self, lo, hi):
        return list(self.reader.iter_forward(lo, hi))

    def reverse(self, lo, hi):
        return list(self.reader.iter_reverse(lo, hi))


IMPLS = {
    "block": BlockImpl,
    "table-none": lambda e: TableImpl(e, "none"),
    "table-zstd": lambda e: TableImpl(e, "zstd"),
}

small_keys = st.binary(max_size=3)


@st.composite
def sorted_entries(draw) -> list[Entry]:
    table = draw(st.dictionaries(small_keys, st.sets(st.integers(0, 1000), min_size=1, max_size=4),
                                 max_size=40))
    out = []
    for key in sorted(table):
        for seq in sorted(table[key], reverse=True):
            kind = draw(st.sampled_from([PUT, DELETE, PUT_TTL]))
            out.append((key, seq, kind, value_for(kind, key, seq)))
    return out


@pytest.mark.parametrize("impl", sorted(IMPLS))
@given(entries=sorted_entries(), data=st.data())
@FAST
def test_harness_matches_sorted_list_model(impl: str, entries: list[Entry], data) -> None:
    t = IMPLS[impl](entries)
    keys = sorted({e[0] for e in entries})
    probe_keys = st.one_of(small_keys, st.sampled_from(keys)) if keys else small_keys
    for _ in range(10):
        key = data.draw(probe_keys)
        seq = data.draw(st.one_of(st.integers(0, 1001), st.just(MAX_SEQUENCE)))
        assert t.get(key, seq) == model_get(entries, key, seq)
    for _ in range(5):
        lo = data.draw(probe_keys)
        hi = data.draw(st.one_of(st.none(), probe_keys))
        assert t.forward(lo, hi) == model_forward(entries, lo, hi)
        assert t.reverse(lo, hi) == model_reverse(entries, lo, hi)
    assert t.forward(b"", None) == model_forward(entries, b"", None)
    assert t.reverse(b"", None) == model_reverse(entries, b"", None)


# --- blocks ---------------------------------------------------------------------------------

def test_data_block_layout_matches_format_doc() -> None:
    bb = BlockBuilder()
    bb.add(b"a", 2 << 8 | PUT, b"1")
    bb.add(b"a", 1 << 8 | DELETE, b"")
    bb.add(b"b", 3 << 8 | PUT, b"22")
    payload = bb.finish()
    assert payload.hex() == ("03000000" "010001000100" "010000000000000002000000"
                             "0102000000000000" "0001000000000000" "0103000000000000" "616162" "313232")
    b = Block(payload)
    assert b.keys == [b"a", b"a", b"b"] and [b.value(i) for i in range(3)] == [b"1", b"", b"22"]
    assert b.find(b"a", 10) == 0 and b.find(b"a", 1) == 1 and b.find(b"a", 0) == -1
    assert b.find(b"c", 10) == -1 and b.find(b"", 10) == -1


@st.composite
def uniform_entries(draw) -> list[Entry]:
    """Sorted entries whose keys all have one length, and (usually) whose values
    do too: the blocks Block decodes in O(1) (lsm/sstable/block.py)."""
    kw = draw(st.integers(0, 4))
    vw = draw(st.integers(0, 12))
    table = draw(st.dictionaries(st.binary(min_size=kw, max_size=kw),
                                 st.sets(st.integers(0, 1000), min_size=1, max_size=3), max_size=30))
    ragged = draw(st.booleans())  # one value of another length: the general path for values
    out = []
    for key in sorted(table):
        for seq in sorted(table[key], reverse=True):
            kind = draw(st.sampled_from([PUT, DELETE, PUT_TTL]))
            value = draw(st.binary(min_size=vw, max_size=vw))
            out.append((key, seq, kind, value))
    if ragged and out:
        k, sq, kind, v = out[-1]
        out[-1] = (k, sq, kind, v + b"+")
    return out


@given(entries=st.one_of(uniform_entries(), sorted_entries()), data=st.data())
@FAST
def test_block_point_reads_on_a_fresh_block_match_the_model(entries: list[Entry], data) -> None:
    # A fresh Block per probe: point reads must not depend on the lists that
    # iteration (or _check) builds, nor on the order lazy fields are filled in.
    bb = BlockBuilder()
    for k, sq, kind, v in entries:
        bb.add(k, sq << 8 | kind, v)
    payload = bb.finish()
    keys = sorted({e[0] for e in entries})
    probes = st.one_of(st.binary(max_size=5), st.sampled_from(keys)) if keys else st.binary(max_size=5)
    for _ in range(8):
        b = Block(payload, PATH, 0)
        key = data.draw(probes)
        seq = data.draw(st.one_of(st.integers(0, 1001), st.just(MAX_SEQUENCE)))
        i = b.find(key, seq)
        got = None if i < 0 else (b.tag(i) >> 8, b.tag(i) & 0xFF, b.value(i))
        assert got == model_get(entries, key, seq)
    b = Block(payload, PATH, 0)
    assert len(b) == len(entries)
    assert b.last_key() == (entries[-1][0] if entries else b"")
    for i, (k, sq, kind, v) in enumerate(entries):
        assert (b.key(i), b.tag(i), b.value(i)) == (k, sq << 8 | kind, v)
    assert list(b.iter_forward(b"", None)) == model_forward(entries, b"", None)
    assert b.keys == [e[0] for e in entries] and list(b.tags) == [e[1] << 8 | e[2] for e in entries]
    assert [b.value(i) for i in range(len(entries))] == [e[3] for e in entries]  # after voffs exist


@pytest.mark.parametrize("payload", [
    # one key length and one value length, but the bytes after the columns do not add up
    b"\x02\x00\x00\x00" + b"\x01\x00" * 2 + b"\x01\x00\x00\x00" * 2 + b"\0" * 16 + b"ab" + b"x",
    b"\x02\x00\x00\x00" + b"\x01\x00" * 2 + b"\x01\x00\x00\x00" * 2 + b"\0" * 16 + b"abxyz",
    # a count whose columns alone run past the block
    b"\xff\xff\x00\x00" + b"\x01\x00" * 4,
])
def test_malformed_uniform_block_raises_with_path_and_offset(payload: bytes) -> None:
    with pytest.raises(CorruptionError) as ei:
        Block(payload, PATH, 8192)
    assert (ei.value.path, ei.value.offset) == (PATH, 8192)


def test_empty_block_round_trip() -> None:
    b = Block(BlockBuilder().finish())
    assert len(b) == 0 and list(b.iter_forward(b"", None)) == [] and b.find(b"x", 1) == -1


@pytest.mark.parametrize("payload", [b"", b"\x01\x00", b"\x02\x00\x00\x00\x01\x00",
                                     b"\x01\x00\x00\x00" + b"\x01\x00" + b"\x01\x00\x00\x00" + b"\0" * 8,
                                     b"\x01\x00\x00\x00" + b"\x01\x00" + b"\x01\x00\x00\x00" + b"\0" * 8 + b"kvX"])
def test_malformed_block_raises_with_path_and_offset(payload: bytes) -> None:
    with pytest.raises(CorruptionError) as ei:
        Block(payload, PATH, 4096)
    assert (ei.value.path, ei.value.offset) == (PATH, 4096)


def test_index_block_round_trip_and_lookup() -> None:
    handles = [BlockHandle(0, 100), BlockHandle(105, 50), BlockHandle(160, 70)]
    payload = encode_index_block([b"c", b"f", b"k"], handles)
    assert payload[:4] == b"\x03\x00\x00\x00"
    ix = IndexBlock(payload, PATH, 999)
    assert len(ix) == 3 and [ix.handle(i) for i in range(3)] == handles
    assert [ix.find(k) for k in (b"", b"c", b"d", b"f", b"k", b"z")] == [0, 0, 1, 1, 2, 3]
    assert ix.find_last_before(b"f") == 2


@pytest.mark.parametrize("keys, offsets", [([b"b", b"a"], [0, 10]), ([b"a", b"a"], [0, 10]),
                                           ([b"a", b"b"], [10, 0])])
def test_index_block_out_of_order_raises(keys, offsets) -> None:
    payload = encode_index_block(keys, [BlockHandle(o, 5) for o in offsets])
    with pytest.raises(CorruptionError, match="out of order") as ei:
        IndexBlock(payload, PATH, 777)
    assert ei.value.offset == 777


@pytest.mark.parametrize("payload", [b"", b"\x01\x00\x00\x00", encode_index_block([b"k"], [BlockHandle(0, 1)]) + b"x"])
def test_index_block_malformed_raises(payload: bytes) -> None:
    with pytest.raises(CorruptionError) as ei:
        IndexBlock(payload, PATH, 5)
    assert (ei.value.path, ei.value.offset) == (PATH, 5)


# --- block records and the footer -------------------------------------------------------------

def test_block_record_trailer_covers_payload_and_compression_byte() -> None:
    rec = encode_block_record(b"payload", COMPRESSION_NONE)
    assert len(rec) == 7 + BLOCK_TRAILER_BYTES and rec[7] == COMPRESSION_NONE
    assert struct.unpack_from("<I", rec, 8)[0] == checksum(b"payload\x00")
    assert unwrap_block(rec, BlockHandle(0, 7), PATH, True) == b"payload"


def test_footer_round_trip_and_layout() -> None:
    f = Footer(BlockHandle(263, 19), BlockHandle(57, 9), BlockHandle(71, 187), FORMAT_VERSION)
    raw = encode_footer(f)
    assert len(raw) == FOOTER_BYTES == 52
    assert raw[44:] == struct.pack("<Q", MAGIC) == b"1BTSSMSL"
    assert struct.unpack_from("<I", raw, 40)[0] == checksum(raw[:40])
    assert raw.hex() == ("0701000000000000130000003900000000000000090000004700000000000000"
                         "bb000000010000009755c3ee31425453534d534c")
    assert decode_footer(raw, PATH, 339) == f


# --- bloom filter ------------------------------------------------------------------------------

def test_bloom_false_positive_rate_at_ten_bits_per_key() -> None:
    present = [b"key-%d" % i for i in range(10_000)]
    f = BloomFilter(build_filter(present, 10))
    assert f.probes == 7 and f.m == 100_000
    assert all(f.may_contain(k) for k in present)  # never a false negative
    fp = sum(f.may_contain(b"absent-%d" % i) for i in range(10_000))
    assert fp / 10_000 < 0.02, f"false-positive rate {fp / 10_000:.4f}"


def test_bloom_zero_bits_disables_filter() -> None:
    assert build_filter([b"a", b"b"], 0) == b""
    assert build_filter([], 10) == b""
    f = BloomFilter(b"")
    assert f.m == 0 and f.may_contain(b"anything")
    assert BloomFilter(b"\x07").may_contain(b"anything")  # < 2 bytes: no filter


@pytest.mark.parametrize("bits, probes", [(1, 1), (2, 1), (10, 7), (20, 14), (50, 30)])
def test_bloom_probe_count(bits: int, probes: int) -> None:
    payload = build_filter([b"k%d" % i for i in range(100)], bits)
    assert payload[-1] == probes
    assert len(payload) - 1 == max(64, 100 * bits + 7) // 8


def test_table_without_bloom_filter() -> None:
    r = open_table(write_table(sample_entries(50), bloom_bits_per_key=0))
    assert r.filter.m == 0
    assert r.may_contain(b"definitely absent")
    assert r.props["bloom_bits_per_key"] == 0


# --- properties -----------------------------------------------------------------------------

def _props(**over) -> dict:
    p = {name: i for i, name in enumerate(INT_PROPS)}
    p.update(smallest=b"a", largest=b"z")
    p.update(over)
    return p


def test_props_round_trip_and_unknown_names_ignored() -> None:
    p = _props(entries=1 << 40)
    payload = encode_props(p)
    assert decode_props(payload, PATH, 0) == p
    extra = payload + b"\x06future" + b"\x03abc"
    assert decode_props(extra, PATH, 0) == p


@pytest.mark.parametrize("case", ["missing", "bad-lp", "non-ascii", "int-trailing", "int-empty"])
def test_props_malformed_raises(case: str) -> None:
    good = encode_props(_props())
    payload = {
        "missing": good[:good.index(b"\x07largest")],
        "bad-lp": good + b"\x05ab",
        "non-ascii": b"\x02\xff\xfe\x01\x00" + good,
        "int-trailing": b"\x07entries\x02\x01\x01" + good,
        "int-empty": good + b"\x07entries\x00",
    }[case]
    with pytest.raises(CorruptionError) as ei:
        decode_props(payload, PATH, 1234)
    assert (ei.value.path, ei.value.offset) == (PATH, 1234)


# --- TableWriter / TableReader ------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_multi_block_table_get_and_iterate(compression: str) -> None:
    entries = sample_entries(600, versions=3, value_pad=30)
    data = write_table(entries, block_bytes=512, compression=compression)
    r = open_table(data)
    assert len(r.index) > 20
    assert r.props["entries"] == len(entries) and r.props["unique_keys"] == 600
    assert r.props["deletions"] == sum(e[2] == DELETE for e in entries)
    assert r.props["ttl_entries"] == sum(e[2] == PUT_TTL for e in entries)
    assert (r.props["min_seq"], r.props["max_seq"]) == (1, max(e[1] for e in entries))
    assert (r.smallest, r.largest) == (b"key00000", b"key00599")
    assert list(r.iter_entries()) == entries
    newest: dict[bytes, tuple[int, int, bytes]] = {}
    for key, seq, kind, value in entries:  # versions of a key come newest first
        newest.setdefault(key, (seq, kind, value))
    for key, seq, kind, value in entries:
        assert r.get(key, seq) == (seq, kind, value)
        assert r.get(key, MAX_SEQUENCE) == newest[key]
        assert r.may_contain(key)
    assert r.get(b"key00000", 0) is None and r.get(b"zzz", MAX_SEQUENCE) is None
    for lo, hi in [(b"", None), (b"key00100", b"key00200"), (b"key001", b"key0015"), (b"a", b"b"),
                   (b"key00599", None), (b"zz", None), (b"key00300", b"key00300")]:
        assert list(r.iter_forward(lo, hi)) == model_forward(entries, lo, hi)
        assert list(r.iter_reverse(lo, hi)) == model_reverse(entries, lo, hi)


def test_writer_never_splits_versions_of_one_key_across_blocks() -> None:
    entries = [(b"k%03d" % (i // 10), 10_000 - i, PUT, b"v" * 40) for i in range(500)]
    r = open_table(write_table(entries, block_bytes=100, compression="none"))
    assert len(r.index) > 10
    seen: dict[bytes, int] = {}
    for i in range(len(r.index)):
        b = r.block(i)
        assert b.keys[-1] == r.index.keys[i]
        for k in set(b.keys):
            assert k not in seen, f"{k!r} in blocks {seen[k]} and {i}"
            seen[k] = i


def test_zstd_blocks_are_compressed_when_it_pays() -> None:
    entries = [(b"k%05d" % i, i + 1, PUT, b"a" * 200) for i in range(200)]
    data = write_table(entries, block_bytes=4096, compression="zstd")
    r = open_table(data)
    comp = [data[r.index.offsets[i] + r.index.sizes[i]] for i in range(len(r.index))]
    assert set(comp) == {COMPRESSION_ZSTD}
    assert len(data) < r.props["data_bytes"] // 4
    assert list(r.iter_entries()) == entries


def test_empty_table() -> None:
    r = open_table(write_table([]))
    assert len(r.index) == 0 and r.props["entries"] == 0
    assert r.get(b"k", MAX_SEQUENCE) is None and list(r.iter_forward(b"", None)) == []


def test_table_on_real_files(tmp_path) -> None:
    path = str(tmp_path / "000007.sst")
    fs = OsFileSystem()
    entries = sample_entries(100)
    w = TableWriter(fs.open_writable(path), block_bytes=256)
    for e in entries:
        w.add(*e)
    props = w.finish()
    assert props["file_size"] == fs.file_size(path)
    r = TableReader(fs.open_readable(path), 7)
    assert list(r.iter_entries()) == entries
    r.close()


# --- reader error paths ------------------------------------------------------------------------

class Layout:
    """A table built from ``sample_entries`` and where its structures are."""

    def __init__(self, compression: str = "none", nkeys: int = 200) -> None:
        self.data = write_table(sample_entries(nkeys), block_bytes=256, compression=compression)
        self.size = len(self.data)
        self.footer_at = self.size - FOOTER_BYTES
        self.footer = decode_footer(self.data[self.footer_at:], PATH, self.size)
        r = open_table(self.data)
        self.index = r.index
        self.blocks = [r.index.handle(i) for i in range(len(r.index))]
        assert len(self.blocks) >= 3

    def flipped(self, at: int, xor: int = 0x01) -> bytes:
        b = bytearray(self.data)
        b[at] ^= xor
        return bytes(b)

    def with_block(self, handle: BlockHandle, payload: bytes, compression: int) -> bytes:
        """Replace a block in place with a same-size payload and a valid trailer."""
        assert len(payload) == handle.size
        rec = encode_block_record(payload, compression)
        return self.data[:handle.offset] + rec + self.data[handle.offset + len(rec):]

    def with_index(self, payload: bytes, footer_version: int = FORMAT_VERSION) -> bytes:
        """Replace the index block (the last block) and rewrite the footer."""
        off = self.footer.index.offset
        f = Footer(BlockHandle(off, len(payload)), self.footer.filter, self.footer.props, footer_version)
        return self.data[:off] + encode_block_record(payload, COMPRESSION_NONE) + encode_footer(f)


@pytest.fixture(scope="module")
def layout() -> Layout:
    return Layout()


def read_everything(r: TableReader) -> None:
    list(r.iter_entries())
    list(r.iter_forward(b"", None))
    list(r.iter_reverse(b"", None))


def assert_corrupt(exc: pytest.ExceptionInfo, offset: int, match: str = "") -> None:
    e = exc.value
    assert e.path == PATH and e.offset == offset, (e.path, e.offset, e.reason)
    assert PATH in str(e) and f"offset {offset}" in str(e)
    assert match in e.reason, e.reason


@pytest.mark.parametrize("xor", [0x01, 0xFF])
def test_bad_magic(layout: Layout, xor: int) -> None:
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.flipped(layout.size - 1, xor))
    assert_corrupt(ei, layout.footer_at + 44, "bad table magic")


@pytest.mark.parametrize("field, at", [("index-handle", 0), ("filter-handle", 12), ("props-size", 32),
                                       ("version", 36), ("checksum", 40)])
def test_bad_footer_checksum(layout: Layout, field: str, at: int) -> None:
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.flipped(layout.footer_at + at))
    assert_corrupt(ei, layout.footer_at + 40, "footer checksum")


@pytest.mark.parametrize("version", [0, 2, 0xFFFFFFFF])
def test_wrong_format_version(layout: Layout, version: int) -> None:
    f = layout.footer._replace(version=version)
    data = layout.data[:layout.footer_at] + encode_footer(f)
    with pytest.raises(CorruptionError) as ei:
        open_table(data)
    assert_corrupt(ei, layout.footer_at + 36, f"unsupported table format version {version}")


@pytest.mark.parametrize("size", [0, 1, 30, 51])
def test_file_shorter_than_footer(layout: Layout, size: int) -> None:
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.data[:size])
    assert_corrupt(ei, 0, "too short")


@pytest.mark.parametrize("cut", ["footer-1", "footer-26", "footer-all", "half", "first-block"])
def test_truncated_file_or_footer(layout: Layout, cut: str) -> None:
    size = {"footer-1": layout.size - 1, "footer-26": layout.size - 26, "footer-all": layout.footer_at,
            "half": layout.size // 2, "first-block": layout.blocks[0].size + 60}[cut]
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.data[:size])
    assert_corrupt(ei, size - FOOTER_BYTES + 44, "bad table magic")


@pytest.mark.parametrize("which", ["index", "filter", "props"])
def test_footer_handle_past_footer(layout: Layout, which: str) -> None:
    f = layout.footer._replace(**{which: BlockHandle(layout.footer_at - 10, 10)})
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.data[:layout.footer_at] + encode_footer(f))
    assert_corrupt(ei, layout.footer_at, f"{which} handle")


@pytest.mark.parametrize("which", ["first", "middle", "last"])
@pytest.mark.parametrize("where", ["payload-start", "payload-mid", "payload-end", "compression", "checksum"])
def test_flipped_byte_in_data_block(layout: Layout, which: str, where: str) -> None:
    i = {"first": 0, "middle": len(layout.blocks) // 2, "last": len(layout.blocks) - 1}[which]
    h = layout.blocks[i]
    at = h.offset + {"payload-start": 0, "payload-mid": h.size // 2, "payload-end": h.size - 1,
                     "compression": h.size, "checksum": h.size + 2}[where]
    r = open_table(layout.flipped(at))  # data blocks are read lazily: open succeeds
    with pytest.raises(CorruptionError) as ei:
        r.get(layout.index.keys[i], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset, "block checksum")
    with pytest.raises(CorruptionError) as ei:
        read_everything(r)
    assert_corrupt(ei, h.offset)
    if i > 0:  # other blocks still read fine
        assert r.get(layout.index.keys[0], MAX_SEQUENCE) is not None


@pytest.mark.parametrize("block", ["index", "filter", "props"])
@pytest.mark.parametrize("where", ["payload-start", "payload-mid", "payload-end", "compression", "checksum"])
def test_flipped_byte_in_meta_block(layout: Layout, block: str, where: str) -> None:
    h = getattr(layout.footer, block)
    at = h.offset + {"payload-start": 0, "payload-mid": h.size // 2, "payload-end": h.size - 1,
                     "compression": h.size, "checksum": h.size + 3}[where]
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.flipped(at))
    assert_corrupt(ei, h.offset, "block checksum")


@pytest.mark.parametrize("block", ["index", "filter", "props"])
def test_meta_blocks_are_verified_even_without_paranoid_checks(layout: Layout, block: str) -> None:
    h = getattr(layout.footer, block)
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.flipped(h.offset + h.size // 2), verify=False)
    assert_corrupt(ei, h.offset, "block checksum")


def test_unknown_compression_with_valid_checksum(layout: Layout) -> None:
    h = layout.blocks[1]
    payload = layout.data[h.offset:h.offset + h.size]
    r = open_table(layout.with_block(h, payload, 7))
    with pytest.raises(CorruptionError) as ei:
        r.get(layout.index.keys[1], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset + h.size, "unknown block compression 7")


def test_unknown_compression_without_paranoid_checks(layout: Layout) -> None:
    h = layout.blocks[1]
    r = open_table(layout.flipped(h.offset + h.size, 0x80), verify=False)
    with pytest.raises(CorruptionError) as ei:
        r.get(layout.index.keys[1], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset + h.size, "unknown block compression")


def test_bad_zstd_frame_with_valid_checksum(layout: Layout) -> None:
    h = layout.blocks[2]
    r = open_table(layout.with_block(h, b"\x00" * h.size, COMPRESSION_ZSTD))
    with pytest.raises(CorruptionError) as ei:
        r.get(layout.index.keys[2], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset, "bad zstd block")


def test_malformed_data_block_with_valid_checksum(layout: Layout) -> None:
    h = layout.blocks[0]
    r = open_table(layout.with_block(h, b"\xff" * h.size, COMPRESSION_NONE))
    with pytest.raises(CorruptionError) as ei:
        r.get(layout.index.keys[0], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset, "data block")


def test_data_block_last_key_differs_from_index(layout: Layout) -> None:
    keys = list(layout.index.keys)
    keys[0] = keys[0] + b"!"  # still sorts before keys[1]
    r = open_table(layout.with_index(encode_index_block(keys, layout.blocks)))
    with pytest.raises(CorruptionError) as ei:
        read_everything(r)
    assert_corrupt(ei, layout.blocks[0].offset, "last key does not match the index")


def test_index_count_differs_from_props(layout: Layout) -> None:
    payload = encode_index_block(list(layout.index.keys)[:-1], layout.blocks[:-1])
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.with_index(payload))
    assert_corrupt(ei, layout.footer.index.offset, "index entry count")


def test_index_out_of_order_on_disk(layout: Layout) -> None:
    keys = list(layout.index.keys)
    keys[0], keys[1] = keys[1], keys[0]
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.with_index(encode_index_block(keys, layout.blocks)))
    assert_corrupt(ei, layout.footer.index.offset, "out of order")


def test_truncated_data_block(layout: Layout) -> None:
    """A block whose handle reaches past the end of the file reads short."""
    handles = list(layout.blocks)
    handles[-1] = BlockHandle(handles[-1].offset, 1 << 20)
    r = open_table(layout.with_index(encode_index_block(list(layout.index.keys), handles)))
    with pytest.raises(CorruptionError) as ei:
        r.get(layout.index.keys[-1], MAX_SEQUENCE)
    assert_corrupt(ei, handles[-1].offset, "truncated block")


def test_short_read_of_a_block() -> None:
    layout = Layout()

    class ShortFile(MemFile):
        def read_at(self, offset: int, n: int) -> bytes:
            data = super().read_at(offset, n)
            return data[:-1] if offset == layout.blocks[1].offset else data

    r = TableReader(ShortFile(PATH, layout.data), 42)
    with pytest.raises(CorruptionError) as ei:
        r.get(layout.index.keys[1], MAX_SEQUENCE)
    assert_corrupt(ei, layout.blocks[1].offset, "truncated block")


def test_zstd_table_flipped_data_byte() -> None:
    lz = Layout("zstd")
    h = lz.blocks[0]
    r = open_table(lz.flipped(h.offset + h.size // 2))
    with pytest.raises(CorruptionError) as ei:
        read_everything(r)
    assert_corrupt(ei, h.offset, "block checksum")


def test_corrupt_zstd_frame_header_without_paranoid_checks() -> None:
    lz = Layout("zstd")
    h = lz.blocks[0]
    r = open_table(lz.flipped(h.offset + 4, 0x80), verify=False)  # frame header descriptor
    with pytest.raises(CorruptionError) as ei:
        r.get(lz.index.keys[0], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset, "zstd block")  # "bad zstd block" or "zstd block claims N decoded bytes"


def _zstd_frame_declaring(content_size: int) -> bytes:
    """A zstd frame whose header declares ``content_size`` decoded bytes and
    whose only block is empty: frame magic, descriptor 0xE0 (single segment,
    8-byte content size), the size, and a last raw block of length 0."""
    return bytes.fromhex("28b52ffd e0") + struct.pack("<Q", content_size) + bytes.fromhex("010000")


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("declared", [MAX_BLOCK_BYTES + 1, 1 << 62])
def test_zstd_frame_declaring_more_than_max_block_bytes(verify: bool, declared: int) -> None:
    """Checked before zstd allocates anything, even when the block checksum is valid."""
    lz = Layout("zstd")
    h = lz.blocks[1]
    frame = _zstd_frame_declaring(declared)
    r = open_table(lz.with_block(h, frame + b"\x00" * (h.size - len(frame)), COMPRESSION_ZSTD), verify)
    with pytest.raises(CorruptionError) as ei:
        r.get(lz.index.keys[1], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset, f"zstd block claims {declared} decoded bytes (limit ")


def test_zstd_frame_declaring_more_than_it_holds() -> None:
    lz = Layout("zstd")
    h = lz.blocks[1]
    frame = _zstd_frame_declaring(1000)
    r = open_table(lz.with_block(h, frame + b"\x00" * (h.size - len(frame)), COMPRESSION_ZSTD))
    with pytest.raises(CorruptionError) as ei:
        r.get(lz.index.keys[1], MAX_SEQUENCE)
    assert_corrupt(ei, h.offset, "zstd block")


def test_max_block_bytes_covers_one_maximal_value() -> None:
    assert MAX_BLOCK_BYTES >= MAX_VALUE_BYTES + MAX_KEY_BYTES + 4 + 14 + 8


def test_block_holding_two_large_versions_of_one_key_reads_back() -> None:
    value = bytes(MAX_BLOCK_BYTES // 2 + 1)  # zeros: compresses to a few KiB
    assert len(value) < MAX_VALUE_BYTES
    r = open_table(write_table([(b"k", 2, PUT, value), (b"k", 1, PUT, value)], compression="zstd"))
    assert len(r.index) == 1  # both versions in one block
    got = r.get(b"k", 1)
    assert got is not None and got[0] == 1 and len(got[2]) == len(value)
