"""Unit tests of lsm.iterators (LevelDB's ``table/merger_test`` and
iterator tests): ``resolve``/``resolve_masked`` over one source's columns,
``merge_parts`` and ``merge_windows`` over several sources (newest source
wins, tombstones hide older values, chunks in scan order whatever the
windows' sizes), ``TableWindows``/``MemWindows`` and ``read_range`` over
memtables, L0 tables and a level's run of tables (snapshot cut-off, bounds
lower inclusive and upper exclusive, reverse, empty sources, the block
limit, range tombstones), the per-entry ``merge``/``visible`` and
``prefix_successor``.

One model says what every read must return: a history of writes with
sequences 1, 2, ... and range tombstones, resolved key by key."""

from __future__ import annotations

import random
import struct
from bisect import bisect_left

import pytest
from hypothesis import given, settings, strategies as st

from lsm.iterators import (
    TOMB,
    MemWindows,
    TableWindows,
    merge,
    merge_parts,
    merge_windows,
    prefix_successor,
    read_range,
    resolve,
    resolve_masked,
    visible,
)
from lsm.keys import DELETE, PUT, PUT_TTL
from lsm.manifest import FileMeta
from lsm.memtable import Memtable
from lsm.rangedel import Fragments, Visible
from lsm.sstable import TableProps, TableReader, TableWriter
from memfile import MemFile

NOW = 1000.0
LIVE = struct.pack("<d", NOW + 500)  # a TTL that has not expired at NOW
DEAD = struct.pack("<d", NOW - 500)  # one that has
FAST = settings(max_examples=60, deadline=None)


def tag(seq: int, kind: int) -> int:
    return seq << 8 | kind


# --- the model ------------------------------------------------------------------------------------

def model_scan(history, tombs, seq, lo=b"", hi=None, reverse=False) -> list[tuple[bytes, bytes]]:
    """What a reader at ``seq`` sees of ``[lo, hi)``: history ``(key, seq,
    kind, stored)``, range tombstones ``(start, end, seq)``."""
    newest: dict[bytes, tuple] = {}
    for e in history:
        if e[1] <= seq and (e[0] not in newest or e[1] > newest[e[0]][1]):
            newest[e[0]] = e
    out = []
    for key, s, kind, v in newest.values():
        if key < lo or (hi is not None and key >= hi):
            continue
        if any(a <= key < b and s < t <= seq for a, b, t in tombs):
            continue
        if kind == PUT:
            out.append((key, v))
        elif kind == PUT_TTL and struct.unpack_from("<d", v)[0] > NOW:
            out.append((key, v[8:]))
    return sorted(out, reverse=reverse)


def random_history(rng: random.Random, n: int, nkeys: int, tomb_rate: float = 0.0):
    """``n`` writes over ``nkeys`` keys (and range tombstones at ``tomb_rate``), sequences 1.."""
    keys = [b"k%03d" % i for i in range(nkeys)]
    history, tombs = [], []
    for seq in range(1, n + 1):
        if rng.random() < tomb_rate:
            a, b = sorted(rng.sample(range(nkeys + 1), 2))
            tombs.append((b"k%03d" % a, b"k%03d" % b, seq))
            continue
        key = rng.choice(keys)
        kind = rng.choices((PUT, DELETE, PUT_TTL), (6, 2, 2))[0]
        v = b"v%d" % seq
        stored = b"" if kind == DELETE else (rng.choice((LIVE, DEAD)) + v if kind == PUT_TTL else v)
        history.append((key, seq, kind, stored))
    return history, tombs


# --- sources built from a history -------------------------------------------------------------------

_numbers = iter(range(100, 1 << 30))


def table(entries) -> object:
    """A table of ``entries`` (key, seq, kind, stored) in small blocks; its meta, reader attached."""
    f = MemFile()
    w = TableWriter(f, block_bytes=64)
    for e in sorted(entries, key=lambda e: (e[0], -e[1])):
        w.add(*e)
    w.finish()
    number = next(_numbers)
    r = TableReader(MemFile(data=bytes(f.buf), mapped=True), number)
    meta = FileMeta.from_props(number, TableProps.from_block(r.props, r.file_size))
    meta.reader = r
    return meta


