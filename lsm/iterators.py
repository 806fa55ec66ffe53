"""Merging sorted sources into what a reader sees (STYLE habit 8, at the
granularity Python is fast at: columns, not entries).

A scan reads each source — a memtable, one L0 table, or the run of
key-disjoint tables of one deeper level — a **window** at a time: the
entries of a few blocks (or a few hundred memtable keys) as two parallel
lists, keys ascending and the value each key has *in that source* at the
reader's sequence number (:data:`TOMB` when it is deleted or expired
there). A source whose table properties show nothing to resolve (one
version per key, no tombstones or expiries, nothing newer than the reader)
hands out its columns as cut from the blocks; only the others are resolved
entry by entry (:func:`resolve`).

:func:`merge_windows` then yields chunks: all keys up to the smallest last
key among the sources' windows (ascending scans; descending mirror this),
merged with C-level operations — one source is a ``zip``, several are a
``dict`` filled oldest source first (so the newest version of each key
wins; sources are ordered newest first, and a key's versions in a newer
source are always newer), ``sorted``, and a ``zip`` over the dict. Every
per-entry step runs in C unless a source needs resolving.

The per-entry generators :func:`merge` and :func:`visible` remain for
compaction and the tools.
"""

from __future__ import annotations

import heapq
import struct
from bisect import bisect_left, bisect_right
from operator import itemgetter
from typing import Iterable, Iterator, Sequence

from .keys import DELETE, PUT, PUT_TTL

__all__ = ["TOMB", "MemWindows", "TableWindows", "WINDOW", "merge", "merge_windows", "prefix_successor",
           "resolve", "visible"]

_F64 = struct.Struct("<d")
_VALUE = itemgetter(2)

WINDOW = 512  # entries a source reads ahead per window: enough to amortise a window, small for memory


class _Tomb:
    """The value of a key that is deleted or expired in a source's view."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOMB"


TOMB = _Tomb()


def resolve(keys: Sequence[bytes], tags: Sequence[int], values: Sequence[bytes], seq: int,
            now: float) -> tuple[list[bytes], list]:
    """The newest version at or below ``seq`` of each key of a run of entries
    in table order (key ascending, sequence descending), as ``(keys, values)``
    with :data:`TOMB` for a key deleted or expired at ``now``."""
    out_k: list[bytes] = []
    out_v: list = []
    last = None
    for k, t, v in zip(keys, tags, values):
        if k == last or t >> 8 > seq:
            continue  # an older version of a key already resolved, or newer than the view
        last = k
        kind = t & 0xFF
        out_k.append(k)
        if kind == PUT:
            out_v.append(v)
        elif kind == DELETE:
            out_v.append(TOMB)
        elif kind == PUT_TTL:
            out_v.append(v[8:] if _F64.unpack_from(v)[0] > now else TOMB)
        else:
            raise AssertionError(f"unknown entry kind {kind}")
    return out_k, out_v


class TableWindows:
    """Windows of a run of key-disjoint tables (one L0 table, or one level)
    within ``[lo, hi)``, ascending or (``reverse``) descending.

    ``files`` are the run's metas in key order; ``open_reader(meta)`` gives a
    table's reader (the table cache). Tables are opened as the scan reaches
    them.
    """

    __slots__ = ("files", "open_reader", "lo", "hi", "reverse", "seq", "now", "fi", "bi", "done")

    def __init__(self, files: list, smallest: list[bytes], largest: list[bytes], open_reader, lo: bytes,
                 hi: bytes | None, reverse: bool, seq: int, now: float) -> None:
        self.files = files
        self.open_reader = open_reader
        self.lo = lo
        self.hi = hi
        self.reverse = reverse
        self.seq = seq
        self.now = now
        self.done = False
        if reverse:
            # the last file that may hold keys < hi
            self.fi = len(files) - 1 if hi is None else bisect_left(smallest, hi) - 1
        else:
            self.fi = bisect_left(largest, lo)  # the first file that may hold keys >= lo
        self.bi = -1  # block of files[fi] to read next (-1: position in the file first)

    def next_window(self, want: int = WINDOW) -> tuple[list, list, bool] | None:
        """``(keys, values, has_tomb)`` of the next entries (ascending within
        the window), or None once the run is exhausted."""
        if self.done:
            return None
        parts = []
        n = 0
        while n < want:
            got = self._next_block()
            if got is None:
                self.done = True
                break
            parts.append(got)
            n += len(got[0])
        if not parts:
            return None
        if self.reverse:
            parts.reverse()
        if len(parts) == 1:
            ks, vs, tomb = parts[0]
            return (ks if type(ks) is list else list(ks)), vs, tomb
        keys: list = []
        values: list = []
        tomb = False
        for ks, vs, t in parts:
            keys += ks
            values += vs
            tomb = tomb or t
        return keys, values, tomb

    def _next_block(self) -> tuple | None:
        """The next block's entries in range, resolved; None at the end."""
        files, lo, hi = self.files, self.lo, self.hi
        while 0 <= self.fi < len(files):
            f = files[self.fi]
            r = f.reader or self.open_reader(f)
            nblocks = len(r.ikeys)
            if self.bi < 0:
                if self.reverse:
                    self.bi = nblocks - 1 if hi is None else min(bisect_left(r.ikeys, hi), nblocks - 1)
                else:
                    self.bi = bisect_left(r.ikeys, lo) if lo else 0
            bi = self.bi
            if not 0 <= bi < nblocks:
                self._next_file()
                continue
            keys, tags, values = r.columns(bi)
            a = bisect_left(keys, lo) if lo and keys[0] < lo else 0
            b = len(keys) if hi is None or keys[-1] < hi else bisect_left(keys, hi)
            if self.reverse:
                if a > 0:
                    self._finish()  # lo falls in this block: nothing below it is in range
                elif bi == 0:
                    self._next_file()
                else:
                    self.bi = bi - 1
            elif b < len(keys):
                self._finish()  # hi falls in this block
            elif bi + 1 == nblocks:
                self._next_file()
            else:
                self.bi = bi + 1
            if a >= b:
                continue
            if a or b < len(keys):
                keys, tags, values = keys[a:b], tags[a:b], values[a:b]
            if r.plain and f.max_seq <= self.seq:
                return keys, values, False
            ks, vs = resolve(keys, tags, values, self.seq, self.now)
            if ks:
                return ks, vs, True
        return None

    def _next_file(self) -> None:
        self.fi += -1 if self.reverse else 1
        self.bi = -1

    def _finish(self) -> None:
        self.fi = -2 if self.reverse else len(self.files)


