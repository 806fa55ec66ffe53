"""One harness through every layer that stores entries (LevelDB's
``table/table_test.cc`` ``Harness``): a data block, a table (format 2, and
format 1), a memtable, and the DB (everything in its memtable, flushed,
compacted, spread over memtable, L0 and a deeper level, and reopened).

Each layer is built from the same *history*: writes in sequence order,
``(seq, kind, key, stored_value)`` with sequences 1, 2, ... (the sequences
the DB assigns a fresh database's writes). One model, a sorted list of the
history's entries, says what every read must return:

* ``version(key, seq)``: the newest version of ``key`` at or below ``seq``,
  as ``(seq, kind, stored_value)`` (layers that keep versions: block, table,
  memtable);
* ``versions(lo, hi, reverse)``: every version in ``[lo, hi)``, keys
  ascending and each key's versions newest first (descending: keys
  descending, each key's versions still newest first);
* ``scan(seq, lo, hi, reverse)``: what a reader at ``seq`` sees, ``(key,
  value)`` with tombstones and entries expired at :data:`NOW` left out (every
  layer, through the read path it has: ``resolve`` over a block's columns,
  ``TableWindows``/``MemWindows`` and ``merge_windows``, ``read_range``,
  ``Snapshot.scan``);
* ``lookup(key, seq)``: ``(value, version, expires_at)`` of what a reader at
  ``seq`` sees (the DB: ``Snapshot.get_entry``, ``DB.get``);
* ``cursor(seq, lo, hi)``: a cursor within ``[lo, hi)`` at ``seq`` (the DB),
  moved at random against the model's list of visible keys.

The histories: fixed ones (empty keys, long keys up to the limit, shared
prefixes, hundreds of versions of one key, tombstones, TTL entries alive
and expired, fixed-width keys that match one another at unaligned offsets,
and a seeded random mix) and hypothesis-generated ones.
"""

from __future__ import annotations

import random
import shutil
import struct
import tempfile
import time
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings, strategies as st

import lsm
from lsm.iterators import MemWindows, TableWindows, merge_parts, merge_windows, prefix_successor, read_range, resolve
from lsm.keys import DELETE, MAX_KEY_BYTES, MAX_SEQUENCE, PUT, PUT_TTL
from lsm.manifest import FileMeta
from lsm.memtable import Memtable
from lsm.sstable import TableProps, TableReader, TableWriter
from lsm.sstable.block import block_layout, encode_data_block, read_entries
from memfile import MemFile
from v1format import write_v1_table

T0 = 2_000_000_000.0  # the clock while the history is written
NOW = T0 + 10.0  # the clock while it is read: a TTL of 5 s has expired, one of 1000 s has not
TTL_EXPIRED, TTL_LIVE = 5.0, 1000.0
_F64 = struct.Struct("<d")

Entry = tuple[bytes, int, int, bytes]  # key, seq, kind, stored value
Op = tuple[str, bytes, bytes]  # ("put" | "delete" | "ttl-live" | "ttl-expired", key, value)


# --- histories ---------------------------------------------------------------------------------

def history_of(ops: list[Op]) -> list[Entry]:
    """The entries of ``ops`` written at sequences 1, 2, ... (stored values as
    every layer keeps them: a TTL entry's starts with its expiry)."""
    out = []
    for seq, (op, key, value) in enumerate(ops, 1):
        if op == "put":
            out.append((key, seq, PUT, value))
        elif op == "delete":
            out.append((key, seq, DELETE, b""))
        else:
            ttl = TTL_LIVE if op == "ttl-live" else TTL_EXPIRED
            out.append((key, seq, PUT_TTL, _F64.pack(T0 + ttl) + value))
    return out


def table_order(history: list[Entry]) -> list[Entry]:
    """Key ascending, sequence descending: the order of blocks, tables and merges."""
    return sorted(history, key=lambda e: (e[0], -e[1]))


def _kinds(rng: random.Random, weights=(6, 2, 1, 1)) -> str:
    return rng.choices(["put", "delete", "ttl-live", "ttl-expired"], weights)[0]


