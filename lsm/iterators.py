"""Merging sorted sources into what a reader sees, at the granularity Python
is fast at: columns, not entries (a C-level call per chunk of keys rather
than Python code per entry).

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
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter

from .keys import DELETE, PUT, PUT_TTL, split_ttl
from .rangedel import Visible

__all__ = ["EAGER_BLOCKS", "TOMB", "MemWindows", "TableWindows", "WINDOW", "merge", "merge_parts", "merge_windows",
           "prefix_successor", "read_range", "resolve", "resolve_masked", "resolve_mem", "visible"]

_F64 = struct.Struct("<d")
_SECOND = itemgetter(1)  # the stored value of a memtable version (tag, value)

WINDOW = 512  # entries a source reads ahead per window: enough to amortise a window, small for memory
FIRST_WINDOW = 16  # a scan's first window per source; each next one doubles, up to WINDOW (a seek
# that reads a few entries should not decode hundreds)
EAGER_BLOCKS = 24  # a bounded scan covering at most this many blocks in all is read whole at the call


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
            out_v.append(v[8:] if _F64.unpack_from(v)[0] > now else TOMB)  # keys.split_ttl, inlined
        else:
            raise AssertionError(f"unknown entry kind {kind}")
    return out_k, out_v


def resolve_masked(keys: Sequence[bytes], tags: Sequence[int], values: Sequence[bytes], seq: int,
                   now: float, vis: Visible) -> tuple[list[bytes], list, bool]:
    """:func:`resolve`, then :data:`TOMB` for each key whose version a range
    tombstone of ``vis`` hides: ``(keys, values, any hidden)``."""
    out_k: list[bytes] = []
    out_v: list = []
    out_s: list[int] = []
    last = None
    for k, t, v in zip(keys, tags, values):
        if k == last or t >> 8 > seq:
            continue
        last = k
        kind = t & 0xFF
        out_k.append(k)
        out_s.append(t >> 8)
        if kind == PUT:
            out_v.append(v)
        elif kind == DELETE:
            out_v.append(TOMB)
        elif kind == PUT_TTL:
            out_v.append(v[8:] if _F64.unpack_from(v)[0] > now else TOMB)  # keys.split_ttl, inlined
        else:
            raise AssertionError(f"unknown entry kind {kind}")
    vis.mask(out_k, out_s, out_v, TOMB)
    return out_k, out_v, True


class TableWindows:
    """Windows of a run of key-disjoint tables (one L0 table, or one level)
    within ``[lo, hi)``, ascending or (``reverse``) descending.

    ``files`` are the run's metas in key order; ``open_reader(meta)`` gives a
    table's reader (the table cache). Tables are opened as the scan reaches
    them. ``vis``: the range tombstones the reader sees, or None.
    """

    __slots__ = ("files", "open_reader", "lo", "hi", "reverse", "seq", "now", "fi", "bi", "done", "want", "vis")

    def __init__(self, files: list, smallest: list[bytes], largest: list[bytes], open_reader, lo: bytes,
                 hi: bytes | None, reverse: bool, seq: int, now: float, vis: Visible | None = None) -> None:
        self.vis = vis
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
        self.want = FIRST_WINDOW

    def next_window(self) -> tuple[list, list, bool] | None:
        """``(keys, values, has_tomb)`` of the next entries (ascending within
        the window), or None once the run is exhausted. ``self.done`` is set
        once a window is the run's last."""
        if self.done:
            return None
        want = self.want
        self.want = min(2 * want, WINDOW)
        files, lo, hi, seq, reverse, vis = self.files, self.lo, self.hi, self.seq, self.reverse, self.vis
        parts = []
        n = 0
        tomb = False
        fi, bi = self.fi, self.bi
        while n < want:
            if not 0 <= fi < len(files):
                self.done = True
                break
            f = files[fi]
            r = f.reader or self.open_reader(f)
            nblocks = len(r.ikeys)
            if bi < 0:  # position in a new file
                if reverse:
                    bi = nblocks - 1 if hi is None else min(bisect_left(r.ikeys, hi), nblocks - 1)
                else:
                    bi = bisect_left(r.ikeys, lo) if lo else 0
                if not 0 <= bi < nblocks:
                    fi, bi = fi + (-1 if reverse else 1), -1
                    continue
            plain = r.plain and f.max_seq <= seq
            masked = vis is not None and vis.touches(r.ikeys[bi - 1] if bi else f.smallest, r.ikeys[bi])
            keys, tags, values, below, above = r.cut(bi, lo, hi, masked or not plain)
            if reverse:
                if below:
                    fi = -1  # lo falls in this block: nothing below it is in range
                elif bi == 0:
                    fi, bi = fi - 1, -1
                else:
                    bi -= 1
            elif above:
                fi = len(files)  # hi falls in this block
            elif bi + 1 == nblocks:
                fi, bi = fi + 1, -1
            else:
                bi += 1
            if not keys:
                continue
            if masked:
                assert vis is not None  # masked implies a visibility mask
                keys, values, _ = resolve_masked(keys, tags, values, seq, self.now, vis)
                if not keys:
                    continue
                tomb = True
            elif not plain:
                keys, values = resolve(keys, tags, values, seq, self.now)
                if not keys:
                    continue
                tomb = True
            parts.append((keys, values))
            n += len(keys)
        self.fi, self.bi = fi, bi
        if not parts:
            self.done = True
            return None
        if len(parts) == 1:
            ks, vs = parts[0]
            return (ks if type(ks) is list else list(ks)), vs, tomb
        if reverse:
            parts.reverse()
        keys = []
        values = []
        for ks, vs in parts:
            keys += ks
            values += vs
        return keys, values, tomb