class MemWindows:
    """Windows of a memtable within ``[lo, hi)``: its keys in order, each
    with its newest version at or below ``seq``."""

    __slots__ = ("mem", "chunks", "seq", "now", "reverse")

    def __init__(self, mem, lo: bytes, hi: bytes | None, reverse: bool, seq: int, now: float) -> None:
        self.mem = mem
        self.chunks = mem.key_chunks(lo, hi, reverse, WINDOW)
        self.seq = seq
        self.now = now
        self.reverse = reverse

    def next_window(self, want: int = WINDOW) -> tuple[list, list, bool] | None:
        mem, seq = self.mem, self.seq
        for keys in self.chunks:
            if self.reverse:
                keys.reverse()
            dget = mem._dget
            if not mem.special and mem.max_seq <= seq:
                values = list(map(_VALUE, map(dget, keys)))
                # Checked after the values were read: the writer raises max_seq
                # (and special) before it stores a version, so an unchanged
                # max_seq means no version above seq was read.
                if not mem.special and mem.max_seq <= seq and not mem.has_older():
                    return keys, values, False
            out_k, out_v = [], []
            now = self.now
            tomb = False
            for k in keys:
                v = dget(k)
                if v[0] > seq:
                    v = mem.get_at(k, seq)
                    if v is None:
                        continue
                kind = v[1]
                out_k.append(k)
                if kind == PUT:
                    out_v.append(v[2])
                elif kind == DELETE:
                    out_v.append(TOMB)
                    tomb = True
                elif _F64.unpack_from(v[2])[0] > now:
                    out_v.append(v[2][8:])
                else:
                    out_v.append(TOMB)
                    tomb = True
            if out_k:
                return out_k, out_v, tomb
        return None