def _fixed_histories() -> dict[str, list[Op]]:
    rng = random.Random(1729)
    sets: dict[str, list[Op]] = {"empty": []}

    # The empty key and its nearest neighbours, each several times.
    ops: list[Op] = []
    for i in range(24):
        key = [b"", b"\x00", b"\x00\x00", b"\x01"][i % 4]
        ops.append((_kinds(rng), key, b"v%d" % i))
    sets["empty-key"] = ops

    # Long keys, up to the limit, and keys that differ only in their last byte.
    ops = []
    for n in (1, 255, 256, 4095, 4096, MAX_KEY_BYTES - 1, MAX_KEY_BYTES):
        for tail in (b"k", b"l"):
            key = b"k" * (n - 1) + tail
            ops.append(("put", key, rng.randbytes(rng.choice([0, 10, 3000]))))
            ops.append((_kinds(rng), key, b"second"))
    rng.shuffle(ops)
    sets["long-keys"] = ops

    # Shared prefixes: keys that are prefixes of each other, \xff runs.
    pool = [b"a", b"ab", b"abc", b"abd", b"abc\x00", b"b", b"\xff", b"\xff\xff", b"\xff\x00", b"\xfe\xff"]
    pool += [b"user/%04d/%s" % (u, f) for u in (1, 2, 10, 100) for f in (b"", b"name", b"name2", b"n")]
    sets["shared-prefixes"] = [(_kinds(rng), rng.choice(pool), b"p%d" % i) for i in range(220)]

    # Hundreds of versions of one key (in one block: a block never splits a
    # key's versions), between neighbours written once or twice.
    ops = [("put", b"ho", b"n1"), ("put", b"hou", b"n2")]
    ops += [(_kinds(rng, (5, 3, 1, 1)), b"hot", b"v%d" % i) for i in range(400)]
    ops += [("put", b"hot\x00", b"n3"), ("delete", b"ho", b""), ("put", b"hos", b"n4")]
    sets["many-versions"] = ops

    # Tombstones: puts deleted, deleted keys put again, deletes of keys never written.
    ops = []
    for i in range(120):
        key = b"t%03d" % i
        ops.append(("put", key, b"x" * (i % 7)))
        if i % 3:
            ops.append(("delete", key, b""))
        if i % 5 == 0:
            ops.append(("put", key, b"again"))
        if i % 4 == 0:
            ops.append(("delete", b"t%03d-never" % i, b""))
    rng.shuffle(ops)
    sets["tombstones"] = ops

    # TTL entries: alive, expired, expired over a put (the key reads as
    # absent), put over an expired one.
    ops = []
    for i in range(60):
        key = b"ttl%02d" % i
        shape = i % 5
        if shape == 0:
            ops.append(("ttl-live", key, b"live"))
        elif shape == 1:
            ops.append(("ttl-expired", key, b"gone"))
        elif shape == 2:
            ops += [("put", key, b"old"), ("ttl-expired", key, b"gone")]
        elif shape == 3:
            ops += [("ttl-expired", key, b"gone"), ("put", key, b"new")]
        else:
            ops += [("ttl-live", key, b"a"), ("delete", key, b""), ("ttl-live", key, b"b")]
    sets["ttl"] = ops

    # Fixed key and value widths (searched in place), over a two-letter
    # alphabet: "abab" occurs inside "babab..." at unaligned offsets.
    keys = [bytes(b"ab"[(x >> j) & 1] for j in range(4)) for x in range(16)]
    sets["fixed-width"] = [("put", rng.choice(keys), b"%04d" % i) for i in range(200)]

    # A seeded random mix of all of the above.
    pool = [b"", b"\x00", b"a", b"ab", b"b" * 300, b"\xff", b"\xff\xff"] + [b"r%02d" % i for i in range(60)]
    sets["random"] = [(_kinds(rng), rng.choice(pool), rng.randbytes(rng.choice([0, 3, 40]))) for _ in range(500)]
    return sets


FIXED = _fixed_histories()


# --- the model ---------------------------------------------------------------------------------

