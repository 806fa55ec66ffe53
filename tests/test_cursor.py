"""lsm.Cursor: a stateful model test against sorted lists (seeks in both
directions, moves, turns, bounds, snapshots, TTL, a fake clock), over a DB
with tiny sizes so the data lies in memtables, L0 and deeper levels at once;
walks from seeks at every key against scans; cursors beside a writer that
writes, flushes and compacts; bad arguments. (Lifetime: test_lifetime.py.)"""

from __future__ import annotations

import bisect
import random
import shutil
import sys
import tempfile
import threading
import time

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import lsm

OPTIONS = dict(sync_mode="never", memtable_bytes=4096, block_bytes=256, target_file_bytes=4096,
               l0_compaction_trigger=2, level_base_bytes=16384)

ALPHABET = b"abcdefgh"
KEYS = st.binary(min_size=1, max_size=3).map(lambda b: bytes(ALPHABET[x % 8] for x in b))
PROBES = st.one_of(KEYS, st.sampled_from([b"", b"a", b"\xff", b"hhhh", b"d\x00"]))
BOUNDS = st.one_of(st.none(), KEYS)
VALUES = st.binary(max_size=40)
OPS = st.one_of(
    st.tuples(st.sampled_from(["seek", "seek", "seek_for_prev"]), PROBES),
    st.tuples(st.sampled_from(["first", "last", "entry"]), st.none()),
    st.tuples(st.sampled_from(["next", "prev"]), st.none()),
    st.tuples(st.sampled_from(["next", "prev"]), st.integers(2, 40)),  # that many steps one way
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 2_000_000_000.0

    def __call__(self) -> float:
        return self.t


class Model:
    """What one cursor must show: the live entries of its view at its
    creation, within its bounds, as a sorted list, and a position in it."""

    def __init__(self, entries: dict, now: float, lower, upper) -> None:
        self.items = sorted((k, e) for k, e in entries.items()
                            if (e[2] is None or e[2] > now)
                            and (lower is None or k >= lower) and (upper is None or k < upper))
        self.keys = [k for k, _ in self.items]
        self.pos: int | None = None

    def valid(self) -> bool:
        return self.pos is not None and 0 <= self.pos < len(self.items)


class CursorModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="lsm-cursor-")
        self.clock = FakeClock()
        self._real_time = time.time
        time.time = self.clock  # the DB reads wall-clock time (TTL) through time.time
        self.db = lsm.open(self.dir, **OPTIONS)
        self.entries: dict[bytes, tuple[bytes, int, float | None]] = {}  # key -> (value, version, expires)
        self.snaps: list = []  # (snapshot, entries then)
        self.cursors: list = []  # (cursor, model)

    def teardown(self) -> None:
        for c, _ in self.cursors:
            c.close()
        for s, _ in self.snaps:
            s.close()
        self.db.close()
        time.time = self._real_time
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writes ----------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**32 - 1))
    def load(self, seed):
        """A base of data in every place a cursor reads from: a deeper level
        of plain tables (one version per key), L1 and L0 tables with
        overwrites, tombstones and TTL entries, the memtable; and one open
        cursor."""
        rng = random.Random(seed)
        every = [bytes(ALPHABET[rng.randrange(8)] for _ in range(rng.randrange(1, 5))) for _ in range(900)]
        for n, plain, then in ((500, True, "down"), (200, False, "l1"), (100, False, "flush"), (40, False, None)):
            for k in rng.sample(every, n):
                if not plain and rng.random() < 0.15:
                    self.db.delete(k)
                    self.entries.pop(k, None)
                else:
                    v = k + rng.randbytes(rng.randrange(10, 60))
                    ttl = None if plain else rng.choice([None, None, None, 5.0, 50.0])
                    version = self.db.put(k, v, ttl=ttl)
                    self.entries[k] = (v, version, None if ttl is None else self.clock.t + ttl)
            if then == "down":
                self.db.compact_range(None, None)
            if then in ("down", "l1"):
                self.db.flush()
                self.db.wait_for_compactions()
            elif then == "flush":
                self.db.flush()
        self.open_cursor(None, None, 3)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=60), value=VALUES, ttl=st.sampled_from([None, None, 5.0, 50.0]))
    def put_many(self, keys, value, ttl):
        for k in keys:
            v = value + k
            version = self.db.put(k, v, ttl=ttl)
            self.entries[k] = (v, version, None if ttl is None else self.clock.t + ttl)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=20))
    def delete_many(self, keys):
        for k in keys:
            self.db.delete(k)
            self.entries.pop(k, None)

    @rule(seconds=st.sampled_from([1.0, 10.0, 100.0]))
    def advance_clock(self, seconds):
        self.clock.t += seconds

    @rule()
    def flush(self):
        self.db.flush()

    @rule(lo=BOUNDS, hi=BOUNDS)
    def compact(self, lo, hi):
        self.db.compact_range(lo, hi)

    # -- views -----------------------------------------------------------------

    @precondition(lambda self: len(self.snaps) < 3)
    @rule()
    def take_snapshot(self):
        self.snaps.append((self.db.snapshot(), dict(self.entries)))

    @precondition(lambda self: len(self.cursors) < 4)
    @rule(lower=BOUNDS, upper=BOUNDS, which=st.integers(0, 3))
    def open_cursor(self, lower, upper, which):
        if which < len(self.snaps):
            snap, entries = self.snaps[which]
            c = snap.cursor(lower=lower, upper=upper)
        else:
            entries = self.entries
            c = self.db.cursor(lower=lower, upper=upper)
        self.cursors.append((c, Model(entries, self.clock.t, lower, upper)))

    @precondition(lambda self: self.cursors)
    @rule(i=st.integers(0, 3))
    def close_cursor(self, i):
        c, _ = self.cursors.pop(i % len(self.cursors))
        c.close()
        with pytest.raises(lsm.ClosedError):
            c.seek(b"a")

    # -- cursor moves --------------------------------------------------------------

    def pick(self, i):
        return self.cursors[i % len(self.cursors)]

    @precondition(lambda self: self.cursors)
    @rule(i=st.integers(0, 3), ops=st.lists(OPS, min_size=1, max_size=25))
    def navigate(self, i, ops):
        """Seeks of every kind, moves both ways, turns and entry reads on one cursor."""
        c, m = self.cursors[i % len(self.cursors)]
        for op, key in ops:
            if op == "seek":
                m.pos = bisect.bisect_left(m.keys, key)
                assert c.seek(key) == m.valid()
            elif op == "seek_for_prev":
                m.pos = bisect.bisect_right(m.keys, key) - 1
                assert c.seek_for_prev(key) == m.valid()
            elif op == "first":
                m.pos = 0
                assert c.seek_to_first() == m.valid()
            elif op == "last":
                m.pos = len(m.keys) - 1
                assert c.seek_to_last() == m.valid()
            elif op in ("next", "prev"):
                for _ in range(key or 1):
                    if not m.valid():
                        with pytest.raises(ValueError):
                            c.next() if op == "next" else c.prev()
                        break
                    m.pos += 1 if op == "next" else -1
                    assert (c.next() if op == "next" else c.prev()) == m.valid()
                    if m.valid():
                        assert c.key == m.keys[m.pos]
            elif not m.valid():  # entry
                with pytest.raises(ValueError):
                    _ = c.entry
            else:
                value, version, expires = m.items[m.pos][1]
                assert c.entry == lsm.Entry(value, version, expires)
            self.check(c, m)

    def check(self, c, m):
        assert c.valid == m.valid()
        if m.valid():
            k, (v, _, _) = m.items[m.pos]
            assert (c.key, c.value) == (k, v)
        else:
            with pytest.raises(ValueError):
                _ = c.key
            with pytest.raises(ValueError):
                _ = c.value

    @invariant()
    def cursors_match(self):
        for c, m in self.cursors:
            self.check(c, m)