def _live(keys: list, values: list) -> tuple[list, list]:
    """``keys, values`` without the tombstoned keys."""
    keep = [v is not TOMB for v in values]
    return [k for k, ok in zip(keys, keep) if ok], [v for v, ok in zip(values, keep) if ok]


def merge_windows(sources: list, reverse: bool) -> Iterator[tuple[list, list]]:
    """Merge window sources (newest first) into chunks ``(keys, values)`` in
    scan order (ascending, or descending with ``reverse``): each key once,
    with its value in the newest source that has it; tombstoned keys left out.

    Each chunk's lists are new and owned by the caller.
    """
    act = []  # [source, keys, values, has_tomb, pos]: keys[:pos] (reverse: keys[pos:]) consumed
    for s in sources:
        w = s.next_window()
        if w is not None:
            act.append([s, w[0], w[1], w[2], len(w[0]) if reverse else 0])
    while act:
        if len(act) == 1:
            a = act[0]
            s, ks, vs, tomb, p = a
            if reverse:
                ks, vs = ks[:p], vs[:p][::-1]
                ks.reverse()
            elif p:
                ks, vs = ks[p:], vs[p:]
            yield _live(ks, vs) if tomb else (ks, vs)
            w = s.next_window()
            if w is None:
                return
            a[1], a[2], a[3], a[4] = w[0], w[1], w[2], len(w[0]) if reverse else 0
            continue
        parts = []
        if reverse:
            bound = max(a[1][0] for a in act)  # every source holds all its keys >= bound
            for a in act:
                e = a[4]
                s = bisect_left(a[1], bound, 0, e)
                if s < e:
                    parts.append((a[1][s:e], a[2][s:e], a[3]))
                a[4] = s
        else:
            bound = min(a[1][-1] for a in act)  # every source holds all its keys <= bound
            for a in act:
                p = a[4]
                e = bisect_right(a[1], bound, p)
                if e > p:
                    parts.append((a[1][p:e], a[2][p:e], a[3]))
                a[4] = e
        if len(parts) == 1:
            ks, vs, tomb = parts[0]
            if reverse:
                ks.reverse()
                vs = vs[::-1]
            yield _live(ks, vs) if tomb else (ks, vs)
        elif parts:
            d: dict = {}
            tomb = False
            for ks, vs, t in reversed(parts):  # oldest first: newer versions overwrite
                d.update(zip(ks, vs))
                tomb = tomb or t
            keys = sorted(d, reverse=reverse)
            values = list(map(d.__getitem__, keys))
            yield _live(keys, values) if tomb else (keys, values)
        for a in list(act):
            if (a[4] == 0) if reverse else (a[4] == len(a[1])):
                w = a[0].next_window()
                if w is None:
                    act.remove(a)
                else:
                    a[1], a[2], a[3], a[4] = w[0], w[1], w[2], len(w[0]) if reverse else 0


def merge(sources: list[Iterator[tuple]], reverse: bool = False) -> Iterator[tuple]:
    """Union already-sorted sources into one sorted stream, without de-duplicating."""
    if len(sources) == 1:
        return sources[0]
    return heapq.merge(*sources, reverse=reverse)


def visible(entries: Iterable[tuple], seq: int, now: float, reverse: bool,
            keys_only: bool = False) -> Iterator:
    """The user's view of merged ``entries`` at sequence ``seq`` and time ``now``.

    Yields ``(key, value)`` (or bare keys with ``keys_only``) for the newest
    version of each key with sequence <= ``seq``, skipping tombstones and
    entries expired at ``now``.
    """
    last = None
    for key, s, kind, value in entries:
        if key == last:
            continue
        if (s if reverse else -s) > seq:
            continue  # newer than the view; an older version may still be visible
        last = key
        if kind == PUT:
            yield key if keys_only else (key, value)
        elif kind == PUT_TTL:
            if _F64.unpack_from(value)[0] > now:
                yield key if keys_only else (key, value[8:])
        elif kind != DELETE:
            raise AssertionError(f"unknown entry kind {kind}")


def prefix_successor(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key starting with ``prefix``; None if unbounded.

    >>> prefix_successor(b"ab"), prefix_successor(b"a\\xff"), prefix_successor(b"\\xff")
    (b'ac', b'b', None)
    """
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))
