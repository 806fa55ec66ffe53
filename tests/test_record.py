"""Tests for lsm.wal: record framing (doc/format.md#log-records), the WAL
writer, and iter_records on intact logs and on every kind of damage
(one test per error path, as LevelDB's log_test.cc)."""

from __future__ import annotations

import errno
import mmap
import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from lsm.batch import encode_batch
from lsm.coding import checksum
from lsm.errors import CorruptionError, DiskError
from lsm.fs import OsFileSystem
from lsm.keys import PUT
from lsm.record import (
    BATCH,
    CACHE,
    EDIT,
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    OVERHEAD,
    DamageReason,
    RecordWriter,
    encode_record,
    frame_record,
    iter_records,
    strict_reporter,
)

FAST = settings(max_examples=100, deadline=None)


class Reports:
    """An on_corruption callback that records every report and answers ``keep_going``."""

    def __init__(self, keep_going: bool = True) -> None:
        self.keep_going = keep_going
        self.calls: list[tuple[int, int, str, bool]] = []

    def __call__(self, offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
        self.calls.append((offset, nbytes, reason, at_tail))
        return self.keep_going


def read_all(data: bytes, keep_going: bool = True) -> tuple[list[tuple[int, int, bytes]], Reports]:
    rep = Reports(keep_going)
    return list(iter_records(data, rep)), rep


def make_log(*payloads: bytes) -> tuple[bytes, list[int]]:
    """Concatenated records and the offset of each."""
    out = b""
    offsets = []
    for p in payloads:
        offsets.append(len(out))
        out += encode_record(p)
    return out, offsets


PAYLOADS = (b"first record", b"", b"third" * 20, b"fourth")


# --- framing -------------------------------------------------------------------------

def test_constants() -> None:
    assert (MAGIC, FORMAT_VERSION, HEADER_BYTES, OVERHEAD) == (0xB1A5, 2, 12, 16)
    assert (BATCH, EDIT, CACHE) == (1, 2, 3)


def test_encode_record_matches_format_doc() -> None:
    rec = encode_record(b"hi")
    assert rec.hex() == "a5b1020102000000c10a8b346869074cb9a0"
    magic, version, rtype, length, header_check = struct.unpack_from("<HBBII", rec)
    assert (magic, version, rtype, length) == (MAGIC, FORMAT_VERSION, BATCH, 2)
    assert header_check == checksum(rec[:8])
    assert rec[12:14] == b"hi"
    assert struct.unpack_from("<I", rec, 14)[0] == checksum(rec[:14])


@pytest.mark.parametrize("rtype", [BATCH, EDIT, CACHE])
def test_record_type_round_trip(rtype: int) -> None:
    recs, rep = read_all(encode_record(b"payload", rtype))
    assert recs == [(0, rtype, b"payload")] and rep.calls == []


def test_encode_record_refuses_payload_over_u32() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return 1 << 32

    with pytest.raises(ValueError, match="exceeds"):
        encode_record(Huge())


@FAST
@given(payload=st.binary(max_size=5000), rtype=st.sampled_from([BATCH, EDIT, CACHE]),
       junk=st.binary(min_size=HEADER_BYTES, max_size=HEADER_BYTES))
def test_frame_record_in_place_equals_encode_record(payload: bytes, rtype: int, junk: bytes) -> None:
    # Twice: the second call uses the cached header of that length and type.
    for _ in range(2):
        buf = bytearray(junk) + payload  # the reserved bytes may hold anything
        assert frame_record(buf, rtype) is buf
        assert bytes(buf) == encode_record(payload, rtype)


def test_frame_record_needs_the_header_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        frame_record(bytearray(HEADER_BYTES - 1))


# --- intact logs ------------------------------------------------------------------------

def test_empty_log_yields_nothing() -> None:
    recs, rep = read_all(b"")
    assert recs == [] and rep.calls == []


def test_intact_records_with_offsets() -> None:
    data, offsets = make_log(*PAYLOADS)
    recs, rep = read_all(data)
    assert recs == [(o, BATCH, p) for o, p in zip(offsets, PAYLOADS)]
    assert rep.calls == []


@given(st.lists(st.tuples(st.sampled_from([BATCH, EDIT, CACHE]), st.binary(max_size=300)), max_size=12))
@FAST
def test_round_trip_property(records: list[tuple[int, bytes]]) -> None:
    data = b"".join(encode_record(p, t) for t, p in records)
    recs, rep = read_all(data)
    assert [(t, p) for _, t, p in recs] == records
    assert rep.calls == []


# --- error paths --------------------------------------------------------------------------

BAD_HEADER = "bad record header (magic or header check)"


def _damage(data: bytes, at: int, value: int | None = None, xor: int = 0xFF) -> bytes:
    b = bytearray(data)
    b[at] = value if value is not None else b[at] ^ xor
    return bytes(b)


def _framed(payload: bytes, version: int = FORMAT_VERSION, rtype: int = BATCH,
            length: int | None = None) -> bytes:
    """A record whose header check and checksum are both valid, with any version or length."""
    head = struct.pack("<HBBI", MAGIC, version, rtype, len(payload) if length is None else length)
    body = head + struct.pack("<I", checksum(head)) + payload
    return body + struct.pack("<I", checksum(body))


def _v1_record(payload: bytes, rtype: int = BATCH) -> bytes:
    """A record in format version 1 framing (no header check; 12 bytes of overhead)."""
    body = struct.pack("<HBBI", MAGIC, 1, rtype, len(payload)) + payload
    return body + struct.pack("<I", checksum(body))


def test_framed_helper_agrees_with_encode_record() -> None:
    assert _framed(b"xyz", rtype=EDIT) == encode_record(b"xyz", EDIT)


def test_reasons_are_damage_strings() -> None:
    data, offs = make_log(b"a", b"b", b"c")
    _, rep = read_all(_damage(data, offs[1]) + data[:5])
    (_, _, bad, _), (_, _, torn, _) = rep.calls
    assert isinstance(bad, DamageReason) and isinstance(bad, str) and bad.truncated is False
    assert isinstance(torn, DamageReason) and torn.truncated is True
    assert DamageReason("x").truncated is False and str(DamageReason("x", truncated=True)) == "x"


def test_bad_magic() -> None:
    data, offs = make_log(*PAYLOADS)
    recs, rep = read_all(_damage(data, offs[2]))
    assert [p for _, _, p in recs] == [PAYLOADS[0], PAYLOADS[1], PAYLOADS[3]]
    assert rep.calls == [(offs[2], offs[3] - offs[2], BAD_HEADER, False)]
    assert rep.calls[0][2].truncated is False


def test_bad_checksum_in_payload() -> None:
    data, offs = make_log(*PAYLOADS)
    recs, rep = read_all(_damage(data, offs[2] + HEADER_BYTES + 5))
    assert [p for _, _, p in recs] == [PAYLOADS[0], PAYLOADS[1], PAYLOADS[3]]
    (off, n, reason, at_tail), = rep.calls
    assert (off, n, at_tail) == (offs[2], offs[3] - offs[2], False)
    assert reason.startswith("record checksum 0x") and "!= stored 0x" in reason
    assert reason.truncated is False


@pytest.mark.parametrize("field, at", [("magic", 1), ("version", 2), ("type", 3), ("length-low", 4),
                                       ("length-high", 7), ("header-check-low", 8),
                                       ("header-check-high", 11), ("checksum", -1)])
def test_damaged_header_field_or_trailer(field: str, at: int) -> None:
    data, offs = make_log(*PAYLOADS)
    pos = offs[1] + at if at >= 0 else offs[2] + at
    recs, rep = read_all(_damage(data, pos))
    assert [p for _, _, p in recs] == [PAYLOADS[0], PAYLOADS[2], PAYLOADS[3]]
    assert [(o, n, t) for o, n, _, t in rep.calls] == [(offs[1], offs[2] - offs[1], False)]
    reason = rep.calls[0][2]
    assert reason.truncated is False
    assert reason == BAD_HEADER if field != "checksum" else reason.startswith("record checksum")


@pytest.mark.parametrize("bit", range(32))
def test_length_bit_flip_mid_log_is_a_bad_header_not_a_torn_tail(bit: int) -> None:
    """In v1 a flipped length made the record run past the end of the file and
    everything after it looked like a torn tail. The header check catches it."""
    data, offs = make_log(*PAYLOADS)
    b = bytearray(data)
    b[offs[1] + 4 + bit // 8] ^= 1 << (bit % 8)
    recs, rep = read_all(bytes(b))
    assert [p for _, _, p in recs] == [PAYLOADS[0], PAYLOADS[2], PAYLOADS[3]]
    assert rep.calls == [(offs[1], offs[2] - offs[1], BAD_HEADER, False)]


def test_length_bit_flip_mid_log_raises_under_a_tail_tolerant_callback() -> None:
    """What recovery's tolerate_tail does: drop damage at the tail, raise otherwise."""
    data, offs = make_log(*PAYLOADS)
    b = bytearray(data)
    b[offs[1] + 7] ^= 0x80  # length += 2**31: far past the end of the file

    def tolerate_tail(offset: int, nbytes: int, reason: str, at_tail: bool) -> bool:
        if not at_tail:
            raise CorruptionError("/db/000001.log", offset, reason)
        return False

    it = iter_records(bytes(b), tolerate_tail, "/db/000001.log")
    assert next(it)[2] == PAYLOADS[0]
    with pytest.raises(CorruptionError) as ei:
        next(it)
    assert (ei.value.offset, ei.value.reason) == (offs[1], BAD_HEADER)


@pytest.mark.parametrize("version", [0, 3, 255])
@pytest.mark.parametrize("where", ["middle", "last", "torn-last"])
@pytest.mark.parametrize("keep_going", [True, False])
def test_other_format_version_is_refused_whatever_the_callback(version: int, where: str,
                                                                keep_going: bool) -> None:
    rec = _framed(b"from the future", version)
    data = encode_record(b"a") + {"middle": rec + encode_record(b"b"), "last": rec, "torn-last": rec[:-5]}[where]
    it = iter_records(data, Reports(keep_going), "/db/000009.log")
    assert next(it)[2] == b"a"
    with pytest.raises(CorruptionError, match=f"record format version {version}, this reader knows 2") as ei:
        next(it)
    assert (ei.value.path, ei.value.offset) == ("/db/000009.log", 17)


def test_version_check_needs_a_header_that_checks_out() -> None:
    """A damaged version byte fails the header check: that is damage, not a newer format."""
    data, offs = make_log(b"a", b"b", b"c")
    recs, rep = read_all(_damage(data, offs[1] + 2, value=3))
    assert [p for _, _, p in recs] == [b"a", b"c"]
    assert rep.calls == [(offs[1], offs[2] - offs[1], BAD_HEADER, False)]


def test_version_1_records_are_not_recognised() -> None:
    """Format 1 had no header check, so its records read as damage, not as an
    old version: a v1 log is one bad region (at the tail: nothing intact)."""
    data = _v1_record(b"one") + _v1_record(b"two")
    assert data.hex().startswith("a5b10101")
    recs, rep = read_all(data)
    assert recs == []
    assert rep.calls == [(0, len(data), BAD_HEADER, True)]
    assert rep.calls[0][2].truncated is False


@pytest.mark.parametrize("keep", range(0, HEADER_BYTES))
def test_truncated_header(keep: int) -> None:
    data, offs = make_log(b"a", b"b")
    recs, rep = read_all(data[:offs[1] + keep])
    assert [p for _, _, p in recs] == [b"a"]
    if keep == 0:
        assert rep.calls == []
    else:
        assert rep.calls == [(offs[1], keep, f"truncated record header ({keep} of 12 bytes)", True)]
        assert rep.calls[0][2].truncated is True


@pytest.mark.parametrize("keep", range(1, HEADER_BYTES))
def test_short_garbage_at_end_is_a_truncated_header(keep: int) -> None:
    """Fewer than 12 bytes cannot hold a record, whatever they are."""
    data, _ = make_log(b"a")
    recs, rep = read_all(data + b"\x00" * keep)
    assert [p for _, _, p in recs] == [b"a"]
    assert [(o, n, t, r.truncated) for o, n, r, t in rep.calls] == [(len(data), keep, True, True)]


@pytest.mark.parametrize("drop", [1, 2, 4, 5, 9])
def test_truncated_payload_or_checksum(drop: int) -> None:
    data, offs = make_log(b"a", b"hello")
    cut = data[:-drop]
    recs, rep = read_all(cut)
    assert [p for _, _, p in recs] == [b"a"]
    (off, n, reason, at_tail), = rep.calls
    assert (off, n, at_tail, reason.truncated) == (offs[1], len(cut) - offs[1], True, True)
    assert reason == (f"truncated record: 5-byte payload and checksum need 9 bytes, "
                      f"{9 - drop} present")


def test_truncated_record_is_reported_once_even_when_the_callback_says_go_on() -> None:
    data, offs = make_log(b"a", b"hello")
    recs, rep = read_all(data[:-1], keep_going=True)
    assert [p for _, _, p in recs] == [b"a"] and len(rep.calls) == 1


def test_intact_header_with_length_past_end_is_a_truncated_tail() -> None:
    """A header that checks out is trusted: its extent runs past the end, so the
    rest of the data is one torn record, whatever bytes it holds."""
    later = encode_record(b"later")
    data = encode_record(b"a") + _framed(b"", length=0xFFFFFFFF)[:HEADER_BYTES] + later
    recs, rep = read_all(data)
    assert [p for _, _, p in recs] == [b"a"]
    (off, n, reason, at_tail), = rep.calls
    assert (off, n, at_tail, reason.truncated) == (17, len(data) - 17, True, True)
    assert reason.startswith("truncated record: 4294967295-byte payload")


def test_torn_record_with_embedded_record_is_at_tail() -> None:
    inner = encode_record(encode_batch(999, [(PUT, b"a", b"INJECTED")]))
    outer = encode_record(encode_batch(2, [(PUT, b"b", b"prefix" + inner + b"suffix")]))
    data = encode_record(encode_batch(1, [(PUT, b"a", b"1")])) + outer[:-3]  # last write torn
    recs, rep = read_all(data)
    assert len(recs) == 1
    assert [t for _, _, _, t in rep.calls] == [True]


@pytest.mark.parametrize("cut", ["inside-embedded", "after-embedded", "checksum"])
def test_torn_tail_hides_every_embedded_record(cut: str) -> None:
    """However the torn last record is cut, a complete record inside its
    payload is never yielded: one truncated report, at the tail."""
    inner = encode_record(b"INNER") * 3
    outer = encode_record(b"<" + inner + b">")
    first = encode_record(b"first")
    size = {"inside-embedded": HEADER_BYTES + 1 + len(inner) // 2, "after-embedded": HEADER_BYTES + 1 + len(inner),
            "checksum": len(outer) - 1}[cut]
    data = first + outer[:size]
    recs, rep = read_all(data)
    assert recs == [(0, BATCH, b"first")]
    assert [(o, n, t, r.truncated) for o, n, r, t in rep.calls] == [(len(first), size, True, True)]


def test_resync_past_garbage() -> None:
    junk = (b"\x00garbage\xa5\xb1\x02 looks like magic\xa5\xb1\x02\x01\xff\xff\xff\xff\x00\x00\x00\x00 more"
            + encode_record(b"x")[:HEADER_BYTES])  # even an intact header, if its record is not whole
    data = encode_record(b"one") + junk + encode_record(b"two") + encode_record(b"three")
    recs, rep = read_all(data)
    assert [p for _, _, p in recs] == [b"one", b"two", b"three"]
    assert rep.calls == [(19, len(junk), BAD_HEADER, False)]
    assert recs[1][0] == 19 + len(junk)


def test_resync_can_land_inside_a_payload_after_a_bad_header() -> None:
    """What remains of the v1 weakness: after a header that does not check out,
    the scan may find a record embedded in the damaged record's payload."""
    inner = encode_record(b"INNER")
    outer = encode_record(b"<" + inner + b">")
    data = _damage(outer, 0) + encode_record(b"after")
    recs, rep = read_all(data)
    assert [p for _, _, p in recs] == [b"INNER", b"after"]
    # the outer header and "<", then ">" and the outer checksum: two regions around the embedded record
    assert rep.calls == [(0, HEADER_BYTES + 1, BAD_HEADER, False),
                         (HEADER_BYTES + 1 + len(inner), 1 + 4, BAD_HEADER, False)]


def test_garbage_at_start() -> None:
    data = b"\x00" * 20 + encode_record(b"x")
    recs, rep = read_all(data)
    assert recs == [(20, BATCH, b"x")]
    assert [(o, n, t) for o, n, _, t in rep.calls] == [(0, 20, False)]


def test_zero_filled_tail_is_at_tail_but_not_truncated() -> None:
    """Zeros fail the header check: damage at the tail, not a cut record (a WAL
    under tolerate_tail drops it; a manifest refuses it)."""
    data, _ = make_log(b"a", b"b")
    recs, rep = read_all(data + b"\x00" * 100)
    assert len(recs) == 2
    assert [(o, n, t, r.truncated) for o, n, r, t in rep.calls] == [(len(data), 100, True, False)]


def test_at_tail_flag_is_false_only_when_an_intact_record_follows() -> None:
    # rec0, garbage, rec1, damaged rec2 (header), rec3, damaged rec4 (last; payload)
    r = [encode_record(b"r%d" % i) for i in range(5)]
    d2 = _damage(r[2], 9)
    d4 = _damage(r[4], HEADER_BYTES)
    data = r[0] + b"junk" + r[1] + d2 + r[3] + d4
    recs, rep = read_all(data)
    assert [p for _, _, p in recs] == [b"r0", b"r1", b"r3"]
    o_junk = len(r[0])
    o_d2 = o_junk + 4 + len(r[1])
    o_d4 = o_d2 + len(d2) + len(r[3])
    assert [(o, n, t) for o, n, _, t in rep.calls] == [
        (o_junk, 4, False), (o_d2, len(d2), False), (o_d4, len(d4), True)]


def test_bad_header_followed_only_by_damage_is_one_region_at_tail() -> None:
    r = [encode_record(b"r%d" % i) for i in range(3)]
    data = r[0] + _damage(r[1], 9) + _damage(r[2], HEADER_BYTES)
    recs, rep = read_all(data)
    assert [p for _, _, p in recs] == [b"r0"]
    # one region from the first damage to the end of the file, with nothing intact after it
    assert [(o, n, t) for o, n, _, t in rep.calls] == [(len(r[0]), len(r[1]) + len(r[2]), True)]


@pytest.mark.parametrize("after", ["payload-damage", "truncated", "zeros"])
def test_bad_checksum_followed_only_by_damage_is_at_tail(after: str) -> None:
    r = [encode_record(b"r%d" % i) for i in range(3)]
    tail = {"payload-damage": _damage(r[2], HEADER_BYTES), "truncated": r[2][:-3], "zeros": b"\x00" * 40}[after]
    data = r[0] + _damage(r[1], HEADER_BYTES) + tail
    recs, rep = read_all(data)
    assert [p for _, _, p in recs] == [b"r0"]
    assert all(t for _, _, _, t in rep.calls), rep.calls


def test_callback_returning_false_stops() -> None:
    data, offs = make_log(*PAYLOADS)
    for at in (offs[1], offs[1] + HEADER_BYTES):  # a bad header, a bad checksum
        recs, rep = read_all(_damage(data, at), keep_going=False)
        assert [p for _, _, p in recs] == [PAYLOADS[0]]
        assert len(rep.calls) == 1 and rep.calls[0][3] is False


def test_callback_returning_true_at_tail_ends_iteration() -> None:
    data, _ = make_log(b"a")
    recs, rep = read_all(data + b"\xa5", keep_going=True)
    assert [p for _, _, p in recs] == [b"a"] and len(rep.calls) == 1


def test_callback_exception_propagates_and_strict_reporter_names_path() -> None:
    data, offs = make_log(b"a", b"b", b"c")
    it = iter_records(_damage(data, offs[1] + HEADER_BYTES + 1), strict_reporter("/db/000007.log"))
    assert next(it)[2] == b"a"
    with pytest.raises(CorruptionError) as ei:
        next(it)
    assert ei.value.path == "/db/000007.log" and ei.value.offset == offs[1]
    assert "record checksum" in ei.value.reason


@given(st.lists(st.binary(max_size=60), min_size=1, max_size=8), st.data())
@FAST
def test_truncation_yields_a_prefix_and_at_most_one_tail_report(payloads, data) -> None:
    log, offs = make_log(*payloads)
    cut = data.draw(st.integers(0, len(log)))
    recs, rep = read_all(log[:cut])
    got = [p for _, _, p in recs]
    whole = sum(1 for o, p in zip(offs, payloads) if o + OVERHEAD + len(p) <= cut)
    assert got == list(payloads[:whole])
    assert len(rep.calls) <= 1
    assert all(t and r.truncated for _, _, r, t in rep.calls)


@given(st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=8), st.data())
@FAST
def test_single_byte_damage_never_yields_a_changed_payload(payloads, data) -> None:
    log, offs = make_log(*payloads)
    i = data.draw(st.integers(0, len(log) - 1))
    damaged = _damage(log, i, xor=data.draw(st.integers(1, 255)))
    recs, rep = read_all(damaged)
    hit = max(j for j, o in enumerate(offs) if o <= i)
    assert [p for _, _, p in recs] == [p for j, p in enumerate(payloads) if j != hit]
    assert [o for o, _, _, _ in rep.calls] == [offs[hit]]
    assert rep.calls[0][3] == (hit == len(payloads) - 1)
    assert rep.calls[0][2].truncated is False


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=6), st.data())
@FAST
def test_torn_tail_of_records_holding_records_is_always_truncated(payloads, data) -> None:
    """Payloads that are themselves framed logs: any cut is one truncated tail
    report, and only whole outer records are yielded."""
    inner = [b"".join(encode_record(p) for p in payloads[:k + 1]) for k in range(len(payloads))]
    log, offs = make_log(*inner)
    cut = data.draw(st.integers(0, len(log)))
    recs, rep = read_all(log[:cut])
    whole = sum(1 for o, p in zip(offs, inner) if o + OVERHEAD + len(p) <= cut)
    assert [p for _, _, p in recs] == inner[:whole]
    if cut in offs or cut == len(log):
        assert rep.calls == []
    else:
        assert [(o, t, r.truncated) for o, _, r, t in rep.calls] == [(offs[whole], True, True)]


