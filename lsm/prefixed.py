"""Namespaces: ``db.prefixed(b"users:")`` is a view of the keys that start
with ``b"users:"``, with the whole key/value API and keys relative to the
prefix (plyvel's ``prefixed_db``).

Every key going in gets the prefix in front; every key coming out (scans,
cursors) has it taken off. Ranges (``scan``'s ``prefix``/``start``/``stop``,
a cursor's ``lower``/``upper``, ``delete_range``, the size estimates) are
relative to the namespace and never leave it. A namespace holds no state of
its own: it is as thread-safe as its DB, sees what the DB sees, and raises
``ClosedError`` once the DB is closed. Views nest (``prefixed`` of a
prefixed view joins the prefixes) and combine with typed views
(``typed(...)`` of a prefixed view).

>>> import lsm, tempfile
>>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
>>> users = db.prefixed(b"users:")
>>> _ = users.put(b"1", b"ada")
>>> with users.write_batch() as batch:
...     _ = batch.put(b"2", b"grace").put(b"3", b"linus")
>>> users[b"2"], db[b"users:2"], list(users.scan(keys_only=True))
(b'grace', b'grace', [b'1', b'2', b'3'])
>>> with users.snapshot() as snap:
...     _ = users.delete(b"1")
...     b"1" in snap, b"1" in users
(True, False)
>>> admins = users.prefixed(b"admin:")             # b"users:admin:..."
>>> _ = admins.put(b"root", b"x")
>>> list(db.scan(b"users:admin:", keys_only=True))
[b'users:admin:root']
>>> db.close()
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .batch import WriteBatch
from .dbstate import DBState
from .iterators import prefix_successor
from .keys import MAX_KEY_BYTES, check_key
from .sizes import check_ranges
from .snapshot import Entry, Snapshot, delete_present
from .typed import TypedView

if TYPE_CHECKING:  # annotations only: lsm.db imports this module
    from .db import DB
    from .serde import Serializer
    from .typed import K, V

__all__ = ["PrefixedBatch", "PrefixedCursor", "PrefixedDB", "PrefixedSnapshot"]

_T = TypeVar("_T")  # a get()'s default

class _Missing(enum.Enum):
    """get()'s default where None could be a value: an enum member, so that
    ``v is _MISSING`` narrows ``v``'s type for a type checker."""
    MISSING = 0


_MISSING = _Missing.MISSING


def _join(prefix: bytes, key: object, name: str) -> bytes:
    """``prefix + key``, ``key`` checked. Raises: TypeError/ValueError naming ``name``."""
    if type(key) is not bytes:
        key = check_key(key, name)
    if len(prefix) + len(key) > MAX_KEY_BYTES:
        raise ValueError(f"{name} is {len(key)} bytes; with the {len(prefix)}-byte prefix "
                         f"the limit is {MAX_KEY_BYTES - len(prefix)}")
    return prefix + key


