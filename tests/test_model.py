"""Stateful model test: the DB against a dict, through puts, deletes, range
deletes, batches, compare-and-swap, TTL (fake clock), snapshots, scans,
flushes, compactions and reopen, with tiny sizes so that memtable switches,
flushes and multi-level compactions happen all the time."""

from __future__ import annotations

import shutil
import tempfile
import time

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

import lsm

KEYS = st.one_of(
    st.sampled_from([b"", b"a", b"ab", b"abc", b"b", b"ba", b"c", b"\xff", b"\xff\xff"]),
    st.binary(min_size=1, max_size=3).map(lambda b: bytes(x % 4 + 0x61 for x in b)),
)
VALUES = st.one_of(st.binary(max_size=20), st.binary(min_size=100, max_size=400))
PREFIXES = st.sampled_from([b"", b"a", b"ab", b"b", b"c", b"\xff", b"z"])
BOUNDS = st.one_of(st.none(), KEYS)

OPTIONS = dict(sync_mode="never", memtable_bytes=1024, block_bytes=256, target_file_bytes=2048,
               level_base_bytes=4096, level_multiplier=2, l0_compaction_trigger=2,
               l0_slowdown_trigger=8, l0_stop_trigger=12, block_cache_bytes=8192)


class FakeClock:
    def __init__(self) -> None:
        self.t = 2_000_000_000.0

    def __call__(self) -> float:
        return self.t