# --- writer ---------------------------------------------------------------------------------

def test_wal_writer_appends_records(tmp_path) -> None:
    path = str(tmp_path / "000003.log")
    fs = OsFileSystem()
    w = RecordWriter(fs.open_writable(path), 3)
    assert w.number == 3 and w.size == 0
    w.add_record(b"one", BATCH)
    w.add_record(b"two", BATCH)
    w.add_record(b"three", BATCH)
    w.add_record(b"four", EDIT)
    w.sync()
    assert w.size == 4 * OVERHEAD + len(b"onetwothreefour")
    w.close()
    data = fs.read_file(path)
    assert data == (encode_record(b"one") + encode_record(b"two") + encode_record(b"three")
                    + encode_record(b"four", EDIT))
    assert [(t, p) for _, t, p in iter_records(data, strict_reporter(path))] == [
        (BATCH, b"one"), (BATCH, b"two"), (BATCH, b"three"), (EDIT, b"four")]


# --- preallocated logs: a zero-filled tail --------------------------------------------------

@pytest.mark.parametrize("zeros", [1, 11, 12, 100, 5000])
def test_zero_tail_is_reported_as_zero_fill(zeros: int) -> None:
    data, _ = make_log(b"a", b"b")
    recs, rep = read_all(data + bytes(zeros))
    assert [p for _, _, p in recs] == [b"a", b"b"]
    assert [(o, n, t, r.zero_fill, r.truncated) for o, n, r, t in rep.calls] == [
        (len(data), zeros, True, True, zeros < HEADER_BYTES)]