def resolve_mem(mem, keys: list[bytes], seq: int, now: float,
                vis: Visible | None = None) -> tuple[list, list, bool]:
    """``keys`` of memtable ``mem`` (in the order given) with their newest
    version at or below ``seq``: ``(keys, values, has_tomb)``, keys with no
    such version left out, :data:`TOMB` for deleted or expired ones (or
    hidden by a range tombstone of ``vis``; then ``keys`` must ascend)."""
    dget = mem._dget
    if vis is not None and keys and vis.touches(min(keys[0], keys[-1]), max(keys[0], keys[-1])):
        return _resolve_mem_masked(mem, keys, seq, now, vis)
    if not mem.special and mem.max_seq <= seq:
        values = list(map(_SECOND, map(dget, keys)))
        # Checked after the values were read: the writer raises max_seq (and
        # special) before it stores a version, so an unchanged max_seq means
        # no version above seq was read.
        if not mem.special and mem.max_seq <= seq and not mem.has_older():
            return keys, values, False
    out_k, out_v = [], []
    tomb = False
    for k in keys:
        v = dget(k)  # (tag, stored value)
        if v is None:
            continue  # being added now (a new key enters the index before the dict): newer than any view
        if v[0] >> 8 > seq:
            v = mem.get_at(k, seq)
            if v is None:
                continue
        kind = v[0] & 0xFF
        out_k.append(k)
        if kind == PUT:
            out_v.append(v[1])
        elif kind == DELETE:
            out_v.append(TOMB)
            tomb = True
        elif _F64.unpack_from(v[1])[0] > now:  # keys.split_ttl, inlined
            out_v.append(v[1][8:])
        else:
            out_v.append(TOMB)
            tomb = True
    return out_k, out_v, tomb


def _resolve_mem_masked(mem, keys: list[bytes], seq: int, now: float, vis: Visible) -> tuple[list, list, bool]:
    asc = len(keys) < 2 or keys[0] < keys[-1]
    if not asc:
        keys = keys[::-1]
    got = mem.get_at
    out_k, out_t, out_v = [], [], []
    for k in keys:
        v = got(k, seq)
        if v is None:
            continue
        out_k.append(k)
        out_t.append(v[0])
        out_v.append(v[1])
    out_k, out_v, _ = resolve_masked(out_k, out_t, out_v, seq, now, vis)
    if not asc:
        out_k.reverse()
        out_v.reverse()
    return out_k, out_v, True


class MemWindows:
    """Windows of a memtable within ``[lo, hi)``: its keys in order, each
    with its newest version at or below ``seq``."""

    __slots__ = ("mem", "lo", "hi", "inclusive", "seq", "now", "reverse", "done", "want", "vis")

    def __init__(self, mem, lo: bytes, hi: bytes | None, reverse: bool, seq: int, now: float,
                 vis: Visible | None = None) -> None:
        self.vis = vis
        self.mem = mem
        self.lo = lo
        self.hi = hi
        self.inclusive = (True, False)
        self.seq = seq
        self.now = now
        self.reverse = reverse
        self.done = False
        self.want = FIRST_WINDOW

    def next_window(self) -> tuple[list, list, bool] | None:
        mem = self.mem
        while not self.done:
            want = self.want
            self.want = min(2 * want, WINDOW)
            keys = mem.keys_in(self.lo, self.hi, self.inclusive, self.reverse, want)
            if len(keys) < want:
                self.done = True
            elif self.reverse:
                self.hi = keys[-1]
            else:
                self.lo = keys[-1]
                self.inclusive = (False, False)
            if self.reverse:
                keys.reverse()
            got = resolve_mem(mem, keys, self.seq, self.now, self.vis)
            if got[0]:
                return got
        return None


def _live(keys: list, values: Sequence) -> tuple[list, list]:
    """``keys, values`` without the tombstoned keys."""
    keep = [v is not TOMB for v in values]
    return [k for k, ok in zip(keys, keep) if ok], [v for v, ok in zip(values, keep) if ok]


