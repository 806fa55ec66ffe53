r"""Serializers for typed views (:mod:`lsm.typed`): ``Bytes``, ``Str``, ``Int``, ``Json``, ``Tuple``.

A serializer turns Python objects into the ``bytes`` the engine stores, and back.
It has two roles, and the byte forms differ:

* **Key role**: ``serde.encode(obj)`` / ``serde.decode(data)``. The raw form, with
  no header, so that for the order-preserving serializers (``Bytes``, ``Str``,
  ``Int``, ``Tuple``; ``order_preserving`` is ``True``) comparing encodings byte
  by byte gives the order of the objects, and typed scans come back sorted.
* **Value role**: :func:`encode_value` / :func:`decode_value`. The raw form
  behind one byte holding ``serde.version``. A value whose version byte differs
  from the serializer's raises :class:`~lsm.errors.SerializationError`, so a
  value written by an incompatible serializer is never silently misread.

:func:`encode_key` / :func:`decode_key` are the key-role twins of the value
helpers: no version byte, but the same error wrapping, so a ``TypedView`` can
treat custom serializers exactly like the built-in ones.

Formats. Persistent: the bytes of an existing ``version`` never change; a new
layout gets a new ``version``. The integer and tuple layouts are those of the
FoundationDB tuple layer (type codes 0x00, 0x01, 0x02, 0x05, 0x0B-0x1D), plus an
extension for integers of 255 bytes or more, which FoundationDB cannot encode::

    value    := version:u8 raw             encode_value; keys carry no version byte
    Bytes    := the bytes themselves
    Str      := UTF-8, strict (lone surrogates are refused)
    Json     := UTF-8 of json.dumps(obj, separators=(",", ":"), sort_keys=True,
                ensure_ascii=False, allow_nan=False)
    Int      := int_elem                   the same bytes as Tuple().encode((n,))
    Tuple    := elem*                      () encodes to b""
    elem     := 0x00                       None (top level)
              | 0x01 escaped 0x00          bytes
              | 0x02 escaped 0x00          str, as UTF-8
              | 0x05 nelem* 0x00           nested tuple
              | int_elem
    nelem    := 0x00 0xFF                  None inside a nested tuple
              | any other elem
    escaped  := the data with each 0x00 written as 0x00 0xFF
    int_elem := 0x14                                 n == 0
              | (0x14 + L) mag                       0 < n < 2**64-1, 1 <= L <= 8
              | (0x14 - L) ~mag                      -(2**64-1) < n < 0
              | 0x1D L:u8 mag                        n >= 2**64-1, L <= 254
              | 0x0B (L ^ 0xFF):u8 ~mag              n <= -(2**64-1), L <= 254
              | 0x1D 0xFF LL:u8 len mag              L >= 255 (extension)
              | 0x0B 0x00 (LL ^ 0xFF):u8 ~len ~mag   L >= 255, n < 0 (extension)
    mag      := |n| big-endian in L bytes, first byte nonzero (L is minimal)
    len      := L big-endian in LL bytes, first byte nonzero (1 <= LL <= 255)
    ~x       := x with every byte inverted (one's complement)

Why it sorts: the type codes order values of different types (None < bytes <
str < tuple < int, FoundationDB's order); a longer magnitude gets a larger
header byte for positive integers and a smaller one for negative integers; and
an element never continues with 0xFF, which is above every type code, so the
escape ``0x00 0xFF`` sorts ``b"a\x00"`` after ``b"a"`` followed by anything.

Decoders are strict: truncated input, unknown type codes, trailing bytes and
non-minimal integer encodings raise rather than decode, so each value has
exactly one key.

Thread safety: serializers are immutable; share them freely between threads.

>>> Tuple().encode(("user", 42))
b'\x02user\x00\x15*'
>>> Tuple().decode(b'\x02user\x00\x15*')
('user', 42)
>>> encode_value(Json(), {"b": 1, "a": [True, None]})
b'\x01{"a":[true,null],"b":1}'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar, Union, runtime_checkable

from lsm.errors import SerializationError

__all__ = [
    "MAX_TUPLE_DEPTH",
    "Buffer",
    "Bytes",
    "Int",
    "Json",
    "Serializer",
    "Str",
    "Tuple",
    "TupleElement",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
]

T = TypeVar("T")

#: Elements a :class:`Tuple` key may hold; nested tuples hold the same.
TupleElement = Union[None, bytes, str, int, "tuple[TupleElement, ...]"]

MAX_TUPLE_DEPTH = 100  # nesting limit on encode and decode: bounds recursion on hostile input

# Tuple type codes (FoundationDB tuple layer). Persistent: never renumber.
_NULL = 0x00
_BYTES = 0x01
_STR = 0x02
_NESTED = 0x05
_NEG_BIG = 0x0B  # negative integer with an explicit length
_INT_ZERO = 0x14  # 0x0C..0x13 negative, 1..8 bytes; 0x15..0x1C positive, 1..8 bytes
_POS_BIG = 0x1D  # positive integer with an explicit length
_COMPACT_LIMIT = (1 << 64) - 1  # |n| below this uses the 1-8 byte form, as FoundationDB does

_BUFFER_TYPES = (bytes, bytearray, memoryview)
#: What the built-in serializers accept wherever they read bytes.
Buffer = bytes | bytearray | memoryview


@runtime_checkable
class Serializer(Protocol[T]):
    """What a typed view (:class:`lsm.TypedView`) needs from a serializer.

    ``encode`` and ``decode`` are the raw key-role form: if the serializer is
    used for keys, byte order of encodings must equal the order of objects.
    ``version`` (0..255) is the byte :func:`encode_value` writes in front of
    values; bump it whenever the raw layout changes.

    Raises: both methods raise :class:`~lsm.errors.SerializationError` on any
    failure (the helpers wrap other exceptions into it).

    >>> isinstance(Str(), Serializer)
    True
    """

    version: int

    def encode(self, obj: T) -> bytes:
        """Return the raw encoding of ``obj`` (no version byte)."""
        ...

    def decode(self, data: bytes) -> T:
        """Return the object whose raw encoding is ``data``."""
        ...


class _Builtin:
    """Shared constructor, ``repr`` and equality of the built-in serializers."""

    __slots__ = ("version",)
    order_preserving: ClassVar[bool] = True

    def __init__(self, *, version: int = 1) -> None:
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version must be an int, got {type(version).__name__}")
        if not 0 <= version <= 255:
            raise ValueError(f"version must be in 0..255 (one byte), got {version}")
        self.version = version

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Builtin) and type(self) is type(other) and self.version == other.version

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.version))

    def _fail(self, method: str, cause: str) -> SerializationError:
        return SerializationError(f"{type(self).__name__}.{method}: {cause}")

    def _check_buffer(self, data: object) -> None:
        if not isinstance(data, _BUFFER_TYPES):
            raise self._fail("decode", f"expected bytes, got {type(data).__name__}")


class Bytes(_Builtin):
    r"""Identity serializer for ``bytes`` (``bytearray`` and ``memoryview`` are copied).

    >>> Bytes().encode(bytearray(b"k\x00"))
    b'k\x00'
    """

    __slots__ = ()

    def encode(self, obj: Buffer) -> bytes:
        """Return ``obj`` as ``bytes``. Raises: SerializationError if not bytes-like."""
        if isinstance(obj, _BUFFER_TYPES):
            return bytes(obj)
        raise self._fail("encode", f"expected bytes, got {type(obj).__name__}")

    def decode(self, data: Buffer) -> bytes:
        """Return ``data`` as ``bytes``."""
        self._check_buffer(data)
        return bytes(data)


class Str(_Builtin):
    """``str`` as UTF-8. UTF-8 byte order is code-point order, so keys sort as ``str`` does.

    Raises: SerializationError on a non-``str``, a lone surrogate, or invalid UTF-8.

    >>> Str().encode("héllo")
    b'h\\xc3\\xa9llo'
    >>> Str().decode(b"\\xff")
    Traceback (most recent call last):
    ...
    lsm.errors.SerializationError: Str.decode: invalid UTF-8: byte 0xff at offset 0 (invalid start byte)
    """

    __slots__ = ()

    def encode(self, obj: str) -> bytes:
        """Return the UTF-8 bytes of ``obj``."""
        if not isinstance(obj, str):
            raise self._fail("encode", f"expected str, got {type(obj).__name__}")
        try:
            return obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self._fail("encode", f"not encodable as UTF-8: {exc.reason} at index {exc.start}") from exc

    def decode(self, data: Buffer) -> str:
        """Return the ``str`` whose UTF-8 bytes are ``data``."""
        self._check_buffer(data)
        try:
            return str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail("decode", _describe_utf8_error(exc)) from exc


class Int(_Builtin):
    r"""Signed integers of any size, order-preserving (the tuple layer's integer element).

    ``Int().encode(n) == Tuple().encode((n,))``; see the module docstring for the
    layout. ``bool`` is refused (it is not an integer key).

    Complexity: O(size of n).

    >>> [Int().encode(n) for n in (-256, -1, 0, 1, 300)]
    [b'\x12\xfe\xff', b'\x13\xfe', b'\x14', b'\x15\x01', b'\x16\x01,']
    >>> Int().decode(Int().encode(-10**40)) == -10**40
    True
    """

    __slots__ = ()

    def encode(self, obj: int) -> bytes:
        """Return the order-preserving encoding of ``obj``."""
        if isinstance(obj, bool) or not isinstance(obj, int):
            raise self._fail("encode", f"expected int, got {type(obj).__name__}")
        return _encode_int(obj, type(self).__name__)

    def decode(self, data: Buffer) -> int:
        """Return the integer encoded in ``data``; all of ``data`` must be used."""
        self._check_buffer(data)
        buf = data if isinstance(data, bytes) else bytes(data)
        if not buf:
            raise self._fail("decode", "empty input")
        if not _NEG_BIG <= buf[0] <= _POS_BIG:
            raise self._fail("decode", f"0x{buf[0]:02x} at offset 0 is not an integer type code")
        value, end = _decode_int(buf, 0, type(self).__name__)
        if end != len(buf):
            raise self._fail("decode", f"trailing garbage: {len(buf) - end} bytes after offset {end}")
        return value


class Json(_Builtin):
    """JSON documents as compact, key-sorted UTF-8. For values: not order-preserving.

    Round trips are JSON's: tuples come back as lists, non-``str`` dict keys as
    ``str``. NaN and infinities are refused (they are not JSON).

    >>> Json().encode({"é": [1, 2.5, None]})
    b'{"\\xc3\\xa9":[1,2.5,null]}'
    >>> Json().decode(b'{"a":')
    Traceback (most recent call last):
    ...
    lsm.errors.SerializationError: Json.decode: invalid JSON: Expecting value: line 1 column 6 (char 5)
    """

    __slots__ = ()
    order_preserving: ClassVar[bool] = False

    def encode(self, obj: Any) -> bytes:
        """Return the UTF-8 JSON text of ``obj``."""
        try:
            text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self._fail("encode", f"not encodable as UTF-8: {exc.reason}") from exc
        except (TypeError, ValueError, RecursionError) as exc:
            raise self._fail("encode", f"not JSON-serialisable: {exc}") from exc

    def decode(self, data: Buffer) -> Any:
        """Return the document encoded in ``data``."""
        self._check_buffer(data)
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail("decode", _describe_utf8_error(exc)) from exc
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise self._fail("decode", f"invalid JSON: {exc}") from exc


class Tuple(_Builtin):
    r"""Order-preserving composite keys of None, bytes, str, int and nested tuples.

    Byte order of encodings equals tuple order, with values of different types
    ordered None < bytes < str < tuple < int (FoundationDB's type-code order).
    ``encode(t)`` is a byte prefix of ``encode(t + rest)``; to scan the keys that
    start with a tuple, use :meth:`prefix_range` (not a byte-prefix scan, see
    there). ``bytearray``/``memoryview`` elements decode as ``bytes``; lists,
    floats and ``bool`` are refused. Nesting is limited to ``MAX_TUPLE_DEPTH``.

    >>> t = Tuple()
    >>> t.encode((b"a\x00b", None, ("x", -1)))
    b'\x01a\x00\xffb\x00\x00\x05\x02x\x00\x13\xfe\x00'
    >>> t.decode(t.encode(("k", (None,), 2**70)))
    ('k', (None,), 1180591620717411303424)
    """

    __slots__ = ()

    def encode(self, obj: tuple[TupleElement, ...]) -> bytes:
        """Return the order-preserving encoding of the tuple ``obj``."""
        if not isinstance(obj, tuple):
            raise self._fail("encode", f"expected tuple, got {type(obj).__name__}")
        out: list[bytes] = []
        self._pack(obj, out, 0, "")
        return b"".join(out)

    def decode(self, data: Buffer) -> tuple[TupleElement, ...]:
        """Return the tuple encoded in ``data``; all of ``data`` must be used."""
        self._check_buffer(data)
        buf = data if isinstance(data, bytes) else bytes(data)
        name = type(self).__name__
        stack: list[list[TupleElement]] = [[]]
        i, n = 0, len(buf)
        while i < n:
            code = buf[i]
            items = stack[-1]
            if code == _NULL:
                if len(stack) == 1:
                    items.append(None)
                    i += 1
                elif i + 1 < n and buf[i + 1] == 0xFF:
                    items.append(None)
                    i += 2
                else:
                    done = stack.pop()
                    stack[-1].append(tuple(done))
                    i += 1
            elif code == _BYTES or code == _STR:
                raw, i = _decode_escaped(buf, i, name)
                if code == _BYTES:
                    items.append(raw)
                else:
                    try:
                        items.append(raw.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise self._fail("decode", f"str element: {_describe_utf8_error(exc)}") from exc
            elif code == _NESTED:
                if len(stack) > MAX_TUPLE_DEPTH:
                    raise self._fail("decode", f"nesting deeper than {MAX_TUPLE_DEPTH} at offset {i}")
                stack.append([])
                i += 1
            elif _NEG_BIG <= code <= _POS_BIG:
                value, i = _decode_int(buf, i, name)
                items.append(value)
            else:
                raise self._fail("decode", f"unknown type code 0x{code:02x} at offset {i}")
        if len(stack) != 1:
            raise self._fail("decode", f"truncated: {len(stack) - 1} nested tuple(s) not terminated")
        return tuple(stack[0])

    def prefix_range(self, prefix: tuple[TupleElement, ...]) -> tuple[bytes, bytes]:
        r"""Return ``(start, stop)`` bounding exactly the keys that begin with ``prefix``.

        ``start = encode(prefix)`` (inclusive; the key ``prefix`` itself is in the
        range) and ``stop = start + b"\xff"`` (exclusive). Pass them as
        ``db.scan(start=start, stop=stop)``. A byte-prefix scan on ``encode(prefix)``
        would be wrong: ``encode((b"a",))`` is also a byte prefix of
        ``encode((b"a\x00",))``, whose next byte is the escape 0xFF, while every
        real continuation starts with a type code below 0xFF.

        >>> Tuple().prefix_range(("user",))
        (b'\x02user\x00', b'\x02user\x00\xff')
        """
        start = self.encode(prefix)
        return start, start + b"\xff"

    def _pack(self, obj: tuple[TupleElement, ...], out: list[bytes], depth: int, path: str) -> None:
        nested = depth > 0
        for index, item in enumerate(obj):
            if item is None:
                out.append(b"\x00\xff" if nested else b"\x00")
            elif isinstance(item, bool):
                raise self._fail("encode", f"element {path}[{index}]: bool is not supported")
            elif isinstance(item, int):
                out.append(_encode_int(item, type(self).__name__))
            elif isinstance(item, str):
                try:
                    raw = item.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise self._fail(
                        "encode", f"element {path}[{index}]: not encodable as UTF-8: {exc.reason}"
                    ) from exc
                out.append(b"\x02" + raw.replace(b"\x00", b"\x00\xff") + b"\x00")
            elif isinstance(item, _BUFFER_TYPES):
                out.append(b"\x01" + bytes(item).replace(b"\x00", b"\x00\xff") + b"\x00")
            elif isinstance(item, tuple):
                if depth >= MAX_TUPLE_DEPTH:
                    raise self._fail("encode", f"element {path}[{index}]: nesting deeper than {MAX_TUPLE_DEPTH}")
                out.append(b"\x05")
                self._pack(item, out, depth + 1, f"{path}[{index}]")
                out.append(b"\x00")
            else:
                raise self._fail(
                    "encode",
                    f"element {path}[{index}]: unsupported type {type(item).__name__} "
                    "(expected None, bytes, str, int or tuple)",
                )


def encode_value(serde: Serializer[T], obj: T) -> bytes:
    r"""Return ``serde``'s version byte followed by ``serde.encode(obj)`` (the value role).

    Raises: SerializationError naming the serializer class if encoding fails
    (other exceptions from a custom serializer are wrapped) or if
    ``serde.version`` is not an int in 0..255.

    >>> encode_value(Str(version=7), "hi")
    b'\x07hi'
    """
    name = type(serde).__name__
    version = _version_of(serde, name)
    return bytes((version,)) + _as_bytes(_call(serde.encode, obj, name, "encode"), name)


def decode_value(serde: Serializer[T], data: Buffer) -> T:
    r"""Check the version byte of ``data`` and return ``serde.decode`` of the rest.

    Raises: SerializationError naming the serializer class if ``data`` is empty,
    starts with another version byte, or does not decode.

    >>> decode_value(Int(), b"\x01\x15\x05")
    5
    >>> decode_value(Int(), b"\x02\x15\x05")
    Traceback (most recent call last):
    ...
    lsm.errors.SerializationError: Int: value has version byte 0x02, serializer expects 0x01
    """
    name = type(serde).__name__
    if not isinstance(data, _BUFFER_TYPES):
        raise SerializationError(f"{name}: value must be bytes, got {type(data).__name__}")
    buf = data if isinstance(data, bytes) else bytes(data)
    if not buf:
        raise SerializationError(f"{name}: empty value, missing the version byte")
    version = _version_of(serde, name)
    if buf[0] != version:
        raise SerializationError(f"{name}: value has version byte 0x{buf[0]:02x}, serializer expects 0x{version:02x}")
    value: T = _call(serde.decode, buf[1:], name, "decode")
    return value


def encode_key(serde: Serializer[T], obj: T) -> bytes:
    """Return ``serde.encode(obj)`` (the key role: no version byte), wrapping failures.

    >>> encode_key(Int(), 1)
    b'\\x15\\x01'
    """
    name = type(serde).__name__
    return _as_bytes(_call(serde.encode, obj, name, "encode"), name)


def decode_key(serde: Serializer[T], data: bytes) -> T:
    """Return ``serde.decode(data)`` (the key role), wrapping failures.

    >>> decode_key(Str(), b"k")
    'k'
    """
    value: T = _call(serde.decode, data, type(serde).__name__, "decode")
    return value


# --- helpers -----------------------------------------------------------------


def _call(fn: Callable[[Any], Any], arg: Any, name: str, method: str) -> Any:
    try:
        return fn(arg)
    except SerializationError:
        raise
    except Exception as exc:  # a custom serializer's own error: keep the one error family
        raise SerializationError(f"{name}.{method}: {type(exc).__name__}: {exc}") from exc


def _as_bytes(raw: object, name: str) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, (bytearray, memoryview)):
        return bytes(raw)
    raise SerializationError(f"{name}.encode: returned {type(raw).__name__}, expected bytes")


def _version_of(serde: object, name: str) -> int:
    version = getattr(serde, "version", None)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= 255:
        raise SerializationError(f"{name}: version must be an int in 0..255, got {version!r}")
    return version


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _describe_utf8_error(exc: UnicodeDecodeError) -> str:
    return f"invalid UTF-8: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} ({exc.reason})"


def _encode_int(n: int, name: str) -> bytes:
    if n == 0:
        return b"\x14"
    magnitude = -n if n < 0 else n
    length = (magnitude.bit_length() + 7) // 8
    if n > 0:
        body = n.to_bytes(length, "big")
        if n < _COMPACT_LIMIT:
            return bytes((_INT_ZERO + length,)) + body
        if length < 255:
            return bytes((_POS_BIG, length)) + body
        size = _length_bytes(length, name)
        return bytes((_POS_BIG, 0xFF, len(size))) + size + body
    body = ((1 << (8 * length)) - 1 - magnitude).to_bytes(length, "big")  # one's complement
    if magnitude < _COMPACT_LIMIT:
        return bytes((_INT_ZERO - length,)) + body
    if length < 255:
        return bytes((_NEG_BIG, length ^ 0xFF)) + body
    size = _length_bytes(length, name)
    return bytes((_NEG_BIG, 0x00, len(size) ^ 0xFF)) + bytes(b ^ 0xFF for b in size) + body


def _length_bytes(length: int, name: str) -> bytes:
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(size) > 255:  # 2**2040 bytes: unreachable in practice
        raise SerializationError(f"{name}.encode: integer too large ({length} bytes)")
    return size


def _take(buf: bytes, i: int, count: int, name: str, what: str) -> bytes:
    if i + count > len(buf):
        raise SerializationError(f"{name}.decode: truncated {what} at offset {i}: need {count} bytes")
    return buf[i : i + count]


def _decode_int(buf: bytes, i: int, name: str) -> tuple[int, int]:
    """Decode the integer element at ``buf[i]`` (a code in 0x0B..0x1D); return (value, end)."""
    code = buf[i]
    start = i
    i += 1
    if code == _INT_ZERO:
        return 0, i
    if _INT_ZERO < code < _POS_BIG:
        length = code - _INT_ZERO
        value = int.from_bytes(_take(buf, i, length, name, "integer"), "big")
        negative, big = False, False
    elif _NEG_BIG < code < _INT_ZERO:
        length = _INT_ZERO - code
        body = int.from_bytes(_take(buf, i, length, name, "integer"), "big")
        value = (1 << (8 * length)) - 1 - body
        negative, big = True, False
    else:
        negative, big = code == _NEG_BIG, True
        flip = 0xFF if negative else 0x00
        mark = _take(buf, i, 1, name, "integer length")[0] ^ flip
        i += 1
        if mark == 0xFF:  # extension: the length itself is length-prefixed
            count = _take(buf, i, 1, name, "integer length")[0] ^ flip
            i += 1
            size = bytes(b ^ flip for b in _take(buf, i, count, name, "integer length"))
            i += count
            length = int.from_bytes(size, "big")
            if count == 0 or size[0] == 0 or length < 255:
                raise SerializationError(f"{name}.decode: non-canonical integer length at offset {start}")
        else:
            length = mark
        body = int.from_bytes(_take(buf, i, length, name, "integer"), "big")
        value = (1 << (8 * length)) - 1 - body if negative else body
    i += length
    if (value.bit_length() + 7) // 8 != length or (value >= _COMPACT_LIMIT) != big:
        raise SerializationError(f"{name}.decode: non-canonical integer encoding at offset {start}")
    return (-value if negative else value), i


def _decode_escaped(buf: bytes, i: int, name: str) -> tuple[bytes, int]:
    """Decode the 0x00-terminated, 0x00 0xFF-escaped body after ``buf[i]``; return (raw, end)."""
    start = i + 1
    j = start
    while True:
        j = buf.find(b"\x00", j)
        if j < 0:
            kind = "bytes" if buf[i] == _BYTES else "str"
            raise SerializationError(f"{name}.decode: truncated {kind} element at offset {i}: no 0x00 terminator")
        if j + 1 < len(buf) and buf[j + 1] == 0xFF:
            j += 2
            continue
        return buf[start:j].replace(b"\x00\xff", b"\x00"), j + 1