TestCursorModel = CursorModel.TestCase
TestCursorModel.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])


# -- a seek's chunk against merged windows ------------------------------------------------


@pytest.mark.parametrize("seek_chunk", [True, False])
def test_walks_from_every_kind_of_seek_match_scans(tmp_path, monkeypatch, seek_chunk):
    """30 steps from seeks in both directions, over several tables per level
    (plain ones and ones to resolve), L0, the memtable and a snapshot, equal
    the scans from the same key: with a forward seek's own first chunk
    (Cursor._seek_chunk) and, switched off, with merged windows only."""
    if not seek_chunk:
        monkeypatch.setattr(lsm.Cursor, "_seek_chunk", lambda self, lo: None)
    rng = random.Random(7)
    db = lsm.open(tmp_path, **OPTIONS)
    keys = [b"%03d" % i for i in range(600)]
    for k in keys:  # a deeper level of plain tables
        db.put(k, k * rng.randrange(5, 40))
    db.compact_range(None, None)
    for rnd in range(5):  # L1 and (unless a compaction just took them) L0, with versions and tombstones
        for k in rng.sample(keys, 120):
            if rng.random() < 0.2:
                db.delete(k)
            else:
                db.put(k, b"%s-%d" % (k, rnd) * rng.randrange(1, 4))
        db.flush()
        if rnd == 1:
            db.wait_for_compactions()
    snap = db.snapshot()
    for k in rng.sample(keys, 50):  # the memtable
        db.put(k, b"newer")
    shape = [len(level) for level in db._sv.version.levels]
    assert max(shape[1:]) >= 2 and db._sv.mem.entries, shape  # the L0 count depends on compaction timing
    for src in (db, snap):
        forward = list(src.scan())
        fkeys = [k for k, _ in forward]
        with src.cursor() as c:
            # every key and the gaps between keys: seeks land at every place in every block
            for probe in keys + [k + b"\x00" for k in keys] + [b"", b"\xff", b"0"]:
                steps = 30 if probe[-1:] == b"7" else 13
                got = []
                ok = c.seek(probe)
                while ok and len(got) < steps:
                    got.append((c.key, c.value))
                    ok = c.next()
                i = bisect.bisect_left(fkeys, probe)
                assert got == forward[i:i + steps], probe
                if probe[-1:] in b"05":
                    got = []
                    ok = c.seek_for_prev(probe)
                    while ok and len(got) < steps:
                        got.append((c.key, c.value))
                        ok = c.prev()
                    i = bisect.bisect_right(fkeys, probe)
                    assert got == forward[max(i - steps, 0):i][::-1], probe
    snap.close()
    db.close()


