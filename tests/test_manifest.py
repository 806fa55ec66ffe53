"""Tests for lsm.manifest (doc/format.md#manifest, #current): VersionEdit
encoding, read_manifest's tolerance of a truncated last record and refusal of
any other damage, ManifestWriter, and CURRENT."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from lsm.coding import checksum, encode_varint
from lsm.errors import CorruptionError, DiskError
from lsm.fs import OsFileSystem
from lsm.manifest import (
    FORMAT_VERSION,
    TAG_COMPACT_POINTER,
    TAG_DELETED_FILE,
    TAG_FORMAT_VERSION,
    TAG_LAST_SEQUENCE,
    TAG_LOG_NUMBER,
    TAG_NEW_FILE,
    TAG_NEXT_FILE,
    FileMeta,
    ManifestWriter,
    VersionEdit,
    install_current,
    read_current,
    read_manifest,
)
from lsm.record import BATCH, EDIT, HEADER_BYTES, MAGIC, encode_record

FAST = settings(max_examples=100, deadline=None)
FS = OsFileSystem()
U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def edit_fields(e: VersionEdit) -> tuple:
    return (e.format_version, e.log_number, e.next_file, e.last_sequence, e.compact_pointers,
            e.deleted, e.added)


# --- VersionEdit encoding --------------------------------------------------------------

def test_tags_are_frozen() -> None:
    assert (TAG_LOG_NUMBER, TAG_NEXT_FILE, TAG_LAST_SEQUENCE, TAG_COMPACT_POINTER, TAG_DELETED_FILE,
            TAG_NEW_FILE, TAG_FORMAT_VERSION) == (1, 2, 3, 4, 5, 6, 7)
    assert FORMAT_VERSION == 2


def test_known_encoding_matches_format_doc() -> None:
    e = VersionEdit(format_version=1, log_number=4, next_file=6, last_sequence=2)
    e.add_file(0, FileMeta(5, 339, 3, b"a", b"b", 1, 3))
    assert e.encode().hex(" ") == "07 01 01 04 02 06 03 02 06 00 05 d3 02 03 01 61 01 62 01 03"
    e2 = VersionEdit(log_number=9)
    e2.delete_file(0, 5)
    e2.compact_pointers.append((1, b"m"))
    assert e2.encode().hex(" ") == "01 09 04 01 01 6d 05 00 05"


def test_empty_edit() -> None:
    assert VersionEdit().encode() == b""
    assert edit_fields(VersionEdit.decode(b"", "M", 0)) == edit_fields(VersionEdit())


metas = st.builds(FileMeta, U64, U64, U64, st.binary(max_size=20), st.binary(max_size=20), U64, U64)


@given(st.one_of(st.none(), U64), st.one_of(st.none(), U64), st.one_of(st.none(), U64),
       st.one_of(st.none(), U64),
       st.lists(st.tuples(st.integers(0, 6), st.binary(max_size=20)), max_size=4),
       st.sets(st.tuples(st.integers(0, 6), U64), max_size=6),
       st.lists(st.tuples(st.integers(0, 6), metas), max_size=6))
@FAST
def test_version_edit_round_trip(fv, log, nxt, last, pointers, deleted, added) -> None:
    e = VersionEdit(format_version=fv, log_number=log, next_file=nxt, last_sequence=last)
    e.compact_pointers = list(pointers)
    e.deleted = set(deleted)
    for level, m in added:
        e.add_file(level, m)
    d = VersionEdit.decode(e.encode(), "M", 0)
    assert edit_fields(d) == edit_fields(e)


def test_decoder_accepts_any_field_order_and_last_scalar_wins() -> None:
    v = encode_varint
    data = v(TAG_LAST_SEQUENCE) + v(5) + v(TAG_DELETED_FILE) + v(1) + v(9) + v(TAG_LAST_SEQUENCE) + v(7)
    e = VersionEdit.decode(data, "M", 0)
    assert e.last_sequence == 7 and e.deleted == {(1, 9)}


@pytest.mark.parametrize("tag", [0, 11, 99, 1 << 40])  # 8-10: GLOBAL_SEQ, RANGE_DELS, CLOCK
def test_unknown_tag_raises_with_path_and_offset(tag: int) -> None:
    data = VersionEdit(log_number=3).encode() + encode_varint(tag) + b"\x01"
    with pytest.raises(CorruptionError, match=f"unknown version-edit tag {tag}") as ei:
        VersionEdit.decode(data, "/db/MANIFEST-000009", 640)
    assert (ei.value.path, ei.value.offset) == ("/db/MANIFEST-000009", 640)


def test_global_seq_round_trips_with_its_file() -> None:
    e = VersionEdit(last_sequence=12)
    e.add_file(6, FileMeta(40, 1000, 3, b"a", b"c", 12, 12, global_seq=12))
    e.add_file(0, FileMeta(41, 900, 2, b"d", b"e", 3, 9))
    data = e.encode()
    assert bytes([8, 40, 12]) in data  # GLOBAL_SEQ number 40, seq 12, after its NEW_FILE
    back = VersionEdit.decode(data, "M", 0)
    assert [(lv, m.number, m.global_seq) for lv, m in back.added] == [(6, 40, 12), (0, 41, 0)]
    assert back.added[0][1] == e.added[0][1] and back.added[1][1] == e.added[1][1]
    assert FileMeta(40, 1000, 3, b"a", b"c", 12, 12) != FileMeta(40, 1000, 3, b"a", b"c", 12, 12, global_seq=12)
    # a GLOBAL_SEQ naming a file the edit does not add is damage
    with pytest.raises(CorruptionError, match="GLOBAL_SEQ for table 7"):
        VersionEdit.decode(VersionEdit(log_number=1).encode() + b"\x08\x07\x01", "M", 0)


def test_every_truncation_of_a_field_raises() -> None:
    parts = [VersionEdit(format_version=1), VersionEdit(log_number=300), VersionEdit(next_file=301),
             VersionEdit(last_sequence=1 << 40), VersionEdit(), VersionEdit(), VersionEdit()]
    parts[4].compact_pointers.append((2, b"pointer"))
    parts[5].delete_file(1, 77)
    parts[6].add_file(3, FileMeta(88, 1 << 20, 5000, b"smallest", b"largest", 1, 1 << 33))
    data = b"".join(p.encode() for p in parts)
    boundaries = {0}
    for p in parts:
        boundaries.add(max(boundaries) + len(p.encode()))
    # a cut that ends exactly after a whole field decodes; every other cut must raise
    for cut in range(len(data)):
        if cut in boundaries:
            VersionEdit.decode(data[:cut], "M", 0)
            continue
        with pytest.raises(CorruptionError, match="bad version edit"):
            VersionEdit.decode(data[:cut], "M", 0)


@pytest.mark.parametrize("data", [b"\x80", b"\x01", b"\x01\x80", b"\x04\x01\x05ab", b"\x06\x00\x01\x02\x03\x01a",
                                  b"\x01" + b"\xff" * 11])
def test_malformed_fields_raise(data: bytes) -> None:
    with pytest.raises(CorruptionError):
        VersionEdit.decode(data, "M", 12)


# --- read_manifest ---------------------------------------------------------------------------

def snapshot_edit() -> VersionEdit:
    e = VersionEdit(format_version=FORMAT_VERSION, log_number=4, next_file=10, last_sequence=100)
    e.add_file(0, FileMeta(5, 1000, 10, b"a", b"m", 1, 50))
    e.add_file(1, FileMeta(6, 2000, 20, b"n", b"z", 51, 100))
    return e


def later_edits() -> list[VersionEdit]:
    e1 = VersionEdit(log_number=11, next_file=13, last_sequence=150)
    e1.add_file(0, FileMeta(12, 500, 5, b"b", b"c", 101, 150))
    e2 = VersionEdit(next_file=15, last_sequence=150)
    e2.delete_file(0, 5)
    e2.delete_file(0, 12)
    e2.add_file(1, FileMeta(14, 1400, 15, b"a", b"m", 1, 150))
    e3 = VersionEdit(log_number=16, next_file=17, last_sequence=200)
    return [e1, e2, e3]


def write_manifest(tmp_path, edits: list[VersionEdit] | None = None) -> tuple[str, bytes, list[int]]:
    edits = [snapshot_edit()] + later_edits() if edits is None else edits
    w = ManifestWriter(FS, str(tmp_path), 3)
    offsets = []
    for e in edits:
        offsets.append(w.size)
        w.append(e)
    w.close()
    assert w.path == os.path.join(str(tmp_path), "MANIFEST-000003")
    return w.path, FS.read_file(w.path), offsets


def rewrite(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def test_writer_and_reader_round_trip(tmp_path) -> None:
    path, data, offsets = write_manifest(tmp_path)
    edits = [snapshot_edit()] + later_edits()
    got = list(read_manifest(FS, path))
    assert [o for o, _ in got] == offsets
    assert [edit_fields(e) for _, e in got] == [edit_fields(e) for e in edits]
    assert data[:4] == bytes.fromhex("a5b10202")  # record framing v2, type EDIT


@pytest.mark.parametrize("cut", ["magic", "length", "header-check", "payload", "checksum"])
def test_truncated_last_record_is_dropped(tmp_path, cut: str) -> None:
    path, data, offsets = write_manifest(tmp_path)
    last = offsets[-1]
    size = {"magic": last + 1, "length": last + 5, "header-check": last + 10,
            "payload": last + HEADER_BYTES + 2, "checksum": len(data) - 1}[cut]
    rewrite(path, data[:size])
    got = list(read_manifest(FS, path))
    assert [o for o, _ in got] == offsets[:-1]


@pytest.mark.parametrize("n", [1, HEADER_BYTES - 1])
def test_fewer_than_a_header_of_garbage_after_last_record_is_dropped(tmp_path, n: int) -> None:
    """Too short to hold a record: a truncated header, whatever the bytes."""
    path, data, offsets = write_manifest(tmp_path)
    rewrite(path, data + b"\x00" * n)
    assert [o for o, _ in read_manifest(FS, path)] == offsets


@pytest.mark.parametrize("garbage", [b"\x00" * HEADER_BYTES, b"\x00" * 37, b"\xa5\xb1" + b"\xff" * 30])
def test_garbage_after_last_record_raises(tmp_path, garbage: bytes) -> None:
    """A header that does not check out is damage, not a cut append (a v1
    reader dropped it: it could not tell the two apart)."""
    path, data, offsets = write_manifest(tmp_path)
    rewrite(path, data + garbage)
    with pytest.raises(CorruptionError, match="bad record header") as ei:
        list(read_manifest(FS, path))
    assert (ei.value.path, ei.value.offset) == (path, len(data))


@pytest.mark.parametrize("record", [0, 1, 2, 3])
@pytest.mark.parametrize("field, at", [("magic", 0), ("version", 2), ("type", 3), ("length", 4),
                                       ("length-high", 7), ("header-check", 8), ("payload", 13),
                                       ("checksum", -1)])
def test_damage_to_any_complete_record_raises(tmp_path, record: int, field: str, at: int) -> None:
    """Record 3 is the last one: whole, so its append completed (and took effect)."""
    path, data, offsets = write_manifest(tmp_path)
    assert len(offsets) == 4
    ends = offsets[1:] + [len(data)]
    b = bytearray(data)
    pos = offsets[record] + at if at >= 0 else ends[record] + at
    b[pos] ^= 0x01
    rewrite(path, bytes(b))
    with pytest.raises(CorruptionError) as ei:
        list(read_manifest(FS, path))
    assert (ei.value.path, ei.value.offset) == (path, offsets[record])


def test_truncated_mid_file_keeps_only_whole_earlier_edits(tmp_path) -> None:
    """A cut inside record 1 looks exactly like a torn append: records 1.. are gone."""
    path, data, offsets = write_manifest(tmp_path)
    rewrite(path, data[:offsets[1] + 6])
    assert [o for o, _ in read_manifest(FS, path)] == offsets[:1]


def test_complete_last_record_with_bad_checksum_raises(tmp_path) -> None:
    path, data, offsets = write_manifest(tmp_path)
    b = bytearray(data)
    b[offsets[-1] + HEADER_BYTES + 1] ^= 0x01  # the record is whole; only its contents changed
    rewrite(path, bytes(b))
    with pytest.raises(CorruptionError):
        list(read_manifest(FS, path))


def test_wrong_record_type_raises(tmp_path) -> None:
    path, data, offsets = write_manifest(tmp_path)
    rewrite(path, data + encode_record(VersionEdit(log_number=1).encode(), BATCH)
            + encode_record(b"", EDIT))
    with pytest.raises(CorruptionError, match="record type 1 in a manifest") as ei:
        list(read_manifest(FS, path))
    assert ei.value.offset == len(data)


def test_bad_edit_payload_raises_at_its_record(tmp_path) -> None:
    path, data, offsets = write_manifest(tmp_path)
    rewrite(path, data + encode_record(encode_varint(99), EDIT))
    with pytest.raises(CorruptionError, match="unknown version-edit tag 99") as ei:
        list(read_manifest(FS, path))
    assert (ei.value.path, ei.value.offset) == (path, len(data))


@pytest.mark.parametrize("version", [None, 0, 3])
def test_first_edit_must_carry_known_format_version(tmp_path, version) -> None:
    first = snapshot_edit()
    first.format_version = version
    path, _, _ = write_manifest(tmp_path, [first] + later_edits())
    with pytest.raises(CorruptionError, match="unsupported manifest format version") as ei:
        list(read_manifest(FS, path))
    assert ei.value.offset == 0


@pytest.mark.parametrize("version", [1, 2])
def test_both_known_format_versions_are_read(tmp_path, version) -> None:
    first = snapshot_edit()
    first.format_version = version
    path, _, _ = write_manifest(tmp_path, [first] + later_edits())
    assert len(list(read_manifest(FS, path))) == 1 + len(later_edits())


@pytest.mark.parametrize("content, reason", [("empty", "no complete edit"),
                                             ("torn-only-record", "no complete edit"),
                                             ("garbage", "bad record header")])
def test_manifest_without_a_complete_edit_raises(tmp_path, content: str, reason: str) -> None:
    path, data, offsets = write_manifest(tmp_path)
    rewrite(path, {"empty": b"", "torn-only-record": data[:offsets[1] - 1], "garbage": b"\x07" * 64}[content])
    with pytest.raises(CorruptionError, match=reason) as ei:
        list(read_manifest(FS, path))
    assert (ei.value.path, ei.value.offset) == (path, 0)


def _framed(payload: bytes, version: int) -> bytes:
    """An EDIT record of any framing version, with a valid header check and checksum."""
    head = struct.pack("<HBBI", MAGIC, version, EDIT, len(payload))
    body = head + struct.pack("<I", checksum(head)) + payload
    return body + struct.pack("<I", checksum(body))


@pytest.mark.parametrize("where", ["middle", "last", "torn-last"])
def test_record_of_newer_framing_version_raises(tmp_path, where: str) -> None:
    """Even at the end, even cut short: newer data is never dropped as a torn append."""
    path, data, offsets = write_manifest(tmp_path)
    rec = _framed(VersionEdit(log_number=1).encode(), 3)
    tail = {"middle": rec + encode_record(VersionEdit(log_number=2).encode(), EDIT), "last": rec,
            "torn-last": rec[:-2]}[where]
    rewrite(path, data + tail)
    with pytest.raises(CorruptionError, match="record format version 3, this reader knows 2") as ei:
        list(read_manifest(FS, path))
    assert (ei.value.path, ei.value.offset) == (path, len(data))


def test_manifest_in_version_1_framing_is_refused(tmp_path) -> None:
    """v1 records have no header check, so they read as a bad header at offset 0."""
    path, data, offsets = write_manifest(tmp_path)
    v1 = b""
    for _, e in read_manifest(FS, path):
        body = struct.pack("<HBBI", MAGIC, 1, EDIT, len(e.encode())) + e.encode()
        v1 += body + struct.pack("<I", checksum(body))
    rewrite(path, v1)
    with pytest.raises(CorruptionError, match="bad record header") as ei:
        list(read_manifest(FS, path))
    assert (ei.value.path, ei.value.offset) == (path, 0)


def test_missing_manifest_is_a_disk_error(tmp_path) -> None:
    with pytest.raises(DiskError) as ei:
        list(read_manifest(FS, str(tmp_path / "MANIFEST-000001")))
    assert ei.value.errno == 2


# --- CURRENT ------------------------------------------------------------------------------------

def test_install_and_read_current(tmp_path) -> None:
    d = str(tmp_path)
    for name in ("MANIFEST-000003", "MANIFEST-1234567"):
        (tmp_path / name).write_bytes(b"")  # read_current checks that the named manifest exists
    install_current(FS, d, 3, 4)
    assert FS.read_file(os.path.join(d, "CURRENT")) == b"MANIFEST-000003\n"
    assert read_current(FS, d) == os.path.join(d, "MANIFEST-000003")
    assert not os.path.exists(os.path.join(d, "000004.dbtmp"))
    install_current(FS, d, 1234567, 5)
    assert FS.read_file(os.path.join(d, "CURRENT")) == b"MANIFEST-1234567\n"
    assert read_current(FS, d) == os.path.join(d, "MANIFEST-1234567")
    assert sorted(os.listdir(d)) == ["CURRENT", "MANIFEST-000003", "MANIFEST-1234567"]


@pytest.mark.parametrize("content", [b"", b"\n", b"MANIFEST-000003", b"MANIFEST-00003\n", b"MANIFEST-\n",
                                     b"manifest-000003\n", b"MANIFEST-000003 \n", b" MANIFEST-000003\n",
                                     b"MANIFEST-00000x\n", b"MANIFEST-000003\nMANIFEST-000004\n",
                                     b"MANIFEST-000003\r\n", b"\xffMANIFEST-000003\n",
                                     "MANIFEST-00000\u0663\n".encode(), b"MANIFEST-000003\n\n",
                                     b"\nMANIFEST-000003\n"])
def test_read_current_malformed(tmp_path, content: bytes) -> None:
    (tmp_path / "MANIFEST-000003").write_bytes(b"")
    path = tmp_path / "CURRENT"
    path.write_bytes(content)
    with pytest.raises(CorruptionError, match="CURRENT does not name a manifest") as ei:
        read_current(FS, str(tmp_path))
    assert (ei.value.path, ei.value.offset) == (str(path), 0)


@pytest.mark.parametrize("number", [3, 1234567])
def test_read_current_naming_a_missing_manifest_raises(tmp_path, number: int) -> None:
    """A flipped digit names a manifest that is not there: corruption of CURRENT."""
    (tmp_path / "MANIFEST-000004").write_bytes(b"")
    install_current(FS, str(tmp_path), number, 5)
    missing = f"CURRENT names MANIFEST-{number:06d}, which does not exist"
    with pytest.raises(CorruptionError, match=missing) as ei:
        read_current(FS, str(tmp_path))
    assert (ei.value.path, ei.value.offset) == (str(tmp_path / "CURRENT"), 0)


def test_read_current_missing_is_a_disk_error(tmp_path) -> None:
    with pytest.raises(DiskError) as ei:
        read_current(FS, str(tmp_path))
    assert ei.value.errno == 2
