"""Tests for lsm.serde: round trips, byte order, error paths and the value version byte."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import pytest
from hypothesis import assume, given, settings, strategies as st

from lsm.errors import SerializationError
from lsm.serde import (
    MAX_TUPLE_DEPTH,
    Bytes,
    Int,
    Json,
    Serializer,
    Str,
    Tuple,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)

FAST = settings(max_examples=200, deadline=None)

# --- strategies ----------------------------------------------------------------

# Integers around every length boundary of the layout, including the
# FoundationDB compact limit 2**64-1 and the 255-byte extension (2**2040).
_EDGE_BITS = (0, 1, 7, 8, 9, 56, 63, 64, 65, 72, 2024, 2032, 2040, 2048)
INT_EDGES = sorted(
    {sign * ((1 << bits) + delta) for bits in _EDGE_BITS for delta in (-2, -1, 0, 1) for sign in (1, -1)}
)
ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(1 << 2100), max_value=1 << 2100),
    st.sampled_from(INT_EDGES),
)
# Small alphabets make shared prefixes, embedded NULs and equal elements likely.
small_bytes = st.binary(max_size=4) | st.sampled_from([b"", b"\x00", b"\x00\xff", b"a", b"a\x00", b"\xff"])
small_text = st.text(alphabet="a\x00\xffé\u4e2d\U0001f600", max_size=4)
leaves = st.none() | small_bytes | small_text | st.integers(-300, 300) | ints
elements = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=8)
tuples = st.lists(elements, max_size=4).map(tuple)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def fdb_key(x: Any) -> tuple[Any, ...]:
    """Python sort key mirroring the tuple layer: by type code, then by value."""
    if x is None:
        return (0x00,)
    if isinstance(x, bytes):
        return (0x01, x)
    if isinstance(x, str):
        return (0x02, x)
    if isinstance(x, tuple):
        return (0x05, tuple(fdb_key(e) for e in x))
    assert isinstance(x, int) and not isinstance(x, bool)
    return (0x14, x)


def tuple_key(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(fdb_key(e) for e in t)


ALL = [Bytes(), Str(), Int(), Json(), Tuple()]
SAMPLES: dict[type, Any] = {Bytes: b"\x00k", Str: "kä", Int: -12345, Json: {"a": [1, None]}, Tuple: ("a", 1, (None,))}

# --- protocol and shared behaviour --------------------------------------------------


@pytest.mark.parametrize("serde", ALL, ids=repr)
def test_builtins_satisfy_the_protocol(serde: Serializer[Any]) -> None:
    assert isinstance(serde, Serializer)
    assert serde.version == 1
    sample = SAMPLES[type(serde)]
    assert serde.decode(serde.encode(sample)) == sample


@pytest.mark.parametrize("serde", ALL, ids=repr)
def test_decode_accepts_any_bytes_like(serde: Any) -> None:
    raw = serde.encode(SAMPLES[type(serde)])
    assert serde.decode(bytearray(raw)) == serde.decode(memoryview(raw)) == serde.decode(raw)


@pytest.mark.parametrize("serde", ALL, ids=repr)
def test_decode_of_non_bytes_raises_serialization_error(serde: Serializer[Any]) -> None:
    with pytest.raises(SerializationError, match=rf"^{type(serde).__name__}\.decode: expected bytes, got str"):
        serde.decode("abc")  # type: ignore[arg-type]


def test_order_preserving_flags() -> None:
    assert [s.order_preserving for s in ALL] == [True, True, True, False, True]


def test_repr_equality_and_hash() -> None:
    assert repr(Str(version=3)) == "Str(version=3)"
    assert Str() == Str() and hash(Str()) == hash(Str())
    assert Str() != Str(version=2) and Str() != Bytes()


@pytest.mark.parametrize("bad", [256, -1])
def test_version_out_of_range_is_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match="version must be in 0..255"):
        Str(version=bad)


@pytest.mark.parametrize("bad", ["1", 1.0, True, None])
def test_version_of_wrong_type_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="version must be an int"):
        Int(version=bad)


def test_errors_name_the_subclass() -> None:
    class UserId(Int):
        __slots__ = ()

    with pytest.raises(SerializationError, match=r"^UserId\.encode: expected int, got str"):
        UserId().encode("7")  # type: ignore[arg-type]


def test_no_pickle_in_module() -> None:
    source = pathlib.Path(__file__).parent.parent.joinpath("lsm", "serde.py").read_text()
    assert "pickle" not in source


# --- Bytes ---------------------------------------------------------------------------


@FAST
@given(st.binary())
def test_bytes_round_trip(data: bytes) -> None:
    assert Bytes().encode(data) == data
    assert Bytes().decode(data) == data
    assert type(Bytes().encode(bytearray(data))) is bytes
    assert Bytes().encode(memoryview(data)) == data


@pytest.mark.parametrize("bad", ["text", 1, None, [1]])
def test_bytes_rejects_non_bytes(bad: Any) -> None:
    with pytest.raises(SerializationError, match=r"^Bytes\.encode: expected bytes"):
        Bytes().encode(bad)


# --- Str ------------------------------------------------------------------------------


@FAST
@given(st.text())
def test_str_round_trip(text: str) -> None:
    assert Str().decode(Str().encode(text)) == text


@FAST
@given(st.text(), st.text())
def test_str_byte_order_is_code_point_order(a: str, b: str) -> None:
    assert (Str().encode(a) < Str().encode(b)) == (a < b)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xc0\x80", b"\xed\xa0\x80", b"ok\xe4\xb8"])
def test_str_rejects_invalid_utf8(bad: bytes) -> None:
    with pytest.raises(SerializationError, match=r"^Str\.decode: invalid UTF-8"):
        Str().decode(bad)


def test_str_rejects_lone_surrogate_and_non_str() -> None:
    with pytest.raises(SerializationError, match=r"^Str\.encode: not encodable as UTF-8"):
        Str().encode("a\ud800")
    with pytest.raises(SerializationError, match=r"^Str\.encode: expected str, got bytes"):
        Str().encode(b"a")  # type: ignore[arg-type]


# --- Int ------------------------------------------------------------------------------

INT_VECTORS = [
    (0, b"\x14"),
    (1, b"\x15\x01"),
    (255, b"\x15\xff"),
    (256, b"\x16\x01\x00"),
    (-1, b"\x13\xfe"),
    (-255, b"\x13\x00"),
    (-256, b"\x12\xfe\xff"),
    (-5551212, b"\x11\xabK\x93"),  # FoundationDB tuple-layer documentation example
    ((1 << 64) - 2, b"\x1c" + b"\xff" * 7 + b"\xfe"),
    ((1 << 64) - 1, b"\x1d\x08" + b"\xff" * 8),  # FoundationDB switches to the long form here
    (1 << 64, b"\x1d\x09\x01" + b"\x00" * 8),
    (-((1 << 64) - 1), b"\x0b\xf7" + b"\x00" * 8),
    (-(1 << 64), b"\x0b\xf6\xfe" + b"\xff" * 8),
    ((1 << 2032) - 1, b"\x1d\xfe" + b"\xff" * 254),  # 254 bytes: last FoundationDB-compatible length
    (1 << 2032, b"\x1d\xff\x01\xff\x01" + b"\x00" * 254),  # 255 bytes: length-prefixed length
    (-(1 << 2032), b"\x0b\x00\xfe\x00\xfe" + b"\xff" * 254),
]


@pytest.mark.parametrize(("value", "encoded"), INT_VECTORS)
def test_int_vectors(value: int, encoded: bytes) -> None:
    assert Int().encode(value) == encoded
    assert Int().decode(encoded) == value


def test_int_edges_sort_in_order() -> None:
    encoded = [Int().encode(n) for n in INT_EDGES]
    assert encoded == sorted(encoded)
    assert [Int().decode(e) for e in encoded] == INT_EDGES


@FAST
@given(ints)
def test_int_round_trip_and_equals_tuple_element(n: int) -> None:
    raw = Int().encode(n)
    assert Int().decode(raw) == n
    assert Tuple().encode((n,)) == raw


@FAST
@given(ints, ints)
def test_int_byte_order_is_integer_order(a: int, b: int) -> None:
    ea, eb = Int().encode(a), Int().encode(b)
    assert (ea < eb) == (a < b)
    assert (ea == eb) == (a == b)


@pytest.mark.parametrize("bad", [True, False, 1.0, "1", None, b"\x01"])
def test_int_rejects_non_int(bad: Any) -> None:
    with pytest.raises(SerializationError, match=r"^Int\.encode: expected int"):
        Int().encode(bad)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"", "empty input"),
        (b"\x14\x00", "trailing garbage: 1 bytes after offset 1"),
        (b"\x15\x01\x02", "trailing garbage"),
        (b"\x02a\x00", "not an integer type code"),
        (b"\x16\x01", "truncated integer at offset 1"),
        (b"\x1d", "truncated integer length"),
        (b"\x1d\x09\x01", "truncated integer at offset 2"),
        (b"\x1d\xff\x02\x01", "truncated integer length"),
        (b"\x15\x00", "non-canonical"),  # zero in the one-byte form
        (b"\x16\x00\x05", "non-canonical"),  # leading zero byte
        (b"\x13\xff", "non-canonical"),  # -0
        (b"\x1c" + b"\xff" * 8, "non-canonical"),  # 2**64-1 must use the long form
        (b"\x1d\x01\x05", "non-canonical"),  # small value in the long form
        (b"\x1d\x00", "non-canonical"),
        (b"\x0b\xfe\x05", "non-canonical"),
        (b"\x1d\xff\x01\x08" + b"\xff" * 8, "non-canonical"),  # extension for a short length
        (b"\x1d\xff\x00", "non-canonical"),
    ],
)
def test_int_decode_errors(data: bytes, cause: str) -> None:
    with pytest.raises(SerializationError, match=r"^Int\.decode: .*" + cause):
        Int().decode(data)


# --- Json ----------------------------------------------------------------------------


def test_json_is_compact_sorted_and_raw_utf8() -> None:
    assert Json().encode({"b": 1, "a": [1.5, None, True], "é": "中"}) == (
        '{"a":[1.5,null,true],"b":1,"é":"中"}'.encode()
    )


@FAST
@given(json_values)
def test_json_round_trip(value: Any) -> None:
    assert Json().decode(Json().encode(value)) == value


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        (math.nan, "not JSON-serialisable"),
        ([math.inf], "not JSON-serialisable"),
        ({1, 2}, "not JSON-serialisable"),
        ({1: "a", "b": 2}, "not JSON-serialisable"),  # sort_keys over mixed key types
        (object(), "not JSON-serialisable"),
        ("a\ud800", "not encodable as UTF-8"),
    ],
)
def test_json_encode_errors(value: Any, cause: str) -> None:
    with pytest.raises(SerializationError, match=r"^Json\.encode: " + cause):
        Json().encode(value)


def test_json_encode_circular_reference() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match=r"^Json\.encode: not JSON-serialisable"):
        Json().encode(loop)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b'{"a":', "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[1] x", "invalid JSON"),
        (b"NaN", "invalid JSON"),
        (b"[-Infinity]", "invalid JSON"),
        (b'"\xff"', "invalid UTF-8"),
        (b"[" * 100_000, "invalid JSON"),  # RecursionError inside json
    ],
)
def test_json_decode_errors(data: bytes, cause: str) -> None:
    with pytest.raises(SerializationError, match=r"^Json\.decode: " + cause):
        Json().decode(data)


# --- Tuple ---------------------------------------------------------------------------

TUPLE_VECTORS = [
    ((), b""),
    ((None,), b"\x00"),
    ((b"foo\x00bar",), b"\x01foo\x00\xffbar\x00"),  # FoundationDB documentation examples
    (("F\u00d4O\x00bar",), b"\x02F\xc3\x94O\x00\xffbar\x00"),
    (((b"foo\x00bar", None, ()),), b"\x05\x01foo\x00\xffbar\x00\x00\xff\x05\x00\x00"),
    (("a", 1, -1), b"\x02a\x00\x15\x01\x13\xfe"),
    (((),), b"\x05\x00"),
    (((None,),), b"\x05\x00\xff\x00"),
]


@pytest.mark.parametrize(("value", "encoded"), TUPLE_VECTORS)
def test_tuple_vectors(value: tuple[Any, ...], encoded: bytes) -> None:
    assert Tuple().encode(value) == encoded
    assert Tuple().decode(encoded) == value


@FAST
@given(tuples)
def test_tuple_round_trip(value: tuple[Any, ...]) -> None:
    assert Tuple().decode(Tuple().encode(value)) == value


@FAST
@given(tuples, tuples)
def test_tuple_byte_order_mirrors_type_code_order(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    ea, eb = Tuple().encode(a), Tuple().encode(b)
    assert (ea < eb) == (tuple_key(a) < tuple_key(b))
    assert (ea == eb) == (a == b)


def test_tuple_mixed_types_sort_by_type_code() -> None:
    values: list[tuple[Any, ...]] = [(5,), ("a",), (None,), (b"z",), ((1,),), (-(1 << 3000),), (b"a\x00",), (b"a",),
                                     ("a", None)]
    by_bytes = sorted(values, key=Tuple().encode)
    assert by_bytes == sorted(values, key=tuple_key)
    assert by_bytes[:4] == [(None,), (b"a",), (b"a\x00",), (b"z",)]


def test_tuple_bytes_like_elements_decode_as_bytes() -> None:
    raw = Tuple().encode((bytearray(b"a"), memoryview(b"b")))  # type: ignore[arg-type]
    assert Tuple().decode(raw) == (b"a", b"b")


@FAST
@given(tuples, tuples)
def test_tuple_encoding_is_prefix_friendly(head: tuple[Any, ...], rest: tuple[Any, ...]) -> None:
    assert Tuple().encode(head + rest).startswith(Tuple().encode(head))


@FAST
@given(tuples, tuples, st.booleans())
def test_prefix_range_bounds_exactly_the_extensions(
    prefix: tuple[Any, ...], other: tuple[Any, ...], extend: bool
) -> None:
    key = prefix + other if extend else other
    start, stop = Tuple().prefix_range(prefix)
    assert (start <= Tuple().encode(key) < stop) == (key[: len(prefix)] == prefix)


def test_prefix_range_excludes_escaped_nul_neighbours() -> None:
    start, stop = Tuple().prefix_range((b"a",))
    inside = [(b"a",), (b"a", None), (b"a", 1 << 5000), (b"a", ("z",))]
    outside = [(b"a\x00",), (b"a\x00", 1), (b"b",), ("a",), (b"",)]
    assert all(start <= Tuple().encode(k) < stop for k in inside)
    assert not any(start <= Tuple().encode(k) < stop for k in outside)
    assert Tuple().encode((b"a\x00",)).startswith(start)  # why a byte-prefix scan would be wrong


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ([1, 2], "expected tuple, got list"),
        ("abc", "expected tuple, got str"),
        ((1.5,), r"element \[0\]: unsupported type float"),
        (("a", [1]), r"element \[1\]: unsupported type list"),
        ((True,), r"element \[0\]: bool is not supported"),
        ((1, (2, (False,))), r"element \[1\]\[1\]\[0\]: bool"),
        (("a\udc00",), r"element \[0\]: not encodable as UTF-8"),
        (({"a": 1},), r"element \[0\]: unsupported type dict"),
    ],
)
def test_tuple_encode_errors(value: Any, cause: str) -> None:
    with pytest.raises(SerializationError, match=r"^Tuple\.encode: " + cause):
        Tuple().encode(value)


def _nest(depth: int) -> tuple[Any, ...]:
    value: tuple[Any, ...] = ()
    for _ in range(depth):
        value = (value,)
    return value


def test_tuple_nesting_limit() -> None:
    ok = _nest(MAX_TUPLE_DEPTH)
    assert Tuple().decode(Tuple().encode(ok)) == ok
    with pytest.raises(SerializationError, match="nesting deeper than"):
        Tuple().encode(_nest(MAX_TUPLE_DEPTH + 1))
    deep = b"\x05" * (MAX_TUPLE_DEPTH + 1) + b"\x00" * (MAX_TUPLE_DEPTH + 1)
    with pytest.raises(SerializationError, match="nesting deeper than"):
        Tuple().decode(deep)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"\x01abc", "truncated bytes element at offset 0"),
        (b"\x15\x01\x02abc\x00\xff", "truncated str element at offset 2"),
        (b"\x02\xff\x00", "str element: invalid UTF-8"),
        (b"\x05\x01a\x00", r"truncated: 1 nested tuple\(s\) not terminated"),
        (b"\x05\x05\x00", "truncated: 1 nested"),
        (b"\x16\x01", "truncated integer at offset 1"),
        (b"\x03", "unknown type code 0x03 at offset 0"),
        (b"\x15\x01\xff", "unknown type code 0xff at offset 2"),
        (b"\x15\x00", "non-canonical integer"),
    ],
)
def test_tuple_decode_errors(data: bytes, cause: str) -> None:
    with pytest.raises(SerializationError, match=r"^Tuple\.decode: " + cause):
        Tuple().decode(data)


@FAST
@given(tuples, st.integers(min_value=1))
def test_truncated_tuple_never_decodes_to_the_same_value(value: tuple[Any, ...], cut: int) -> None:
    raw = Tuple().encode(value)
    assume(raw)
    shorter = raw[: max(0, len(raw) - cut)]
    try:
        decoded = Tuple().decode(shorter)
    except SerializationError:
        return
    assert decoded != value


# --- value role: the version byte ------------------------------------------------------


@pytest.mark.parametrize("serde", ALL, ids=repr)
def test_value_round_trip_carries_the_version_byte(serde: Serializer[Any]) -> None:
    sample = SAMPLES[type(serde)]
    value = encode_value(serde, sample)
    assert value[:1] == b"\x01"
    assert value[1:] == serde.encode(sample)
    assert decode_value(serde, value) == sample
    assert decode_value(serde, bytearray(value)) == decode_value(serde, memoryview(value)) == sample


@FAST
@given(st.integers(0, 255), st.text())
def test_value_version_is_checked(version: int, text: str) -> None:
    writer = Str(version=version)
    value = encode_value(writer, text)
    assert value[0] == version
    assert decode_value(Str(version=version), value) == text
    other = (version + 1) % 256
    with pytest.raises(SerializationError, match=rf"^Str: value has version byte 0x{version:02x}, serializer expects"):
        decode_value(Str(version=other), value)


def test_decode_value_rejects_empty_and_non_bytes() -> None:
    with pytest.raises(SerializationError, match=r"^Json: empty value, missing the version byte"):
        decode_value(Json(), b"")
    with pytest.raises(SerializationError, match=r"^Json: value must be bytes, got str"):
        decode_value(Json(), "\x01{}")  # type: ignore[arg-type]


def test_decode_value_payload_errors_are_reported() -> None:
    with pytest.raises(SerializationError, match=r"^Int\.decode: trailing garbage"):
        decode_value(Int(), b"\x01\x14\x14")
    with pytest.raises(SerializationError, match=r"^Int\.decode: empty input"):
        decode_value(Int(), b"\x01")


class Custom:
    """A user serializer that breaks the rules: raises foreign errors, returns str."""

    def __init__(self, version: Any = 3) -> None:
        self.version = version

    def encode(self, obj: Any) -> bytes:
        if obj == "str":
            return "not bytes"  # type: ignore[return-value]
        if obj == "view":
            return memoryview(b"v")  # type: ignore[return-value]
        raise ValueError("cannot encode")

    def decode(self, data: bytes) -> Any:
        raise KeyError("cannot decode")


def test_helpers_wrap_foreign_errors_of_custom_serializers() -> None:
    custom = Custom()
    assert isinstance(custom, Serializer)
    with pytest.raises(SerializationError, match=r"^Custom\.encode: ValueError: cannot encode") as info:
        encode_value(custom, 1)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(SerializationError, match=r"^Custom\.decode: KeyError"):
        decode_value(custom, b"\x03x")
    with pytest.raises(SerializationError, match=r"^Custom\.encode: returned str, expected bytes"):
        encode_key(custom, "str")
    with pytest.raises(SerializationError, match=r"^Custom\.decode: KeyError"):
        decode_key(custom, b"x")
    assert encode_value(custom, "view") == b"\x03v"
    assert encode_key(custom, "view") == b"v"


@pytest.mark.parametrize("version", [256, -1, "1", None, True])
def test_helpers_reject_a_bad_version_attribute(version: Any) -> None:
    with pytest.raises(SerializationError, match=r"^Custom: version must be an int in 0..255"):
        encode_value(Custom(version), "view")
    with pytest.raises(SerializationError, match=r"^Custom: version must be an int in 0..255"):
        decode_value(Custom(version), b"\x01x")


def test_key_helpers_have_no_version_byte() -> None:
    assert encode_key(Tuple(), ("a", 1)) == Tuple().encode(("a", 1))
    assert decode_key(Tuple(), b"\x02a\x00\x15\x01") == ("a", 1)
    with pytest.raises(SerializationError, match=r"^Str\.encode: expected str"):
        encode_key(Str(), 1)  # type: ignore[misc]