def test_a_seek_reads_the_tables_that_start_above_it_once_its_chunk_reaches_them(tmp_path):
    """A dense base level and newer tables holding a few keys each in ranges
    apart: a seek just below a newer table's first key must not skip it
    when the base level's window reads on past that key."""
    db = lsm.open(tmp_path, **OPTIONS)
    keys = [b"%03d" % i for i in range(600)]
    for k in keys:
        db.put(k, k * 8)
    db.compact_range(None, None)
    db.wait_for_compactions()
    for lo, hi in ((100, 200), (300, 400), (500, 600)):
        for i in range(lo + 3, hi, 7):
            db.put(b"%03d" % i, b"new")
        db.flush()
        db.wait_for_compactions()
    v = db._sv.version
    assert len(v.levels[1]) >= 2 and v.levels[1][0].smallest > b"000", [len(level) for level in v.levels]
    want = list(db.scan())
    wkeys = [k for k, _ in want]
    with db.cursor() as c:
        for probe in keys + [k + b"\x00" for k in keys]:
            got = []
            ok = c.seek(probe)
            while ok and len(got) < 15:
                got.append((c.key, c.value))
                ok = c.next()
            i = bisect.bisect_left(wkeys, probe)
            assert got == want[i:i + 15], probe
    db.close()


# -- concurrency ----------------------------------------------------------------------------


def test_cursors_keep_their_view_while_a_writer_writes_and_compacts(tmp_path):
    """Every write is a batch setting all keys to one generation, so a
    cursor made at any moment must see one generation throughout, whatever
    the writer (writes, flushes, compactions) does while it moves."""
    db = lsm.open(tmp_path, **OPTIONS)
    keys = [b"k%03d" % i for i in range(120)]

    def generation(g: int) -> None:
        with db.write_batch() as b:
            for k in keys:
                if (g + int(k[1:])) % 7:  # some keys are deleted in each generation
                    b.put(k, b"%d" % g)
                else:
                    b.delete(k)

    def expected(g: int) -> list:
        return [(k, b"%d" % g) for k in keys if (g + int(k[1:])) % 7]

    generation(0)
    stop = threading.Event()
    errors: list = []

    def writer() -> None:
        g = 1
        try:
            while not stop.is_set():
                generation(g)
                if g % 3 == 0:
                    db.flush()
                if g % 10 == 0:
                    db.compact_range(None, None)
                g += 1
        except BaseException as e:  # reported below
            errors.append(e)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: the writer lands inside cursor moves
    t = threading.Thread(target=writer)
    t.start()
    rng = random.Random(3)
    try:
        deadline = time.monotonic() + 1.5
        checked = 0
        while time.monotonic() < deadline or checked < 20:
            with db.cursor() as c:
                assert c.seek_to_first()
                g = int(c.value)
                want = expected(g)
                seen = []
                ok = True
                while ok:
                    seen.append((c.key, c.value))
                    ok = c.next()
                assert seen == want
                # back and forth, then seeks, all in the same generation
                assert c.seek_to_last() and (c.key, c.value) == want[-1]
                for _ in range(10):
                    probe = rng.choice(keys)
                    i = bisect.bisect_left([k for k, _ in want], probe)
                    assert c.seek(probe) == (i < len(want))
                    for j in range(i, min(i + 5, len(want))):
                        assert (c.key, c.value) == want[j]
                        c.next()
                    if c.valid:
                        c.prev()
                        assert c.key <= want[min(i + 5, len(want)) - 1][0]
            checked += 1
    finally:
        sys.setswitchinterval(switch)
        stop.set()
        t.join()
        db.close()
    assert not errors, errors


