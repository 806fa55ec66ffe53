"""Stateful model test of the write paths: every way in — a put by the fast
path, a put through the commit queue (``sync=True``), batches (either
way, range deletions in them too), compare-and-swap (current and stale,
writes and deletes, with TTL), TTL puts, deletes, range deletions — crossed with flushes, compactions, held flushes
(immutable memtables piling up), snapshots, iterators read a little at a
time, a fake clock and reopening, at a memtable size that switches every
few writes.

After every step: the published sequence is the model's; every key's
``get``, sampled ``get``, ``get_entry`` (value, version, expiry) and ``in``
agree with the model; a full scan, forward and reverse, equals it; every
open snapshot still reads the state it was taken at; and every open
iterator has returned exactly the beginning of its view.
"""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import lsm
from dbmodel import FakeClock, FlushGate, Model, fake_time, switch_memtable, want_scan
from lsm.keys import DELETE, PUT, PUT_TTL

KEYS = st.one_of(
    st.sampled_from([b"", b"a", b"ab", b"abc", b"b", b"ba", b"c", b"\xff", b"\xff\xff"]),
    st.binary(min_size=1, max_size=3).map(lambda b: bytes(x % 4 + 0x61 for x in b)),
)
VALUES = st.one_of(st.binary(max_size=20), st.binary(min_size=100, max_size=400))
TTLS = st.one_of(st.none(), st.sampled_from([5.0, 50.0]))
SYNC = st.sampled_from([None, None, False, True])  # None and False: the fast path when it can
PREFIXES = st.sampled_from([b"", b"a", b"ab", b"b", b"c", b"\xff", b"z"])
BOUNDS = st.one_of(st.none(), KEYS)

OPTIONS = dict(sync_mode="never", memtable_bytes=1024, block_bytes=256, target_file_bytes=2048,
               level_base_bytes=4096, level_multiplier=2, l0_compaction_trigger=2,
               l0_slowdown_trigger=8, l0_stop_trigger=12, block_cache_bytes=8192, compaction_process=False)