class _Namespace:
    """The reads shared by :class:`PrefixedDB` and :class:`PrefixedSnapshot`
    over ``_src``, a DB or a Snapshot."""

    _src: Any
    _prefix: bytes

    def _setup(self, src: Any, prefix: bytes) -> None:
        self._src = src
        self._prefix = prefix
        self._n = len(prefix)
        self._end = prefix_successor(prefix) if prefix else None  # the namespace is [prefix, _end)

    @property
    def prefix(self) -> bytes:
        """The whole prefix of this view (nested prefixes joined)."""
        return self._prefix

    @overload
    def get(self, key: bytes) -> bytes | None: ...
    @overload
    def get(self, key: bytes, default: _T) -> bytes | _T: ...

    def get(self, key: bytes, default: Any = None) -> Any:
        """The value of ``key`` in the namespace, or ``default`` when absent,
        deleted or expired."""
        return self._src.get(_join(self._prefix, key, "key"), default)

    def get_entry(self, key: bytes) -> Entry[bytes] | None:
        """Value, version and expiry of ``key`` in the namespace, or None."""
        return self._src.get_entry(_join(self._prefix, key, "key"))

    def __contains__(self, key: object) -> bool:
        return self._src.get(_join(self._prefix, key, "key"), _MISSING) is not _MISSING

    def __getitem__(self, key: bytes) -> bytes:
        v = self._src.get(_join(self._prefix, key, "key"), _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def scan(self, prefix: bytes = b"", *, start: bytes | None = None, stop: bytes | None = None,
             reverse: bool = False, keys_only: bool = False) -> Iterator:
        """``DB.scan`` within the namespace: ``prefix``, ``start`` and
        ``stop`` are relative to it, and keys come back without its prefix.
        The iterator has ``close()`` and is a context manager, as the DB's."""
        p = self._prefix
        it = self._src.scan(_join(p, prefix, "prefix"),
                            start=None if start is None else _join(p, start, "start"),
                            stop=None if stop is None else _join(p, stop, "stop"),
                            reverse=reverse, keys_only=keys_only)
        if not self._n:
            return it
        n = self._n
        return _StrippedScan(it, (lambda k: k[n:]) if keys_only else (lambda kv: (kv[0][n:], kv[1])))

    def cursor(self, *, lower: bytes | None = None, upper: bytes | None = None) -> PrefixedCursor:
        """A cursor (``DB.cursor``) confined to the namespace, ``lower`` and
        ``upper`` relative to it; its keys come without the prefix.
        Raises: NotImplementedError when the DB has no ``cursor``."""
        make = getattr(self._src, "cursor", None)
        if make is None:
            raise NotImplementedError(f"{type(self._src).__name__} has no cursor() in this version of lsm")
        p = self._prefix
        lo = p if lower is None else _join(p, lower, "lower")
        hi = self._end if upper is None else _join(p, upper, "upper")
        return PrefixedCursor(make(lower=lo, upper=hi), p)

    def _range(self, start: object, stop: object, what: str = "") -> tuple[bytes, bytes | None]:
        """Absolute ``[lo, hi)`` of a relative range (None: the namespace's edge)."""
        p = self._prefix
        lo = p if start is None else _join(p, start, f"{what}start")
        hi = self._end if stop is None else _join(p, stop, f"{what}stop")
        return lo, hi


class _StrippedScan:
    """A scan iterator whose entries go through ``strip`` (the prefix taken
    off the keys); ``close()`` and ``with`` reach the DB's iterator."""

    __slots__ = ("_it", "_next")

    def __init__(self, it: Any, strip: Any) -> None:
        self._it = it
        self._next = map(strip, it).__next__

    def __iter__(self) -> _StrippedScan:
        return self

    def __next__(self) -> Any:
        return self._next()

    def close(self) -> None:
        """Release the scan's view early (idempotent)."""
        self._it.close()

    def __enter__(self) -> _StrippedScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrefixedDB(_Namespace, MutableMapping):
    """The keys of a DB that start with ``prefix``, with the prefix taken
    off: ``get``, ``get_entry``, ``put``, ``delete``, ``compare_and_swap``,
    ``write_batch``/``write``, ``scan``, ``snapshot``, ``typed``,
    ``prefixed``, the size estimates, the mapping sugar (``in``, ``[]``,
    ``del``, ``len``, iteration), and ``cursor``/``delete_range`` where the
    DB has them. Obtain one with ``db.prefixed(prefix)``.

    Arguments and results are the DB's, with keys relative to the prefix; a
    key whose length with the prefix passes the key limit raises ValueError.
    Thread safety, views and errors: as the DB's (module docstring).
    """

    def __init__(self, db: DB | PrefixedDB, prefix: bytes) -> None:
        prefix = check_key(prefix, "prefix")
        if isinstance(db, PrefixedDB):
            prefix = _join(db.prefix, prefix, "prefix")
            db = db.db
        elif not isinstance(db, DBState):
            raise TypeError(f"db must be an lsm.DB, not {type(db).__name__}")
        self._setup(db, prefix)

    @property
    def db(self) -> DB:
        """The database this namespace is a view of."""
        return self._src

    def __repr__(self) -> str:
        return f"<lsm.PrefixedDB {self._prefix!r} of {self._src.path}>"

    def multi_get(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """``DB.multi_get`` of ``keys`` in the namespace: their values (None
        where absent) from one view, in the order given.

        Raises: TypeError/ValueError naming the bad key (``keys[i]``)."""
        if isinstance(keys, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"keys must be an iterable of keys, not {type(keys).__name__}")
        prefix = self._prefix
        return self._src.multi_get([_join(prefix, k, f"keys[{i}]") for i, k in enumerate(keys)])

    # -- writes -----------------------------------------------------------------

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None, sync: bool | None = None) -> int:
        """``DB.put`` of ``key`` in the namespace; returns the write's version."""
        return self._src.put(_join(self._prefix, key, "key"), value, ttl=ttl, sync=sync)

    def delete(self, key: bytes, *, sync: bool | None = None) -> int:
        """``DB.delete`` of ``key`` in the namespace; returns the tombstone's version."""
        return self._src.delete(_join(self._prefix, key, "key"), sync=sync)

    def compare_and_swap(self, key: bytes, expected_version: int, value: bytes | None, *,
                         ttl: float | None = None, sync: bool | None = None) -> int | None:
        """``DB.compare_and_swap`` of ``key`` in the namespace."""
        return self._src.compare_and_swap(_join(self._prefix, key, "key"), expected_version, value,
                                          ttl=ttl, sync=sync)

    def write_batch(self, *, sync: bool | None = None) -> PrefixedBatch:
        """A batch whose keys get the prefix, applied atomically when its
        ``with`` block exits cleanly (discarded if it raises)."""
        if sync is not None and type(sync) is not bool:
            raise TypeError(f"sync must be a bool or None, not {type(sync).__name__}")
        self._src._check_open()
        b = PrefixedBatch(self._prefix)
        b._db = self._src
        b._sync = sync
        return b

    def write(self, batch: WriteBatch, *, sync: bool | None = None) -> int:
        """Apply ``batch`` atomically with its keys in the namespace: a plain
        :class:`lsm.WriteBatch` (relative keys) gets the prefix; a batch from
        this namespace's ``write_batch()`` already has it. Returns the last
        sequence it used (0 if empty).
        Raises: ValueError for a batch of another namespace."""
        if isinstance(batch, PrefixedBatch):
            if batch.prefix != self._prefix:
                raise ValueError(f"batch was built for the prefix {batch.prefix!r}, not {self._prefix!r}")
        elif isinstance(batch, WriteBatch):
            batch = batch._with_prefix(self._prefix)
        else:
            raise TypeError(f"batch must be a WriteBatch, not {type(batch).__name__}")
        return self._src.write(batch, sync=sync)

    def delete_range(self, start: bytes | None = None, stop: bytes | None = None, **options: Any) -> Any:
        """``DB.delete_range`` within the namespace: ``[start, stop)``
        relative to it (None: from its first key, to past its last).
        Raises: NotImplementedError when the DB has no ``delete_range``."""
        fn = getattr(self._src, "delete_range", None)
        if fn is None:
            raise NotImplementedError(f"{type(self._src).__name__} has no delete_range() in this version of lsm")
        lo, hi = self._range(start, stop)
        return fn(lo, hi, **options)

    # -- views ------------------------------------------------------------------

    def snapshot(self) -> PrefixedSnapshot:
        """A frozen view of the namespace (``DB.snapshot``); close it when done."""
        return PrefixedSnapshot(self._src.snapshot(), self._prefix)

    def prefixed(self, prefix: bytes) -> PrefixedDB:
        """The namespace ``self.prefix + prefix``."""
        self._src._check_open()
        return PrefixedDB(self, prefix)

    def typed(self, key_serde: Serializer[K], value_serde: Serializer[V]) -> TypedView[K, V]:
        """A :class:`lsm.TypedView` over this namespace: typed keys encoded,
        then prefixed."""
        self._src._check_open()
        return TypedView(self, key_serde, value_serde)  # type: ignore[arg-type]

    # -- sizes ----------------------------------------------------------------------

    def approximate_sizes(self, ranges: Iterable[tuple[bytes | None, bytes | None]]) -> list[int]:
        """``DB.approximate_sizes`` of ranges relative to the namespace (None:
        its edges)."""
        absolute = [self._range(lo, hi, f"ranges[{i}] ") for i, (lo, hi) in enumerate(check_ranges(ranges))]
        return self._src.approximate_sizes(absolute)

    def approximate_count(self, start: bytes | None = None, stop: bytes | None = None) -> int:
        """``DB.approximate_count`` of a range relative to the namespace."""
        return self._src.approximate_count(*self._range(start, stop))

    # -- mapping sugar ------------------------------------------------------------------

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        delete_present(self, key)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.scan(keys_only=True))

    def __len__(self) -> int:
        """Number of live keys in the namespace. Complexity: a scan of it."""
        return sum(1 for _ in self.scan(keys_only=True))


