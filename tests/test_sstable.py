"""Tests for lsm.sstable (doc/format.md#sstable): block and index encoding,
the bloom filters, properties, the footers, TableWriter/TableReader, and
every reader error path (each must be a CorruptionError naming the file and
the offset of the damaged structure).

One harness runs the same randomized cases against tables read in place
(a buffer, as a memory map gives), read through ``read_at`` (a filesystem
that cannot map), zstd tables, and format 1 tables (tests/v1format.py),
compared with a sorted-list model.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from lsm.coding import checksum
from lsm.errors import CorruptionError
from lsm.fs import OsFileSystem
from lsm.keys import DELETE, MAX_KEY_BYTES, MAX_SEQUENCE, MAX_VALUE_BYTES, PUT, PUT_TTL
from lsm.manifest import FileMeta
from lsm.sstable import TableProps, TableReader, TableWriter
from lsm.sstable.block import (
    IndexBlock,
    block_layout,
    convert_v1_block,
    decode_range_dels,
    encode_data_block,
    encode_index_block,
    encode_range_dels,
    read_entries,
)
from lsm.sstable.bloom import (
    BlockedBloom,
    ClassicBloom,
    build_blocked,
    build_classic,
    filter_hash,
    patterns,
    probes_for,
)
from lsm.sstable.format import (
    BLOCK_TRAILER_BYTES,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    FOOTER_BYTES,
    FORMAT_VERSION,
    MAGIC,
    MAX_BLOCK_BYTES,
    BlockHandle,
    Footer,
    decode_footer,
    encode_block_record,
    encode_footer,
    unwrap_block,
)
from lsm.sstable.props import INT_PROPS, decode_props, encode_props
from lsm.sstable.reader import CACHED, MAPPED
from v1format import encode_v1_block, write_v1_table

FAST = settings(max_examples=30, deadline=None)
PATH = "/db/000042.sst"


class MemFile:
    """An in-memory WritableFile + RandomAccessFile (pread semantics: short
    reads at EOF), with no ``buffer()``: tables are read through ``read_at``."""

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


class MappedFile(MemFile):
    """A MemFile whose ``buffer()`` offers its bytes, as a memory map would:
    uncompressed format 2 tables are then searched in place."""

    def buffer(self) -> bytes:
        return bytes(self.buf)


Entry = tuple[bytes, int, int, bytes]  # key, seq, kind, stored value


def write_table(entries: list[Entry], **kw) -> bytes:
    f = MemFile()
    w = TableWriter(f, **kw)
    for key, seq, kind, value in entries:
        w.add(key, seq, kind, value)
    props = w.finish()
    assert f.synced and f.closed and props.file_size == len(f.buf)
    return bytes(f.buf)


def open_table(data: bytes, verify: bool = True, mapped: bool = True) -> TableReader:
    return TableReader((MappedFile if mapped else MemFile)(PATH, data), 42, None, verify)


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

class TableImpl:
    def __init__(self, entries: list[Entry], compression: str, mapped: bool = True, version: int = 2,
                 use_add_many: bool = False) -> None:
        if version == 1:
            data = write_v1_table(entries, block_bytes=64, compression=compression)
        elif use_add_many:
            f = MemFile()
            w = TableWriter(f, block_bytes=64, compression=compression)
            i = 0
            while i < len(entries):  # one call per run of a key's versions, in runs of a few keys
                j = i + 1
                while j < len(entries) and (entries[j][0] == entries[j - 1][0] or j - i < 3):
                    j += 1
                part = entries[i:j]
                w.add_many([e[0] for e in part], [e[1] << 8 | e[2] for e in part], [e[3] for e in part])
                i = j
            w.finish()
            data = bytes(f.buf)
        else:
            data = write_table(entries, block_bytes=64, compression=compression)
        self.reader = open_table(data, mapped=mapped)

    def get(self, key, seq):
        return self.reader.get(key, seq)

    def forward(self, lo, hi):
        return list(self.reader.iter_forward(lo, hi))

    def reverse(self, lo, hi):
        return list(self.reader.iter_reverse(lo, hi))


IMPLS = {
    "mapped": lambda e: TableImpl(e, "none"),
    "read": lambda e: TableImpl(e, "none", mapped=False),
    "zstd": lambda e: TableImpl(e, "zstd"),
    "add-many": lambda e: TableImpl(e, "none", use_add_many=True),
    "v1": lambda e: TableImpl(e, "none", version=1),
    "v1-zstd": lambda e: TableImpl(e, "zstd", version=1),
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
    # variable key widths: key offsets; one value width... no: "1", "", "22" vary too
    payload = encode_data_block([b"a", b"a", b"b"], [2 << 8 | PUT, 1 << 8 | DELETE, 3 << 8 | PUT],
                                [b"1", b"", b"22"])
    assert payload.hex() == ("03000000" "0100" "ffffffff" "00000000010000000100000003000000"
                             "0102000000000000" "0001000000000000" "0103000000000000" "616162" "313232")
    lay = block_layout(payload, 0, len(payload))
    assert (lay.count, lay.kw, lay.vw, lay.koffs, lay.voffs) == (3, 1, 0xFFFFFFFF, -1, 10)
    keys, tags, values = read_entries(payload, lay)
    assert list(keys) == [b"a", b"a", b"b"] and list(values) == [b"1", b"", b"22"]
    assert list(tags) == [2 << 8 | PUT, 1 << 8 | DELETE, 3 << 8 | PUT]
    uniform = encode_data_block([b"ab", b"cd"], [5 << 8 | PUT, 4 << 8 | PUT], [b"xyz", b"uvw"])
    assert uniform.hex() == ("02000000" "0200" "03000000" "0105000000000000" "0104000000000000"
                             "61626364" "78797a757677")


@st.composite
def uniform_entries(draw) -> list[Entry]:
    """Sorted entries whose keys all have one length, and (usually) whose values
    do too: blocks whose columns need no offsets."""
    kw = draw(st.integers(0, 4))
    vw = draw(st.integers(0, 12))
    table = draw(st.dictionaries(st.binary(min_size=kw, max_size=kw),
                                 st.sets(st.integers(0, 1000), min_size=1, max_size=3), max_size=30))
    ragged = draw(st.booleans())  # one value of another length: the offset column for values
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


@pytest.mark.parametrize("mapped", [True, False])
@given(entries=st.one_of(uniform_entries(), sorted_entries()), data=st.data())
@FAST
def test_point_reads_match_the_model_on_one_block(mapped: bool, entries: list[Entry], data) -> None:
    if not entries:
        return
    r = open_table(write_table(entries, block_bytes=1 << 20, compression="none"), mapped=mapped)
    assert len(r.index) == 1
    keys = sorted({e[0] for e in entries})
    probes = st.one_of(st.binary(max_size=5), st.sampled_from(keys))
    for _ in range(8):
        key = data.draw(probes)
        seq = data.draw(st.one_of(st.integers(0, 1001), st.just(MAX_SEQUENCE)))
        assert r.get(key, seq) == model_get(entries, key, seq)
    assert r.state[0] == (MAPPED if mapped else CACHED)
    k, t, v = r.columns(0)
    assert [(a, b >> 8, b & 0xFF, c) for a, b, c in zip(k, t, v)] == entries
    for a in range(len(entries) + 1):
        for b in (a, len(entries)):
            lay = block_layout(*_payload(r))
            ks, ts, vs = read_entries(_payload(r)[0], lay, a, b)
            assert [(x, y >> 8, y & 0xFF, z) for x, y, z in zip(ks, ts, vs)] == entries[a:b]


def _payload(r: TableReader) -> tuple[bytes, int, int]:
    buf, o = r.block(0)
    return buf, o, r.sizes[0] if r.state[0] == MAPPED else len(buf)


@given(entries=st.one_of(uniform_entries(), sorted_entries()))
@FAST
def test_v1_blocks_convert_to_the_same_entries(entries: list[Entry]) -> None:
    if not entries:
        return
    v1 = encode_v1_block([(k, s << 8 | kind, v) for k, s, kind, v in entries])
    v2 = convert_v1_block(v1, PATH, 0)
    assert v2 == encode_data_block([e[0] for e in entries], [e[1] << 8 | e[2] for e in entries],
                                   [e[3] for e in entries])


@pytest.mark.parametrize("payload", [
    b"",
    b"\x01\x00",
    b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x00",  # no entries
    # one key width and one value width, but the bytes after the columns do not add up
    b"\x02\x00\x00\x00\x01\x00\x01\x00\x00\x00" + b"\0" * 16 + b"ab" + b"x",
    b"\x02\x00\x00\x00\x01\x00\x01\x00\x00\x00" + b"\0" * 16 + b"abxyz",
    # a count whose columns alone run past the block
    b"\xff\xff\x00\x00\x01\x00\x01\x00\x00\x00" + b"\0" * 8,
    # key offsets not starting at 0, or descending
    b"\x01\x00\x00\x00\xff\xff\x00\x00\x00\x00" + b"\x01\x00\x00\x00\x02\x00\x00\x00" + b"\0" * 8 + b"k",
    b"\x02\x00\x00\x00\xff\xff\x00\x00\x00\x00" + b"\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00"
    + b"\0" * 16 + b"k",
])
def test_malformed_block_raises_with_path_and_offset(payload: bytes) -> None:
    with pytest.raises(CorruptionError) as ei:
        block_layout(payload, 0, len(payload), PATH, 8192)
    assert (ei.value.path, ei.value.offset) == (PATH, 8192)


@pytest.mark.parametrize("payload", [b"", b"\x01\x00", b"\x02\x00\x00\x00\x01\x00",
                                     b"\x01\x00\x00\x00" + b"\x01\x00" + b"\x01\x00\x00\x00" + b"\0" * 8,
                                     b"\x01\x00\x00\x00" + b"\x01\x00" + b"\x01\x00\x00\x00" + b"\0" * 8 + b"kvX"])
def test_malformed_v1_block_raises_with_path_and_offset(payload: bytes) -> None:
    with pytest.raises(CorruptionError) as ei:
        convert_v1_block(payload, PATH, 4096)
    assert (ei.value.path, ei.value.offset) == (PATH, 4096)


def test_range_deletion_block_round_trip() -> None:
    dels = [(b"a", b"c", 9), (b"a", b"b", 3), (b"x", b"\xff\xff", 12)]
    payload = encode_range_dels(dels)
    assert decode_range_dels(payload, PATH, 0) == dels
    with pytest.raises(CorruptionError) as ei:
        decode_range_dels(payload[:-1], PATH, 77)
    assert ei.value.offset == 77
    with pytest.raises(CorruptionError, match="empty or inverted"):
        decode_range_dels(encode_range_dels([(b"b", b"a", 1)]), PATH, 0)


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
    f = Footer(BlockHandle(263, 19), BlockHandle(57, 9), BlockHandle(71, 187), FORMAT_VERSION, BlockHandle(40, 12))
    raw = encode_footer(f)
    assert len(raw) == FOOTER_BYTES == 64
    assert raw[56:] == struct.pack("<Q", MAGIC) == b"1BTSSMSL"
    assert struct.unpack_from("<I", raw, 52)[0] == checksum(raw[:52])
    assert struct.unpack_from("<I", raw, 48)[0] == FORMAT_VERSION == 2
    assert decode_footer(raw, PATH, 351) == f
    assert decode_footer(b"junk" + raw, PATH, 355) == f  # readers pass the last 64 bytes of the file


def test_format_1_footer_is_read() -> None:
    head = struct.pack("<QIQIQII", 263, 19, 57, 9, 71, 187, 1)
    raw = head + struct.pack("<IQ", checksum(head), MAGIC)
    assert raw.hex() == ("0701000000000000130000003900000000000000090000004700000000000000"
                         "bb000000010000009755c3ee31425453534d534c")  # as format 1 wrote it
    f = decode_footer(b"\x00" * 12 + raw, PATH, 339)
    assert f == Footer(BlockHandle(263, 19), BlockHandle(57, 9), BlockHandle(71, 187), 1)


# --- bloom filters -----------------------------------------------------------------------------

def test_blocked_bloom_false_positive_rate_at_ten_bits_per_key() -> None:
    present = [b"key-%d" % i for i in range(20_000)]
    f = BlockedBloom.decode(build_blocked(present, 10))
    assert f.probes == 5 and f.nwords == 3125
    assert all(f.may_contain(k) for k in present)  # never a false negative
    fp = sum(f.may_contain(b"absent-%d" % i) for i in range(20_000))
    assert fp / 20_000 < 0.025, f"false-positive rate {fp / 20_000:.4f}"


def test_blocked_bloom_layout_matches_format_doc() -> None:
    payload = build_blocked([b"a", b"b"], 10)
    assert payload[:8] == bytes.fromhex("01 05 0000 01000000")  # kind 1, 5 probes, 1 word
    (word,) = struct.unpack_from("<Q", payload, 8)
    pat = patterns(5)
    want = 0
    for k in (b"a", b"b"):
        h = filter_hash(k)
        assert ((h >> 32) * 1) >> 32 == 0
        want |= pat[h & 4095]
    assert word == want and len(payload) == 16


def test_blocked_bloom_patterns_are_specified() -> None:
    for k in (1, 5, 16):
        table = patterns(k)
        assert len(table) == 4096 and all(bin(p).count("1") == k for p in table)
        assert len(set(table)) > 4000 or k == 1
    assert patterns(5) is patterns(5)  # cached, never rebuilt
    assert [hex(p) for p in patterns(2)[:2]] == ['0x802000000000', '0x1004000000000']


@pytest.mark.parametrize("bits, probes", [(1, 1), (2, 1), (3, 2), (10, 5), (12, 6), (20, 10), (50, 16)])
def test_probes_per_key(bits: int, probes: int) -> None:
    assert probes_for(bits) == probes
    payload = build_blocked([b"k%d" % i for i in range(100)], bits)
    assert payload[1] == probes and len(payload) == 8 + 8 * (-(-100 * bits // 64))


@pytest.mark.parametrize("payload, match", [(b"\x01\x05\x00", "shorter"),
                                            (b"\x02\x05\x00\x00\x01\x00\x00\x00" + bytes(8), "kind"),
                                            (b"\x01\x00\x00\x00\x01\x00\x00\x00" + bytes(8), "header"),
                                            (b"\x01\x05\x00\x00\x02\x00\x00\x00" + bytes(8), "needs")])
def test_blocked_bloom_malformed(payload: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BlockedBloom.decode(payload)


def test_bloom_zero_bits_disables_filter() -> None:
    assert build_blocked([b"a", b"b"], 0) == b""
    assert build_blocked([], 10) == b""
    assert ClassicBloom(b"").may_contain(b"anything")
    assert ClassicBloom(b"\x07").may_contain(b"anything")  # < 2 bytes: no filter


def test_classic_bloom_reads_format_1_filters() -> None:
    present = [b"key-%d" % i for i in range(10_000)]
    f = ClassicBloom(build_classic(present, 10))
    assert f.probes == 7 and f.m == 100_000
    assert all(f.may_contain(k) for k in present)
    fp = sum(f.may_contain(b"absent-%d" % i) for i in range(10_000))
    assert fp / 10_000 < 0.02


def test_table_without_bloom_filter() -> None:
    r = open_table(write_table(sample_entries(50), bloom_bits_per_key=0))
    assert r.filter is None and r.bloom is None
    assert r.may_contain(b"definitely absent")
    assert r.props["bloom_bits_per_key"] == 0


# --- properties -----------------------------------------------------------------------------

def _props(**over) -> dict:
    p = {name: i for i, name in enumerate(INT_PROPS)}
    p.update(smallest=b"a", largest=b"z")
    p.update(over)
    return p


def test_props_round_trip_and_unknown_names_ignored() -> None:
    p = _props(entries=1 << 40, range_deletions=3)
    payload = encode_props(p)
    assert decode_props(payload, PATH, 0) == p
    older = _props()  # format 1 tables have no range_deletions: it reads as 0
    assert decode_props(encode_props(older), PATH, 0) == dict(older, range_deletions=0)
    extra = payload + b"\x06future" + b"\x03abc"
    assert decode_props(extra, PATH, 0) == p


def test_table_props_hold_what_the_block_holds() -> None:
    p = _props(range_deletions=2, external=1)
    t = TableProps.from_block(p, 99, ((b"a", b"c", 4),))
    assert t.extra == (("external", 1),) and t.file_size == 99 and t.range_dels == ((b"a", b"c", 4),)
    assert t.block_props() == p
    assert decode_props(encode_props(t.block_props()), PATH, 0) == p


def test_finish_returns_what_the_table_reads_back_and_the_manifest_records() -> None:
    f = MemFile()
    w = TableWriter(f, extra_props={"external": 1})
    w.add(b"k", 3, PUT, b"v")
    w.add_range_del(b"a", b"c", 9)
    props = w.finish()
    r = open_table(bytes(f.buf))
    assert props.block_props() == r.props and props.file_size == len(f.buf)
    assert TableProps.from_block(r.props, r.file_size, tuple(r.range_dels)) == props
    m = FileMeta.from_props(12, props)
    assert m == FileMeta(12, len(f.buf), 1, b"a", b"k", 3, 9, range_dels=((b"a", b"c", 9),))


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
    assert r.buf is not None if compression == "none" else r.buf is None
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
        keys, _, _ = r.columns(i)
        assert keys[-1] == r.index.keys[i]
        for k in set(keys):
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


def test_table_on_real_files_is_mapped(tmp_path) -> None:
    path = str(tmp_path / "000007.sst")
    fs = OsFileSystem()
    entries = sample_entries(100)
    w = TableWriter(fs.open_writable(path), block_bytes=256)
    for e in entries:
        w.add(*e)
    props = w.finish()
    assert props.file_size == fs.file_size(path)
    r = TableReader(fs.open_readable(path), 7)
    assert r.buf is not None  # an mmap
    assert list(r.iter_entries()) == entries
    assert set(r.state) == {MAPPED}
    for key, seq, kind, value in entries:
        assert r.get(key, seq) == (seq, kind, value)
    r.close()


def test_add_many_writes_the_same_table_as_add() -> None:
    entries = sample_entries(300, versions=1, value_pad=7)
    one = write_table(entries, block_bytes=200)
    f = MemFile()
    w = TableWriter(f, block_bytes=200)
    for i in range(0, len(entries), 37):
        part = entries[i:i + 37]
        w.add_many([e[0] for e in part], [e[1] << 8 | e[2] for e in part], [e[3] for e in part])
    w.finish()
    assert bytes(f.buf) == one


def test_range_tombstones_widen_the_table_and_are_read_back() -> None:
    f = MemFile()
    w = TableWriter(f)
    w.add(b"m", 5, PUT, b"v")
    w.add_range_del(b"c", b"k", 7)
    w.add_range_del(b"p", b"z", 2)
    props = w.finish()
    assert (props.smallest, props.largest, props.range_deletions) == (b"c", b"z", 2)
    assert (props.min_seq, props.max_seq) == (2, 7)
    assert props.range_dels == ((b"c", b"k", 7), (b"p", b"z", 2))
    r = open_table(bytes(f.buf))
    assert r.range_dels == [(b"c", b"k", 7), (b"p", b"z", 2)] and not r.plain
    assert r.get(b"m", 10) == (5, PUT, b"v")


def test_a_block_is_verified_once_per_open() -> None:
    entries = sample_entries(50, versions=1)
    data = bytearray(write_table(entries, block_bytes=1 << 20, compression="none"))
    f = MappedFile(PATH, bytes(data))
    shared = f.buffer()
    f.buffer = lambda: shared  # type: ignore[method-assign]
    r = TableReader(f, 42)
    key = entries[3][0]
    assert r.get(key, MAX_SEQUENCE) is not None and r.state[0] == MAPPED
    # damage after the first check in this open is not looked for again ...
    h = r.index.handle(0)
    data[h.offset + h.size - 1] ^= 0xFF  # the last value byte
    r2 = open_table(bytes(data))
    # ... but a new open (a new reader) checks again
    with pytest.raises(CorruptionError, match="block checksum"):
        r2.get(key, MAX_SEQUENCE)


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
        f = Footer(BlockHandle(off, len(payload)), self.footer.filter, self.footer.props, footer_version,
                   self.footer.range_del)
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
    assert_corrupt(ei, layout.footer_at + 56, "bad table magic")


@pytest.mark.parametrize("field, at", [("index-handle", 0), ("filter-handle", 12), ("props-size", 32),
                                       ("range-del-handle", 40), ("checksum", 52)])
def test_bad_footer_checksum(layout: Layout, field: str, at: int) -> None:
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.flipped(layout.footer_at + at))
    assert_corrupt(ei, layout.footer_at + 52, "footer checksum")


@pytest.mark.parametrize("version", [0, 3, 0xFFFFFFFF])
def test_wrong_format_version(layout: Layout, version: int) -> None:
    # The version decides the footer's size, so it is checked before the checksum.
    data = bytearray(layout.data)
    struct.pack_into("<I", data, layout.footer_at + 48, version)
    with pytest.raises(CorruptionError) as ei:
        open_table(bytes(data))
    assert_corrupt(ei, layout.footer_at + 48, f"unsupported table format version {version}")


def test_version_byte_naming_format_1_fails_the_checksum(layout: Layout) -> None:
    data = bytearray(layout.data)
    struct.pack_into("<I", data, layout.footer_at + 48, 1)
    with pytest.raises(CorruptionError) as ei:
        open_table(bytes(data))
    assert_corrupt(ei, layout.footer_at + 52, "footer checksum")


@pytest.mark.parametrize("size", [0, 1, 15])
def test_file_shorter_than_footer(layout: Layout, size: int) -> None:
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.data[:size])
    assert_corrupt(ei, 0, "too short")


@pytest.mark.parametrize("cut", ["footer-1", "footer-26", "footer-all", "half", "first-block", "30-bytes"])
def test_truncated_file_or_footer(layout: Layout, cut: str) -> None:
    size = {"footer-1": layout.size - 1, "footer-26": layout.size - 26, "footer-all": layout.footer_at,
            "half": layout.size // 2, "first-block": layout.blocks[0].size + 60, "30-bytes": 30}[cut]
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.data[:size])
    assert_corrupt(ei, size - 8, "bad table magic")


@pytest.mark.parametrize("which", ["index", "filter", "props"])
def test_footer_handle_past_footer(layout: Layout, which: str) -> None:
    f = layout.footer._replace(**{which: BlockHandle(layout.footer_at - 10, 10)})
    with pytest.raises(CorruptionError) as ei:
        open_table(layout.data[:layout.footer_at] + encode_footer(f))
    assert_corrupt(ei, layout.footer_at, f"{which} handle")


@pytest.mark.parametrize("mapped", [True, False])
@pytest.mark.parametrize("which", ["first", "middle", "last"])
@pytest.mark.parametrize("where", ["payload-start", "payload-mid", "payload-end", "compression", "checksum"])
def test_flipped_byte_in_data_block(layout: Layout, which: str, where: str, mapped: bool) -> None:
    i = {"first": 0, "middle": len(layout.blocks) // 2, "last": len(layout.blocks) - 1}[which]
    h = layout.blocks[i]
    at = h.offset + {"payload-start": 0, "payload-mid": h.size // 2, "payload-end": h.size - 1,
                     "compression": h.size, "checksum": h.size + 2}[where]
    r = open_table(layout.flipped(at), mapped=mapped)  # data blocks are read lazily: open succeeds
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


@pytest.mark.parametrize("mapped", [True, False])
def test_truncated_data_block(layout: Layout, mapped: bool) -> None:
    """A block whose handle reaches past the end of the file reads short."""
    handles = list(layout.blocks)
    handles[-1] = BlockHandle(handles[-1].offset, 1 << 20)
    r = open_table(layout.with_index(encode_index_block(list(layout.index.keys), handles)), mapped=mapped)
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
    assert MAX_BLOCK_BYTES >= MAX_VALUE_BYTES + MAX_KEY_BYTES + 10 + 8 * 2 + 8


def test_block_holding_two_large_versions_of_one_key_reads_back() -> None:
    value = bytes(MAX_BLOCK_BYTES // 2 + 1)  # zeros: compresses to a few KiB
    assert len(value) < MAX_VALUE_BYTES
    r = open_table(write_table([(b"k", 2, PUT, value), (b"k", 1, PUT, value)], compression="zstd"))
    assert len(r.index) == 1  # both versions in one block
    got = r.get(b"k", 1)
    assert got is not None and got[0] == 1 and len(got[2]) == len(value)