def never_open(meta):
    raise AssertionError(f"table {meta.number} opened: its reader is on its meta")


class Sources:
    """A history spread over sources as the engine keeps it, oldest writes
    deepest: a level (a run of key-disjoint tables), L0 tables, an immutable
    memtable, the active memtable. ``layout`` names them oldest first; the
    history is cut into that many runs of consecutive sequences."""

    def __init__(self, history, layout: list[str], cuts: list[int], file_keys: int = 3) -> None:
        assert len(cuts) == len(layout) - 1
        bounds = [0, *sorted(cuts), len(history)]
        self.mems: list[Memtable] = []  # newest first
        self.l0: list = []  # newest first
        self.level: list = []  # key order
        for kind, a, b in zip(layout, bounds, bounds[1:]):
            part = history[a:b]
            if not part:
                continue
            if kind == "mem":
                m = Memtable(1)
                for key, seq, k, v in part:
                    m.add(seq, k, key, v)
                self.mems.insert(0, m)
            elif kind == "l0":
                self.l0.insert(0, table(part))
            else:
                assert kind == "level" and not self.level
                keys = sorted({e[0] for e in part})
                for i in range(0, len(keys), file_keys):
                    group = set(keys[i:i + file_keys])
                    self.level.append(table([e for e in part if e[0] in group]))

    def windows(self, seq, lo, hi, reverse, vis=None) -> list:
        """Window sources newest first, as DB._window_sources builds them."""
        out: list = [MemWindows(m, lo, hi, reverse, seq, NOW, vis) for m in self.mems]
        for f in self.l0:
            if f.largest >= lo and (hi is None or f.smallest < hi):
                out.append(TableWindows([f], [f.smallest], [f.largest], never_open, lo, hi, reverse, seq, NOW, vis))
        if self.level:
            out.append(TableWindows(self.level, [f.smallest for f in self.level], [f.largest for f in self.level],
                                    never_open, lo, hi, reverse, seq, NOW, vis))
        return out

    def scan(self, seq, lo=b"", hi=None, reverse=False, vis=None) -> list[tuple[bytes, bytes]]:
        chunks = list(merge_windows(self.windows(seq, lo, hi, reverse, vis), reverse))
        assert all(len(k) == len(v) for k, v in chunks), "ragged chunk"
        return [kv for keys, values in chunks for kv in zip(keys, values)]

    def read_range(self, seq, lo, hi, reverse, vis=None, max_blocks=1 << 20):
        """read_range over the sources, runs chosen as DB._read_range does."""
        runs = [[f] for f in self.l0 if f.largest >= lo and f.smallest < hi]
        a = bisect_left([f.largest for f in self.level], lo)
        b = bisect_left([f.smallest for f in self.level], hi, a)
        if a < b:
            runs.append(self.level[a:b])
        got = read_range(self.mems, runs, never_open, lo, hi, reverse, seq, NOW, max_blocks, vis)
        return None if got is None else list(zip(*got))


def vis_of(tombs, seq, lo=b"", hi=None) -> Visible | None:
    return Visible.at([Fragments.build(tombs)], seq, lo, hi) if tombs else None


LAYOUTS = [["mem"], ["l0"], ["level"], ["level", "l0", "l0", "mem", "mem"], ["level", "mem"], ["l0", "l0", "l0"]]


# --- resolve ---------------------------------------------------------------------------------------