class PrefixedSnapshot(_Namespace):
    """A snapshot of a namespace (``PrefixedDB.snapshot()``): ``get``,
    ``get_entry``, ``in``, ``[]``, ``scan`` and ``cursor`` (where snapshots
    have one) at the moment it was taken, keys relative to the prefix.
    Close it (or leave its ``with`` block) to release what it pins."""

    def __init__(self, snapshot: Snapshot, prefix: bytes) -> None:
        self._setup(snapshot, check_key(prefix, "prefix"))

    @property
    def snapshot(self) -> Snapshot:
        """The DB snapshot under this view."""
        return self._src

    @property
    def sequence(self) -> int:
        """The sequence number the snapshot reads at."""
        return self._src.sequence

    def close(self) -> None:
        """Release the snapshot (idempotent); later use raises ClosedError."""
        self._src.close()

    def __enter__(self) -> PrefixedSnapshot:
        self._src.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrefixedBatch(WriteBatch):
    """A :class:`lsm.WriteBatch` that puts ``prefix`` in front of every key
    (``PrefixedDB.write_batch()``). It holds whole keys, so ``DB.write``
    applies it as it is."""

    __slots__ = ("_prefix",)

    def __init__(self, prefix: bytes = b"") -> None:
        super().__init__()
        self._prefix = check_key(prefix, "prefix")

    @property
    def prefix(self) -> bytes:
        """The prefix every key of this batch gets."""
        return self._prefix

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> PrefixedBatch:
        """Queue ``prefix + key = value``."""
        super().put(_join(self._prefix, key, "key"), value, ttl=ttl)
        return self

    def delete(self, key: bytes) -> PrefixedBatch:
        """Queue a deletion of ``prefix + key``."""
        super().delete(_join(self._prefix, key, "key"))
        return self

    def delete_range(self, start: bytes, stop: bytes) -> PrefixedBatch:
        """Queue ``WriteBatch.delete_range`` of ``[prefix + start, prefix + stop)``,
        where batches have it. Raises: NotImplementedError otherwise."""
        fn = getattr(super(), "delete_range", None)
        if fn is None:
            raise NotImplementedError("WriteBatch has no delete_range() in this version of lsm")
        fn(_join(self._prefix, start, "start"), _join(self._prefix, stop, "stop"))
        return self

    def __repr__(self) -> str:
        return f"<PrefixedBatch {self._prefix!r} {len(self.ops)} ops>"