class WritePathsModel(RuleBasedStateMachine):
    options = dict(OPTIONS, max_immutable_memtables=1000)  # held flushes never stall a writer
    holds_flushes = True

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="lsm-write-paths-")
        self.clock = FakeClock()
        self._time = fake_time(self.clock)
        self._time.__enter__()
        self.model = Model()
        self.snaps: list[tuple[lsm.Snapshot, int]] = []
        self.iters: list[tuple[lsm.ScanIterator, list, list]] = []  # (iterator, rows read, rows of its view)
        self.timed = 0
        self.db = self._open()

    def _open(self):
        db = lsm.open(self.dir, **self.options)
        db._now = db._versions.clock = self.clock  # TTL's clock, and the one manifest edits record
        real = db._timed_get

        def timed_get(key, default):
            self.timed += 1
            return real(key, default)

        db._timed_get = timed_get
        self.gate = FlushGate(db)
        return db

    def teardown(self) -> None:
        try:
            for s, _ in self.snaps:
                s.close()
            self.db.close()
        finally:
            self._time.__exit__(None, None, None)
            shutil.rmtree(self.dir, ignore_errors=True)

    def add(self, seq: int, key: bytes, value: bytes | None, ttl: float | None) -> None:
        if value is None:
            self.model.add(seq, key, DELETE)
        elif ttl is None:
            self.model.add(seq, key, PUT, value)
        else:
            self.model.add(seq, key, PUT_TTL, value, self.clock.t + ttl)

    def snapshot_first(self, snap: bool) -> None:
        """Take a snapshot before a write (keeping at most four open)."""
        if snap:
            if len(self.snaps) >= 4:
                self.snaps.pop(0)[0].close()
            self.take_snapshot()

    def wrote(self, seq: int) -> None:
        assert seq == self.model.last + 1, (seq, self.model.last)

    # -- writes, every way in ----------------------------------------------------

    @rule(key=KEYS, value=VALUES, ttl=TTLS, sync=SYNC, snap=st.booleans())
    def put(self, key, value, ttl, sync, snap):
        self.snapshot_first(snap)
        seq = self.db.put(key, value, ttl=ttl, sync=sync)
        self.wrote(seq)
        self.add(seq, key, value, ttl)

    @rule(key=KEYS, sync=SYNC, snap=st.booleans())
    def delete(self, key, sync, snap):
        self.snapshot_first(snap)
        seq = self.db.delete(key, sync=sync)
        self.wrote(seq)
        self.add(seq, key, None, None)

    @rule(lo=KEYS, hi=KEYS, sync=SYNC, snap=st.booleans())
    def delete_range(self, lo, hi, sync, snap):
        self.snapshot_first(snap)
        lo, hi = min(lo, hi), max(lo, hi)
        seq = self.db.delete_range(lo, hi, sync=sync)
        if lo == hi:
            assert seq == 0
            return
        self.wrote(seq)
        self.model.add_range(seq, lo, hi)

    @rule(ops=st.lists(st.one_of(st.tuples(KEYS, st.one_of(st.none(), VALUES), TTLS),
                                 st.tuples(st.just("range"), KEYS, KEYS)), max_size=6),
          sync=SYNC, context=st.booleans(), snap=st.booleans())
    def batch(self, ops, sync, context, snap):
        self.snapshot_first(snap)
        ops = [("range", min(o[1], o[2]), max(o[1], o[2])) if o[0] == "range" else o for o in ops]

        def fill(b):
            for o in ops:
                if o[0] == "range":
                    b.delete_range(o[1], o[2])
                elif o[1] is None:
                    b.delete(o[0])
                else:
                    b.put(o[0], o[1], ttl=o[2])

        applied = [o for o in ops if o[0] != "range" or o[1] < o[2]]  # an empty range takes no sequence
        if context:
            with self.db.write_batch(sync=sync) as b:
                fill(b)
            last = self.db._versions.last_sequence
        else:
            b = lsm.WriteBatch()
            fill(b)
            last = self.db.write(b, sync=sync)
            if not applied:
                assert last == 0
        if not applied:
            assert self.db._versions.last_sequence == self.model.last
            return
        first = last - len(applied) + 1
        self.wrote(first)
        for i, o in enumerate(applied):
            if o[0] == "range":
                self.model.add_range(first + i, o[1], o[2])
            else:
                self.add(first + i, *o)

    @rule(key=KEYS, value=st.one_of(st.none(), VALUES), ttl=TTLS, stale=st.booleans(), sync=SYNC,
          snap=st.booleans())
    def cas(self, key, value, ttl, stale, sync, snap):
        self.snapshot_first(snap)
        if value is None:
            ttl = None
        cur = self.model.version_of(key, self.clock.t)
        got = self.db.compare_and_swap(key, cur + 1 if stale else cur, value, ttl=ttl, sync=sync)
        if stale:
            assert got is None
            return
        self.wrote(got)
        self.add(got, key, value, ttl)

    @rule(seconds=st.sampled_from([1.0, 10.0, 100.0]))
    def advance_clock(self, seconds):
        self.clock.t += seconds

    # -- where the writes go -----------------------------------------------------

    @precondition(lambda self: not self.gate.closed)
    @rule()
    def flush(self):
        self.db.flush()

    @precondition(lambda self: not self.gate.closed)
    @rule(lo=BOUNDS, hi=BOUNDS)
    def compact(self, lo, hi):
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        self.db.compact_range(lo, hi)

    @precondition(lambda self: not self.gate.closed)
    @rule()
    def wait(self):
        self.db.wait_for_compactions()

    @precondition(lambda self: self.holds_flushes)
    @rule()
    def hold_flushes_and_switch(self):
        self.gate.closed = True
        switch_memtable(self.db)

    @precondition(lambda self: self.gate.closed)
    @rule()
    def release_flushes(self):
        self.gate.open()

    @precondition(lambda self: not self.gate.closed and not self.iters)
    @rule()
    def reopen(self):
        for s, _ in self.snaps:
            s.close()
        self.snaps = []
        self.db.close()
        self.db = self._open()

    # -- views -------------------------------------------------------------------

    @rule()
    def take_snapshot(self):
        s = self.db.snapshot()
        assert s.sequence == self.model.last
        self.snaps.append((s, self.model.last))

    @precondition(lambda self: self.snaps)
    @rule(i=st.integers(0, 10))
    def close_snapshot(self, i):
        s, _ = self.snaps.pop(i % len(self.snaps))
        s.close()

    @rule(prefix=PREFIXES, reverse=st.booleans(), n=st.integers(0, 3))
    def open_iterator(self, prefix, reverse, n):
        it = self.db.scan(prefix, reverse=reverse)
        whole = want_scan(self.model.state(self.model.last, self.clock.t), prefix, None, None, reverse, False)
        self.iters.append((it, [], whole))
        self._advance(len(self.iters) - 1, n)

    @precondition(lambda self: self.iters)
    @rule(i=st.integers(0, 10), n=st.integers(1, 5))
    def read_iterator(self, i, n):
        self._advance(i % len(self.iters), n)

    def _advance(self, i: int, n: int) -> None:
        it, got, whole = self.iters[i]
        for _ in range(n):
            row = next(it, None)
            if row is None:
                assert got == whole
                self.iters.pop(i)
                return
            got.append(row)
        assert got == whole[:len(got)]

    # -- reads -----------------------------------------------------------------------

    @rule(prefix=PREFIXES, start=BOUNDS, stop=BOUNDS, reverse=st.booleans(), keys_only=st.booleans())
    def scan(self, prefix, start, stop, reverse, keys_only):
        want = want_scan(self.model.state(self.model.last, self.clock.t), prefix, start, stop, reverse, keys_only)
        assert list(self.db.scan(prefix, start=start, stop=stop, reverse=reverse, keys_only=keys_only)) == want

    @invariant()
    def matches_the_model(self):
        db, model, now = self.db, self.model, self.clock.t
        assert db._versions.last_sequence == model.last
        for k in list(model.hist) + [b"never-written"]:
            e = model.entry(k, model.last, now)
            got = db.get_entry(k)
            assert (None if got is None else tuple(got)) == e, k
            want = None if e is None else e[0]
            db._gets = 0
            assert db.get(k) == want, k
            db._gets = 15  # the next get is the sampled one
            before = self.timed
            assert db.get(k) == want, k
            assert self.timed == before + 1
            assert (k in db) == (e is not None)
        state = model.state(model.last, now)
        assert list(db.scan()) == want_scan(state, b"", None, None, False, False)
        assert list(db.scan(reverse=True)) == want_scan(state, b"", None, None, True, False)
        for s, seq in self.snaps:
            assert s.sequence == seq
            snap_state = model.state(seq, now)
            assert list(s.scan()) == want_scan(snap_state, b"", None, None, False, False)
            for k in model.hist:
                got = s.get_entry(k)
                assert (None if got is None else tuple(got)) == model.entry(k, seq, now), (k, seq)

    @invariant()
    def versions_are_consistent(self):
        self.db._versions.current._check(self.db._fs, self.db.path)


class StallingWritePathsModel(WritePathsModel):
    """The same, with one immutable memtable allowed: writers wait for flushes."""

    options = dict(OPTIONS, max_immutable_memtables=1)
    holds_flushes = False


SETTINGS = settings(max_examples=50, stateful_step_count=40, deadline=None,
                    suppress_health_check=list(HealthCheck))
TestWritePathsModel = WritePathsModel.TestCase
TestWritePathsModel.settings = SETTINGS
TestStallingWritePathsModel = StallingWritePathsModel.TestCase
TestStallingWritePathsModel.settings = settings(SETTINGS, max_examples=15)


@pytest.mark.slow
class TestWritePathsModelThoroughly(WritePathsModel.TestCase):
    settings = settings(SETTINGS, max_examples=400, stateful_step_count=80)


@pytest.mark.slow
class TestStallingWritePathsModelThoroughly(StallingWritePathsModel.TestCase):
    settings = settings(SETTINGS, max_examples=150, stateful_step_count=80)
