"""Typed views: the DB's methods with keys and values run through
serializers, so callers work with ``str``, ``int``, tuples or JSON objects.

Keys use the serializer's raw, order-preserving form (no version byte), so a
typed scan comes back in the key type's natural order. Values carry the
serializer's version byte in front; a value written by another serializer or
version raises :class:`~lsm.errors.SerializationError` instead of decoding
wrongly.

``prefix`` in a typed scan: for ``Tuple`` keys pass a tuple, and the scan
covers exactly the keys that begin with those elements
(``Tuple.prefix_range``); for ``Str``/``Bytes`` keys pass a string/bytes
prefix. Other key serializers take ``start``/``stop`` only.

>>> import lsm, tempfile
>>> from lsm.serde import Int, Json, Str, Tuple
>>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
>>> users = db.typed(Tuple(), Json())
>>> _ = users.put(("user", 2), {"name": "grace"})
>>> _ = users.put(("user", 10), {"name": "ada"})
>>> [k for k, _ in users.scan(("user",))]          # 2 before 10: numeric order
[('user', 2), ('user', 10)]
>>> db.typed(Int(), Str()).put(-5, "minus five") > 0
True
>>> db.close()
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .serde import Bytes, Serializer, Str, Tuple, decode_key, decode_value, encode_key, encode_value
from .snapshot import Entry, Snapshot, delete_present

if TYPE_CHECKING:  # annotations only: lsm.db imports this module
    from .db import DB

__all__ = ["TypedBatch", "TypedSnapshot", "TypedView"]

K = TypeVar("K")
V = TypeVar("V")
_T = TypeVar("_T")  # a get()'s default
class _Missing(enum.Enum):
    """get()'s default where None could be a value: an enum member, so that
    ``v is _MISSING`` narrows ``v``'s type for a type checker."""
    MISSING = 0


_MISSING = _Missing.MISSING


def _range(key_serde: Serializer, prefix: Any, start: Any, stop: Any) -> dict:
    """Translate a typed prefix/start/stop into the DB's byte arguments."""
    args: dict[str, Any] = {}
    lo = None if start is None else encode_key(key_serde, start)
    hi = None if stop is None else encode_key(key_serde, stop)
    if prefix is not None:
        if isinstance(key_serde, Tuple):
            if not isinstance(prefix, tuple):
                raise TypeError(f"prefix for Tuple keys must be a tuple, not {type(prefix).__name__}")
            p_lo, p_hi = key_serde.prefix_range(prefix)
            lo = p_lo if lo is None else max(lo, p_lo)
            hi = p_hi if hi is None else min(hi, p_hi)
        elif isinstance(key_serde, (Str, Bytes)):
            args["prefix"] = encode_key(key_serde, prefix)
        else:
            raise TypeError(f"prefix scans need Tuple, Str or Bytes keys, not {type(key_serde).__name__}; "
                            "use start/stop")
    if lo is not None:
        args["start"] = lo
    if hi is not None:
        args["stop"] = hi
    return args


def _check_serializer(serde: object, name: str, *, versioned: bool) -> None:
    """Raise TypeError/ValueError naming ``name`` unless ``serde`` can serve as
    a :class:`~lsm.serde.Serializer`: callable ``encode`` and ``decode``,
    and, for values (``versioned``), a ``version`` int in 0..255 (the byte
    written in front of each value; keys carry none)."""
    for method in ("encode", "decode"):
        if not callable(getattr(serde, method, None)):
            raise TypeError(f"{name} must be a serializer with encode() and decode() methods "
                            f"(lsm.serde.Serializer), not {type(serde).__name__}")
    if versioned:
        version = getattr(serde, "version", None)
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"{name}.version must be an int in 0..255 (the byte in front of each value), "
                            f"not {type(version).__name__}")
        if not 0 <= version <= 255:
            raise ValueError(f"{name}.version must be in 0..255; got {version}")


class _TypedReader(Generic[K, V]):
    """Shared read methods over a DB or a Snapshot."""

    def __init__(self, source: DB | Snapshot, key_serde: Serializer[K], value_serde: Serializer[V]) -> None:
        _check_serializer(key_serde, "key_serde", versioned=False)
        _check_serializer(value_serde, "value_serde", versioned=True)
        self._src = source
        self.key_serde = key_serde
        self.value_serde = value_serde

    def _k(self, key: K) -> bytes:
        return encode_key(self.key_serde, key)

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: _T) -> V | _T: ...

    def get(self, key: K, default: Any = None) -> Any:
        """The decoded value of ``key``, or ``default``."""
        raw = self._src.get(self._k(key), _MISSING)
        return default if raw is _MISSING else decode_value(self.value_serde, raw)

    def get_entry(self, key: K) -> Entry[V] | None:
        """Like ``DB.get_entry``, with ``value`` decoded."""
        e = self._src.get_entry(self._k(key))
        if e is None:
            return None
        return Entry(decode_value(self.value_serde, e.value), e.version, e.expires_at)

    def scan(self, prefix: Any = None, *, start: K | None = None, stop: K | None = None,
             reverse: bool = False, keys_only: bool = False) -> Iterator:
        """Decoded ``(key, value)`` pairs (or keys) in the key type's order."""
        it = self._src.scan(**_range(self.key_serde, prefix, start, stop), reverse=reverse,
                            keys_only=keys_only)
        return _decoded(it, self.key_serde, self.value_serde, keys_only)

    def __getitem__(self, key: K) -> V:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __contains__(self, key: K) -> bool:
        return self._src.get(self._k(key), _MISSING) is not _MISSING