def test_resolve_takes_the_newest_version_at_or_below_seq() -> None:
    keys = [b"a", b"a", b"a", b"b", b"c", b"c", b"d", b"e"]
    tags = [tag(9, PUT), tag(5, DELETE), tag(2, PUT), tag(7, PUT_TTL), tag(8, PUT_TTL), tag(3, PUT), tag(6, DELETE),
            tag(1, PUT)]
    values = [b"a9", b"", b"a2", DEAD + b"b7", LIVE + b"c8", b"c3", b"", b"e1"]
    want = {
        0: ([], []),
        1: ([b"e"], [b"e1"]),
        2: ([b"a", b"e"], [b"a2", b"e1"]),
        5: ([b"a", b"c", b"e"], [TOMB, b"c3", b"e1"]),
        7: ([b"a", b"b", b"c", b"d", b"e"], [TOMB, TOMB, b"c3", TOMB, b"e1"]),   # b expired at NOW
        9: ([b"a", b"b", b"c", b"d", b"e"], [b"a9", TOMB, b"c8", TOMB, b"e1"]),  # c's TTL is live
    }
    for seq, expect in want.items():
        assert resolve(keys, tags, values, seq, NOW) == expect, seq


def test_resolve_judges_ttl_at_now_and_refuses_unknown_kinds() -> None:
    exp = struct.pack("<d", 50.0) + b"x"
    assert resolve([b"k"], [tag(1, PUT_TTL)], [exp], 1, 49.9) == ([b"k"], [b"x"])
    assert resolve([b"k"], [tag(1, PUT_TTL)], [exp], 1, 50.0) == ([b"k"], [TOMB])  # expiry is exclusive
    with pytest.raises(AssertionError, match="unknown entry kind 7"):
        resolve([b"k"], [tag(1, 7)], [b""], 1, NOW)


def test_resolve_masked_hides_versions_under_a_newer_range_tombstone() -> None:
    vis = Visible.at([Fragments.build([(b"b", b"d", 6)])], 10)
    keys = [b"a", b"b", b"b", b"c", b"d"]
    tags = [tag(1, PUT), tag(7, PUT), tag(2, PUT), tag(5, PUT), tag(3, PUT)]
    values = [b"a1", b"b7", b"b2", b"c5", b"d3"]
    # at 10: b's newest (7) is above the tombstone (6); c's (5) is under it; d is past its end
    assert resolve_masked(keys, tags, values, 10, NOW, vis) == ([b"a", b"b", b"c", b"d"],
                                                               [b"a1", b"b7", TOMB, b"d3"], True)
    # at 6: b's version 2 is the one read, and the tombstone hides it
    vis6 = Visible.at([Fragments.build([(b"b", b"d", 6)])], 6)
    assert resolve_masked(keys, tags, values, 6, NOW, vis6) == ([b"a", b"b", b"c", b"d"],
                                                               [b"a1", TOMB, TOMB, b"d3"], True)
    # a reader below the tombstone's sequence does not see it at all
    assert Visible.at([Fragments.build([(b"b", b"d", 6)])], 5) is None


# --- merge_parts and merge_windows over stub sources ---------------------------------------------------

def test_merge_parts_newest_part_wins_and_tombstones_hide() -> None:
    newest = ([b"b", b"d"], [TOMB, b"d2"], True)
    older = ([b"a", b"b", b"c", b"d"], [b"a1", b"b1", b"c1", b"d1"], False)
    assert merge_parts([newest, older], False) == ([b"a", b"c", b"d"], [b"a1", b"c1", b"d2"])
    assert merge_parts([newest, older], True) == ([b"d", b"c", b"a"], [b"d2", b"c1", b"a1"])
    assert merge_parts([older, newest], False) == ([b"a", b"b", b"c", b"d"], [b"a1", b"b1", b"c1", b"d1"])
    assert merge_parts([newest], True) == ([b"d"], [b"d2"])
    assert merge_parts([([], [], False), ([], [], True)], False) == ([], [])


def test_chunks_are_owned_by_the_caller() -> None:
    history = [(b"k%03d" % i, i + 1, PUT, b"v%d" % i) for i in range(100)]
    for layout in (["mem"], ["level"], ["level", "mem"]):
        srcs = Sources(history, layout, [50][:len(layout) - 1], file_keys=30)
        first = list(merge_windows(srcs.windows(100, b"", None, False), False))
        for keys, values in first:  # a caller may change what it got
            assert isinstance(keys, list) and isinstance(values, list), layout
            keys.clear()
            values.clear()
        assert srcs.scan(100) == [(e[0], e[3]) for e in history], layout