class Model:
    """What every read of a history must return."""

    def __init__(self, history: list[Entry]) -> None:
        self.history = history
        self.entries = table_order(history)
        self.last_seq = len(history)
        self.keys = sorted({e[0] for e in history})
        self.by_key: dict[bytes, list[Entry]] = {}
        for e in self.entries:
            self.by_key.setdefault(e[0], []).append(e)  # newest first

    def version(self, key: bytes, seq: int) -> tuple[int, int, bytes] | None:
        for _, s, kind, value in self.by_key.get(key, ()):
            if s <= seq:
                return s, kind, value
        return None

    def versions(self, lo: bytes, hi: bytes | None, reverse: bool) -> list[Entry]:
        sel = [e for e in self.entries if e[0] >= lo and (hi is None or e[0] < hi)]
        if reverse:  # keys descending, each key's versions still newest first
            sel.sort(key=lambda e: (e[0], e[1]), reverse=True)
        return sel

    def lookup(self, key: bytes, seq: int) -> tuple[bytes, int, float | None] | None:
        v = self.version(key, seq)
        if v is None or v[1] == DELETE:
            return None
        s, kind, value = v
        if kind == PUT:
            return value, s, None
        expires = _F64.unpack_from(value)[0]
        return (value[8:], s, expires) if expires > NOW else None

    def scan(self, seq: int, lo: bytes, hi: bytes | None, reverse: bool) -> list[tuple[bytes, bytes]]:
        out = []
        for key in self.keys:
            if key >= lo and (hi is None or key < hi):
                got = self.lookup(key, seq)
                if got is not None:
                    out.append((key, got[0]))
        return out[::-1] if reverse else out


def probe_keys(model: Model, seqs: list[int], rng: random.Random, limit: int = 48) -> list[bytes]:
    """Keys of the history (with every key written at one of ``seqs``: a read
    at such a sequence sees that write and one just below does not), and
    keys next to them that it lacks."""
    keys = model.keys if len(model.keys) <= limit else rng.sample(model.keys, limit)
    out = set(keys) | {model.history[s - 1][0] for s in seqs if 0 < s <= model.last_seq}
    for k in keys[:16]:
        out.update((k + b"\x00", k[:-1], k + b"\xff"))
    out.update((b"", b"\x00", b"\xff\xff\xff", b"zz"))
    return sorted(k for k in out if len(k) <= MAX_KEY_BYTES)