class PrefixedCursor:
    """A cursor (``DB.cursor``) confined to a namespace: ``seek`` and
    ``seek_for_prev`` take keys relative to it, ``key`` comes without the
    prefix; ``valid``, ``value``, ``entry``, ``seek_to_first``,
    ``seek_to_last``, ``next``, ``prev`` and ``close`` are the cursor's."""

    __slots__ = ("_c", "_prefix", "_n")

    def __init__(self, cursor: Any, prefix: bytes) -> None:
        self._c = cursor
        self._prefix = prefix
        self._n = len(prefix)

    @property
    def valid(self) -> bool:
        """Whether the cursor is at an entry."""
        return self._c.valid

    @property
    def key(self) -> bytes:
        """The key at the cursor, without the prefix."""
        return self._c.key[self._n:]

    @property
    def value(self) -> bytes:
        """The value at the cursor."""
        return self._c.value

    @property
    def entry(self) -> Entry[bytes]:
        """The value at the cursor with its version and expiry."""
        return self._c.entry

    def seek(self, key: bytes) -> bool:
        """Position at the first key >= ``key`` in the namespace."""
        return self._c.seek(_join(self._prefix, key, "key"))

    def seek_for_prev(self, key: bytes) -> bool:
        """Position at the last key <= ``key`` in the namespace."""
        return self._c.seek_for_prev(_join(self._prefix, key, "key"))

    def seek_to_first(self) -> bool:
        """Position at the namespace's first key (>= ``lower``)."""
        return self._c.seek_to_first()

    def seek_to_last(self) -> bool:
        """Position at the namespace's last key (< ``upper``)."""
        return self._c.seek_to_last()

    def next(self) -> bool:
        """Move to the next key."""
        return self._c.next()

    def prev(self) -> bool:
        """Move to the previous key."""
        return self._c.prev()

    def close(self) -> None:
        """Release the cursor (idempotent)."""
        self._c.close()

    def __enter__(self) -> PrefixedCursor:
        self._c.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PrefixedCursor {self._prefix!r} over {self._c!r}>"
