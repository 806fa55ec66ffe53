"""Estimates of how much a key range holds, for sharding and planning:
``approximate_sizes`` (bytes) and ``approximate_count`` (keys), after
LevelDB's ``GetApproximateSizes`` (plyvel's ``approximate_sizes``) and
RocksDB's ``GetApproximateSizes`` with memtables included.

No data block is read. A table the range covers whole counts with its file
size (or its key count); a table the range cuts counts from its index: the
byte offset where the range's start would be (the start of the first data
block whose last key is >= it) to where its end would be, so a range
inside one block counts as nothing. Counts scale the table's live keys
(properties ``unique_keys`` - ``deletions``) by the same byte fraction.
A memtable counts its keys in the range (two bisections of its sorted
index) and that share of its key and value bytes.

Both are estimates: a key overwritten in several tables or memtables
counts once in each, tombstones take space until compaction drops them,
and a key's expired TTL is not noticed. Both grow with the range: a range
inside another never gets the larger estimate.

``Sizes`` is a mixin of :class:`lsm.db.DB` (like ``Reads``): it reads the
current super version without the DB mutex.
"""

from __future__ import annotations

import errno
from bisect import bisect_left
from collections.abc import Iterable

from .dbstate import DBState
from .errors import DiskError
from .keys import check_key
from .manifest import FileMeta
from .memtable import ENTRY_OVERHEAD, Memtable
from .snapshot import SuperVersion
from .sstable.format import BLOCK_TRAILER_BYTES

__all__ = ["Sizes", "check_ranges"]

_Range = tuple[bytes, "bytes | None"]  # [lo, hi), hi None: unbounded


class Sizes(DBState):
    """Mixin of :class:`lsm.db.DB`: range size and key-count estimates."""

    def approximate_sizes(self, ranges: Iterable[tuple[bytes | None, bytes | None]]) -> list[int]:
        """Estimated bytes that each ``(start, stop)`` range (``start``
        inclusive, ``stop`` exclusive, None: unbounded) takes on disk, plus
        its share of the memtables' key and value bytes.

        From the tables' indexes: a table wholly inside a range counts in
        full, one it cuts counts from the data block holding the start to
        the one holding the stop; no data block is read. A range with
        ``stop <= start`` is 0. Estimates only (module docstring).

        >>> import lsm, tempfile
        >>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
        >>> for i in range(2000): _ = db.put(b"k%05d" % i, bytes(100))
        >>> db.flush()
        >>> half, whole = db.approximate_sizes([(b"k00000", b"k01000"), (None, None)])
        >>> 0.4 < half / whole < 0.6, db.approximate_sizes([(b"z", None)])
        (True, [0])
        >>> db.close()

        Raises: TypeError/ValueError naming the bad range or bound;
        ClosedError.
        """
        checked = check_ranges(ranges)
        self._check_open()
        return self._estimate(checked, count=False)

    def approximate_count(self, start: bytes | None = None, stop: bytes | None = None) -> int:
        """Estimated number of keys in ``[start, stop)`` (None: unbounded),
        from the tables' properties and index positions and the memtables'
        key indexes. Overwritten keys not yet compacted count more than once.

        >>> import lsm, tempfile
        >>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
        >>> for i in range(2000): _ = db.put(b"k%05d" % i, bytes(100))
        >>> db.approximate_count(b"k00500", b"k01500")      # all in the memtable: exact
        1000
        >>> db.flush()
        >>> 800 < db.approximate_count(b"k00500", b"k01500") < 1200
        True
        >>> db.close()

        Raises: TypeError/ValueError naming ``start`` or ``stop``; ClosedError.
        """
        lo = b"" if start is None else check_key(start, "start")
        hi = None if stop is None else check_key(stop, "stop")
        self._check_open()
        return self._estimate([(lo, hi)], count=True)[0]

    def _estimate(self, ranges: list[_Range], count: bool) -> list[int]:
        """Each range's estimate over one super version. A table that
        vanished under the estimate (ENOENT: compaction replaced the version)
        is retried on the newer version, as point reads do."""
        sv = self._sv
        for _attempt in range(5):
            try:
                return [_range_estimate(sv, self._tables.reader, lo, hi, count) for lo, hi in ranges]
            except DiskError as e:
                if e.errno != errno.ENOENT or sv.version is self._sv.version:
                    raise
                sv = self._sv
            except ValueError:
                if self._closed:  # the table maps were closed under the estimate
                    raise self._closed_error() from None
                raise
        return [_range_estimate(sv, self._tables.reader, lo, hi, count) for lo, hi in ranges]


