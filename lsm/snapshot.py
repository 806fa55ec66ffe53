"""Read views: the super version every read starts from, registered views
(snapshots and iterators), and the public ``Snapshot``, ``ScanIterator`` and
``Entry`` types.

A view pins its super version: its memtables and its ``Version`` stay alive,
so the tables it reads are not deleted while it is open (doc/design.md#read-path).
These classes call back into the DB only through ``_get_entry``,
``_iterate`` and ``_release_view``.
"""

from __future__ import annotations

from typing import Any

from .errors import ClosedError
from .keys import check_key
from .memtable import Memtable
from .version import Version

__all__ = ["Entry", "ScanIterator", "Snapshot", "SuperVersion", "View"]


class SuperVersion:
    """Everything a read needs, swapped as one reference. Immutable."""

    __slots__ = ("mem", "imms", "version", "__weakref__")

    def __init__(self, mem: Memtable, imms: tuple[Memtable, ...], version: Version) -> None:
        self.mem = mem
        self.imms = imms  # newest first
        self.version = version


class Entry:
    """A stored value with its version (the sequence number of its last write)
    and its expiry (wall-clock seconds since the epoch, or None)."""

    __slots__ = ("value", "version", "expires_at")

    def __init__(self, value: bytes, version: int, expires_at: float | None) -> None:
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
    """A registered read point (snapshot or iterator): compaction keeps every
    version visible at ``seq`` while this object is alive."""

    __slots__ = ("seq", "sv", "__weakref__")

    def __init__(self, seq: int, sv: SuperVersion) -> None:
        self.seq = seq
        self.sv = sv


class Snapshot:
    """A frozen, read-only view of the database at the moment it was taken.

    Reads see exactly that state across later writes, flushes and
    compactions. Close it (or leave its ``with`` block) to let compaction
    reclaim what it pins; using it afterwards raises ClosedError.
    Thread safety: may be shared between threads.
    """

    def __init__(self, db: Any, view: View) -> None:
        self._db = db
        self._view: View | None = view

    @property
    def sequence(self) -> int:
        return self._live().seq

    def _live(self) -> View:
        if self._view is None:
            raise ClosedError("snapshot is closed")
        if self._db._closed:
            raise ClosedError(f"database {self._db._path} is closed")
        return self._view

    def get(self, key: bytes, default=None):
        """The value of ``key`` in this snapshot, or ``default``."""
        e = self.get_entry(key)
        return default if e is None else e.value

    def get_entry(self, key: bytes) -> Entry | None:
        """Value, version and expiry of ``key`` in this snapshot, or None."""
        view = self._live()
        return self._db._get_entry(view.sv, check_key(key), view.seq)

    def __contains__(self, key: bytes) -> bool:
        return self.get_entry(key) is not None

    def scan(self, prefix: bytes = b"", *, start: bytes | None = None, stop: bytes | None = None,
             reverse: bool = False, keys_only: bool = False) -> "ScanIterator":
        """Like ``DB.scan``, over this snapshot's frozen state."""
        return ScanIterator(self._db, self._live(), prefix, start, stop, reverse, keys_only, owned=False)

    def close(self) -> None:
        """Release the snapshot (idempotent); later use raises ClosedError."""
        if self._view is not None:
            view, self._view = self._view, None
            if not self._db._closed:
                self._db._release_view(view)

    def __enter__(self) -> "Snapshot":
        self._live()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScanIterator:
    """Iterator returned by ``scan()``. Its view was fixed when ``scan()`` was
    called. ``close()`` releases the view early; using it after its ``close()``
    or the DB's raises ClosedError."""

    __slots__ = ("_db", "_view", "_it", "_owned", "_exhausted")

    def __init__(self, db: Any, view: View, prefix: bytes, start: bytes | None, stop: bytes | None,
                 reverse: bool, keys_only: bool, owned: bool = True) -> None:
        self._db = db
        self._view: View | None = view
        self._owned = owned
        self._exhausted = False
        self._it = db._iterate(view, prefix, start, stop, reverse, keys_only)

    def __iter__(self) -> "ScanIterator":
        return self

    def __next__(self):
        if self._view is None:
            if self._exhausted:
                raise StopIteration
            raise ClosedError("scan iterator is closed")
        if self._db._closed:
            raise ClosedError(f"database {self._db._path} is closed")
        try:
            return next(self._it)
        except StopIteration:
            self.close()
            self._exhausted = True
            raise

    def close(self) -> None:
        """Release the iterator's view early (idempotent)."""
        if self._view is not None:
            view, self._view = self._view, None
            self._it = iter(())
            if self._owned and not self._db._closed:
                self._db._release_view(view)

    def __enter__(self) -> "ScanIterator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