def probe_seqs(model: Model) -> list[int]:
    n = model.last_seq
    return sorted({0, 1, 2, n // 3, n // 2, n - 1, n} & set(range(n + 1)))


def probe_bounds(model: Model, rng: random.Random) -> list[tuple[bytes, bytes | None]]:
    """``[lo, hi)`` ranges: unbounded, half-bounded, single keys, prefixes,
    empty and inverted ones, bounds between keys."""
    ks = model.keys or [b"m"]
    pick = lambda: rng.choice(ks)  # noqa: E731
    a, b = sorted((pick(), pick()))
    out = [(b"", None), (a, None), (b"", b), (a, b), (b, a), (a, a), (a, a + b"\x00"), (a + b"\x00", b),
           (b"\x00", b"\xff"), (b"zz", None)]
    if a:
        succ = prefix_successor(a[:1])
        out.append((a[:1], succ))
    return out


# --- the layers ----------------------------------------------------------------------------------

class Layer:
    """The harness's interface. A layer implements what it can serve:
    ``version``/``versions`` where it keeps versions, ``lookup``/``cursor``
    where it resolves them for a user; ``scan`` everywhere. ``seqs``: the
    sequences it can be read at (None: any)."""

    seqs: list[int] | None = None

    def close(self) -> None:
        pass


class BlockLayer(Layer):
    """The history as one format 2 data block, found at an offset inside a
    larger buffer (as in a table or a map), read with ``block_layout`` and
    ``read_entries``; scans ``resolve`` its columns."""

    def __init__(self, history: list[Entry]) -> None:
        entries = table_order(history)
        self.keys: list[bytes] = []
        self.buf = b""
        self.lay = None
        if entries:  # a block holds at least one entry
            payload = encode_data_block([e[0] for e in entries], [e[1] << 8 | e[2] for e in entries],
                                        [e[3] for e in entries])
            self.buf = b"\xa5" * 13 + payload + b"\x5a" * 5
            self.lay = block_layout(self.buf, 13, len(payload))
            keys, tags, values = read_entries(self.buf, self.lay)
            assert [(k, t >> 8, t & 0xFF, v) for k, t, v in zip(keys, tags, values)] == entries
            self.keys = list(keys)

    def _columns(self, lo: bytes, hi: bytes | None):
        if self.lay is None:
            return (), (), ()
        a = bisect_left(self.keys, lo)
        b = len(self.keys) if hi is None else max(a, bisect_left(self.keys, hi))
        return read_entries(self.buf, self.lay, a, b)

    def version(self, key: bytes, seq: int):
        keys, tags, values = self._columns(key, key + b"\x00")
        for t, v in zip(tags, values):
            if t >> 8 <= seq:
                return t >> 8, t & 0xFF, v
        return None

    def versions(self, lo: bytes, hi: bytes | None, reverse: bool) -> list[Entry]:
        keys, tags, values = self._columns(lo, hi)
        out = [(k, t >> 8, t & 0xFF, v) for k, t, v in zip(keys, tags, values)]
        if reverse:  # one key's versions stay together, newest first
            runs: list[list[Entry]] = []
            for e in out:
                if runs and runs[-1][0][0] == e[0]:
                    runs[-1].append(e)
                else:
                    runs.append([e])
            out = [e for run in reversed(runs) for e in run]
        return out

    def scan(self, seq: int, lo: bytes, hi: bytes | None, reverse: bool) -> list[tuple[bytes, bytes]]:
        keys, tags, values = self._columns(lo, hi)
        ks, vs = resolve(keys, tags, values, seq, NOW)
        keys_out, values_out = merge_parts([(ks, vs, True)], reverse)
        return list(zip(keys_out, values_out))


class TableLayer(Layer):
    """The history as a table of many small blocks: format 2 written by
    TableWriter and searched in place, or format 1 (tests/v1format.py) read
    through the block cache path. Scans read it as a scan reads a level:
    ``TableWindows`` merged by ``merge_windows``, and ``read_range``."""

    def __init__(self, history: list[Entry], version: int = 2) -> None:
        entries = table_order(history)
        if version == 1:
            data = write_v1_table(entries, block_bytes=64, compression="none")
            self.reader = TableReader(MemFile(data=data), 7)
        else:
            f = MemFile()
            w = TableWriter(f, block_bytes=64)
            for e in entries:
                w.add(*e)
            props = w.finish()
            self.reader = TableReader(MemFile(data=bytes(f.buf), mapped=True), 7)
            assert self.reader.buf is not None  # searched in place
        p = self.reader.props
        self.meta = FileMeta.from_props(7, TableProps.from_block(p, self.reader.file_size))
        self.meta.reader = self.reader
        if version == 2:
            assert (props.entries, props.smallest, props.largest) == (len(entries), p["smallest"],
                                                                              p["largest"])

    def version(self, key: bytes, seq: int):
        return self.reader.get(key, seq)

    def version_many(self, keys: list[bytes], seq: int) -> list:
        return [None if r is None else (r[0] >> 8, r[0] & 0xFF, r[1]) for r in self.reader.get_sorted(keys, seq)]

    def versions(self, lo: bytes, hi: bytes | None, reverse: bool) -> list[Entry]:
        if reverse:
            return list(self.reader.iter_reverse(lo, hi))
        return [(k, -s, kind, v) for k, s, kind, v in self.reader.iter_forward(lo, hi)]

    def scan(self, seq: int, lo: bytes, hi: bytes | None, reverse: bool) -> list[tuple[bytes, bytes]]:
        m = self.meta
        files = [m] if self.reader.props["entries"] else []
        src = TableWindows(files, [m.smallest] * len(files), [m.largest] * len(files), _no_open, lo, hi, reverse,
                           seq, NOW)
        got = [kv for keys, values in merge_windows([src], reverse) for kv in zip(keys, values)]
        if hi is not None and hi > lo:
            whole = read_range([], [files], _no_open, lo, hi, reverse, seq, NOW, max_blocks=1 << 20)
            assert list(zip(*whole)) == got
        return got


def _no_open(meta):
    raise AssertionError(f"table {meta.number} was opened again: its reader is on its meta")


class MemtableLayer(Layer):
    """The history added to a memtable in sequence order (one writer, as the
    commit leader). Scans read it through ``MemWindows`` and ``read_range``."""

    def __init__(self, history: list[Entry]) -> None:
        self.mem = Memtable(1)
        for key, seq, kind, value in history:
            self.mem.add(seq, kind, key, value)
        self.mem._check()

    def version(self, key: bytes, seq: int):
        r = self.mem.get_at(key, seq)
        if seq >= self.mem.max_seq:
            assert r == self.mem.get(key)
        return None if r is None else (r[0] >> 8, r[0] & 0xFF, r[1])

    def versions(self, lo: bytes, hi: bytes | None, reverse: bool) -> list[Entry]:
        if reverse:
            return list(self.mem.iter_reverse(lo, hi))
        return [(k, -s, kind, v) for k, s, kind, v in self.mem.iter_forward(lo, hi)]

    def scan(self, seq: int, lo: bytes, hi: bytes | None, reverse: bool) -> list[tuple[bytes, bytes]]:
        if hi is not None and hi <= lo:  # (the DB answers an empty range before reaching a source)
            return []
        src = MemWindows(self.mem, lo, hi, reverse, seq, NOW)
        got = [kv for keys, values in merge_windows([src], reverse) for kv in zip(keys, values)]
        if hi is not None:
            whole = read_range([self.mem], [], _no_open, lo, hi, reverse, seq, NOW, max_blocks=1 << 20)
            assert list(zip(*whole)) == got
        return got


@contextmanager
def frozen_clock(t: float) -> Iterator[list[float]]:
    """``time.time`` returns ``clock[0]`` (the DB's TTL clock and WriteBatch read it)."""
    real = time.time
    clock = [t]
    time.time = lambda: clock[0]
    try:
        yield clock
    finally:
        time.time = real


DB_OPTIONS = dict(sync_mode="never", block_bytes=256, compaction_process=False, disable_auto_compactions=True)


class DBLayer(Layer):
    """The history written to a DB through ``put``/``delete`` (a TTL entry
    with ``put(ttl=)`` at :data:`T0`), with a snapshot at each sequence the
    checks read at, then arranged as ``state`` says:

    * ``memtable``: left in the memtable;
    * ``flushed``: flushed to L0;
    * ``compacted``: compacted to the deepest level;
    * ``layered``: the first third compacted down, the second flushed to L0,
      the rest in the memtable, so every read merges all three;
    * ``reopened``: closed and opened again (recovery replays the log; no
      snapshot survives, so it is read at the last sequence only).

    Reads run with the clock at :data:`NOW`."""

    def __init__(self, history: list[Entry], state: str, seqs: list[int]) -> None:
        self.dir = tempfile.mkdtemp(prefix="lsm-harness-")
        self.snaps: dict[int, lsm.Snapshot] = {}
        self.cursors: list = []
        self._clock = frozen_clock(T0)
        self.clock = self._clock.__enter__()
        try:
            self.db = lsm.open(self.dir, **DB_OPTIONS)
            n = len(history)
            want = set(seqs)
            cuts = {n // 3: "compact", 2 * n // 3: "flush"} if state == "layered" else {}
            for i, (key, seq, kind, value) in enumerate(history):
                if i in want and state != "reopened":
                    self.snaps[i] = self.db.snapshot()
                if cuts.get(i) == "compact":
                    self.db.compact_range()
                elif cuts.get(i) == "flush":
                    self.db.flush()
                if kind == PUT:
                    got = self.db.put(key, value)
                elif kind == DELETE:
                    got = self.db.delete(key)
                else:
                    ttl = _F64.unpack_from(value)[0] - T0
                    got = self.db.put(key, value[8:], ttl=ttl)
                assert got == seq  # the DB numbers a fresh database's writes 1, 2, ...
            if state == "flushed":
                self.db.flush()
            elif state == "compacted":
                self.db.compact_range()
            elif state == "reopened":
                self.db.close()
                self.db = lsm.open(self.dir, **DB_OPTIONS)
            self.seqs = [n] if state == "reopened" else sorted(want | {n})
            self.last = n
            self.clock[0] = NOW
            if history:
                self._check_state(state, history)
        except BaseException:
            self.close()
            raise

    def _check_state(self, state: str, history: list[Entry]) -> None:
        """The data lies where ``state`` says. (A compaction to the last
        level may drop tombstones and expired entries that no reader needs;
        a plain put is always kept.)"""
        sv = self.db._sv
        levels = sv.version.levels
        mem, l0, deep = len(sv.mem) + len(sv.imms), len(levels[0]), sum(map(len, levels[1:]))
        n = len(history)
        if state == "memtable":
            assert mem and not l0 and not deep
        elif state in ("flushed", "reopened"):
            assert not mem and l0 and not deep
        elif state == "compacted":
            assert not mem and not l0
            assert deep or all(e[2] != PUT for e in history)
        elif n >= 3:  # layered
            assert mem and l0
            assert deep or all(e[2] != PUT for e in history[:n // 3])

    def _reader(self, seq: int):
        return self.db if seq == self.last else self.snaps[seq]

    def lookup(self, key: bytes, seq: int):
        e = self._reader(seq).get_entry(key)
        if seq == self.last:
            assert self.db.get(key) == (None if e is None else e.value)
            assert (key in self.db) == (e is not None)
        return None if e is None else tuple(e)

    def scan(self, seq: int, lo: bytes, hi: bytes | None, reverse: bool) -> list[tuple[bytes, bytes]]:
        got = list(self._reader(seq).scan(start=lo, stop=hi, reverse=reverse))
        keys = list(self._reader(seq).scan(start=lo, stop=hi, reverse=reverse, keys_only=True))
        assert keys == [k for k, _ in got]
        return got

    def cursor(self, seq: int, lo: bytes, hi: bytes | None):
        c = self._reader(seq).cursor(lower=lo or None, upper=hi)
        self.cursors.append(c)
        return c

    def close(self) -> None:
        try:
            for c in self.cursors:
                c.close()
            for s in self.snaps.values():
                s.close()
            if getattr(self, "db", None) is not None:
                self.db.close()
        finally:
            self._clock.__exit__(None, None, None)
            shutil.rmtree(self.dir, ignore_errors=True)


LAYERS = {
    "block": lambda h, seqs: BlockLayer(h),
    "table": lambda h, seqs: TableLayer(h),
    "table-v1": lambda h, seqs: TableLayer(h, version=1),
    "memtable": lambda h, seqs: MemtableLayer(h),
    **{f"db-{state}": (lambda s: lambda h, seqs: DBLayer(h, s, seqs))(state)
       for state in ("memtable", "flushed", "compacted", "layered", "reopened")},
}


# --- the checks ------------------------------------------------------------------------------------

def check_layer(layer: Layer, history: list[Entry], rng: random.Random, cursor_moves: int = 40) -> None:
    model = Model(history)
    seqs = layer.seqs if layer.seqs is not None else probe_seqs(model) + [MAX_SEQUENCE]
    keys = probe_keys(model, seqs, rng)
    bounds = probe_bounds(model, rng)

    if hasattr(layer, "versions"):
        every = layer.versions(b"", None, False)
        assert every == model.entries
        # the ordering rule itself: keys ascending, each key's sequences descending
        assert all((a[0], -a[1]) < (b[0], -b[1]) for a, b in zip(every, every[1:]))
        backwards = layer.versions(b"", None, True)
        assert backwards == model.versions(b"", None, True)
        assert all(a[0] > b[0] or (a[0] == b[0] and a[1] > b[1]) for a, b in zip(backwards, backwards[1:]))
        for lo, hi in bounds:
            for reverse in (False, True):
                assert layer.versions(lo, hi, reverse) == model.versions(lo, hi, reverse), (lo, hi, reverse)
        for seq in seqs:
            for key in keys:
                assert layer.version(key, seq) == model.version(key, seq), (key, seq)
            if hasattr(layer, "version_many"):
                assert layer.version_many(keys, seq) == [model.version(k, seq) for k in keys], seq

    if hasattr(layer, "lookup"):
        for seq in seqs:
            for key in keys:
                assert layer.lookup(key, seq) == model.lookup(key, seq), (key, seq)

    for seq in seqs:
        for lo, hi in bounds:
            for reverse in (False, True):
                assert layer.scan(seq, lo, hi, reverse) == model.scan(seq, lo, hi, reverse), (seq, lo, hi, reverse)

    if hasattr(layer, "cursor"):
        for seq in (seqs[0], seqs[-1]):
            lo, hi = rng.choice(bounds[:4])
            walk_cursor(layer.cursor(seq, lo, hi), [k for k, _ in model.scan(seq, lo, hi, False)],
                        dict(model.scan(seq, lo, hi, False)), keys, rng, cursor_moves)


def walk_cursor(c, visible: list[bytes], values: dict, probes: list[bytes], rng: random.Random,
                moves: int) -> None:
    """Random seeks and moves of cursor ``c`` against the sorted list of the
    keys it may visit (LevelDB's TestRandomAccess)."""
    pos = None  # index into visible, or None when not valid
    for _ in range(moves):
        op = rng.choice(["seek", "seek_for_prev", "first", "last", "next", "next", "prev", "prev"])
        if op in ("next", "prev") and pos is None:
            op = "first" if op == "next" else "last"
        if op == "seek":
            k = rng.choice(probes)
            i = bisect_left(visible, k)
            got, pos = c.seek(k), (i if i < len(visible) else None)
        elif op == "seek_for_prev":
            k = rng.choice(probes)
            i = bisect_right(visible, k) - 1
            got, pos = c.seek_for_prev(k), (i if i >= 0 else None)
        elif op == "first":
            got, pos = c.seek_to_first(), (0 if visible else None)
        elif op == "last":
            got, pos = c.seek_to_last(), (len(visible) - 1 if visible else None)
        elif op == "next":
            got, pos = c.next(), (pos + 1 if pos + 1 < len(visible) else None)
        else:
            got, pos = c.prev(), (pos - 1 if pos > 0 else None)
        assert got == (pos is not None) == c.valid, op
        if pos is not None:
            assert (c.key, c.value) == (visible[pos], values[visible[pos]]), op


def run(layer_name: str, history: list[Entry], seed: int, cursor_moves: int = 40) -> None:
    model = Model(history)
    layer = LAYERS[layer_name](history, probe_seqs(model))
    try:
        check_layer(layer, history, random.Random(seed), cursor_moves)
    finally:
        layer.close()


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_histories(layer: str, name: str) -> None:
    run(layer, history_of(FIXED[name]), seed=zlib.crc32(name.encode()))


def test_the_fixed_histories_have_what_they_promise() -> None:
    h = {name: history_of(ops) for name, ops in FIXED.items()}
    assert any(e[0] == b"" for e in h["empty-key"]) and not h["empty"]
    assert max(len(e[0]) for e in h["long-keys"]) == MAX_KEY_BYTES
    assert sum(e[0] == b"hot" for e in h["many-versions"]) == 400
    assert {e[2] for e in h["random"]} == {PUT, DELETE, PUT_TTL}
    ttl = Model(h["ttl"])
    assert ttl.lookup(b"ttl01", 10**6) is None and ttl.lookup(b"ttl00", 10**6)[0] == b"live"
    assert ttl.lookup(b"ttl02", 10**6) is None  # expired over a put: absent
    assert len({len(e[0]) for e in h["fixed-width"]}) == 1 and len({len(e[3]) for e in h["fixed-width"]}) == 1
    r = TableLayer(h["fixed-width"]).reader
    assert {r.block(i)[0][r.block(i)[1] + 4:r.block(i)[1] + 6] for i in range(len(r.ikeys))} == {b"\x04\x00"}


# --- generated histories --------------------------------------------------------------------------

_KEYS = st.one_of(
    st.sampled_from([b"", b"\x00", b"a", b"ab", b"abc", b"b", b"\xff", b"\xff\xff", b"L" * 700, b"L" * 700 + b"\x00"]),
    st.binary(max_size=3).map(lambda b: bytes(0x61 + x % 3 for x in b)),
)
_OPS = st.lists(st.tuples(st.sampled_from(["put", "put", "put", "delete", "ttl-live", "ttl-expired"]), _KEYS,
                          st.binary(max_size=12)), max_size=60)


@pytest.mark.parametrize("layer", ["block", "table", "table-v1", "memtable"])
@settings(max_examples=60, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 2**16))
def test_generated_histories(layer: str, ops: list[Op], seed: int) -> None:
    run(layer, history_of(ops), seed)


@pytest.mark.parametrize("layer", ["db-layered", "db-reopened"])
@settings(max_examples=15, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 2**16))
def test_generated_histories_through_the_db(layer: str, ops: list[Op], seed: int) -> None:
    run(layer, history_of(ops), seed, cursor_moves=20)


@pytest.mark.slow
@pytest.mark.parametrize("layer", sorted(LAYERS))
@settings(max_examples=300, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 2**16))
def test_generated_histories_long(layer: str, ops: list[Op], seed: int) -> None:
    run(layer, history_of(ops), seed)