class Stub:
    """A window source over ascending ``(key, value)`` items: windows of the
    given sizes (in scan order), each ascending; ``eager``: ``done`` is set
    with the last window (as TableWindows does) rather than at the None after."""

    def __init__(self, items, sizes, reverse: bool, eager: bool = True) -> None:
        windows = []
        rest = list(items) if not reverse else list(items)[::-1]
        for n in sizes:
            if not rest:
                break
            take, rest = rest[:n], rest[n:]
            windows.append(sorted(take))
        if rest:
            windows.append(sorted(rest))
        self.windows = windows
        self.eager = eager
        self.done = not windows and eager
        self.calls = 0

    def next_window(self):
        self.calls += 1
        if not self.windows:
            self.done = True
            return None
        w = self.windows.pop(0)
        if not self.windows and self.eager:
            self.done = True
        return [k for k, _ in w], [v for _, v in w], any(v is TOMB for _, v in w)


def merged(sources, reverse):
    chunks = list(merge_windows(sources, reverse))
    for keys, values in chunks:
        assert len(keys) == len(values)
    return [kv for keys, values in chunks for kv in zip(keys, values)]


def test_merge_windows_of_no_sources_or_only_empty_ones() -> None:
    assert list(merge_windows([], False)) == []
    assert list(merge_windows([Stub([], [], False), Stub([], [], True, eager=False)], True)) == []


def test_merge_windows_newest_source_wins_across_window_edges() -> None:
    new = [(b"b", b"new-b"), (b"e", TOMB), (b"g", b"new-g")]
    mid = [(b"a", b"mid-a"), (b"b", b"mid-b"), (b"c", TOMB), (b"e", b"mid-e")]
    old = [(b"a", b"old-a"), (b"c", b"old-c"), (b"d", b"old-d"), (b"e", b"old-e"), (b"f", b"old-f")]
    want = [(b"a", b"mid-a"), (b"b", b"new-b"), (b"d", b"old-d"), (b"f", b"old-f"), (b"g", b"new-g")]
    for sizes in ([1], [2], [1, 1, 1, 1, 1], [100]):
        for reverse in (False, True):
            srcs = [Stub(new, sizes * 5, reverse), Stub(mid, [1] * 5, reverse, eager=False), Stub(old, sizes, reverse)]
            assert merged(srcs, reverse) == sorted(want, reverse=reverse), (sizes, reverse)


def test_merge_windows_a_single_source_passes_through_without_tombstones() -> None:
    items = [(b"a", b"1"), (b"b", TOMB), (b"c", b"3"), (b"d", TOMB)]
    for reverse in (False, True):
        src = Stub(items, [1, 2], reverse, eager=False)
        assert merged([src], reverse) == sorted([(b"a", b"1"), (b"c", b"3")], reverse=reverse)
        assert src.calls == 4  # three windows, then the None that ends it


@given(st.data())
@FAST
def test_merge_windows_matches_the_model_over_random_windows(data) -> None:
    nsrc = data.draw(st.integers(0, 4))
    reverse = data.draw(st.booleans())
    key = st.sampled_from([b"", b"a", b"ab", b"b", b"ba", b"c", b"d", b"\xff", b"\xff\x00"])
    sources, truth = [], {}
    for i in range(nsrc):  # newest first
        keys = sorted(data.draw(st.sets(key, max_size=8)))
        items = [(k, TOMB if data.draw(st.booleans()) and i < nsrc - 1 else b"%d-%s" % (i, k)) for k in keys]
        sizes = data.draw(st.lists(st.integers(1, 4), max_size=5))
        sources.append(Stub(items, sizes, reverse, eager=data.draw(st.booleans())))
        for k, v in items:
            truth.setdefault(k, v)
    want = sorted(((k, v) for k, v in truth.items() if v is not TOMB), reverse=reverse)
    assert merged(sources, reverse) == want


