"""Read views: the super version every read starts from, registered views
(snapshots and iterators), and the public ``Snapshot``, ``ScanIterator`` and
``Entry`` types.

A view pins its super version: its memtables and its ``Version`` stay alive,
so the tables it reads are not deleted while it is open (doc/design.md#read-path).
``Snapshot`` calls back into the DB only through ``_get_entry``,
``_scan``, ``_scan_range``, ``_read_range``, ``_scan_chunks``,
``_snapshot_cursor`` and ``_release_view``. A scan is handed its merged
source already built, and a ``release`` callable; what it and a cursor ask
of the DB itself is declared by :class:`ScanOwner` and :class:`CursorOwner`.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, overload

from .errors import ClosedError
from .keys import check_key
from .memtable import Memtable
from .rangedel import Fragments
from .version import Version

if TYPE_CHECKING:  # annotations only: cursor sits above snapshot, tablecache beside it
    from .cursor import Cursor
    from .tablecache import TableCache

__all__ = ["CursorOwner", "Entry", "ScanIterator", "ScanOwner", "Snapshot", "SnapshotOwner", "SuperVersion", "View",
           "delete_present"]


def delete_present(store: Any, key: Any) -> None:
    """``del store[key]`` for a DB or a view of one: delete ``key`` if it is
    there, else raise KeyError, as one step. A compare-and-swap of the
    version read: a write in between makes it look again, so it never
    deletes a key another writer removed (no KeyError) or wrote anew after
    the look, as a get followed by a delete could."""
    while True:
        e = store.get_entry(key)
        if e is None:
            raise KeyError(key)
        if store.compare_and_swap(key, e.version, None) is not None:
            return


class SuperVersion:
    """Everything a read needs, swapped as one reference. Immutable."""

    __slots__ = ("mem", "imms", "version", "range_dels", "_static_frags", "__weakref__")

    def __init__(self, mem: Memtable, imms: tuple[Memtable, ...], version: Version) -> None:
        self.mem = mem
        self.imms = imms  # newest first
        self.version = version
        # Whether a range tombstone is anywhere but the active memtable (which
        # can gain one at any time: readers check ``mem.range_dels`` too). A
        # read that finds neither takes the path that ignores them.
        self.range_dels = bool(version.rd_files) or any(m.range_dels for m in imms)
        self._static_frags: tuple[Fragments, ...] | None = None  # built on first use

    def static_fragments(self) -> tuple[Fragments, ...]:
        """The fragmented range tombstones of the immutable memtables and the
        tables: fixed for this super version, so built once."""
        f = self._static_frags
        if f is None:
            out = [x for x in (m.fragments() for m in self.imms) if x is not None]
            v = self.version.fragments()
            if v is not None:
                out.append(v)
            f = self._static_frags = tuple(out)
        return f

    def fragments(self) -> list[Fragments]:
        """The fragmented range tombstones of every memtable and table (the
        active memtable's as they are now)."""
        m = self.mem.fragments()
        return ([m] if m is not None else []) + list(self.static_fragments())


_V = TypeVar("_V")
_T = TypeVar("_T")  # a get()'s default


class Entry(Generic[_V]):
    """A stored value with its version (the sequence number of its last write)
    and its expiry (wall-clock seconds since the epoch, or None). ``value`` is
    bytes (``Entry[bytes]``), or a :class:`lsm.TypedView`'s decoded value."""

    __slots__ = ("value", "version", "expires_at")

    def __init__(self, value: _V, version: int, expires_at: float | None) -> None:
        self.value = value
        self.version = version
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"Entry(value={self.value!r}, version={self.version}, expires_at={self.expires_at})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and (self.value, self.version, self.expires_at) == (
            other.value, other.version, other.expires_at)

    __hash__ = None  # type: ignore[assignment]

    def __iter__(self):
        return iter((self.value, self.version, self.expires_at))


class View:
    """A registered read point: compaction keeps every version visible at
    ``seq`` while this object is alive. An iterator's view (scan, cursor)
    also pins ``sv``, the super version it reads, so its memtables and
    tables stay until it is done; a snapshot's view pins nothing else
    (``sv`` None): the snapshot reads whatever super version is current at
    each read, which holds every version visible at ``seq`` because
    compaction and flush keep them."""

    __slots__ = ("seq", "sv", "__weakref__")

    def __init__(self, seq: int, sv: SuperVersion | None) -> None:
        self.seq = seq
        self.sv = sv


