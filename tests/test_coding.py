"""Tests for lsm.coding: varints (doc/format.md conventions), fixed-width
integers, length-prefixed bytes and the checksum."""

from __future__ import annotations

import pytest
import xxhash
from hypothesis import given, settings, strategies as st

from lsm.coding import (
    F64,
    U16,
    U32,
    U64,
    DecodeError,
    checksum,
    decode_varint,
    encode_varint,
    get_length_prefixed,
    put_length_prefixed,
)
from lsm.errors import Error

FAST = settings(max_examples=150, deadline=None)
U64_MAX = (1 << 64) - 1


# --- varints -----------------------------------------------------------------

@pytest.mark.parametrize("n, hexed", [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (16383, "ff7f"),
    (16384, "808001"),
    ((1 << 56) - 1, "ffffffffffffff7f"),
    (U64_MAX, "ffffffffffffffffff01"),
])
def test_varint_known_encodings(n: int, hexed: str) -> None:
    assert encode_varint(n).hex() == hexed
    assert decode_varint(bytes.fromhex(hexed), 0) == (n, len(hexed) // 2)


@pytest.mark.parametrize("bits", range(0, 64))
def test_varint_length_is_one_byte_per_seven_bits(bits: int) -> None:
    n = 1 << bits
    assert len(encode_varint(n)) == bits // 7 + 1
    assert len(encode_varint(n - 1 if n > 1 else 0)) == max(1, (bits + 6) // 7)


def test_varint_max_is_ten_bytes() -> None:
    enc = encode_varint(U64_MAX)
    assert len(enc) == 10
    assert decode_varint(enc, 0) == (U64_MAX, 10)


@given(st.integers(min_value=0, max_value=U64_MAX), st.binary(max_size=8), st.binary(max_size=8))
@FAST
def test_varint_round_trip_at_any_position(n: int, before: bytes, after: bytes) -> None:
    buf = before + encode_varint(n) + after
    value, pos = decode_varint(buf, len(before))
    assert value == n
    assert pos == len(buf) - len(after)


@given(st.integers(min_value=0, max_value=U64_MAX))
@FAST
def test_varint_decodes_from_memoryview(n: int) -> None:
    assert decode_varint(memoryview(encode_varint(n)), 0) == (n, len(encode_varint(n)))


def test_varint_negative_raises_value_error() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        encode_varint(-1)


@pytest.mark.parametrize("hexed", ["", "80", "ff", "8080", "ffffffffffffffffff"])
def test_varint_truncated_raises(hexed: str) -> None:
    with pytest.raises(DecodeError, match="truncated varint"):
        decode_varint(bytes.fromhex(hexed), 0)


def test_varint_truncated_at_offset_past_end() -> None:
    with pytest.raises(DecodeError):
        decode_varint(b"\x01", 1)


@pytest.mark.parametrize("hexed", ["ffffffffffffffffff80", "ffffffffffffffffffff01",
                                   "8080808080808080808000"])
def test_varint_longer_than_ten_bytes_raises(hexed: str) -> None:
    # An 11-byte varint has a 10th byte >= 0x80, which the overflow check sees first.
    with pytest.raises(DecodeError, match="overflows 64 bits|longer than 10 bytes"):
        decode_varint(bytes.fromhex(hexed), 0)


def test_decode_error_is_an_lsm_error() -> None:
    assert issubclass(DecodeError, Error)


@pytest.mark.parametrize("hexed", ["ffffffffffffffffff7f", "ffffffffffffffffff02",
                                   "80808080808080808002"])
def test_varint_tenth_byte_overflowing_64_bits_raises(hexed: str) -> None:
    """A 10th byte carries bit 63 only: anything above 1 is a value >= 2**64."""
    with pytest.raises(DecodeError, match="overflows 64 bits"):
        decode_varint(bytes.fromhex(hexed), 0)


@pytest.mark.parametrize("hexed, n", [("ffffffffffffffffff01", U64_MAX), ("80808080808080808001", 1 << 63),
                                      ("ffffffffffffffffff00", (1 << 63) - 1)])
def test_varint_tenth_byte_of_0_or_1_decodes(hexed: str, n: int) -> None:
    assert decode_varint(bytes.fromhex(hexed), 0) == (n, 10)


@given(st.binary(min_size=10, max_size=12))
@FAST
def test_varint_decode_never_exceeds_64_bits(buf: bytes) -> None:
    try:
        value, pos = decode_varint(buf, 0)
    except DecodeError:
        return
    assert 0 <= value <= U64_MAX and 1 <= pos <= 10


# --- fixed-width integers -------------------------------------------------------

def test_fixed_width_structs_are_little_endian() -> None:
    assert U16.pack(0x0102) == b"\x02\x01"
    assert U32.pack(0x01020304) == b"\x04\x03\x02\x01"
    assert U64.pack(0x0102030405060708) == bytes.fromhex("0807060504030201")
    assert F64.pack(1700000000.0).hex() == "00000040fc54d941"
    assert (U16.size, U32.size, U64.size, F64.size) == (2, 4, 8, 8)


# --- length-prefixed bytes ----------------------------------------------------------

@given(st.lists(st.binary(max_size=300), max_size=5))
@FAST
def test_length_prefixed_round_trip(items: list[bytes]) -> None:
    out = bytearray()
    for item in items:
        put_length_prefixed(out, item)
    pos = 0
    got = []
    while pos < len(out):
        data, pos = get_length_prefixed(bytes(out), pos)
        assert type(data) is bytes
        got.append(data)
    assert got == items


def test_length_prefixed_layout() -> None:
    out = bytearray()
    put_length_prefixed(out, b"abc")
    assert bytes(out) == b"\x03abc"


@pytest.mark.parametrize("buf", [b"", b"\x80", b"\x03ab", b"\x05"])
def test_length_prefixed_overrun_raises(buf: bytes) -> None:
    with pytest.raises(DecodeError):
        get_length_prefixed(buf, 0)


# --- checksum --------------------------------------------------------------------------

def test_checksum_is_xxh32_seed_zero() -> None:
    assert checksum(b"") == 0x02CC5D05
    assert checksum(b"hi") == xxhash.xxh32_intdigest(b"hi", seed=0)
    assert checksum(memoryview(b"hello")[1:]) == checksum(b"ello")
    assert 0 <= checksum(b"x" * 1000) < 1 << 32