@pytest.mark.parametrize("tail", [b"\x00" * 40 + b"\x01", b"\x01" + b"\x00" * 40, b"\x01" * 5, b"\xa5\xb1" + bytes(20)])
def test_a_tail_with_any_nonzero_byte_is_not_zero_fill(tail: bytes) -> None:
    data, _ = make_log(b"a")
    _, rep = read_all(data + tail)
    assert len(rep.calls) == 1 and rep.calls[0][3] is True and rep.calls[0][2].zero_fill is False


def test_zeros_followed_by_a_record_are_not_zero_fill() -> None:
    data = encode_record(b"a") + bytes(64) + encode_record(b"b")
    recs, rep = read_all(data)
    assert [p for _, _, p in recs] == [b"a", b"b"]
    assert [(t, r.zero_fill) for _, _, r, t in rep.calls] == [(False, False)]


def test_preallocated_file_runs_ahead_of_its_data(tmp_path) -> None:
    path = str(tmp_path / "000003.log")
    fs = OsFileSystem()
    w = RecordWriter(fs.open_writable(path, preallocate=4096), 3)
    recs = [encode_record(b"x" * 1000) for _ in range(5)]
    for _ in recs[:3]:
        w.add_record(b"x" * 1000, BATCH)
    w.sync()
    assert w.size == 3 * len(recs[0]) and os.path.getsize(path) == 4096  # length extended, zeros after the data
    got, rep = read_all(fs.read_file(path))
    assert len(got) == 3 and [r.zero_fill for _, _, r, _ in rep.calls] == [True]
    w.add_record(b"x" * 1000, BATCH)  # crosses the step: extended again, by whole steps
    w.add_record(b"x" * 1000, BATCH)
    assert os.path.getsize(path) == 8192 and w.size == 5 * len(recs[0])
    assert w.trim() is True and os.path.getsize(path) == w.size
    assert w.trim() is False
    w.add_record(b"y", BATCH)  # writing after a trim extends again
    assert os.path.getsize(path) == 8192
    w.close()  # close trims
    assert fs.read_file(path) == b"".join(recs) + encode_record(b"y")