class DBModel(RuleBasedStateMachine):
    snapshots = Bundle("snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="lsm-model-")
        self.clock = FakeClock()
        self._real_time = time.time
        time.time = self.clock  # the DB and WriteBatch read wall-clock time through time.time
        self.db = lsm.open(self.dir, **OPTIONS)
        self.model: dict[bytes, tuple[bytes, int, float | None]] = {}  # key -> (value, version, expires)
        self.open_snaps: list = []

    def teardown(self) -> None:
        for s, _ in self.open_snaps:
            s.close()
        self.db.close()
        time.time = self._real_time
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- model helpers --------------------------------------------------------

    def live(self) -> dict[bytes, bytes]:
        now = self.clock.t
        return {k: v for k, (v, _, exp) in self.model.items() if exp is None or exp > now}

    def version_of(self, key: bytes) -> int:
        e = self.model.get(key)
        if e is None or (e[2] is not None and e[2] <= self.clock.t):
            return 0
        return e[1]

    # -- writes -------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, ttl=st.one_of(st.none(), st.sampled_from([5.0, 50.0])))
    def put(self, key, value, ttl):
        v = self.db.put(key, value, ttl=ttl)
        self.model[key] = (value, v, None if ttl is None else self.clock.t + ttl)

    @rule(key=KEYS)
    def delete(self, key):
        self.db.delete(key)
        self.model.pop(key, None)

    @rule(a=KEYS, b=KEYS)
    def delete_range(self, a, b):
        lo, hi = min(a, b), max(a, b)
        seq = self.db.delete_range(lo, hi)
        assert (seq == 0) == (lo == hi)
        for k in [k for k in self.model if lo <= k < hi]:
            del self.model[k]

    @rule(ops=st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES, KEYS.map(lambda k: ("range", k)))),
                       max_size=6))
    def batch(self, ops):
        """Puts, deletes and range deletes (value ``("range", end)``) in one batch."""
        b = lsm.WriteBatch()
        queued = []
        for k, v in ops:
            if v is None:
                b.delete(k)
            elif isinstance(v, tuple):
                lo, hi = min(k, v[1]), max(k, v[1])
                b.delete_range(lo, hi)
                if lo == hi:
                    continue  # an empty range queues nothing
                k, v = lo, ("range", hi)
            else:
                b.put(k, v)
            queued.append((k, v))
        last = self.db.write(b)
        if not queued:
            assert last == 0
            return
        first = last - len(queued) + 1
        for i, (k, v) in enumerate(queued):
            if v is None:
                self.model.pop(k, None)
            elif isinstance(v, tuple):
                for key in [key for key in self.model if k <= key < v[1]]:
                    del self.model[key]
            else:
                self.model[k] = (v, first + i, None)

    @rule(key=KEYS, value=st.one_of(st.none(), VALUES), stale=st.booleans())
    def cas(self, key, value, stale):
        cur = self.version_of(key)
        expected = cur + 1 if stale else cur
        got = self.db.compare_and_swap(key, expected, value)
        if stale:
            assert got is None
            return
        assert got is not None
        if value is None:
            self.model.pop(key, None)
        else:
            self.model[key] = (value, got, None)

    @rule(seconds=st.sampled_from([1.0, 10.0, 100.0]))
    def advance_clock(self, seconds):
        self.clock.t += seconds

    # -- maintenance ----------------------------------------------------------------

    @rule()
    def flush(self):
        self.db.flush()

    @rule(lo=BOUNDS, hi=BOUNDS)
    def compact(self, lo, hi):
        self.db.compact_range(lo, hi)

    @rule()
    def wait(self):
        self.db.wait_for_compactions()

    @precondition(lambda self: not self.open_snaps)
    @rule()
    def reopen(self):
        self.db.close()
        self.db = lsm.open(self.dir, **OPTIONS)
        self.db.get(b"a")  # exercise the recovered state once before the checks

    # -- snapshots ------------------------------------------------------------------

    @rule(target=snapshots)
    def take_snapshot(self):
        s = self.db.snapshot()
        frozen = dict(self.model)
        self.open_snaps.append((s, frozen))
        return len(self.open_snaps) - 1

    @rule(i=snapshots, key=KEYS)
    def snapshot_get(self, i, key):
        s, frozen = self.open_snaps[i] if i < len(self.open_snaps) else (None, None)
        if s is None or s._view is None:
            return
        e = frozen.get(key)
        now = self.clock.t
        want = None if e is None or (e[2] is not None and e[2] <= now) else e[0]
        assert s.get(key) == want

    @rule(i=snapshots, prefix=PREFIXES)
    def snapshot_scan(self, i, prefix):
        s, frozen = self.open_snaps[i] if i < len(self.open_snaps) else (None, None)
        if s is None or s._view is None:
            return
        now = self.clock.t
        want = sorted((k, v) for k, (v, _, exp) in frozen.items()
                      if k.startswith(prefix) and (exp is None or exp > now))
        assert list(s.scan(prefix)) == want

    @rule(i=snapshots)
    def close_snapshot(self, i):
        if i < len(self.open_snaps):
            self.open_snaps[i][0].close()

    # -- reads ------------------------------------------------------------------------

    @rule(key=KEYS)
    def get(self, key):
        live = self.live()
        assert self.db.get(key) == live.get(key)
        e = self.db.get_entry(key)
        if key in live:
            assert e is not None and e.value == live[key] and e.version == self.model[key][1]
        else:
            assert e is None

    @rule(prefix=PREFIXES, start=BOUNDS, stop=BOUNDS, reverse=st.booleans(), keys_only=st.booleans())
    def scan(self, prefix, start, stop, reverse, keys_only):
        want = sorted((k, v) for k, v in self.live().items()
                      if k.startswith(prefix) and (start is None or k >= start)
                      and (stop is None or k < stop))
        if reverse:
            want.reverse()
        if keys_only:
            want = [k for k, _ in want]
        assert list(self.db.scan(prefix, start=start, stop=stop, reverse=reverse,
                                 keys_only=keys_only)) == want

    @invariant()
    def everything_matches(self):
        """After every step: a full scan equals the model, and every open
        snapshot still sees exactly the state it was taken at."""
        now = self.clock.t
        assert list(self.db.scan()) == sorted(self.live().items())
        for s, frozen in self.open_snaps:
            if s._view is None:
                continue
            want = sorted((k, v) for k, (v, _, exp) in frozen.items() if exp is None or exp > now)
            assert list(s.scan()) == want

    @invariant()
    def versions_are_consistent(self):
        v = self.db._versions.current
        v._check(self.db._fs, self.db.path)


TestDBModel = DBModel.TestCase
TestDBModel.settings = settings(max_examples=100, stateful_step_count=50, deadline=None,
                                suppress_health_check=[HealthCheck.too_slow])
