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
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress
from typing import Any, TypeVar, overload

from .cursor import Cursor, cursor_bounds
from .dbstate import DBState
from .errors import DiskError
from .iterators import MemWindows, TableWindows, merge_windows, prefix_successor, read_range
from .keys import DELETE, MAX_KEY_BYTES, MAX_SEQUENCE, PUT, check_key, split_ttl
from .manifest import FileMeta
from .rangedel import Visible
from .snapshot import Entry, ScanChunks, ScanIterator, Snapshot, SuperVersion, View
from .sstable.bloom import filter_hash
from .version import Version

__all__ = ["Reads", "SAMPLE_EVERY"]

_T = TypeVar("_T")  # a get()'s default

_F64 = struct.Struct("<d")
SAMPLE_EVERY = 16  # metrics: every 16th call of an operation is timed and counts for 16
_SAMPLE_EVERY = SAMPLE_EVERY
_SAMPLE_MASK = SAMPLE_EVERY - 1
_MULTI_WINDOW = 512  # multi_get: sorted keys per pass through the tables
_MULTI_SMALL = 64  # multi_get: fewer keys than this left for the tables go key by key
_clock = time.perf_counter


class Reads(DBState):
    """Mixin of :class:`lsm.db.DB` holding the read path."""

    # -- point reads ----------------------------------------------------

    @overload
    def get(self, key: bytes) -> bytes | None: ...
    @overload
    def get(self, key: bytes, default: _T) -> bytes | _T: ...

    def get(self, key: bytes, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when absent, deleted or expired."""
        if self._closed:
            raise self._closed_error()
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        n = self._gets + 1
        self._gets = n
        if not n & _SAMPLE_MASK and self._metrics is not None:
            return self._timed_get(key, default)
        # The read point: the last published sequence and the super version,
        # consistent (see _read_point). Only the active memtable can then
        # hold entries newer than seq.
        sv = self._sv
        seq = self._versions.last_sequence
        if self._sv is not sv:
            seq, sv = self._read_point()
        r = sv.mem._dget(key)  # (tag, stored value), tag = seq << 8 | kind
        if r is not None and r[0] >> 8 > seq:
            r = sv.mem.get_at(key, seq)
        if r is None:
            for imm in sv.imms:
                r = imm._dget(key)
                if r is not None:
                    break
            else:
                # The tables: _table_get, written out here (a call and the
                # counters cost a tenth of a miss). Tables hold published
                # writes only, so no sequence check is needed.
                try:
                    version = sv.version
                    h = filter_hash(key)
                    hi = h >> 32
                    lo = h & 4095
                    reader = self._tables.reader
                    first = None  # the first table looked in: charged a seek if another follows
                    charged = False
                    for f in version.levels[0]:
                        if f.smallest <= key <= f.largest:
                            if first is None:
                                first = f
                            elif not charged:
                                _charge_seek(version, first)
                                charged = True
                            t = f.reader or reader(f)
                            b = t.bloom
                            if b is not None:
                                words, nw, pat = b
                                m = pat[lo]
                                if words[(hi * nw) >> 32] & m != m:
                                    continue
                            elif not t.may_contain(key):
                                continue
                            r = t.find(key, MAX_SEQUENCE)
                            if r is not None:
                                break
                    else:
                        for largest, files in version.deep:
                            i = bisect_left(largest, key)
                            if i == len(files):
                                continue
                            f = files[i]
                            if key < f.smallest:
                                continue
                            if first is None:
                                first = f
                            elif not charged:
                                _charge_seek(version, first)
                                charged = True
                            t = f.reader or reader(f)
                            b = t.bloom
                            if b is not None:
                                words, nw, pat = b
                                m = pat[lo]
                                if words[(hi * nw) >> 32] & m != m:
                                    continue
                            elif not t.may_contain(key):
                                continue
                            r = t.find(key, MAX_SEQUENCE)
                            if r is not None:
                                break
                except (DiskError, ValueError) as e:
                    r = self._table_get_retry(e, sv, key, MAX_SEQUENCE)
                if r is None:
                    return default
        if (sv.range_dels or sv.mem.range_dels) and self._range_deleted(sv, key, seq, r[0] >> 8):
            return default
        kind = r[0] & 0xFF
        if kind == PUT:
            return r[1]
        if kind == DELETE:
            return default
        value = r[1]
        if _F64.unpack_from(value)[0] > self._now():  # keys.split_ttl, inlined
            return value[8:]
        return default

    def _timed_get(self, key: bytes, default):
        """One get in :data:`_SAMPLE_EVERY`: timed, counted as that many, and
        the only one that counts filter probes (``stats()["bloom"]``, scaled
        by the sample rate). The same read as ``get``, through the shared
        helpers rather than ``get``'s inlined copy."""
        t = _clock()
        try:
            seq, sv = self._read_point()
            r = sv.mem.get_at(key, seq)
            if r is None:
                for imm in sv.imms:
                    r = imm._dget(key)
                    if r is not None:
                        break
                else:
                    try:
                        r = self._table_get(sv.version, key, MAX_SEQUENCE, _SAMPLE_EVERY)
                    except (DiskError, ValueError) as e:
                        r = self._table_get_retry(e, sv, key, MAX_SEQUENCE)
            kind = DELETE if r is None else r[0] & 0xFF
            if kind != DELETE and (sv.range_dels or sv.mem.range_dels) and \
                    self._range_deleted(sv, key, seq, r[0] >> 8):  # type: ignore[index]
                kind = DELETE
            if kind == PUT:
                return r[1]  # type: ignore[index]
            if kind == DELETE:
                return default
            # keys.split_ttl, inlined
            return r[1][8:] if _F64.unpack_from(r[1])[0] > self._now() else default  # type: ignore[index]
        finally:
            self._metrics.record("get", _clock() - t, n=_SAMPLE_EVERY)  # type: ignore[union-attr]

    def multi_get(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """The values of ``keys``, in the order given: for each key its value,
        or None when it is absent, deleted or expired (``get``'s answer).
        Duplicates are allowed.

        One read for all of them, cheaper than a loop of ``get``: one view
        (the published sequence and super version, read once), then the
        memtables for every key, then the tables for the keys still unfound,
        sorted, 512 at a time: each table probes its filter and reads its
        blocks for them in one tight loop, in key order, with one filter
        hash per key serving every table (fewer than 64 go key by key). It
        pays from about 30 keys a call.

        >>> import lsm, tempfile
        >>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
        >>> for k in (b"a", b"b", b"c"): _ = db.put(k, k.upper())
        >>> _ = db.delete(b"b")
        >>> db.multi_get([b"c", b"b", b"x", b"a", b"c"])
        [b'C', None, None, b'A', b'C']
        >>> db.close()

        Raises: TypeError/ValueError naming the bad key (``keys[i]``), or
        ``keys`` itself when it is not an iterable of keys.
        """
        if self._closed:
            raise self._closed_error()
        if isinstance(keys, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"keys must be an iterable of keys, not {type(keys).__name__}")
        try:
            keys = list(keys)
        except TypeError:
            raise TypeError(f"keys must be an iterable of keys, not {type(keys).__name__}") from None
        for i, k in enumerate(keys):
            if type(k) is not bytes or len(k) > MAX_KEY_BYTES:
                keys[i] = check_key(k, f"keys[{i}]")
        # One read point for every key, as get() takes one.
        seq, sv = self._read_point()
        found: dict[bytes, tuple] = {}
        pending = list(dict.fromkeys(keys))  # each key once
        for m in (sv.mem,) + sv.imms:
            if not pending:
                break
            if not m.entries:
                continue
            dget = m._dget
            rest = []
            for k in pending:
                r = dget(k)  # (tag, stored value)
                if r is not None and r[0] >> 8 > seq:  # the active memtable only: newer than the view
                    r = m.get_at(k, seq)
                if r is None:
                    rest.append(k)
                else:
                    found[k] = r
            pending = rest
        if pending and len(pending) < _MULTI_SMALL:
            # Few keys: sorting and per-table passes cost more than they save;
            # each key walks the tables as get() does (the same fallback on error).
            try:
                table_get, version = self._table_get, sv.version
                for k in pending:
                    r = table_get(version, k, MAX_SEQUENCE)
                    if r is not None:
                        found[k] = r
            except (DiskError, ValueError) as e:
                for k in pending:
                    if k not in found:
                        r = self._table_get_retry(e, sv, k, MAX_SEQUENCE)
                        if r is not None:
                            found[k] = r
        elif pending:
            # The tables, in key order, a window of keys at a time: every
            # table's pass over a window finds its keys still in the cache.
            pending.sort()
            version = sv.version
            for w in range(0, len(pending), _MULTI_WINDOW):
                got: dict[bytes, tuple] = {}
                try:
                    self._tables_get_many(version, pending[w:w + _MULTI_WINDOW], got)
                except (DiskError, ValueError) as e:
                    found.update(got)
                    for k in pending[w:]:  # this window's rest and every later one: key by key
                        if k not in found:
                            r = self._table_get_retry(e, sv, k, MAX_SEQUENCE)
                            if r is not None:
                                found[k] = r
                    break
                found.update(got)
        now = self._now()
        unpack = _F64.unpack_from  # keys.split_ttl, inlined below
        ranged = sv.range_dels or sv.mem.range_dels
        values: dict[bytes, bytes] = {}
        for k, (tag, v) in found.items():
            if ranged and self._range_deleted(sv, k, seq, tag >> 8):
                continue
            kind = tag & 0xFF
            if kind == PUT:
                values[k] = v
            elif kind != DELETE and unpack(v)[0] > now:
                values[k] = v[8:]
        return list(map(values.get, keys))

    def _tables_get_many(self, version: Version, keys: list[bytes], found: dict) -> None:
        """Add to ``found`` the newest version in the tables of ``version`` of
        each of ``keys`` (sorted, each once, none in ``found``) that they hold.

        Table by table, newest first (each L0 table, then each deeper level's
        files in key order), each probing the keys in its range not found in
        a newer one: filter and point reads in tight loops (``_probe``,
        ``TableReader.get_sorted``), with one filter hash per key computed up
        front, as ``get`` shares its hash between tables. In key order the
        tables are read front to back. Tables hold published writes only:
        no sequence check."""
        hashes = list(map(filter_hash, keys))
        reader = self._tables.reader
        had = len(found)
        for f in version.levels[0]:
            a = bisect_left(keys, f.smallest)
            b = bisect_right(keys, f.largest, a)
            if a < b:
                _probe(f.reader or reader(f), keys, hashes, a, b, found)
                if len(found) > had:  # older tables look for the rest only
                    keys, hashes = _unfound(keys, hashes, found)
                    had = len(found)
        for largest, files in version.deep:
            n = len(keys)
            j = 0
            while j < n:
                fi = bisect_left(largest, keys[j])
                if fi == len(files):
                    break
                f = files[fi]
                j = bisect_left(keys, f.smallest, j)  # keys below the file are in a gap of the level
                e = bisect_right(keys, f.largest, j)
                if j < e:
                    _probe(f.reader or reader(f), keys, hashes, j, e, found)
                j = e
            if len(found) > had:
                keys, hashes = _unfound(keys, hashes, found)
                had = len(found)
            if not keys:
                return

    def get_entry(self, key: bytes) -> Entry[bytes] | None:
        """The value of ``key`` with its version and expiry, or None."""
        self._check_open()
        key = check_key(key)
        seq, sv = self._read_point()
        return self._get_entry(sv, key, seq)

    def _read_point(self) -> tuple[int, SuperVersion]:
        """``(seq, sv)``: the last published sequence and a super version that
        was current all the while it was read, so that sv holds every write
        at or below seq and only its active memtable holds newer ones.

        Why the re-check: a leader inserts a group into the active memtable
        and publishes it with no memtable switch in between, so entries above
        a sequence read while sv is current are in sv.mem only. Read in the
        other order without the check, a switch (or a flush) installed
        between the two reads would hand a reader an immutable memtable (or
        a table) holding writes newer than its sequence, and it would see
        part of a batch; taking sv first and seq later without the check, a
        write published in between may sit in a memtable sv does not have.
        """
        while True:
            sv = self._sv
            seq = self._versions.last_sequence
            if self._sv is sv:
                return seq, sv

    def _get_entry(self, sv: SuperVersion, key: bytes, seq: int, count: int = 0,
                   now: float | None = None) -> Entry[bytes] | None:
        """The newest version of ``key`` at or below ``seq`` in ``sv``, unless
        deleted (by a tombstone, a range tombstone, or its expiry judged at
        ``now``, default: the clock). ``count``: as :meth:`_table_get`."""
        r = None
        for m in (sv.mem,) + sv.imms:
            r = m.get_at(key, seq)
            if r is not None:
                break
        else:
            try:
                r = self._table_get(sv.version, key, seq, count)
            except (DiskError, ValueError) as e:
                r = self._table_get_retry(e, sv, key, seq)
        if r is None:
            return None
        tag, value = r
        if (sv.range_dels or sv.mem.range_dels) and self._range_deleted(sv, key, seq, tag >> 8):
            return None
        kind = tag & 0xFF
        if kind == DELETE:
            return None
        if kind == PUT:
            return Entry(value, tag >> 8, None)
        expires, user_value = split_ttl(value)
        if expires <= (self._now() if now is None else now):
            return None
        return Entry(user_value, tag >> 8, expires)

    def _range_deleted(self, sv: SuperVersion, key: bytes, seq: int, version: int) -> bool:
        """Whether a range tombstone of ``sv`` visible at ``seq`` hides the
        version of ``key`` written at sequence ``version``."""
        m = sv.mem.fragments()
        if m is not None and m.covering(key, seq) > version:
            return True
        for f in sv.static_fragments():
            if f.covering(key, seq) > version:
                return True
        return False

    def _table_get_retry(self, exc: Exception, sv: SuperVersion, key: bytes,
                         seq: int) -> tuple[int, bytes] | None:
        """A read failed in a way that a concurrent change can explain: the DB
        was closed under it (its maps closed: ValueError), or a table vanished
        (ENOENT) under a read whose version had already been replaced. Report
        the first as ClosedError; retry the second on the newer version, which
        holds the same data. Anything else is a real error."""
        if isinstance(exc, ValueError):
            if self._closed:
                raise self._closed_error() from None
            raise exc
        for _attempt in range(5):
            if not isinstance(exc, DiskError) or exc.errno != errno.ENOENT or sv.version is self._sv.version:
                raise exc
            sv = self._sv
            try:
                return self._table_get(sv.version, key, seq)
            except DiskError as e:
                exc = e
        raise exc

    def _table_get(self, version: Version, key: bytes, seq: int, count: int = 0) -> tuple[int, bytes] | None:
        """Newest version ``(tag, stored_value)`` <= ``seq`` of ``key`` in the tables of ``version``: L0
        newest first, then the one candidate file of each deeper level.

        Each table's filter is probed inline with one hash of the key shared
        by every table (format 2 filters); format 1 tables probe their own.
        The loop is written out twice (L0, deeper levels) on purpose: this is
        the hot path of every point read (``get`` has its own copy). ``count``:
        add that many times the probes made to ``stats()["bloom"]``."""
        h = filter_hash(key)
        hi = h >> 32
        lo = h & 4095
        checked = useful = 0
        r = None
        reader = self._tables.reader
        first = None  # as in get: the first table looked in, charged a seek if another follows
        charged = False
        for f in version.levels[0]:
            if f.smallest <= key <= f.largest:
                if first is None:
                    first = f
                elif not charged:
                    _charge_seek(version, first)
                    charged = True
                t = f.reader or reader(f)
                checked += 1
                b = t.bloom
                if b is not None:
                    words, nw, pat = b
                    m = pat[lo]
                    if words[(hi * nw) >> 32] & m != m:
                        useful += 1
                        continue
                elif not t.may_contain(key):
                    useful += 1
                    continue
                r = t.find(key, seq)
                if r is not None:
                    break
        else:
            # deeper levels: the one file per level whose range may hold the key
            for largest, files in version.deep:
                i = bisect_left(largest, key)
                if i == len(files):
                    continue
                f = files[i]
                if key < f.smallest:
                    continue
                if first is None:
                    first = f
                elif not charged:
                    _charge_seek(version, first)
                    charged = True
                t = f.reader or reader(f)
                checked += 1
                b = t.bloom
                if b is not None:
                    words, nw, pat = b
                    m = pat[lo]
                    if words[(hi * nw) >> 32] & m != m:
                        useful += 1
                        continue
                elif not t.may_contain(key):
                    useful += 1
                    continue
                r = t.find(key, seq)
                if r is not None:
                    break
        if count and checked:
            self._bloom_checked += checked * count
            self._bloom_useful += useful * count
        return r

    # -- views ----------------------------------------------------------------

    def _new_view(self) -> View:
        self._check_open()
        # Sequence, super version and registration as one step under
        # _views_mu, which flush and compaction also hold while they read the
        # open views' sequences: a view they do not see was created after that
        # read, so its sequence covers every entry of their inputs and nothing
        # it needs can be dropped. (The read point: see _read_point.)
        with self._views_mu:
            view = View(*self._read_point())
            self._views.add(view)
        return view

    def snapshot(self) -> Snapshot:
        """A frozen view of the database as of now: a sequence number that
        compaction keeps every version visible at (no files or memtables are
        held). Close it (or use ``with``) so compaction can reclaim them."""
        self._check_open()
        with self._views_mu:  # as _new_view: flush and compaction read the views under it
            view = View(self._read_point()[0], None)
            self._views.add(view)
        return Snapshot(self, view)

    def _pinned_view(self, seq: int) -> View:
        """A registered view at ``seq`` (an existing snapshot's) over the current
        super version, for one of its scans or cursors (released by it)."""
        self._check_open()
        with self._views_mu:
            view = View(seq, self._sv)
            self._views.add(view)
        return view

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
        lo, hi = self._scan_range(prefix, start, stop, reverse, keys_only)
        if hi is not None:
            # A short bounded range is read whole now, at the scan's sequence:
            # it needs no registered view (nothing is read later).
            self._check_open()
            seq, sv = self._read_point()
            got = self._read_range(sv, seq, lo, hi, reverse)
            if got is not None:
                return self._scan_chunks(iter((got,)), keys_only, None)
        return self._scan(self._new_view(), lo, hi, reverse, keys_only)

    def cursor(self, *, lower: bytes | None = None, upper: bytes | None = None) -> Cursor:
        """A :class:`lsm.Cursor` over the database as of now, within
        ``[lower, upper)`` (None: unbounded), not yet positioned: ``seek``,
        ``seek_for_prev``, ``seek_to_first`` or ``seek_to_last`` it, then move
        it with ``next()``/``prev()``. Like a scan's, its view is fixed now.
        Close it (or use ``with``) to release that view.

        >>> import lsm, tempfile
        >>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
        >>> for k in (b"a1", b"a2", b"b1"): _ = db.put(k, k.upper())
        >>> with db.cursor(lower=b"a2") as c:
        ...     c.seek_to_first(), c.key
        ...     c.seek(b"b"), c.key, c.value
        (True, b'a2')
        (True, b'b1', b'B1')
        >>> db.close()
        """
        lo, hi = (b"", None) if lower is None and upper is None else cursor_bounds(lower, upper)
        now = self._now()
        with self._views_mu:
            # Checked under _views_mu: DB.close() sets _closed before it takes
            # the lock to close the registered cursors, so a cursor made here
            # is either refused or registered in time to be closed.
            if self._closed:
                raise self._closed_error()
            view = View(*self._read_point())
            self._views.add(view)
            c = Cursor(self, view, lo, hi, now, True)
            self._scans.add(c)
        return c

    def _snapshot_cursor(self, view: View, lower: bytes | None, upper: bytes | None) -> Cursor:
        """A cursor over a snapshot's ``view``: it pins the current super
        version at the snapshot's sequence until it is closed."""
        lo, hi = cursor_bounds(lower, upper)
        pinned = self._pinned_view(view.seq)
        c = Cursor(self, pinned, lo, hi, self._now(), True)
        with self._views_mu:
            if self._closed:
                self._views.discard(pinned)
                raise self._closed_error()
            self._scans.add(c)
        return c

    def _read_range(self, sv: SuperVersion, seq: int, lo: bytes, hi: bytes,
                    reverse: bool) -> tuple[list, Sequence] | None:
        """``[lo, hi)`` at ``seq`` as one chunk, or None when it is long
        (iterators.read_range)."""
        if hi <= lo:
            return [], []
        version = sv.version
        runs = [[f] for f in version.levels[0] if f.largest >= lo and f.smallest < hi]
        for level in version.deep_levels:
            largest = version.largest(level)
            smallest = version.smallest[level]
            a = bisect_left(largest, lo)
            b = bisect_left(smallest, hi, a)
            if a < b:
                runs.append(version.levels[level][a:b])
        mems = [m for m in (sv.mem,) + sv.imms if len(m)]
        return read_range(mems, runs, self._tables.reader, lo, hi, reverse, seq, self._now(),
                          vis=self._visible_range_dels(sv, seq, lo, hi))

    def _visible_range_dels(self, sv: SuperVersion, seq: int, lo: bytes,
                            hi: bytes | None) -> Visible | None:
        """The range tombstones over ``[lo, hi)`` that a read of ``sv`` at
        ``seq`` sees, or None."""
        if not (sv.range_dels or sv.mem.range_dels):
            return None
        return Visible.at(sv.fragments(), seq, lo, hi)

    @staticmethod
    def _scan_range(prefix: bytes, start: bytes | None, stop: bytes | None, reverse: bool,
                    keys_only: bool) -> tuple[bytes, bytes | None]:
        """``[lo, hi)`` of a scan's arguments (hi None: unbounded), checked.
        Raises: TypeError/ValueError naming the bad argument."""
        _check_bool(reverse, "reverse")
        _check_bool(keys_only, "keys_only")
        return _bounds(prefix, start, stop)

    def _scan(self, view: View, lo: bytes, hi: bytes | None, reverse: bool, keys_only: bool,
              owned: bool = True) -> ScanIterator:
        """A scan of ``[lo, hi)`` over ``view`` (released at its end if ``owned``)."""
        release = (lambda: self._release_view(view)) if owned else None
        if hi is not None and hi <= lo:
            gen: Iterator = iter(())
        else:
            assert view.sv is not None  # an iterator's view pins its super version
            gen = merge_windows(self._window_sources(view.sv, view.seq, lo, hi, reverse), reverse)
        return self._scan_chunks(gen, keys_only, release)

    def _scan_chunks(self, gen: Iterator[tuple[list, Sequence]], keys_only: bool, release) -> ScanIterator:
        chunks = ScanChunks(self, gen, keys_only, release)
        with self._views_mu:
            self._scans.add(chunks)  # DB.close() closes the scans still open
        return ScanIterator._start(chunks)

    def _window_sources(self, sv: SuperVersion, seq: int, lo: bytes, hi: bytes | None, reverse: bool,
                        now: float | None = None) -> list:
        """The sources of a scan of ``[lo, hi)``, newest first: memtables,
        each L0 table, then one run per deeper level. TTL entries are judged
        at ``now`` (default: the clock)."""
        if now is None:
            now = self._now()
        vis = self._visible_range_dels(sv, seq, lo, hi)
        sources: list = [MemWindows(m, lo, hi, reverse, seq, now, vis) for m in (sv.mem,) + sv.imms if len(m)]
        version = sv.version
        opener = self._tables.reader
        for f in version.levels[0]:
            if f.largest >= lo and (hi is None or f.smallest < hi):
                sources.append(TableWindows([f], [f.smallest], [f.largest], opener, lo, hi, reverse, seq, now, vis))
        for level in version.deep_levels:
            largest = version.largest(level)
            smallest = version.smallest[level]
            if largest[-1] >= lo and (hi is None or smallest[0] < hi):
                sources.append(TableWindows(version.levels[level], smallest, largest, opener, lo, hi, reverse,
                                            seq, now, vis))
        return sources

    def _release_view(self, view: View) -> None:
        with self._views_mu:
            self._views.discard(view)
        self._obsolete_due = True


def _charge_seek(version: Version, f: FileMeta) -> None:
    """A point read looked in ``f`` first and then in another table: count
    one of ``f``'s allowed seeks, and once they are used up name it the
    version's ``seek_file`` (LevelDB's seek compaction, lsm.compaction.pick_seek;
    the compaction thread notices within its one-second wait). No lock: a
    race between readers loses a count, which only delays the compaction."""
    n = f.allowed_seeks - 1
    f.allowed_seeks = n
    if n <= 0 and version.seek_file is None:
        version.seek_file = f


def _probe(t, keys: list[bytes], hashes: list[int], a: int, b: int, found: dict) -> None:
    """``keys[a:b]`` (ascending), looked up in table ``t``: its filter
    probed inline with the precomputed ``hashes`` (format 2), then one
    sorted pass of point reads; what is there goes into ``found``."""
    bloom = t.bloom
    if bloom is None:  # format 1, or no filter: the table's own probe
        todo = list(filter(t.may_contain, keys[a:b]))
    else:
        words, nw, pat = bloom
        todo = []
        add = todo.append
        for k, h in zip(keys[a:b], hashes[a:b]):
            m = pat[h & 4095]
            if words[((h >> 32) * nw) >> 32] & m == m:
                add(k)
    for k, r in zip(todo, t.get_sorted(todo, MAX_SEQUENCE)):
        if r is not None:
            found[k] = r


def _unfound(keys: list[bytes], hashes: list[int], found: dict) -> tuple[list[bytes], list[int]]:
    """``keys`` and their ``hashes`` without the keys in ``found``."""
    keep = [k not in found for k in keys]
    return list(compress(keys, keep)), list(compress(hashes, keep))


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


def _check_bool(value: object, name: str) -> None:
    if type(value) is not bool:
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