def _decoded(it, key_serde, value_serde, keys_only: bool) -> Iterator:
    try:
        if keys_only:
            for k in it:
                yield decode_key(key_serde, k)
        else:
            for k, v in it:
                yield decode_key(key_serde, k), decode_value(value_serde, v)
    finally:
        it.close()


class TypedView(_TypedReader[K, V]):
    """The DB's methods (``get``, ``get_entry``, ``put``, ``delete``,
    ``compare_and_swap``, ``scan``, ``write_batch``, ``snapshot``) with typed
    keys and values. Thread safety: as the DB's.

    Raises: SerializationError when a key or value does not encode, or a
    stored value does not decode with ``value_serde``.
    """

    def __init__(self, db: DB, key_serde: Serializer[K], value_serde: Serializer[V]) -> None:
        super().__init__(db, key_serde, value_serde)
        self.db = db

    def put(self, key: K, value: V, *, ttl: float | None = None, sync: bool | None = None) -> int:
        """``DB.put`` with an encoded key and value; returns the version."""
        return self.db.put(self._k(key), encode_value(self.value_serde, value), ttl=ttl, sync=sync)

    def delete(self, key: K, *, sync: bool | None = None) -> int:
        """``DB.delete`` of an encoded key; returns the version."""
        return self.db.delete(self._k(key), sync=sync)

    def delete_range(self, start: K, stop: K, *, sync: bool | None = None) -> int:
        """``DB.delete_range`` of the encoded keys: every key whose encoding
        lies in ``[encode(start), encode(stop))`` (for an order-preserving
        key serializer, every key ``start <= k < stop``)."""
        return self.db.delete_range(self._k(start), self._k(stop), sync=sync)

    def compare_and_swap(self, key: K, expected_version: int, value: V | None, *,
                         ttl: float | None = None, sync: bool | None = None) -> int | None:
        """``DB.compare_and_swap`` with an encoded key and value (None deletes)."""
        raw = None if value is None else encode_value(self.value_serde, value)
        return self.db.compare_and_swap(self._k(key), expected_version, raw, ttl=ttl, sync=sync)

    def write_batch(self, *, sync: bool | None = None) -> TypedBatch[K, V]:
        """A typed batch, applied atomically when its ``with`` block exits cleanly."""
        return TypedBatch(self, self.db.write_batch(sync=sync))

    def snapshot(self) -> TypedSnapshot[K, V]:
        """A typed, frozen, read-only view; close it when done."""
        return TypedSnapshot(self.db.snapshot(), self.key_serde, self.value_serde)

    def __setitem__(self, key: K, value: V) -> None:
        self.put(key, value)

    def __delitem__(self, key: K) -> None:
        delete_present(self, key)


class TypedBatch(Generic[K, V]):
    """A WriteBatch taking typed keys and values. Encoding errors raise at the
    ``put`` that caused them, and the batch is then discarded by ``with``."""

    def __init__(self, view: TypedView[K, V], batch) -> None:
        self._view = view
        self.batch = batch

    def put(self, key: K, value: V, *, ttl: float | None = None) -> TypedBatch[K, V]:
        self.batch.put(self._view._k(key), encode_value(self._view.value_serde, value), ttl=ttl)
        return self

    def delete(self, key: K) -> TypedBatch[K, V]:
        self.batch.delete(self._view._k(key))
        return self

    def delete_range(self, start: K, stop: K) -> TypedBatch[K, V]:
        self.batch.delete_range(self._view._k(start), self._view._k(stop))
        return self

    def __len__(self) -> int:
        return len(self.batch)

    def __enter__(self) -> TypedBatch[K, V]:
        self.batch.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.batch.__exit__(*exc)


class TypedSnapshot(_TypedReader[K, V]):
    """A frozen typed view (``get``, ``get_entry``, ``scan``); close it when done."""

    def __init__(self, snap: Snapshot, key_serde: Serializer[K], value_serde: Serializer[V]) -> None:
        super().__init__(snap, key_serde, value_serde)
        self.snapshot = snap

    def close(self) -> None:
        self.snapshot.close()

    def __enter__(self) -> TypedSnapshot[K, V]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