class Snapshot:
    """A frozen, read-only view of the database at the moment it was taken.

    Reads see exactly that state across later writes, flushes and
    compactions. A snapshot is a sequence number: it holds no memtable and
    no table file, only the versions compaction keeps for it (an old
    snapshot under a write load keeps the overwritten versions of the keys
    it can see, not whole files). Its scans and cursors pin the files they
    read while they are open. Close it (or leave its ``with`` block) to let
    compaction reclaim those versions; using it afterwards raises
    ClosedError, and so does using a scan or cursor made from it.
    Thread safety: may be shared between threads.
    """

    def __init__(self, db: SnapshotOwner, view: View) -> None:
        self._db = db
        self._view: View | None = view
        self._iters: weakref.WeakSet = weakref.WeakSet()  # guarded by _mu: scans and cursors, closed with it
        self._mu = threading.Lock()

    @property
    def sequence(self) -> int:
        return self._live().seq

    def _live(self) -> View:
        if self._view is None:
            raise ClosedError("snapshot is closed")
        if self._db._closed:
            raise ClosedError(f"database {self._db._path} is closed")
        return self._view

    @overload
    def get(self, key: bytes) -> bytes | None: ...
    @overload
    def get(self, key: bytes, default: _T) -> bytes | _T: ...

    def get(self, key: bytes, default: Any = None) -> Any:
        """The value of ``key`` in this snapshot, or ``default``."""
        e = self.get_entry(key)
        return default if e is None else e.value

    def get_entry(self, key: bytes) -> Entry[bytes] | None:
        """Value, version and expiry of ``key`` in this snapshot, or None."""
        view = self._live()
        db = self._db
        return db._get_entry(db._sv, check_key(key), view.seq)

    def __contains__(self, key: bytes) -> bool:
        return self.get_entry(key) is not None

    def scan(self, prefix: bytes = b"", *, start: bytes | None = None, stop: bytes | None = None,
             reverse: bool = False, keys_only: bool = False) -> ScanIterator:
        """Like ``DB.scan``, over this snapshot's frozen state."""
        view = self._live()
        db = self._db
        lo, hi = db._scan_range(prefix, start, stop, reverse, keys_only)
        if hi is not None:
            got = db._read_range(db._sv, view.seq, lo, hi, reverse)
            if got is not None:
                return self._track(db._scan_chunks(iter((got,)), keys_only, None))
        # A longer scan pins the super version it reads until it ends.
        return self._track(db._scan(db._pinned_view(view.seq), lo, hi, reverse, keys_only))

    def cursor(self, *, lower: bytes | None = None, upper: bytes | None = None) -> Cursor:
        """Like ``DB.cursor``: an :class:`lsm.Cursor` over this snapshot's
        frozen state (closed when the snapshot is).

        >>> import lsm, tempfile
        >>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
        >>> _ = db.put(b"k", b"old")
        >>> with db.snapshot() as snap:
        ...     _ = db.put(b"k", b"new")
        ...     with snap.cursor() as c:
        ...         c.seek_to_last(), c.value
        (True, b'old')
        >>> db.close()
        """
        return self._track(self._db._snapshot_cursor(self._live(), lower, upper))

    def _track(self, it: Any) -> Any:
        """Register scan or cursor ``it`` to be closed with the snapshot."""
        target = it._chunks if isinstance(it, ScanIterator) else it
        with self._mu:
            if self._view is None:  # closed since the scan or cursor was made
                closed = ClosedError("snapshot is closed")
                target._shut(closed)
                raise closed
            self._iters.add(target)
        return it

    def close(self) -> None:
        """Release the snapshot (idempotent); later use raises ClosedError,
        also from its scans and cursors."""
        with self._mu:
            view, self._view = self._view, None
            iters = list(self._iters)
        if view is not None:
            for it in iters:
                it._shut(ClosedError("snapshot is closed"))
            if not self._db._closed:
                self._db._release_view(view)

    def __enter__(self) -> Snapshot:
        self._live()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Raiser:
    """An iterator that raises ``error`` on every call: the chunk a closed scan
    hands its ``itertools.chain``, which keeps calling it (a chain forgets an
    input only when it ends, not when it raises)."""

    __slots__ = ("error",)

    def __init__(self, error: ClosedError) -> None:
        self.error = error

    def __iter__(self) -> _Raiser:
        return self

    def __next__(self):
        raise ClosedError(str(self.error))


class ScanOwner(Protocol):
    """What a scan (:class:`ScanChunks`) asks of the DB it reads: whether the
    DB is closed, checked once per chunk, and the error that then ends the
    scan. Its entries come from a source built before it starts."""

    _closed: bool

    def _closed_error(self) -> ClosedError: ...


class CursorOwner(ScanOwner, Protocol):
    """What a :class:`lsm.Cursor` asks of the DB it reads: besides closure,
    the window sources it merges from each seek, the table readers its seek
    chunks read, a point read for ``Cursor.entry``, and the release of its
    view when it closes."""

    _tables: TableCache

    def _window_sources(self, sv: SuperVersion, seq: int, lo: bytes, hi: bytes | None, reverse: bool,
                        now: float | None = None) -> list: ...

    def _get_entry(self, sv: SuperVersion, key: bytes, seq: int, count: int = 0,
                   now: float | None = None) -> Entry[bytes] | None: ...

    def _release_view(self, view: View) -> None: ...


