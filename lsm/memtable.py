"""The memtable: recent writes, kept so that a put pays for a dict insert
and not for order.

Layout:

* ``_d``: user key -> its newest version ``(tag, stored_value)``, where
  ``tag = seq << 8 | kind`` (the tag of the table formats: a flush writes
  it as it is);
* ``_older``: user key -> the versions it replaced, oldest first (only keys
  written more than once in this memtable; snapshots may need them);
* ``_index``: a ``SortedList`` of keys, brought up to date on demand by
  folding in ``_tail``, the keys that are new since (in insertion order).

A put appends a new key to ``_tail`` and stores one tuple; nothing is
sorted until a scan (``_index.update(tail)``, one C sort when the tail is
large) or the flush (``sorted`` once) needs the order. Measured on 1M
random 16-byte keys: keeping a ``SortedList`` current on every put cost
1.25 us of a 4.1 us insert (plus a list per key for the cyclic GC to
scan); the lazy layout costs ~0.3 us (doc/design.md#memtable).

Versions are only ever added and keys never removed, so a reader that
remembers a sequence number sees a fixed view while the writer goes on.

Locking: the commit leader is the only writer; ``add`` takes no lock. Every
step a reader can observe is one atomic operation under the GIL, in an
order that keeps reads correct: an overwritten version is appended to
``_older`` before ``_d`` points at its replacement (so a reader that finds a
version too new for its view always finds the older ones), and a new key is
appended to ``_tail`` before it enters ``_d``. ``lock`` serialises what
readers do to the shared index: folding the tail in, and copying chunks of
keys out of it.
"""

from __future__ import annotations

import struct
import threading
from array import array
from collections.abc import Iterator
from itertools import accumulate, islice
from operator import itemgetter

from sortedcontainers import SortedList

from .invariants import check
from .keys import PUT, RANGE_DELETE
from .memory import SLOT
from .rangedel import Fragments

__all__ = ["ENTRY_HELD", "ENTRY_OVERHEAD", "Memtable"]

ENTRY_OVERHEAD = 40  # bytes charged per version beyond key and value (the tuple and the dict slot)
# Bytes of heap a version really holds beyond its key and value bytes: the
# two bytes objects' headers and allocator rounding, the (tag, value) tuple,
# the tag int, the dict slot, the new-key list slot. Measured by resident
# memory over 500k entries of 16-byte keys and 10-400-byte values: 232-249.
# So a memtable of ``memtable_bytes`` (charged at ENTRY_OVERHEAD) holds about
# (key + value + 240) / (key + value + 40) times that: 2.3x at 16 + 100 bytes.
ENTRY_HELD = 240
_CHUNK = 256  # keys copied out per lock hold during iteration
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_EXPORT_VERSION = 1  # of Memtable.export's layout (parent and worker run the same code)
# version, log_number, max_seq, entries, special, nbytes; counts: newest versions, older versions, range tombstones
_EXPORT_HEAD = struct.Struct("=BQQQQQQQQ")