# -- arguments, invalid positions, lifetime ----------------------------------------------------


def test_bad_arguments_name_the_argument(tmp_path):
    with lsm.open(tmp_path, sync_mode="never") as db:
        with pytest.raises(TypeError, match="lower"):
            db.cursor(lower="a")
        with pytest.raises(TypeError, match="upper"):
            db.cursor(upper=1)
        with pytest.raises(ValueError, match="upper"):
            db.cursor(upper=b"x" * 70000)
        with pytest.raises(TypeError):
            db.cursor(b"a")  # bounds are keyword-only
        with db.snapshot() as snap:
            with pytest.raises(TypeError, match="lower"):
                snap.cursor(lower=1.5)
        with db.cursor() as c:
            for call in (c.seek, c.seek_for_prev):
                with pytest.raises(TypeError, match="key"):
                    call(None)
                with pytest.raises(TypeError, match="key"):
                    call("text")
                with pytest.raises(ValueError, match="key"):
                    call(b"x" * 70000)
            assert c.seek(bytearray(b"a")) is False  # bytes-like keys are accepted


def test_a_cursor_that_is_not_valid_says_so(tmp_path):
    with lsm.open(tmp_path, sync_mode="never") as db:
        db.put(b"a", b"1")
        with db.cursor() as c:
            assert c.valid is False  # not positioned yet
            for what in ("key", "value", "entry"):
                with pytest.raises(ValueError, match="not at an entry"):
                    getattr(c, what)
            with pytest.raises(ValueError):
                c.next()
            with pytest.raises(ValueError):
                c.prev()
            assert c.seek(b"a") and c.entry.value == b"1"
            assert c.next() is False
            with pytest.raises(ValueError):
                c.next()
            assert c.seek_to_first() and c.prev() is False
            with pytest.raises(ValueError):
                _ = c.key
        with db.cursor(lower=b"b", upper=b"b") as c:  # an empty range
            assert not c.seek_to_first() and not c.seek_to_last() and not c.seek(b"") and not c.seek_for_prev(b"z")


def test_bounds_and_seeks_outside_them(tmp_path):
    with lsm.open(tmp_path, sync_mode="never") as db:
        for k in (b"a", b"b", b"c", b"d"):
            db.put(k, k)
        with db.cursor(lower=b"b", upper=b"d") as c:
            assert c.seek(b"a") and c.key == b"b"  # below lower: the first key in range
            assert not c.seek(b"d")  # at upper: nothing
            assert c.seek_for_prev(b"z") and c.key == b"c"  # above upper: the last key in range
            assert not c.seek_for_prev(b"a")
            assert c.seek_to_first() and c.key == b"b" and not c.prev()
            assert c.seek_to_last() and c.key == b"c" and not c.next()


def test_entry_and_ttl_are_judged_at_the_cursors_creation(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "time", clock)
    with lsm.open(tmp_path, sync_mode="never") as db:
        v = db.put(b"a", b"1", ttl=10)
        db.put(b"b", b"2")
        with db.cursor() as c:
            clock.t += 20  # "a" expires now, but not for this cursor
            assert c.seek_to_first() and c.key == b"a"
            assert c.entry == lsm.Entry(b"1", v, 2_000_000_010.0)
        with db.cursor() as c:
            assert c.seek_to_first() and c.key == b"b" and c.entry.expires_at is None