# --- TableWindows, MemWindows and read_range against the model ----------------------------------------

def check_all(srcs: Sources, history, tombs, rng: random.Random, probes: int = 40) -> None:
    nseq = max([e[1] for e in history] + [t[2] for t in tombs] + [0])
    keys = sorted({e[0] for e in history}) or [b"k"]
    for _ in range(probes):
        seq = rng.choice([0, nseq, nseq + 5, rng.randint(0, nseq)])
        lo = rng.choice([b"", rng.choice(keys), rng.choice(keys) + b"\x00"])
        hi = rng.choice([None, rng.choice(keys), rng.choice(keys) + b"\x00"])
        if hi is not None and hi <= lo:
            hi = None
        reverse = rng.random() < 0.5
        vis = vis_of(tombs, seq, lo, hi)
        want = model_scan(history, tombs, seq, lo, hi, reverse)
        assert srcs.scan(seq, lo, hi, reverse, vis) == want, (seq, lo, hi, reverse)
        if hi is not None:
            assert srcs.read_range(seq, lo, hi, reverse, vis) == want, (seq, lo, hi, reverse)


@pytest.mark.parametrize("layout", LAYOUTS, ids="-".join)
@pytest.mark.parametrize("tomb_rate", [0.0, 0.05])
def test_sources_match_the_model(layout, tomb_rate) -> None:
    rng = random.Random(hash((tuple(layout), tomb_rate)) & 0xFFFF)
    history, tombs = random_history(rng, 400, 60, tomb_rate)
    cuts = rng.sample(range(len(history)), len(layout) - 1)
    srcs = Sources(history, layout, cuts, file_keys=7)
    check_all(srcs, history, tombs, rng)


def test_a_snapshot_does_not_see_later_writes_in_any_source() -> None:
    history = [(b"a", 1, PUT, b"a1"), (b"b", 2, PUT, b"b2"), (b"a", 3, DELETE, b""), (b"b", 4, PUT, b"b4"),
               (b"c", 5, PUT, b"c5"), (b"a", 6, PUT, b"a6")]
    srcs = Sources(history, ["level", "l0", "mem"], [2, 4])
    assert srcs.scan(0) == []
    assert srcs.scan(1) == [(b"a", b"a1")]
    assert srcs.scan(2) == [(b"a", b"a1"), (b"b", b"b2")]
    assert srcs.scan(3) == [(b"b", b"b2")]  # the delete in L0 hides a in the level
    assert srcs.scan(4) == [(b"b", b"b4")]
    assert srcs.scan(5, reverse=True) == [(b"c", b"c5"), (b"b", b"b4")]
    assert srcs.scan(6) == [(b"a", b"a6"), (b"b", b"b4"), (b"c", b"c5")]


def test_bounds_are_lower_inclusive_upper_exclusive() -> None:
    history = [(b"k%d" % i, i + 1, PUT, b"v%d" % i) for i in range(10)]
    srcs = Sources(history, ["level", "l0", "mem"], [4, 7], file_keys=2)
    seq = 10
    for reverse in (False, True):
        got = srcs.scan(seq, b"k2", b"k7", reverse)
        assert [k for k, _ in got] == sorted([b"k%d" % i for i in range(2, 7)], reverse=reverse)
        assert srcs.read_range(seq, b"k2", b"k7", reverse) == got
        assert srcs.scan(seq, b"k2\x00", b"k3", reverse) == []  # between two keys
        assert srcs.scan(seq, b"k9", None, reverse) == [(b"k9", b"v9")]
        assert srcs.scan(seq, b"k9\x00", None, reverse) == []  # past the last key
        assert srcs.scan(seq, b"", b"k0", reverse) == []  # below the first
        assert srcs.read_range(seq, b"k5", b"k5", reverse) == []  # an empty range