class Memtable:
    """In-memory buffer of one write-ahead log's worth of writes.

    Thread safety: ``add`` (and ``add_range_del``) must be called by one
    writer at a time; every read method may run concurrently with it.
    """

    __slots__ = ("_d", "_dget", "_older", "_index", "_tail", "lock", "nbytes", "log_number", "immutable",
                 "entries", "special", "max_seq", "range_dels", "_frags")

    def __init__(self, log_number: int = 0) -> None:
        self._d: dict[bytes, tuple[int, bytes]] = {}
        self._dget = self._d.get
        self._older: dict[bytes, list[tuple[int, bytes]]] = {}
        self._index: SortedList = SortedList()
        self._tail: list[bytes] = []
        self.lock = threading.Lock()
        self.nbytes = 0  # read racily for size checks
        self.log_number = log_number
        self.immutable = False
        self.entries = 0  # versions added
        self.special = 0  # versions that are not plain puts (tombstones, TTL entries)
        self.max_seq = 0
        self.range_dels: list[tuple[bytes, bytes, int]] = []  # (start, end, seq), in seq order
        self._frags: tuple[int, Fragments] | None = None  # fragments of the first n range_dels

    def __len__(self) -> int:
        return len(self._d) + len(self.range_dels)

    @property
    def memory_bytes(self) -> int:
        """Bytes of heap this memtable holds (an estimate, doc/design.md#memory):
        ``nbytes`` with each version counted at :data:`ENTRY_HELD` rather than
        :data:`ENTRY_OVERHEAD`, plus the sorted index once a scan built it."""
        return self.nbytes + self.entries * (ENTRY_HELD - ENTRY_OVERHEAD) + SLOT * len(self._index)

    def add(self, seq: int, kind: int, key: bytes, value: bytes) -> None:
        """Requires: one writer at a time; ``seq`` greater than every sequence added before."""
        # Order matters to lock-free readers (module docstring): the counters a
        # scan checks, then the older version, then the new one.
        self.max_seq = seq
        if kind != PUT:
            self.special += 1
        old = self._dget(key)
        if old is None:
            self._tail.append(key)
        else:
            older = self._older.get(key)
            if older is None:
                self._older[key] = [old]
            else:
                older.append(old)
        self._d[key] = (seq << 8 | kind, value)
        self.nbytes += len(key) + len(value) + ENTRY_OVERHEAD
        self.entries += 1

    def add_ops(self, first: int, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Add ``ops`` (``(kind, key, value)``) at sequences ``first``, ``first + 1``, ...
        Requires: as :meth:`add`."""
        # add(), written out for the loop (keep the two alike): the same
        # steps in the same order for each op, which lock-free readers rely on.
        seq = first
        d = self._d
        dget = d.get
        tail_add = self._tail.append
        older_map = self._older
        for kind, key, value in ops:
            if kind == RANGE_DELETE:
                self.add_range_del(seq, key, value)
                seq += 1
                continue
            self.max_seq = seq
            if kind != PUT:
                self.special += 1
            old = dget(key)
            if old is None:
                tail_add(key)
            else:
                older = older_map.get(key)
                if older is None:
                    older_map[key] = [old]
                else:
                    older.append(old)
            d[key] = (seq << 8 | kind, value)
            self.nbytes += len(key) + len(value) + ENTRY_OVERHEAD
            self.entries += 1
            seq += 1

    def add_range_del(self, seq: int, start: bytes, end: bytes) -> None:
        """Record a range tombstone over ``[start, end)`` at ``seq`` (same rules as ``add``)."""
        self.max_seq = seq
        self.special += 1
        self.range_dels.append((start, end, seq))
        self.nbytes += len(start) + len(end) + ENTRY_OVERHEAD
        self.entries += 1

    def fragments(self) -> Fragments | None:
        """The range tombstones, fragmented (None if there are none). Cached
        until the writer adds one; any thread may call it (the writer only
        appends, and a reader fragments the prefix it saw)."""
        dels = self.range_dels
        n = len(dels)
        if not n:
            return None
        c = self._frags
        if c is None or c[0] != n:
            c = self._frags = (n, Fragments.build(dels[:n]))
        return c[1]

    # -- point reads ------------------------------------------------------

    def get(self, key: bytes) -> tuple[int, bytes] | None:
        """Newest ``(tag, stored_value)`` for ``key``, or None."""
        return self._dget(key)

    def get_at(self, key: bytes, seq: int) -> tuple[int, bytes] | None:
        """Newest ``(tag, stored_value)`` of ``key`` with sequence <= ``seq``, or None."""
        v = self._dget(key)
        if v is None or v[0] >> 8 <= seq:
            return v
        older = self._older.get(key)
        if older is not None:
            for v in reversed(older):
                if v[0] >> 8 <= seq:
                    return v
        return None

    def versions(self, key: bytes) -> list[tuple[int, bytes]]:
        """Every version ``(tag, stored_value)`` of ``key``, newest first."""
        v = self._dget(key)
        if v is None:
            return []
        older = self._older.get(key)
        return [v] if older is None else [v] + older[::-1]

    def has_older(self) -> bool:
        """Whether any key has more than one version here."""
        return bool(self._older)

    # -- order --------------------------------------------------------------

    def _fold_locked(self) -> None:
        """Bring the index up to date. Requires: ``lock`` held."""
        tail = self._tail
        n = len(tail)  # the writer may append meanwhile: take what is there now
        if n:
            self._index.update(tail[:n])
            del tail[:n]

    def sorted_keys(self) -> list[bytes]:
        """Every key in order (a new list). Requires: immutable (a flush)."""
        if len(self._tail) * 8 > len(self._index):
            return sorted(self._d)  # one C sort beats folding a large tail into the index
        with self.lock:
            self._fold_locked()
            return list(self._index)

    def iter_keys(self, lo: bytes, hi: bytes | None, reverse: bool = False) -> Iterator[bytes]:
        """Keys in ``[lo, hi)`` in order (descending with ``reverse``).

        A mutable memtable is walked in chunks copied under ``lock``; keys
        added later carry sequences above any reader's view, so missing
        them changes nothing a reader may see.
        """
        idx = self._index
        inclusive = (True, False)
        while True:
            with self.lock:
                self._fold_locked()
                chunk = list(islice(idx.irange(lo, hi, inclusive, reverse), _CHUNK))
            yield from chunk
            if len(chunk) < _CHUNK:
                return
            if reverse:
                hi = chunk[-1]
            else:
                lo = chunk[-1]
                inclusive = (False, False)

    def keys_in(self, lo: bytes, hi: bytes | None, inclusive: tuple[bool, bool], reverse: bool,
                limit: int) -> list[bytes]:
        """Up to ``limit`` keys between ``lo`` and ``hi`` (``inclusive`` says
        whether each end is), ascending or (``reverse``) descending."""
        with self.lock:
            self._fold_locked()
            return list(islice(self._index.irange(lo, hi, inclusive, reverse), limit))

    def count_keys(self, lo: bytes, hi: bytes | None) -> tuple[int, int]:
        """``(keys in [lo, hi), keys in all)``, by two bisections of the index
        (folding new keys in first). Keys a concurrent writer adds meanwhile
        may or may not be counted."""
        with self.lock:
            self._fold_locked()
            idx = self._index
            n = len(idx)
            a = idx.bisect_left(lo)
            b = n if hi is None else idx.bisect_left(hi)
        return max(0, b - a), n

    def iter_forward(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, -seq, kind, value)`` for lo <= key < hi: key ascending,
        newest version first (the merge order of lsm.iterators)."""
        for key in self.iter_keys(lo, hi):
            for tag, value in self.versions(key):
                yield key, -(tag >> 8), tag & 0xFF, value

    def iter_reverse(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, seq, kind, value)``: key descending, newest version first."""
        for key in self.iter_keys(lo, hi, True):
            for tag, value in self.versions(key):
                yield key, tag >> 8, tag & 0xFF, value

    def iter_entries(self) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Every version as ``(key, seq, kind, value)`` in table order. Requires: immutable."""
        older = self._older
        d = self._d
        for key in self.sorted_keys():
            tag, value = d[key]
            yield key, tag >> 8, tag & 0xFF, value
            if key in older:
                for tag, value in reversed(older[key]):
                    yield key, tag >> 8, tag & 0xFF, value

    def newest_columns(self) -> tuple[list[bytes], list[int], list[bytes]]:
        """``(keys, tags, values)`` of the newest version of every key, in key
        order. Requires: immutable. (A flush with no snapshot to serve writes
        just these: older versions are shadowed.)"""
        keys = self.sorted_keys()
        entries = list(map(self._d.__getitem__, keys))  # C-level maps: no Python code per entry
        return keys, list(map(_FIRST, entries)), list(map(_SECOND, entries))

    # -- transfer to a worker process -----------------------------------------

    def export(self) -> bytes:
        """Everything a flush needs, as one bytes object that
        :meth:`from_export` reads back in another process on the same machine
        (the flush worker). Built by C-level calls over the columns, so the
        flushing thread holds the GIL for a fraction of what building the
        table would cost. Requires: immutable.

        Layout (native byte order): ``_EXPORT_HEAD``, then three column
        groups — the newest versions, the older versions (each with its key,
        oldest first per key), the range tombstones (start, seq, end) — each
        as ``key lengths u32[n], value lengths u32[n], tags u64[n], keys,
        values``."""
        d = self._d
        keys = list(d)
        entries = list(d.values())
        okeys: list[bytes] = []
        older: list[tuple[int, bytes]] = []
        for k, versions in self._older.items():
            okeys += [k] * len(versions)
            older += versions
        dels = self.range_dels
        head = _EXPORT_HEAD.pack(_EXPORT_VERSION, self.log_number, self.max_seq, self.entries, self.special,
                                 self.nbytes, len(keys), len(older), len(dels))
        return b"".join([head]
                        + _columns(keys, map(_FIRST, entries), list(map(_SECOND, entries)))
                        + _columns(okeys, map(_FIRST, older), list(map(_SECOND, older)))
                        + _columns([r[0] for r in dels], [r[2] for r in dels], [r[1] for r in dels]))

    @classmethod
    def from_export(cls, data: bytes) -> Memtable:
        """The immutable memtable :meth:`export` wrote. Raises: ValueError if
        ``data`` is not such an export."""
        if len(data) < _EXPORT_HEAD.size:
            raise ValueError(f"not a memtable export: {len(data)} bytes")
        version, log_number, max_seq, entries, special, nbytes, n, n_older, n_dels = _EXPORT_HEAD.unpack_from(data)
        if version != _EXPORT_VERSION:
            raise ValueError(f"memtable export version {version}, expected {_EXPORT_VERSION}")
        pos = _EXPORT_HEAD.size
        keys, tags, values, pos = _read_columns(data, pos, n)
        okeys, otags, ovalues, pos = _read_columns(data, pos, n_older)
        starts, seqs, ends, pos = _read_columns(data, pos, n_dels)
        if pos != len(data):
            raise ValueError(f"memtable export: {len(data) - pos} bytes past its end")
        m = cls(log_number)
        m._d = dict(zip(keys, zip(tags, values)))
        m._dget = m._d.get
        for k, version_ in zip(okeys, zip(otags, ovalues)):
            m._older.setdefault(k, []).append(version_)
        m._tail = keys  # unsorted; sorted_keys() sorts once
        m.max_seq, m.entries, m.special, m.nbytes = max_seq, entries, special, nbytes
        m.range_dels = list(zip(starts, ends, seqs))
        m.immutable = True
        return m

    def _check(self) -> None:
        """Invariants: the index holds no key twice and only keys of ``_d``;
        index plus tail is every key; versions strictly ascending per key."""
        with self.lock:
            keys = list(self._index) + list(self._tail)
        check(len(set(keys)) == len(keys), "memtable key listed twice")
        check(set(keys) == set(self._d), "memtable key index and dict disagree")
        for k, older in self._older.items():
            seqs = [v[0] >> 8 for v in older] + [self._d[k][0] >> 8]
            check(all(a < b for a, b in zip(seqs, seqs[1:])), f"versions of {k!r} out of order")


def _columns(keys: list[bytes], tags, values: list[bytes]) -> list[bytes]:
    """One column group of :meth:`Memtable.export`."""
    return [array("I", map(len, keys)).tobytes(), array("I", map(len, values)).tobytes(),
            array("Q", tags).tobytes(), b"".join(keys), b"".join(values)]


def _read_columns(data: bytes, pos: int, n: int) -> tuple[list[bytes], array, list[bytes], int]:
    """``(keys, tags, values, end)`` of the column group of ``n`` entries at ``pos``."""
    klens, vlens, tags = array("I"), array("I"), array("Q")
    for a in (klens, vlens, tags):
        end = pos + a.itemsize * n
        if end > len(data):
            raise ValueError("memtable export: truncated")
        a.frombytes(data[pos:end])
        pos = end
    keys, pos = _split(data, pos, klens)
    values, pos = _split(data, pos, vlens)
    return keys, tags, values, pos


def _split(data: bytes, pos: int, lens: array) -> tuple[list[bytes], int]:
    offs = list(accumulate(lens, initial=pos))
    if offs[-1] > len(data):
        raise ValueError("memtable export: truncated")
    return list(map(data.__getitem__, map(slice, offs, offs[1:]))), offs[-1]
