"""Range tombstones, cut into fragments for reading.

A range tombstone ``(start, end, seq)`` deletes every version of every key
``start <= k < end`` with a sequence below ``seq``, for readers whose view
includes ``seq``: a version ``(k, s)`` is hidden from a reader at sequence
``r`` exactly when some tombstone covers ``k`` with ``s < seq <= r``. The
rule compares sequences only, so it holds wherever the tombstone and the
version live (memtable, L0, a deeper level).

Tombstones may overlap. :class:`Fragments` cuts a set of them at every start
and end into disjoint fragments, each with the ascending sequences of the
tombstones over it (RocksDB's fragmented range tombstones), so that the
newest tombstone over a key at or below a reader's sequence is two
bisections away however many tombstones there are. :class:`Visible` is the
view of one or more fragment sets at one sequence: for each fragment only
the newest sequence at or below it, which is all a scan needs to mask its
windows.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from heapq import heappop, heappush

__all__ = ["Fragments", "Visible", "clip", "end_bound", "key_successor"]


def key_successor(key: bytes) -> bytes:
    """The smallest key above ``key`` (``key + b"\\x00"``): a tombstone clipped
    to end there covers ``key`` and nothing after it."""
    return key + b"\x00"


def end_bound(end: bytes) -> bytes:
    """The inclusive bound a table records for a tombstone ending (exclusive)
    at ``end``: the last key it covers when ``end`` is some ``m + b"\\x00"``
    (``m``: how compaction cuts tombstones between tables), else ``end``
    itself (one key more than covered; the largest key below it has no
    finite name)."""
    return end[:-1] if end.endswith(b"\x00") else end


class Fragments:
    """Disjoint fragments of a set of range tombstones. Immutable.

    Fragment ``i`` covers ``[starts[i], ends[i])`` and carries ``seqs[i]``,
    the ascending sequences of every tombstone over it. Fragments are in key
    order; gaps between them are covered by nothing.

    >>> f = Fragments.build([(b"a", b"m", 5), (b"f", b"z", 9)])
    >>> [(s, e, q) for s, e, q in f]
    [(b'a', b'f', [5]), (b'f', b'm', [5, 9]), (b'm', b'z', [9])]
    >>> f.covering(b"g", 8), f.covering(b"g", 100), f.covering(b"z", 100)
    (5, 9, 0)
    """

    __slots__ = ("starts", "ends", "seqs", "count", "max_seq")

    def __init__(self, starts: list[bytes], ends: list[bytes], seqs: list[list[int]], count: int) -> None:
        self.starts = starts
        self.ends = ends
        self.seqs = seqs
        self.count = count  # tombstones fragmented
        self.max_seq = max((s[-1] for s in seqs), default=0)

    @classmethod
    def build(cls, tombstones: Iterable[tuple[bytes, bytes, int]]) -> Fragments:
        """Fragment ``(start, end, seq)`` tombstones (any order; empty ranges ignored)."""
        ts = sorted(t for t in tombstones if t[0] < t[1])
        starts: list[bytes] = []
        ends: list[bytes] = []
        seqs: list[list[int]] = []
        active: list[tuple[bytes, int]] = []  # heap of (end, seq) of the tombstones over the sweep point
        i, n = 0, len(ts)
        pos = ts[0][0] if ts else b""
        while i < n or active:
            if not active:
                pos = ts[i][0]
            while i < n and ts[i][0] == pos:
                heappush(active, (ts[i][1], ts[i][2]))
                i += 1
            # the next boundary: the nearest end of an active tombstone or start of a new one
            nxt = active[0][0]
            if i < n and ts[i][0] < nxt:
                nxt = ts[i][0]
            cover = sorted(s for _, s in active)
            if starts and ends[-1] == pos and seqs[-1] == cover:
                ends[-1] = nxt  # same tombstones as the fragment before: extend it
            else:
                starts.append(pos)
                ends.append(nxt)
                seqs.append(cover)
            pos = nxt
            while active and active[0][0] <= pos:
                heappop(active)
        return cls(starts, ends, seqs, n)

    def __iter__(self):
        return iter(zip(self.starts, self.ends, self.seqs))

    def __len__(self) -> int:
        return len(self.starts)

    def covering(self, key: bytes, seq: int) -> int:
        """The newest sequence ``<= seq`` of a tombstone over ``key``; 0 if none."""
        i = bisect_right(self.starts, key) - 1
        if i < 0 or key >= self.ends[i]:
            return 0
        s = self.seqs[i]
        j = bisect_right(s, seq)
        return s[j - 1] if j else 0

    def visible(self, seq: int, lo: bytes = b"", hi: bytes | None = None) -> list[tuple[bytes, bytes, int]]:
        """``(start, end, newest sequence <= seq)`` of each fragment that has
        one, among those meeting ``[lo, hi)`` (``hi`` None: unbounded)."""
        starts = self.starts
        i = bisect_right(self.ends, lo) if lo else 0  # the first fragment ending after lo
        j = len(starts) if hi is None else bisect_left(starts, hi, i)  # past the last starting below hi
        out = []
        for start, end, s in zip(starts[i:j], self.ends[i:j], self.seqs[i:j]):
            if s[0] <= seq:
                out.append((start, end, s[-1] if s[-1] <= seq else s[bisect_right(s, seq) - 1]))
        return out

    def tombstones(self) -> list[tuple[bytes, bytes, int]]:
        """Equivalent tombstones, one per fragment and sequence (what a table stores)."""
        return [(a, b, s) for a, b, ss in zip(self.starts, self.ends, self.seqs) for s in ss]


class Visible:
    """The tombstones one reader sees: disjoint fragments with the newest
    visible sequence of each (from one or more :class:`Fragments` at one read
    sequence). Immutable.

    >>> v = Visible.at([Fragments.build([(b"b", b"d", 7)])], 10)
    >>> v.hides(b"c", 6), v.hides(b"c", 7), v.hides(b"d", 1), v.touches(b"d", b"z")
    (True, False, False, False)
    """

    __slots__ = ("starts", "ends", "tmax")

    def __init__(self, starts: list[bytes], ends: list[bytes], tmax: list[int]) -> None:
        self.starts = starts
        self.ends = ends
        self.tmax = tmax

    @classmethod
    def at(cls, frags: Sequence[Fragments], seq: int, lo: bytes = b"",
           hi: bytes | None = None) -> Visible | None:
        """What ``frags`` show a reader at ``seq`` of the keys ``[lo, hi)``
        (``hi`` None: unbounded), or None when nothing. Costs the fragments
        in that range, not all of them."""
        parts = [p for p in (f.visible(seq, lo, hi) for f in frags) if p]
        if not parts:
            return None
        if len(parts) == 1:
            vis = parts[0]
        else:
            # Overlapping fragments of several sets: fragment once more, keeping the max.
            f = Fragments.build(t for p in parts for t in p)
            vis = [(a, b, s[-1]) for a, b, s in f]
        return cls([v[0] for v in vis], [v[1] for v in vis], [v[2] for v in vis])

    def touches(self, lo: bytes, hi: bytes) -> bool:
        """Whether any fragment meets the keys ``lo <= k <= hi``."""
        i = bisect_right(self.ends, lo)  # the first fragment ending after lo
        return i < len(self.starts) and self.starts[i] <= hi

    def hides(self, key: bytes, seq: int) -> bool:
        """Whether a version of ``key`` at sequence ``seq`` is deleted."""
        i = bisect_right(self.starts, key) - 1
        return i >= 0 and key < self.ends[i] and seq < self.tmax[i]

    def mask(self, keys: Sequence[bytes], seqs: Sequence[int], values: list, tomb: object) -> bool:
        """Set ``values[j] = tomb`` for every version ``(keys[j], seqs[j])``
        this view hides (``keys`` ascending); return whether there was any.
        One pass: fragments and keys are walked together."""
        starts, ends, tmax = self.starts, self.ends, self.tmax
        nf = len(starts)
        if not keys:
            return False
        i = bisect_right(ends, keys[0])
        hit = False
        for j, k in enumerate(keys):
            while i < nf and ends[i] <= k:
                i += 1
            if i == nf:
                break
            if starts[i] <= k and seqs[j] < tmax[i]:
                values[j] = tomb
                hit = True
        return hit


def clip(tombstones: Iterable[tuple[bytes, bytes, int]], lo: bytes | None,
         hi: bytes | None) -> list[tuple[bytes, bytes, int]]:
    """``tombstones`` cut to ``[lo, hi)`` (None: unbounded), empty ones left out."""
    out = []
    for a, b, s in tombstones:
        if lo is not None and a < lo:
            a = lo
        if hi is not None and b > hi:
            b = hi
        if a < b:
            out.append((a, b, s))
    return out