class SnapshotOwner(ScanOwner, Protocol):
    """What a :class:`Snapshot` asks of the DB it was taken from: its name
    and closure, the current super version and a point read at the
    snapshot's sequence, a scan's bounds and its short-range read, a view
    pinned at the snapshot's sequence for a longer scan or a cursor, and the
    release of that view."""

    _path: str
    _sv: SuperVersion

    def _get_entry(self, sv: SuperVersion, key: bytes, seq: int, count: int = 0,
                   now: float | None = None) -> Entry[bytes] | None: ...

    def _scan_range(self, prefix: bytes, start: bytes | None, stop: bytes | None, reverse: bool,
                    keys_only: bool) -> tuple[bytes, bytes | None]: ...

    def _read_range(self, sv: SuperVersion, seq: int, lo: bytes, hi: bytes,
                    reverse: bool) -> tuple[list, Sequence] | None: ...

    def _scan_chunks(self, gen: Iterator[tuple[list, Sequence]], keys_only: bool, release: Any) -> ScanIterator: ...

    def _scan(self, view: View, lo: bytes, hi: bytes | None, reverse: bool, keys_only: bool,
              owned: bool = True) -> ScanIterator: ...

    def _pinned_view(self, seq: int) -> View: ...

    def _snapshot_cursor(self, view: View, lower: bytes | None, upper: bytes | None) -> Cursor: ...

    def _release_view(self, view: View) -> None: ...


_OPEN, _EXHAUSTED, _CLOSED = 0, 1, 2


class ScanChunks:
    """The input of a :class:`ScanIterator`: merged chunks of ``(keys, values)``
    from ``gen``, handed out one C-level iterator (a ``zip``) per chunk.

    Closure is checked once per chunk; :meth:`close` (the iterator's, or the
    DB's when it closes) also empties the chunk being iterated, by clearing
    its key list (a ``zip`` over a list stops when the list is empty), so no
    entry is returned after a close.
    """

    __slots__ = ("db", "gen", "keys_only", "current", "state", "release", "raiser", "__weakref__")

    def __init__(self, db: ScanOwner, gen: Iterator[tuple[list, Sequence]], keys_only: bool,
                 release: Callable[[], None] | None) -> None:
        self.db = db
        self.gen = gen
        self.keys_only = keys_only
        self.current: list = []
        self.state = _OPEN
        self.release = release  # called once when the scan ends or closes (releases its view)
        self.raiser: _Raiser | None = None

    def __iter__(self) -> ScanChunks:
        return self

    def __next__(self):
        if self.state is not _OPEN:
            if self.state is _EXHAUSTED:
                raise StopIteration
            return self.raiser
        db = self.db
        if db._closed:
            self.close(db._closed_error())
            return self.raiser
        try:
            keys, values = next(self.gen)
        except StopIteration:
            self._end(_EXHAUSTED)
            raise
        except ValueError:
            if db._closed:  # a table's map was closed under the scan by DB.close()
                self.close(db._closed_error())
                return self.raiser
            raise
        self.current = keys
        return iter(keys) if self.keys_only else zip(keys, values)

    def close(self, error: ClosedError | None = None) -> None:
        """Stop the scan: later calls raise ``error`` (default: "scan iterator is closed")."""
        if self.state is _OPEN:
            self.raiser = _Raiser(error or ClosedError("scan iterator is closed"))
            self.current.clear()
            self._end(_CLOSED)

    _shut = close  # what DB.close() and Snapshot.close() call, on scans and cursors alike

    def _end(self, state: int) -> None:
        self.state = state
        self.gen = iter(())
        release, self.release = self.release, None
        if release is not None:
            release()


class ScanIterator(itertools.chain):
    """Iterator returned by ``scan()``: ``(key, value)`` pairs (bare keys with
    ``keys_only``) in scan order. Its view was fixed when ``scan()`` was
    called. ``close()`` releases the view early (also on leaving a ``with``
    block); using it after its ``close()`` or the DB's raises ClosedError.

    An ``itertools.chain`` of per-chunk iterators: ``next()`` runs in C, and
    the Python code runs once per chunk of a few hundred entries.
    Thread safety: none (like any iterator); use one per thread.
    """

    __slots__ = ("_chunks",)
    _chunks: ScanChunks

    @classmethod
    def _start(cls, chunks: ScanChunks) -> ScanIterator:
        # from_iterable makes an instance of cls (typeshed types it as a plain chain)
        it = cast(ScanIterator, cls.from_iterable(chunks))
        it._chunks = chunks
        return it

    def close(self) -> None:
        """Release the iterator's view early (idempotent)."""
        self._chunks.close()

    def __enter__(self) -> ScanIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
