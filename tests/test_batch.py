"""Tests for lsm.batch: WriteBatch building, the batch payload encoding
(doc/format.md#batch) and every way a payload can be malformed."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings, strategies as st

from lsm.batch import (
    HEADER,
    HEADER_V1,
    BatchDecodeError,
    WriteBatch,
    decode_batch,
    encode_batch,
    encode_ttl_value,
    iter_entries,
)
from lsm.errors import Error
from lsm.keys import DELETE, MAX_SEQUENCE, PUT, PUT_TTL, RANGE_DELETE, TTL_PREFIX_BYTES, join_ttl, split_ttl

FAST = settings(max_examples=100, deadline=None)

keys = st.binary(max_size=40)
values = st.binary(max_size=200)
ops = st.one_of(
    st.tuples(st.just(PUT), keys, values),
    st.tuples(st.just(DELETE), keys, st.just(b"")),
    st.tuples(st.just(PUT_TTL), keys,
              st.builds(lambda t, v: struct.pack("<d", t) + v,
                        st.floats(min_value=0, max_value=4e9), values)),
)


# --- encoding -------------------------------------------------------------------

def test_header_layout() -> None:
    assert HEADER.size == 20 and HEADER_V1.size == 12
    assert encode_batch(0x0102030405060708, [], 9) == bytes.fromhex("0807060504030201" "00000000"
                                                                       "0900000000000000")


def test_known_encoding_matches_format_doc() -> None:
    payload = encode_batch(5, [(PUT, b"k", b"v"), (DELETE, b"old", b"")], 4)
    assert payload.hex(" ") == ("05 00 00 00 00 00 00 00 02 00 00 00 04 00 00 00 00 00 00 00 "
                                "01 01 6b 01 76 00 03 6f 6c 64")


def test_format_1_payloads_decode() -> None:
    v1 = bytes.fromhex("05 00 00 00 00 00 00 00 02 00 00 00 01 01 6b 01 76 00 03 6f 6c 64")
    assert decode_batch(v1, 1) == (5, [(PUT, b"k", b"v"), (DELETE, b"old", b"")], 0)
    with pytest.raises(BatchDecodeError, match="unknown op kind 3"):  # format 1 had no range deletes
        decode_batch(HEADER_V1.pack(1, 1) + bytes((RANGE_DELETE, 1)) + b"a" + bytes((1,)) + b"b", 1)


def test_range_delete_op_carries_its_end() -> None:
    payload = encode_batch(3, [(RANGE_DELETE, b"a", b"m")])
    assert payload[HEADER.size:] == bytes((RANGE_DELETE, 1)) + b"a" + bytes((1,)) + b"m"
    assert decode_batch(payload).ops == [(RANGE_DELETE, b"a", b"m")]


def test_put_ttl_value_carries_expiry_prefix() -> None:
    value = struct.pack("<d", 1700000000.0) + b"v"
    payload = encode_batch(8, [(PUT_TTL, b"k", value)])
    assert payload.hex() == "080000000000000001000000000000000000000002016b0900000040fc54d94176"
    assert decode_batch(payload) == (8, [(PUT_TTL, b"k", value)], 0)


@given(st.integers(min_value=1, max_value=MAX_SEQUENCE), st.lists(ops, max_size=20),
       st.integers(0, MAX_SEQUENCE))
@FAST
def test_round_trip(first_seq: int, oplist: list[tuple[int, bytes, bytes]], synced: int) -> None:
    first_seq = min(first_seq, MAX_SEQUENCE - len(oplist) + 1)  # sequences stay in 1..MAX_SEQUENCE
    payload = encode_batch(first_seq, oplist, synced)
    assert decode_batch(payload) == (first_seq, oplist, synced)
    assert list(iter_entries(payload)) == [(first_seq + i, k, key, v)
                                           for i, (k, key, v) in enumerate(oplist)]


def test_write_batch_parts_encode_the_same_payload() -> None:
    b = WriteBatch().put(b"k", b"v").delete(b"old").put(b"t", b"x" * 300, ttl=60)
    b._range_delete(b"a", b"b")
    assert HEADER.pack(9, len(b), 0) + b"".join(b._parts) == encode_batch(9, b.ops)


def test_decoded_fields_are_bytes() -> None:
    got = decode_batch(encode_batch(1, [(PUT, b"k", b"v")])).ops
    assert all(type(x) is bytes for x in got[0][1:])


# --- WriteBatch -------------------------------------------------------------------

def test_write_batch_ops_and_accounting() -> None:
    b = WriteBatch()
    assert b.put(b"k", bytearray(b"v")) is b
    b.delete(memoryview(b"old"))
    assert b.ops == [(PUT, b"k", b"v"), (DELETE, b"old", b"")]
    assert all(type(x) is bytes for _, k, v in b.ops for x in (k, v))
    assert len(b) == 2 and repr(b) == "<WriteBatch 2 ops>"
    assert b.nbytes > 0
    b.clear()
    assert len(b) == 0 and b.nbytes == 0


def test_write_batch_ttl_put_stores_absolute_expiry() -> None:
    before = time.time()
    b = WriteBatch().put(b"k", b"value", ttl=60)
    after = time.time()
    kind, key, stored = b.ops[0]
    assert kind == PUT_TTL and key == b"k"
    assert stored[TTL_PREFIX_BYTES:] == b"value"
    (expires,) = struct.unpack("<d", stored[:TTL_PREFIX_BYTES])
    assert before + 60 <= expires <= after + 60
    assert decode_batch(encode_batch(3, b.ops)) == (3, b.ops, 0)


@pytest.mark.parametrize("ttl, exc", [(0, ValueError), (-1, ValueError), (float("nan"), ValueError),
                                      (float("inf"), ValueError), (10 ** 400, ValueError), (1e10, ValueError),
                                      ("5", TypeError), (True, TypeError)])
def test_write_batch_bad_ttl(ttl: object, exc: type) -> None:
    b = WriteBatch()
    with pytest.raises(exc, match="ttl"):
        b.put(b"k", b"v", ttl=ttl)  # type: ignore[arg-type]
    assert len(b) == 0


@pytest.mark.parametrize("call", [
    lambda b: b.put("k", b"v"),
    lambda b: b.put(b"k", "v"),
    lambda b: b.delete(1),
])
def test_write_batch_rejects_wrong_types(call) -> None:
    b = WriteBatch()
    with pytest.raises(TypeError):
        call(b)
    assert len(b) == 0


def test_write_batch_rejects_oversized_key() -> None:
    with pytest.raises(ValueError, match="65535"):
        WriteBatch().put(b"k" * 65536, b"v")


# --- malformed payloads --------------------------------------------------------------

def _hdr(first_seq: int, count: int) -> bytes:
    return struct.pack("<QIQ", first_seq, count, 0)


GOOD = encode_batch(7, [(PUT, b"key", b"value"), (DELETE, b"gone", b""), (PUT_TTL, b"t", b"\0" * 8 + b"x")])

MALFORMED = {
    "empty": b"",
    "short-header": _hdr(1, 0)[:19],
    "count-but-no-ops": _hdr(1, 1),
    "count-too-high": GOOD[:8] + struct.pack("<I", 4) + GOOD[12:],
    "count-too-low-trailing-bytes": GOOD[:8] + struct.pack("<I", 2) + GOOD[12:],
    "huge-count": _hdr(1, 0xFFFFFFFF) + bytes((PUT, 1)) + b"k" + bytes((1,)) + b"v",
    "range-delete-without-end": _hdr(1, 1) + bytes((RANGE_DELETE, 1)) + b"k",
    "unknown-kind-4": _hdr(1, 1) + bytes((4, 1)) + b"k",
    "unknown-kind-255": _hdr(1, 1) + bytes((255, 1)) + b"k" + bytes((1,)) + b"v",
    "kind-only": _hdr(1, 1) + bytes((PUT,)),
    "key-len-truncated-varint": _hdr(1, 1) + bytes((PUT, 0x80)),
    "key-overruns": _hdr(1, 1) + bytes((DELETE, 5)) + b"ab",
    "value-len-missing": _hdr(1, 1) + bytes((PUT, 1)) + b"k",
    "value-len-truncated-varint": _hdr(1, 1) + bytes((PUT, 1)) + b"k" + b"\xff",
    "value-overruns": _hdr(1, 1) + bytes((PUT, 1)) + b"k" + bytes((9,)) + b"abc",
    "ttl-value-overruns": _hdr(1, 1) + bytes((PUT_TTL, 1)) + b"k" + bytes((9,)) + b"\0" * 4,
    "varint-too-long": _hdr(1, 1) + bytes((PUT,)) + b"\xff" * 11,
    "trailing-garbage": GOOD + b"\x00",
    "delete-with-value": _hdr(1, 1) + bytes((DELETE, 1)) + b"k" + bytes((1,)) + b"v",
    "last-op-cut": GOOD[:-1],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_payload_raises_batch_decode_error(name: str) -> None:
    with pytest.raises(BatchDecodeError):
        decode_batch(MALFORMED[name])


def test_every_truncation_of_a_valid_payload_raises() -> None:
    for cut in range(len(GOOD)):
        with pytest.raises(BatchDecodeError):
            decode_batch(GOOD[:cut])


@given(st.integers(min_value=0, max_value=MAX_SEQUENCE), st.lists(ops, min_size=1, max_size=8),
       st.data())
@FAST
def test_any_mutation_decodes_or_raises_batch_decode_error(first_seq, oplist, data) -> None:
    payload = bytearray(encode_batch(first_seq, oplist))
    i = data.draw(st.integers(0, len(payload) - 1))
    payload[i] ^= data.draw(st.integers(1, 255))
    try:
        decode_batch(bytes(payload))
    except BatchDecodeError:
        pass


def test_batch_decode_error_is_an_lsm_error() -> None:
    assert issubclass(BatchDecodeError, Error)


@pytest.mark.parametrize("n", range(TTL_PREFIX_BYTES))
def test_put_ttl_value_shorter_than_expiry_is_malformed(n: int) -> None:
    with pytest.raises(BatchDecodeError, match=f"PUT_TTL value of {n} bytes"):
        decode_batch(_hdr(1, 1) + bytes((PUT_TTL, 1)) + b"k" + bytes((n,)) + b"\xab" * n)


@given(st.floats(allow_nan=False), st.binary(max_size=40))
@FAST
def test_split_ttl_undoes_join_ttl(expires_at: float, value: bytes) -> None:
    stored = join_ttl(expires_at, value)
    assert stored == struct.pack("<d", expires_at) + value  # the layout of doc/format.md#kinds
    assert split_ttl(stored) == (expires_at, value)
    assert split_ttl(bytearray(stored)) == (expires_at, value)


def test_split_ttl_of_just_the_expiry_is_an_empty_value() -> None:
    assert split_ttl(struct.pack("<d", 2.5)) == (2.5, b"")


@pytest.mark.parametrize("n", range(TTL_PREFIX_BYTES))
def test_split_ttl_of_a_value_shorter_than_the_expiry_raises(n: int) -> None:
    # What the read paths that inline it do too; decode_batch refuses such a
    # value first, so only a damaged table could hold one.
    with pytest.raises(struct.error):
        split_ttl(b"\xab" * n)


def test_encode_ttl_value_is_join_ttl_of_now_plus_ttl() -> None:
    before = time.time()
    expires_at, value = split_ttl(encode_ttl_value(60, b"v"))
    assert before + 60 <= expires_at <= time.time() + 60 and value == b"v"


def test_put_ttl_value_of_just_the_expiry_decodes() -> None:
    value = struct.pack("<d", 1700000000.0)
    assert decode_batch(_hdr(1, 1) + bytes((PUT_TTL, 1)) + b"k" + bytes((8,)) + value) == (
        1, [(PUT_TTL, b"k", value)], 0)


def test_sequence_past_max_sequence_is_malformed() -> None:
    with pytest.raises(BatchDecodeError, match="outside 1.."):
        decode_batch(encode_batch(MAX_SEQUENCE, [(PUT, b"a", b"1"), (PUT, b"b", b"2")]))


@pytest.mark.parametrize("first_seq", [0, MAX_SEQUENCE + 1, (1 << 64) - 1])
def test_first_sequence_outside_range_is_malformed(first_seq: int) -> None:
    with pytest.raises(BatchDecodeError, match="outside 1.."):
        decode_batch(encode_batch(first_seq, [(PUT, b"a", b"1")]))


def test_batch_ending_at_max_sequence_decodes() -> None:
    ops_ = [(PUT, b"a", b"1"), (DELETE, b"b", b"")]
    assert decode_batch(encode_batch(MAX_SEQUENCE - 1, ops_)) == (MAX_SEQUENCE - 1, ops_, 0)