def test_mapped_file_appends_through_the_map_and_runs_ahead(tmp_path) -> None:
    path = str(tmp_path / "cache-000-of-001.log")
    fs = OsFileSystem()
    step = mmap.ALLOCATIONGRANULARITY * 2
    w = RecordWriter(fs.open_mapped(path, step=step))
    recs = [encode_record(bytes([i]) * 3000) for i in range(5)]
    for i in range(3):
        w.add_record(bytes([i]) * 3000, BATCH)
    # In the OS at once: another reader sees the records, then zeros.
    assert w.size == 3 * len(recs[0]) and os.path.getsize(path) == 2 * step
    got, rep = read_all(fs.read_file(path))
    assert [p for _, _, p in got] == [bytes([i]) * 3000 for i in range(3)]
    assert [r.zero_fill for _, _, r, _ in rep.calls] == [True]
    for i in (3, 4):  # crosses the allocated length: grows by whole steps, remapped
        w.add_record(bytes([i]) * 3000, BATCH)
    assert os.path.getsize(path) == 2 * step and w.size == 5 * len(recs[0])
    w.sync()
    w.close()  # trims to the records
    assert fs.read_file(path) == b"".join(recs)
    w = RecordWriter(fs.open_mapped(path, step=step))  # reopening appends after the records
    assert w.size == 5 * len(recs[0])
    w.add_record(b"y", BATCH)
    w.close()
    assert fs.read_file(path) == b"".join(recs) + encode_record(b"y")