def merge_windows(sources: list, reverse: bool) -> Iterator[tuple[list, Sequence]]:
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
            yield merge_parts([(ks[:p], vs[:p], tomb) if reverse else (ks[p:] if p else ks, vs[p:] if p else vs,
                                                                        tomb)], reverse)
            w = s.next_window()
            if w is None:
                return
            a[1], a[2], a[3], a[4] = w[0], w[1], w[2], len(w[0]) if reverse else 0
            continue
        parts = []
        # A chunk takes every key up to the bound: the lowest last key among
        # the windows of sources that have more to come (a source's window
        # holds all of its keys up to its last one). Sources whose window is
        # their last do not bound it; a short scan is then one chunk.
        open_ = [a for a in act if not a[0].done]
        if reverse:
            bound = max(a[1][0] for a in open_) if open_ else b""
            for a in act:
                e = a[4]
                s = bisect_left(a[1], bound, 0, e)
                if s < e:
                    parts.append((a[1][s:e], a[2][s:e], a[3]))
                a[4] = s
        else:
            bound = min(a[1][-1] for a in open_) if open_ else None
            for a in act:
                p = a[4]
                e = bisect_right(a[1], bound, p) if bound is not None else len(a[1])
                if e > p:
                    parts.append((a[1][p:e], a[2][p:e], a[3]))
                a[4] = e
        if parts:
            yield merge_parts(parts, reverse)
        for a in list(act):
            if (a[4] == 0) if reverse else (a[4] == len(a[1])):
                w = a[0].next_window()
                if w is None:
                    act.remove(a)
                else:
                    a[1], a[2], a[3], a[4] = w[0], w[1], w[2], len(w[0]) if reverse else 0


def merge_parts(parts: Sequence[tuple[list, Sequence, bool]], reverse: bool) -> tuple[list, Sequence]:
    """One chunk from ``(keys, values, has_tomb)`` parts of sources, newest
    first, each ascending: every key once with its newest value, tombstoned
    keys left out, in scan order. The lists returned are new."""
    if len(parts) == 1:
        ks, vs, tomb = parts[0]
        if reverse:
            ks = ks[::-1]
            vs = vs[::-1]
        elif type(ks) is not list:
            ks = list(ks)
        return _live(ks, vs) if tomb else (ks, vs)
    d: dict = {}
    tomb = False
    for ks, vs, t in reversed(parts):  # oldest first: newer versions overwrite
        d.update(zip(ks, vs))
        tomb = tomb or t
    keys = sorted(d, reverse=reverse)
    values = list(map(d.__getitem__, keys))
    return _live(keys, values) if tomb else (keys, values)


def read_range(mems: Sequence, runs: Sequence[list], open_reader, lo: bytes, hi: bytes, reverse: bool, seq: int,
               now: float, max_blocks: int = EAGER_BLOCKS, vis: Visible | None = None) -> tuple[list, Sequence] | None:
    """All of ``[lo, hi)`` at ``seq`` as one chunk ``(keys, values)`` in scan
    order, read at once; or None when the tables hold more than
    ``max_blocks`` blocks of it (or the memtables more than
    ``max_blocks * 32`` keys): a long range is read in windows instead.

    ``mems`` are memtables, newest first; ``runs`` are lists of key-disjoint
    table metas in key order (one L0 table, or one level's overlapping
    files), newest first."""
    parts = []
    for m in mems:
        keys = m.keys_in(lo, hi, (True, False), False, 32 * max_blocks + 1)
        if len(keys) > 32 * max_blocks:
            return None
        if keys:
            part = resolve_mem(m, keys, seq, now, vis)
            if part[0]:
                parts.append(part)
    budget = max_blocks
    for run in runs:
        keys_acc: list = []
        values_acc: list = []
        tomb = False
        for f in run:
            r = f.reader or open_reader(f)
            ikeys = r.ikeys
            nb = len(ikeys)
            b0 = bisect_left(ikeys, lo) if lo else 0
            if b0 == nb:
                continue
            b1 = min(bisect_left(ikeys, hi, b0), nb - 1)
            budget -= b1 - b0 + 1
            if budget < 0:
                return None
            plain = r.plain and f.max_seq <= seq
            masked = vis is not None and vis.touches(max(lo, f.smallest), f.largest)
            for bi in range(b0, b1 + 1):
                keys, tags, values, _, _ = r.cut(bi, lo, hi, masked or not plain)
                if not keys:
                    continue
                if masked:
                    assert vis is not None  # masked implies a visibility mask
                    keys, values, _ = resolve_masked(keys, tags, values, seq, now, vis)
                    tomb = True
                elif not plain:
                    keys, values = resolve(keys, tags, values, seq, now)
                    tomb = True
                keys_acc += keys
                values_acc += values
        if keys_acc:
            parts.append((keys_acc, values_acc, tomb))
    if not parts:
        return [], []
    return merge_parts(parts, reverse)


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
            expires, user_value = split_ttl(value)
            if expires > now:
                yield key if keys_only else (key, user_value)
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