def test_tables_of_a_level_are_read_in_turn_with_several_windows() -> None:
    history = [(b"k%04d" % i, i + 1, PUT, b"v%d" % i) for i in range(2000)]
    srcs = Sources(history, ["level"], [], file_keys=150)
    assert len(srcs.level) == 14 and all(len(f.reader.ikeys) > 1 for f in srcs.level)
    want = [(e[0], e[3]) for e in history]
    windows = srcs.windows(2000, b"", None, False)[0]
    sizes = []
    while (w := windows.next_window()) is not None:
        assert w[0] == sorted(w[0]) and not w[2]  # ascending, nothing to resolve: a plain table
        sizes.append(len(w[0]))
    assert sum(sizes) == 2000 and sizes[0] < sizes[-2]  # windows grow from the first
    assert srcs.scan(2000) == want
    assert srcs.scan(2000, reverse=True) == want[::-1]
    assert srcs.scan(2000, b"k0149", b"k0151") == want[149:151]  # across a table boundary
    assert srcs.scan(2000, b"k0149", b"k0151", reverse=True) == want[149:151][::-1]


def test_mem_windows_grow_and_resolve_versions_above_the_snapshot() -> None:
    m = Memtable(1)
    for i in range(300):
        m.add(i + 1, PUT, b"k%03d" % i, b"old")
    for i in range(0, 300, 3):
        m.add(301 + i, PUT, b"k%03d" % i, b"new")
    src = MemWindows(m, b"", None, False, 300, NOW)
    sizes, seen = [], []
    while (w := src.next_window()) is not None:
        sizes.append(len(w[0]))
        seen += w[1]
    assert seen == [b"old"] * 300 and sizes[0] == 16 and sizes[1] == 32
    src = MemWindows(m, b"k100", b"k200", True, 10 ** 6, NOW)
    got = [kv for ks, vs in merge_windows([src], True) for kv in zip(ks, vs)]
    assert got == [(b"k%03d" % i, b"new" if i % 3 == 0 else b"old") for i in range(199, 99, -1)]


def test_range_tombstones_mask_every_kind_of_source() -> None:
    history = [(b"k%d" % i, i + 1, PUT, b"v%d" % i) for i in range(9)]
    srcs = Sources(history, ["level", "l0", "mem"], [3, 6], file_keys=2)
    tombs = [(b"k1", b"k7", 20)]
    for seq in (9, 19, 20, 30):
        for reverse in (False, True):
            want = model_scan(history, tombs, seq, reverse=reverse)
            vis = vis_of(tombs, seq)
            assert srcs.scan(seq, reverse=reverse, vis=vis) == want
            assert srcs.read_range(seq, b"", b"z", reverse, vis) == want
            assert len(want) == (9 if seq < 20 else 3)
    # a tombstone older than a write does not hide it
    late = history + [(b"k3", 21, PUT, b"again")]
    srcs = Sources(late, ["level", "l0", "mem"], [3, 6], file_keys=2)
    assert (b"k3", b"again") in srcs.scan(30, vis=vis_of(tombs, 30))


def test_read_range_gives_up_past_its_block_limit() -> None:
    history = [(b"k%04d" % i, i + 1, PUT, b"v%d" % i) for i in range(400)]
    srcs = Sources(history, ["level"], [], file_keys=100)
    blocks = sum(len(f.reader.ikeys) for f in srcs.level)
    assert blocks > 10
    assert srcs.read_range(400, b"", b"z", False, max_blocks=blocks - 1) is None
    assert len(srcs.read_range(400, b"", b"z", False, max_blocks=blocks)) == 400
    r = srcs.level[0].reader
    need = bisect_left(r.ikeys, b"k0010") + 1  # the blocks from the first to the one holding hi
    assert need < blocks
    assert len(srcs.read_range(400, b"k0000", b"k0010", False, max_blocks=need)) == 10  # a short range fits
    assert srcs.read_range(400, b"k0000", b"k0010", False, max_blocks=need - 1) is None
    mem = Sources(history, ["mem"], [])
    assert mem.read_range(400, b"", b"z", False, max_blocks=1) is None  # more than 32 keys a block
    assert len(mem.read_range(400, b"k0000", b"k0032", False, max_blocks=1)) == 32