def test_mapped_file_rewind_zeroes_the_forgotten_bytes(tmp_path) -> None:
    path = str(tmp_path / "f")
    f = OsFileSystem().open_mapped(path, step=mmap.ALLOCATIONGRANULARITY)
    f.write(b"keep")
    f.write(b"torn-record")
    f.rewind(4)
    assert f.size == 4 and (tmp_path / "f").read_bytes()[:20] == b"keep" + bytes(16)
    f.write(b"!")
    f.close()
    assert (tmp_path / "f").read_bytes() == b"keep!"


def test_mapped_file_reports_a_failed_growth_as_disk_error_and_writes_nothing(tmp_path, monkeypatch) -> None:
    # ENOSPC comes from posix_fallocate, before any byte is stored: a store
    # into an unreserved page on a full disk would be SIGBUS instead.
    path = str(tmp_path / "f")
    f = OsFileSystem().open_mapped(path, step=mmap.ALLOCATIONGRANULARITY)
    f.write(b"a" * 100)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DiskError) as info:
        f.write(b"b" * mmap.ALLOCATIONGRANULARITY)
    assert info.value.errno == errno.ENOSPC and info.value.filename == path
    assert f.size == 100
    f.write(b"c")  # still fits in the allocated step
    monkeypatch.undo()
    f.close()
    assert (tmp_path / "f").read_bytes() == b"a" * 100 + b"c"


