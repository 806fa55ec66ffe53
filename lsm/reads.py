"""The DB's read half: point reads (``get``, ``get_entry``), views
(``snapshot``, ``scan``) and the merge of memtables and tables behind them.

``Reads`` is a mixin of :class:`lsm.db.DB`, like :class:`lsm.background.Background`:
it shares the DB's state and its locking rules (doc/design.md#locking-rules).
Reads take no lock but ``_views_mu`` (to register a view): they read
``self._sv``, an immutable ``SuperVersion`` replaced wholesale under the DB
mutex, at the last published sequence, read before it (so every write at or
below that sequence is in that super version, and no reader sees part of a
group the leader is still inserting).
"""

from __future__ import annotations

import errno
import struct
from typing import Iterator

from .cache import TableCache
from .errors import DiskError
from .iterators import merge, prefix_successor, visible
from .keys import DELETE, MAX_SEQUENCE, PUT, check_key
from .manifest import FileMeta
from .snapshot import Entry, ScanIterator, Snapshot, SuperVersion, View
from .version import Version

__all__ = ["Reads"]

_F64 = struct.Struct("<d")


class Reads:
    """Mixin of :class:`lsm.db.DB` holding the read path."""

    # -- point reads ----------------------------------------------------

    def get(self, key: bytes, default=None):  # type: ignore[override]
        """The value of ``key``, or ``default`` when absent, deleted or expired."""
        if self._closed:
            raise self._closed_error()
        if type(key) is not bytes:
            key = check_key(key)
        # Read at the last published sequence, taken before the super version
        # (every write at or below it is then in sv): a leader inserts its
        # group into the memtable before publishing it, and a reader must not
        # see half of a batch. Only the active memtable can hold newer entries.
        seq = self._versions.last_sequence
        sv = self._sv
        r = sv.mem._dget(key)
        if r is not None:
            r = r[-1]
            if r[0] > seq:
                r = sv.mem.get_at(key, seq)
        if r is None:
            for imm in sv.imms:
                r = imm.get(key)
                if r is not None:
                    break
            else:
                try:
                    r = self._table_get(sv.version, key, MAX_SEQUENCE)
                except DiskError as e:
                    r = self._table_get_retry(e, sv, key, MAX_SEQUENCE)
                if r is None:
                    return default
        kind = r[1]
        if kind == PUT:
            return r[2]
        if kind == DELETE:
            return default
        value = r[2]
        if _F64.unpack_from(value)[0] > self._now():
            return value[8:]
        return default

    def get_entry(self, key: bytes) -> Entry | None:
        """The value of ``key`` with its version and expiry, or None."""
        self._check_open()
        seq = self._versions.last_sequence  # published writes only, as get()
        return self._get_entry(self._sv, check_key(key), seq)

    def _get_entry(self, sv: SuperVersion, key: bytes, seq: int) -> Entry | None:
        r = None
        for m in (sv.mem,) + sv.imms:
            r = m.get_at(key, seq)
            if r is not None:
                break
        else:
            try:
                r = self._table_get(sv.version, key, seq)
            except DiskError as e:
                r = self._table_get_retry(e, sv, key, seq)
        if r is None or r[1] == DELETE:
            return None
        if r[1] == PUT:
            return Entry(r[2], r[0], None)
        expires = _F64.unpack_from(r[2])[0]
        if expires <= self._now():
            return None
        return Entry(r[2][8:], r[0], expires)

    def _table_get_retry(self, exc: DiskError, sv: SuperVersion, key: bytes,
                         seq: int) -> tuple[int, int, bytes] | None:
        """A table vanished under a read that held no reference to its version:
        compaction finished and deleted it. Retry on the newer version, which
        holds the same data. Anything else is a real error."""
        for _attempt in range(5):
            if exc.errno != errno.ENOENT or sv.version is self._sv.version:
                raise exc
            sv = self._sv
            try:
                return self._table_get(sv.version, key, seq)
            except DiskError as e:
                exc = e
        raise exc

    def _table_get(self, version: Version, key: bytes, seq: int) -> tuple[int, int, bytes] | None:
        """Newest version <= ``seq`` of ``key`` in the tables of ``version``: L0
        newest first, then the one candidate file of each deeper level."""
        c = self._counters
        get_reader = self._tables.get
        for f in version.candidates(key):
            reader = get_reader(f.number)
            c["bloom_checked"] += 1
            if not reader.filter.may_contain(key):
                c["bloom_useful"] += 1
                continue
            r = reader.get(key, seq)
            if r is not None:
                return r
        return None

    # -- views ----------------------------------------------------------------

    def _new_view(self) -> View:
        self._check_open()
        # Sequence, super version and registration as one step under
        # _views_mu, which flush and compaction also hold while they read the
        # open views' sequences: a view they do not see was created after that
        # read, so its sequence covers every entry of their inputs and nothing
        # it needs can be dropped. (Reading the sequence first still matters:
        # every write at or below it is in a memtable or table of this sv.)
        with self._views_mu:
            view = View(self._versions.last_sequence, self._sv)
            self._views.add(view)
        return view

    def snapshot(self) -> Snapshot:
        """A frozen view of the database as of now. Close it (or use ``with``)
        so compaction can reclaim the versions it pins."""
        return Snapshot(self, self._new_view())

    def scan(self, prefix: bytes = b"", *, start: bytes | None = None, stop: bytes | None = None,
             reverse: bool = False, keys_only: bool = False) -> ScanIterator:
        """Iterate ``(key, value)`` pairs (bare keys with ``keys_only``) in key order.

        ``prefix``, ``start`` (inclusive) and ``stop`` (exclusive) intersect. The
        view is fixed now, at the call, and stays consistent whatever writes,
        flushes or compactions happen while iterating.

        >>> import lsm, tempfile
        >>> db = lsm.open(tempfile.mkdtemp())
        >>> for k in (b"a1", b"a2", b"b1"): _ = db.put(k, k.upper())
        >>> list(db.scan(b"a")), list(db.scan(reverse=True, keys_only=True))
        ([(b'a1', b'A1'), (b'a2', b'A2')], [b'b1', b'a2', b'a1'])
        >>> db.close()
        """
        return ScanIterator(self, self._new_view(), prefix, start, stop, reverse, keys_only)

    def _iterate(self, view: View, prefix: bytes, start: bytes | None, stop: bytes | None,
                 reverse: bool, keys_only: bool) -> Iterator:
        if type(reverse) is not bool:
            raise TypeError(f"reverse must be a bool, not {type(reverse).__name__}")
        if type(keys_only) is not bool:
            raise TypeError(f"keys_only must be a bool, not {type(keys_only).__name__}")
        lo, hi = _bounds(prefix, start, stop)
        if hi is not None and hi <= lo:
            return iter(())
        sv = view.sv
        tables = self._tables
        sources = []
        if reverse:
            sources.append(sv.mem.iter_reverse(lo, hi))
            sources.extend(m.iter_reverse(lo, hi) for m in sv.imms)
        else:
            sources.append(sv.mem.iter_forward(lo, hi))
            sources.extend(m.iter_forward(lo, hi) for m in sv.imms)
        hi_incl = hi  # overlapping() is inclusive; a file starting at hi adds nothing
        for level, files in enumerate(sv.version.levels):
            files = sv.version.overlapping(level, lo, hi_incl)
            if not files:
                continue
            if level == 0:
                sources.extend(_table_iter(tables, [f], lo, hi, reverse) for f in files)
            else:
                sources.append(_table_iter(tables, files, lo, hi, reverse))
        return visible(merge(sources, reverse), view.seq, self._now(), reverse, keys_only)

    def _release_view(self, view: View) -> None:
        with self._views_mu:
            self._views.discard(view)
        self._obsolete_due = True


def _bounds(prefix: bytes, start: bytes | None, stop: bytes | None) -> tuple[bytes, bytes | None]:
    """[lo, hi) from prefix/start/stop (hi None = unbounded)."""
    prefix = check_key(prefix, "prefix")
    lo = prefix
    hi = prefix_successor(prefix) if prefix else None
    if start is not None:
        start = check_key(start, "start")
        if start > lo:
            lo = start
    if stop is not None:
        stop = check_key(stop, "stop")
        if hi is None or stop < hi:
            hi = stop
    return lo, hi


def _table_iter(tables: TableCache, files: list[FileMeta], lo: bytes, hi: bytes | None,
                reverse: bool) -> Iterator[tuple]:
    """Entries of a run of disjoint sorted files (one level), opening each lazily."""
    if reverse:
        for f in reversed(files):
            yield from tables.get(f.number).iter_reverse(lo, hi)
    else:
        for f in files:
            yield from tables.get(f.number).iter_forward(lo, hi)
