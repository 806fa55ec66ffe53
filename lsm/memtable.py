"""The memtable: recent writes in a ``SortedDict`` from user key to the list
of that key's versions, oldest first.

Each version is ``(seq, kind, stored_value)``. Versions are only ever
appended, and keys are never removed, so a reader that remembers a sequence
number sees a fixed view while writers continue (snapshots, iterators).

Locking: the commit leader is the only writer and holds ``lock`` while it
inserts a group of entries. ``lock`` protects the *sorted order* structure
(``SortedDict``'s internal lists), which readers walk in chunks under it.
Point reads need no lock: the dict lookup and the list append are each
atomic under the GIL, and a key becomes visible in the dict only after its
first version is in its list.
"""

from __future__ import annotations

import threading
from itertools import islice
from typing import Iterator

from sortedcontainers import SortedList

from .invariants import check

__all__ = ["ENTRY_OVERHEAD", "Memtable"]

ENTRY_OVERHEAD = 48  # bytes charged per version beyond key and value (tuple + list slot)
_CHUNK = 256  # keys copied out per lock hold during iteration


class Memtable:
    """Sorted in-memory buffer of one write-ahead log's worth of writes.

    Thread safety: ``add`` must be called with ``lock`` held by the single
    writer; every read method may run concurrently with it.
    """

    __slots__ = ("_d", "_dget", "_keys", "lock", "nbytes", "log_number", "immutable", "entries")

    def __init__(self, log_number: int = 0) -> None:
        self._d: dict[bytes, list[tuple[int, int, bytes]]] = {}
        self._dget = self._d.get
        self._keys = SortedList()
        self.lock = threading.Lock()
        self.nbytes = 0  # guarded by lock (written), read racily for size checks
        self.log_number = log_number
        self.immutable = False
        self.entries = 0

    def __len__(self) -> int:
        return len(self._d)

    def add(self, seq: int, kind: int, key: bytes, value: bytes) -> None:
        """Requires: ``lock`` held; ``seq`` greater than every sequence added before."""
        versions = self._dget(key)
        if versions is None:
            # both under self.lock, which scans hold while copying keys out of _keys
            self._keys.add(key)
            self._d[key] = [(seq, kind, value)]
        else:
            versions.append((seq, kind, value))
        self.nbytes += len(key) + len(value) + ENTRY_OVERHEAD
        self.entries += 1

    def get(self, key: bytes) -> tuple[int, int, bytes] | None:
        """Newest ``(seq, kind, stored_value)`` for ``key``, or None."""
        versions = self._dget(key)
        return None if versions is None else versions[-1]

    def get_at(self, key: bytes, seq: int) -> tuple[int, int, bytes] | None:
        """Newest version of ``key`` with sequence <= ``seq``, or None."""
        versions = self._dget(key)
        if versions is None:
            return None
        for v in reversed(versions):
            if v[0] <= seq:
                return v
        return None

    def _iter_keys(self, lo: bytes, hi: bytes | None, reverse: bool) -> Iterator[bytes]:
        d = self._keys
        if self.immutable:
            yield from d.irange(lo, hi, (True, False), reverse)
            return
        # Mutable: copy a chunk of keys under the lock, then resume after the
        # last one. Keys added later carry sequences above any reader's view.
        inclusive = (True, False)
        while True:
            with self.lock:
                chunk = list(islice(d.irange(lo, hi, inclusive, reverse), _CHUNK))
            yield from chunk
            if len(chunk) < _CHUNK:
                return
            if reverse:
                hi = chunk[-1]
                inclusive = (True, False)
            else:
                lo = chunk[-1]
                inclusive = (False, False)

    def iter_forward(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, -seq, kind, value)`` for lo <= key < hi: key ascending,
        newest version first (the merge order of lsm.iterators)."""
        dget = self._dget
        for key in self._iter_keys(lo, hi, False):
            for seq, kind, value in reversed(dget(key)):
                yield key, -seq, kind, value

    def iter_reverse(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Yield ``(key, seq, kind, value)``: key descending, newest version first."""
        dget = self._dget
        for key in self._iter_keys(lo, hi, True):
            for seq, kind, value in reversed(dget(key)):
                yield key, seq, kind, value

    def iter_entries(self) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Every version as ``(key, seq, kind, value)`` in table order. Requires: immutable."""
        dget = self._dget
        for key in self._keys:
            for seq, kind, value in reversed(dget(key)):
                yield key, seq, kind, value

    def _check(self) -> None:
        """Invariant: sorted keys; sequences strictly ascending within each list."""
        keys = list(self._keys)
        check(keys == sorted(keys), "memtable keys out of order")
        check(set(keys) == set(self._d), "memtable key list and dict disagree")
        for k in keys:
            seqs = [v[0] for v in self._d[k]]
            check(all(a < b for a, b in zip(seqs, seqs[1:])), f"versions of {k!r} out of order")