def test_mapped_file_write_after_rewind_below_the_map_window(tmp_path) -> None:
    g = mmap.ALLOCATIONGRANULARITY
    path = str(tmp_path / "f")
    f = OsFileSystem().open_mapped(path, step=g)
    f.write(b"a" * (g + 10))
    f.write(b"b" * g)  # the map window now starts at g
    f.rewind(g - 5)
    f.write(b"xyz")
    f.close()
    assert (tmp_path / "f").read_bytes() == b"a" * (g - 5) + b"xyz"


def test_mapped_file_rewind_right_after_open_then_write(tmp_path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    f = OsFileSystem().open_mapped(str(tmp_path / "f"), step=1 << 16)
    f.rewind(4)
    f.write(b"ab")
    f.close()
    assert (tmp_path / "f").read_bytes() == b"0123ab"


def test_frame_record_rejects_a_type_outside_a_byte() -> None:
    for rtype in (-1, 256):
        with pytest.raises(ValueError, match="type"):
            frame_record(bytearray(HEADER_BYTES) + b"x", rtype)


def test_mapped_file_grows_without_posix_fallocate(tmp_path, monkeypatch) -> None:
    # macOS has no posix_fallocate: the step is reserved by writing zeros.
    monkeypatch.delattr(os, "posix_fallocate")
    g = mmap.ALLOCATIONGRANULARITY
    f = OsFileSystem().open_mapped(str(tmp_path / "f"), step=g)
    f.write(b"a" * (g + 3))
    assert f.allocated == 2 * g and os.path.getsize(tmp_path / "f") == 2 * g
    f.close()
    assert (tmp_path / "f").read_bytes() == b"a" * (g + 3)


def test_mapped_file_step_must_be_whole_pages(tmp_path) -> None:
    with pytest.raises(ValueError, match="step"):
        OsFileSystem().open_mapped(str(tmp_path / "f"), step=1000)


def test_plain_writable_file_trim_is_a_no_op(tmp_path) -> None:
    f = OsFileSystem().open_writable(str(tmp_path / "f"))
    f.write(b"abc")
    assert f.trim() is False
    f.close()
    assert (tmp_path / "f").read_bytes() == b"abc"