def check_ranges(ranges: object) -> list[_Range]:
    """``ranges`` as ``[(lo, hi)]`` with ``lo`` bytes and ``hi`` bytes or None.
    Raises: TypeError/ValueError naming the bad element."""
    if isinstance(ranges, (bytes, bytearray, memoryview, str)) or not hasattr(ranges, "__iter__"):
        raise TypeError(f"ranges must be a list of (start, stop) pairs, not {type(ranges).__name__}")
    out: list[_Range] = []
    for i, r in enumerate(ranges):
        if not isinstance(r, (tuple, list)):
            raise TypeError(f"ranges[{i}] must be a (start, stop) pair, not {type(r).__name__}")
        if len(r) != 2:
            raise ValueError(f"ranges[{i}] must be a (start, stop) pair; it has {len(r)} items")
        start, stop = r
        lo = b"" if start is None else check_key(start, f"ranges[{i}] start")
        hi = None if stop is None else check_key(stop, f"ranges[{i}] stop")
        out.append((lo, hi))
    return out


def _range_estimate(sv: SuperVersion, reader, lo: bytes, hi: bytes | None, count: bool) -> int:
    """Bytes (or keys, with ``count``) in ``[lo, hi)`` over ``sv``."""
    if hi is not None and hi <= lo:
        return 0
    total = 0.0
    version = sv.version
    for level, files in enumerate(version.levels):
        if level == 0:
            chosen = [f for f in files if f.largest >= lo and (hi is None or f.smallest < hi)]
        else:
            # key-disjoint and sorted: the files from the first ending at or
            # after lo to the last starting below hi
            a = bisect_left(version.largest(level), lo)
            b = len(files) if hi is None else bisect_left(version.smallest[level], hi, a)
            chosen = files[a:b]
        for f in chosen:
            total += _table_estimate(f, reader, lo, hi, count)
    for m in (sv.mem,) + sv.imms:
        total += _mem_estimate(m, lo, hi, count)
    return int(round(total))


def _table_estimate(f: FileMeta, reader, lo: bytes, hi: bytes | None, count: bool) -> float:
    whole = lo <= f.smallest and (hi is None or f.largest < hi)
    if whole and not count:
        return f.size  # no need to open it
    t = f.reader or reader(f)
    if whole:
        return _live_keys(t)
    offsets = t.offsets
    if not offsets:
        return 0
    end = offsets[-1] + t.sizes[-1] + BLOCK_TRAILER_BYTES
    keys = t.ikeys
    i = bisect_left(keys, lo)
    a = offsets[i] if i < len(offsets) else end
    if hi is None:
        b = end
    else:
        # the block holding hi (the first whose last key is >= hi) is
        # excluded, as the part of lo's block below lo is included
        j = bisect_left(keys, hi)
        b = offsets[j] if j < len(offsets) else end
    if b <= a:
        return 0
    if not count:
        return b - a
    return _live_keys(t) * (b - a) / end


def _live_keys(t) -> int:
    p = t.props
    return max(0, int(p["unique_keys"]) - int(p["deletions"]))


def _mem_estimate(m: Memtable, lo: bytes, hi: bytes | None, count: bool) -> float:
    if not len(m):
        return 0
    inside, n = m.count_keys(lo, hi)
    if count or not inside:
        return inside
    raw = max(0, m.nbytes - m.entries * ENTRY_OVERHEAD)  # key and value bytes of every version
    return raw * inside / n