def test_empty_sources_and_sources_outside_the_range() -> None:
    srcs = Sources([], ["mem"], [])
    assert srcs.scan(5) == [] and srcs.read_range(5, b"", b"z", False) == []
    empty = MemWindows(Memtable(1), b"", None, False, 5, NOW)
    assert empty.next_window() is None and list(merge_windows([empty], False)) == []
    history = [(b"m%d" % i, i + 1, PUT, b"v") for i in range(6)]
    srcs = Sources(history, ["level", "l0", "mem"], [2, 4], file_keys=1)
    for reverse in (False, True):
        assert srcs.scan(10, b"a", b"b", reverse) == []  # below every source
        assert srcs.scan(10, b"n", None, reverse) == []  # above every source
        assert srcs.read_range(10, b"a", b"b", reverse) == []


ops = st.lists(st.tuples(st.sampled_from(["put", "del", "ttl", "dead", "range"]), st.integers(0, 9),
                         st.integers(0, 9)), max_size=40)


@given(ops, st.sampled_from(LAYOUTS), st.data())
@FAST
def test_random_histories_match_the_model(ops_, layout, data) -> None:
    history, tombs = [], []
    for seq, (op, a, b) in enumerate(ops_, 1):
        key = b"k%d" % a
        if op == "range":
            tombs.append((key, b"k%d" % b, seq))
        elif op == "del":
            history.append((key, seq, DELETE, b""))
        else:
            v = b"v%d" % seq
            history.append((key, seq, PUT if op == "put" else PUT_TTL,
                            v if op == "put" else (LIVE if op == "ttl" else DEAD) + v))
    cuts = data.draw(st.lists(st.integers(0, len(history)), min_size=len(layout) - 1, max_size=len(layout) - 1))
    srcs = Sources(history, layout, cuts, file_keys=data.draw(st.integers(1, 4)))
    check_all(srcs, history, tombs, random.Random(data.draw(st.integers(0, 1 << 16))), probes=8)


# --- the per-entry merge and visible ------------------------------------------------------------------

def test_merge_and_visible_forward_and_reverse() -> None:
    history = [(b"a", 1, PUT, b"a1"), (b"b", 2, PUT, b"b2"), (b"a", 3, DELETE, b""), (b"c", 4, PUT_TTL, DEAD + b"c"),
               (b"d", 5, PUT_TTL, LIVE + b"d"), (b"b", 6, PUT, b"b6"), (b"a", 7, PUT, b"a7")]
    parts = [history[:3], history[3:5], history[5:]]
    for seq in range(8):
        # forward entries carry -seq so that a key's newest version sorts first
        fwd = merge([iter(sorted((k, -s, kind, v) for k, s, kind, v in p)) for p in parts])
        rev = merge([iter(sorted(p, reverse=True)) for p in parts], reverse=True)
        want = model_scan(history, [], seq)
        assert list(visible(fwd, seq, NOW, False)) == want, seq
        assert list(visible(rev, seq, NOW, True)) == want[::-1], seq
        keys_only = visible(merge([iter(sorted((k, -s, kind, v) for k, s, kind, v in history))]), seq, NOW, False,
                            keys_only=True)
        assert list(keys_only) == [k for k, _ in want]


# --- prefix_successor -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, want", [
    (b"ab", b"ac"), (b"a\xff", b"b"), (b"a\xff\xff", b"b"), (b"\xff", None), (b"\xff\xff", None), (b"", None),
    (b"\x00", b"\x01"), (b"a\x00\xff", b"a\x01"), (b"\xfe\xff", b"\xff"),
])
def test_prefix_successor(prefix, want) -> None:
    assert prefix_successor(prefix) == want


@given(st.binary(max_size=4), st.binary(max_size=6))
@settings(max_examples=300, deadline=None)
def test_prefix_successor_bounds_exactly_the_keys_with_the_prefix(prefix, key) -> None:
    succ = prefix_successor(prefix)
    in_range = key >= prefix and (succ is None or key < succ)
    assert in_range == key.startswith(prefix)
