"""A seekable cursor over a fixed view (RocksDB's ``Iterator``, plyvel's
``RawIterator``, Pebble's ``Iterator``): ``seek``, ``seek_for_prev``,
``seek_to_first``/``seek_to_last``, ``next``/``prev`` in any order.

A cursor holds a merged chunk of the view, ``(keys, values)`` in the
direction of travel, and an index into it: ``next()``/``prev()`` move the
index, and at the end of a chunk the next one is made. Chunks come from the
scan machinery of :mod:`lsm.iterators`: a :func:`~lsm.iterators.merge_windows`
generator over window sources built from the cursor's key to its bound
(``Reads._window_sources``), each source's first window cut down to the rest
of the block the key falls in, later windows doubling.

A forward seek makes its first chunk itself (:meth:`Cursor._seek_chunk`),
because a seek is usually followed by a few moves and the generator's first
chunk costs more than they do: per source, the rest of the block the key
falls in (16 keys of a memtable), merged up to the lowest last key among
sources with more to come, capped at :data:`SEEK_KEYS` keys; the source
setting that bound reads its next block while fewer are there; a source
whose first key lies above the bound is not read at all. Past that chunk
the cursor goes on with merged windows from the key after it. So a seek
never merges a source from its start, and reads one block per source that
can hold the next keys.

A change of direction re-seeks, as RocksDB's merging iterator does:
``prev()`` after moving forward builds reverse sources below the current
key, ``next()`` after moving backward forward sources above it.

The DB creates cursors (``DB.cursor``, ``Snapshot.cursor``); this module
calls back into it only through ``_window_sources``, ``_get_entry``,
``_tables``, ``_closed``/``_closed_error`` and ``_release_view``, the
members :class:`lsm.snapshot.CursorOwner` declares.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .errors import ClosedError
from .iterators import FIRST_WINDOW, TOMB, TableWindows, merge_parts, merge_windows, resolve, resolve_mem
from .keys import MAX_KEY_BYTES, check_key

if TYPE_CHECKING:  # annotations only
    from .manifest import FileMeta
    from .snapshot import CursorOwner, Entry, View

__all__ = ["Cursor", "cursor_bounds"]

_EMPTY: tuple = ()  # the chunk of a cursor that is not positioned: any index raises IndexError


def cursor_bounds(lower: object, upper: object) -> tuple[bytes, bytes | None]:
    """``(lower, upper)`` checked: bytes (``lower`` None becomes ``b""``) or
    None. Raises: TypeError/ValueError naming the bad argument."""
    lo = b"" if lower is None else check_key(lower, "lower")
    hi = None if upper is None else check_key(upper, "upper")
    return lo, hi


class Cursor:
    """A movable position in a fixed view of the database, between bounds.

    Made by ``DB.cursor(lower=, upper=)`` or ``Snapshot.cursor(...)``; it
    starts unpositioned (``valid`` is False) until a seek. ``lower`` is
    inclusive, ``upper`` exclusive; keys outside them are never visited.
    Every positioning method returns ``valid`` (as Pebble's do), so a loop
    needs no separate check.

    The view (the sequence number and the tables and memtables it reads) is
    fixed when the cursor is created, as for ``scan()``: later writes,
    flushes and compactions do not change what it sees, and neither does
    the clock (an entry with a TTL that expires while the cursor is open
    stays visible to it). A cursor made from a snapshot sees the snapshot.

    Errors: ``key``, ``value``, ``entry``, ``next()`` and ``prev()`` on a
    cursor that is not valid raise ``ValueError``. After ``close()`` (or
    leaving its ``with`` block), or once its DB (or snapshot) is closed,
    everything but ``close()`` raises :class:`lsm.ClosedError`. Bad
    arguments raise TypeError/ValueError naming them.

    Thread safety: none (like any iterator); use one cursor per thread.

    >>> import lsm, tempfile
    >>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
    >>> for k in (b"a", b"b", b"c", b"d"): _ = db.put(k, k.upper())
    >>> with db.cursor(upper=b"d") as c:
    ...     c.seek(b"bb"), c.key, c.value           # first key >= b"bb"
    ...     c.prev(), c.key                         # turn around
    ...     c.seek_for_prev(b"zz"), c.key           # last key <= b"zz", below upper
    ...     c.next(), c.valid                       # past the end
    (True, b'c', b'C')
    (True, b'b')
    (True, b'c')
    (False, False)
    >>> db.close()
    """

    __slots__ = ("_db", "_view", "_owned", "_lower", "_upper", "_now", "_keys", "_values", "_i", "_gen",
                 "_resume", "_reverse", "_closed", "__weakref__")

    def __init__(self, db: CursorOwner, view: View, lower: bytes, upper: bytes | None, now: float, owned: bool) -> None:
        self._db = db
        self._view = view
        self._owned = owned  # release the view at close (a DB's cursor; a snapshot's keeps it)
        self._lower = lower
        self._upper = upper
        self._now = now  # TTL entries are judged at this time, for the cursor's whole life
        self._keys: Sequence = _EMPTY  # the current chunk, in the direction of travel
        self._values: Sequence = _EMPTY
        self._i = 0  # position in the chunk; the cursor is valid while _i < len(_keys)
        self._gen: Iterator[tuple[list, Sequence]] | None = None  # the chunks after the current one
        self._resume: bytes | None = None  # without _gen: the current chunk covers keys up to this one
        self._reverse = False
        self._closed: str | None = None  # why it is closed: the message of the ClosedError it raises

    # -- position ------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """Whether the cursor is at an entry (False before a seek and once it
        has moved past either end)."""
        if self._closed is not None:
            raise ClosedError(self._closed)
        return self._i < len(self._keys)

    @property
    def key(self) -> bytes:
        """The key at the cursor. Raises: ValueError when not valid."""
        try:
            return self._keys[self._i]
        except IndexError:
            raise self._invalid("key") from None

    @property
    def value(self) -> bytes:
        """The value at the cursor. Raises: ValueError when not valid."""
        try:
            return self._values[self._i]
        except IndexError:
            raise self._invalid("value") from None

    @property
    def entry(self) -> Entry[bytes]:
        """The value at the cursor with its version (the sequence number of
        its write) and expiry, as an :class:`lsm.Entry`: a point read in the
        cursor's view, made only when asked. Raises: ValueError when not valid."""
        try:
            key = self._keys[self._i]
        except IndexError:
            raise self._invalid("entry") from None
        view = self._view
        assert view.sv is not None  # a cursor's view pins its super version
        e = self._db._get_entry(view.sv, key, view.seq, now=self._now)
        if e is None:  # cannot happen: the same view and clock found the key live
            raise AssertionError(f"cursor key {key!r} has no entry in its own view")
        return e

    # -- seeks ------------------------------------------------------------------

    def seek(self, key: bytes) -> bool:
        """Position at the first key >= ``key`` (and >= ``lower``); return ``valid``."""
        if type(key) is not bytes or len(key) > MAX_KEY_BYTES:
            key = check_key(key)
        if self._closed is not None or self._db._closed:
            self._check()
        return self._forward(key if key > self._lower else self._lower)

    def seek_for_prev(self, key: bytes) -> bool:
        """Position at the last key <= ``key`` (and < ``upper``); return ``valid``."""
        key = check_key(key)
        self._check()
        hi = key + b"\x00"  # the smallest key above ``key``: [lower, hi) ends at it
        upper = self._upper
        return self._backward(hi if upper is None or hi < upper else upper)

    def seek_to_first(self) -> bool:
        """Position at the first key (>= ``lower``); return ``valid``."""
        self._check()
        return self._forward(self._lower)

    def seek_to_last(self) -> bool:
        """Position at the last key (< ``upper``); return ``valid``."""
        self._check()
        return self._backward(self._upper)

    # -- moves -----------------------------------------------------------------

    def next(self) -> bool:
        """Move to the next key and return ``valid`` (False past the last key).
        Raises: ValueError when not valid."""
        i = self._i + 1
        n = len(self._keys)
        if i < n and not self._reverse:
            self._i = i
            return True
        if i > n:
            raise self._invalid("next()")
        if self._reverse:  # turn around: the keys above this one
            self._check()
            return self._forward(self._keys[i - 1] + b"\x00")
        self._i = i
        return self._pull()

    def prev(self) -> bool:
        """Move to the previous key and return ``valid`` (False before the
        first key). Raises: ValueError when not valid."""
        i = self._i + 1
        n = len(self._keys)
        if i < n and self._reverse:
            self._i = i
            return True
        if i > n:
            raise self._invalid("prev()")
        if not self._reverse:  # turn around: the keys below this one
            self._check()
            return self._backward(self._keys[i - 1])
        self._i = i
        return self._pull()

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """Release the cursor's view (idempotent); later use raises ClosedError."""
        self._shut("cursor is closed")

    def __enter__(self) -> Cursor:
        if self._closed is not None:
            raise ClosedError(self._closed)
        return self

    def __exit__(self, *exc: object) -> None:
        self._shut("cursor is closed")

    def __repr__(self) -> str:
        if self._closed is not None:
            return "<lsm.Cursor closed>"
        if self._i < len(self._keys):
            return f"<lsm.Cursor at {self._keys[self._i]!r}>"
        return "<lsm.Cursor not valid>"

    # -- internals -----------------------------------------------------------------

    def _shut(self, why: str | ClosedError) -> None:
        """Close; later calls raise ClosedError(``why``). Called by
        ``close()``, and by the DB's and the snapshot's close through their
        registries. The flag goes first, then the chunk: a move racing with
        it either sees the flag or finds the chunk gone (:meth:`_pull`)."""
        if self._closed is not None:
            return
        self._closed = str(why)
        self._keys = self._values = _EMPTY
        self._i = 0
        self._gen = None
        if self._owned:
            self._owned = False
            db = self._db
            if not db._closed:
                db._release_view(self._view)

    def _check(self) -> None:
        """Raise ClosedError if the cursor or its DB is closed."""
        if self._closed is not None:
            raise ClosedError(self._closed)
        db = self._db
        if db._closed:
            self._shut(db._closed_error())
            raise ClosedError(self._closed)

    def _invalid(self, what: str) -> Exception:
        """The error for ``what`` on a cursor with no current entry."""
        if self._closed is None and self._db._closed:
            self._shut(self._db._closed_error())
        if self._closed is not None:
            return ClosedError(self._closed)
        return ValueError(f"cursor {what}: the cursor is not at an entry (valid is False); seek first")

    def _forward(self, lo: bytes) -> bool:
        """Position at the first key >= ``lo`` (``lo`` >= lower), moving forward:
        the seek's chunk (:meth:`_seek_chunk`), or when it cannot be had
        that way, the first chunk of merged windows."""
        upper = self._upper
        self._reverse = False
        if upper is not None and lo >= upper:
            return self._unposition()
        try:
            got = self._seek_chunk(lo)
        except ValueError:
            db = self._db
            if db._closed:  # a table's map was closed under the cursor by DB.close()
                self._shut(db._closed_error())
                raise ClosedError(self._closed) from None
            raise
        if got is not None:
            return got
        return self._windows_from(lo)

    def _windows_from(self, lo: bytes) -> bool:
        """Position at the first key >= ``lo`` through merged windows."""
        upper = self._upper
        if upper is not None and lo >= upper:
            return self._unposition()
        view = self._view
        self._resume = None
        assert view.sv is not None  # a cursor's view pins its super version
        self._gen = merge_windows(_seek_sources(self._db._window_sources(view.sv, view.seq, lo, upper, False,
                                                                         self._now)), False)
        return self._pull()

    def _backward(self, hi: bytes | None) -> bool:
        """Position at the last key < ``hi`` (None: no bound; ``hi`` <= upper), moving backward."""
        lower = self._lower
        self._reverse = True
        if hi is not None and hi <= lower:
            return self._unposition()
        view = self._view
        self._resume = None
        assert view.sv is not None  # a cursor's view pins its super version
        self._gen = merge_windows(_seek_sources(self._db._window_sources(view.sv, view.seq, lower, hi, True,
                                                                         self._now)), True)
        return self._pull()

    def _unposition(self) -> bool:
        self._gen = None
        self._resume = None
        self._keys = self._values = _EMPTY
        self._i = 0
        return False

    def _seek_chunk(self, lo: bytes) -> bool | None:
        """Position at the first key >= ``lo`` with the chunk a seek needs,
        read from the sources directly: per table, the rest of the block
        ``lo`` falls in; per memtable, 16 keys. The chunk is every key up to
        the lowest last key among those windows whose source has more to come
        (as :func:`~lsm.iterators.merge_windows` cuts chunks), at most
        :data:`SEEK_KEYS` keys of the window setting that bound; while fewer
        are there, that window reads its next block. A table whose first key
        lies above the bound is not read (until reading on passes it).
        Moving past the chunk goes on with merged windows from the key after
        the bound (``_resume``).

        Returns None, having changed nothing, when the view holds what this
        shortcut does not handle (range tombstones; a window emptied by
        resolving): the caller then uses merged windows.
        """
        view = self._view
        sv = view.sv
        assert sv is not None  # a cursor's view pins its super version
        if sv.range_dels or sv.mem.range_dels:
            return None  # range tombstones anywhere in the view: merged windows apply them
        seq = view.seq
        hi = self._upper
        now = self._now
        wins: list[list[Any]] = []  # [rank, keys, values, has_tomb, more, block position (None: a memtable)]
        bound = None  # the lowest last key of a window whose source has more to come ...
        bw: list[Any] | None = None  # ... and that window
        rank = 0  # sources newest first: memtables, L0 newest first, then each deeper level
        for m in (sv.mem,) + sv.imms:
            if m.entries:
                if m.range_dels:
                    return None
                keys = m.keys_in(lo, hi, _FROM_LO, False, FIRST_WINDOW)
                more = len(keys) == FIRST_WINDOW
                keys, values, tomb = resolve_mem(m, keys, seq, now)
                if keys:
                    w: list[Any] = [rank, keys, values, tomb, more, None]
                    wins.append(w)
                    if more and (bound is None or keys[-1] < bound):
                        bound, bw = keys[-1], w
                elif more:
                    return None  # resolving emptied the window: no bound to cut at
            rank += 1
        # Tables: (lowest key it may hold, rank, meta, its run (None: an L0 table), index in the run)
        tables: list[tuple[bytes, int, FileMeta, list[FileMeta] | None, int]] = []
        version = sv.version
        for f in version.levels[0]:
            if f.largest >= lo and (hi is None or f.smallest < hi):
                tables.append((f.smallest if f.smallest > lo else lo, rank, f, None, 0))
            rank += 1
        for largest, files in version.deep:
            fi = bisect_left(largest, lo)
            if fi < len(files):
                f = files[fi]
                if hi is None or f.smallest < hi:
                    tables.append((f.smallest if f.smallest > lo else lo, rank, f, files, fi))
            rank += 1
        if len(tables) > 1:
            tables.sort(key=_first2)
        opener = self._db._tables.reader
        t = 0  # tables[:t] are read
        while True:
            while t < len(tables) and (bound is None or tables[t][0] <= bound):
                # A table whose lowest key is above the bound is not read
                # (unless reading on raises the bound past it).
                floor, rank, f, run, fi = tables[t]
                t += 1
                r = f.reader or opener(f)
                bi = bisect_left(r.ikeys, lo) if lo else 0
                if bi == len(r.ikeys):
                    return None  # no key >= lo here (cannot happen without range tombstones)
                pos = [r, f, run, fi, bi, r.plain and f.max_seq <= seq]
                got = _next_block(pos, lo, hi, seq, now, opener)
                if got is None:
                    return None
                keys, values, tomb, more = got
                if keys:
                    w = [rank, keys, values, tomb, more, pos]
                    wins.append(w)
                    if more and (bound is None or keys[-1] < bound):
                        bound, bw = keys[-1], w
                elif more:
                    return None
            if bw is None or len(bw[1]) >= SEEK_KEYS:
                break
            # Few keys up to the bound: unless the other windows make up
            # the difference, the window that sets it reads its next block.
            n = 0
            for w in wins:
                n += bisect_right(w[1], bound)
            if n >= SEEK_KEYS or bw[5] is None:
                break  # enough; or a memtable window, which holds 16 keys up to the bound
            got = _next_block(bw[5], lo, hi, seq, now, opener)
            if got is None or (not got[0] and got[3]):
                return None
            keys, values, tomb, more = got
            bw[1] = [*bw[1], *keys]
            bw[2] = [*bw[2], *values]
            bw[3] = bw[3] or tomb
            bw[4] = more
            bound = bw = None
            for w in wins:
                if w[4] and (bound is None or w[1][-1] < bound):
                    bound, bw = w[1][-1], w
        if bw is not None and len(bw[1]) > SEEK_KEYS:
            bound = bw[1][SEEK_KEYS - 1]  # the chunk ends after SEEK_KEYS keys of the window that sets the bound
        if len(wins) > 1:
            wins.sort(key=_first)
        parts = []
        for _, keys, values, tomb, _, _ in wins:
            if bound is not None and keys[-1] > bound:
                e = bisect_right(keys, bound)
                if e:
                    parts.append((keys[:e], values[:e], tomb))
            else:
                parts.append((keys, values, tomb))
        self._gen = None
        self._resume = bound
        if parts:
            chunk_keys, chunk_values = _merge_chunk(parts)
            if chunk_keys:
                self._keys = chunk_keys
                self._values = chunk_values
                self._i = 0
                if self._closed is not None:  # closed meanwhile: drop the chunk
                    self._keys = self._values = _EMPTY
                    raise ClosedError(self._closed)
                return True
        return self._pull()  # everything up to the bound is deleted: go on after it

    def _pull(self) -> bool:
        """Make the next non-empty chunk current and return True, or leave
        the cursor not valid and return False."""
        gen = self._gen
        if gen is None and self._resume is not None:  # past a seek's chunk
            resume, self._resume = self._resume, None
            return self._windows_from(resume + b"\x00")
        if gen is not None:
            db = self._db
            if db._closed:
                self._shut(db._closed_error())
                raise ClosedError(self._closed)
            try:
                for keys, values in gen:
                    if keys:
                        self._keys = keys
                        self._values = values
                        self._i = 0
                        if self._closed is not None:  # closed meanwhile: drop the chunk
                            self._keys = self._values = _EMPTY
                            raise ClosedError(self._closed)
                        return True
            except ValueError:
                if db._closed:  # a table's map was closed under the cursor by DB.close()
                    self._shut(db._closed_error())
                    raise ClosedError(self._closed) from None
                raise
        return self._unposition()


SEEK_KEYS = 12  # keys in a forward seek's first chunk: it reads on until it has them (or the range ends)
_INSERT_MAX = 8  # _merge_chunk inserts up to this many keys one by one; more go through a dict
_first = itemgetter(0)
_first2 = itemgetter(0, 1)
_FROM_LO = (True, False)  # Memtable.keys_in: lo inclusive, hi exclusive


def _merge_chunk(parts: list) -> tuple[list, Sequence]:
    """:func:`~lsm.iterators.merge_parts` of a seek's parts (newest first,
    ascending). Two parts of which one is short, the usual case, are merged
    by inserting the short one's keys into the other with ``bisect`` (a
    seek's chunk is a few dozen keys: cheaper than a dict and a sort)."""
    if len(parts) != 2:
        return merge_parts(parts, False)
    (ka, va, ta), (kb, vb, tb) = parts
    if len(ka) > len(kb):
        big_keys, big_values, small_keys, small_values, small_newer = ka, va, kb, vb, False
    else:
        big_keys, big_values, small_keys, small_values, small_newer = kb, vb, ka, va, True
    if len(small_keys) > _INSERT_MAX:
        return merge_parts(parts, False)
    keys = list(big_keys)
    values = list(big_values)
    i = 0
    for k, v in zip(small_keys, small_values):
        i = bisect_left(keys, k, i)
        if i < len(keys) and keys[i] == k:
            if small_newer:
                values[i] = v
        else:
            keys.insert(i, k)
            values.insert(i, v)
        i += 1
    if ta or tb:
        keep = [v is not TOMB for v in values]
        return [k for k, ok in zip(keys, keep) if ok], [v for v, ok in zip(values, keep) if ok]
    return keys, values


def _next_block(pos: list, lo: bytes, hi: bytes | None, seq: int, now: float,
                opener) -> tuple[Any, Any, bool, bool] | None:
    """The entries in ``[lo, hi)`` of the block at ``pos`` (``[reader, meta,
    run or None, index in run, block, plain]``), resolved at ``seq`` and
    ``now``, and ``pos`` moved on to the next block: ``(keys, values,
    has_tomb, more)``, ``more`` False when the run holds nothing in range
    after them. None when the table holds range tombstones."""
    r, f, run, fi, bi, plain = pos
    if r.range_dels:
        return None
    keys, tags, values, _, above = r.cut(bi, lo, hi, not plain)
    tomb = False
    if not plain and keys:
        keys, values = resolve(keys, tags, values, seq, now)
        tomb = True
    if above:
        return keys, values, tomb, False
    if bi + 1 < len(r.ikeys):
        pos[4] = bi + 1
        return keys, values, tomb, True
    if run is None or fi + 1 == len(run):
        return keys, values, tomb, False
    f = run[fi + 1]
    if hi is not None and f.smallest >= hi:
        return keys, values, tomb, False
    r = f.reader or opener(f)
    pos[:] = [r, f, run, fi + 1, 0, r.plain and f.max_seq <= seq]
    return keys, values, tomb, True


def _seek_sources(sources: list) -> list:
    """``sources`` with each table's first window cut down to what is left
    of the block the seek lands in: a seek followed by a few moves then
    decodes one block per table, not two (windows grow from there)."""
    for s in sources:
        if type(s) is TableWindows:
            s.want = 1
    return sources
