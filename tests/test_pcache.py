"""Tests of lsm.pcache.PersistentCache: unit tests, a stateful model test
against a per-shard LRU model (with restarts and an injected clock), a
concurrency test, SIGKILL crash tests of a writer child process, and
checkpoint crash points through tests/faultfs.py.
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import OrderedDict

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import lsm
from lsm.errors import BackgroundError, ClosedError, CorruptionError, DiskError, LockError
from lsm.pcache import PersistentCache, cache as pcache, log as cachelog, shard as cacheshard
from lsm.pcache.log import shard_of
from lsm.record import CACHE, encode_record, iter_records

sys.path.insert(0, os.path.dirname(__file__))
from faultfs import FaultFS, Rule  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FixedFaultFS(FaultFS):
    """FaultFS with two additions for these tests.

    1. A fix for renaming a new (never dir-synced) file over an existing durable
       one: FaultFS marks the destination "new", so power_cut() deletes it and
       leaves the source behind. On a real filesystem the destination keeps
       its old contents and the source's name vanishes. (Reported upstream.)
    2. ``crash_before(op, path_contains, nth)``: at the nth matching operation,
       cut the power instead of doing it (so: a crash right after the step
       before it).
    """

    def __init__(self) -> None:
        super().__init__()
        self._vanish: set[str] = set()
        self._crash: list[Rule] = []

    def rename(self, src: str, dst: str) -> None:
        dst_durable = self.base.exists(dst) and dst not in self._new
        src_new = src in self._new
        super().rename(src, dst)
        with self._mu:
            if dst_durable:
                self._new.discard(dst)
            if src_new:
                self._vanish.add(src)

    def fsync_dir(self, path: str) -> None:
        super().fsync_dir(path)
        prefix = os.path.join(path, "")
        with self._mu:
            self._vanish = {p for p in self._vanish if not p.startswith(prefix)}

    def power_cut(self) -> None:
        with self._mu:
            undo = [r[0] for r in self._renames if r[0] in self._vanish]
            super().power_cut()
            for src in undo:
                if os.path.exists(src):
                    os.remove(src)

    def crash_before(self, op: str, path_contains: str = "", nth: int = 1) -> None:
        with self._mu:
            self._crash.append(Rule(op, path_contains, nth, errno.EIO, 1, False))

    def _check(self, op: str, path: str):
        with self._mu:
            if not self.dead:
                for r in self._crash:
                    if r.op == op and r.path_contains in path:
                        r.seen += 1
                        if r.seen == r.nth:
                            self.power_cut()
                            return Rule(op, "", 0, errno.EIO, 1, False)
        return super()._check(op, path)


def test_fixed_faultfs_rename_over_durable_file(tmp_path):
    d = str(tmp_path)
    fs = FixedFaultFS()
    f = fs.open_writable(d + "/log")
    f.write(b"old")
    f.sync()
    f.close()
    fs.fsync_dir(d)
    t = fs.open_writable(d + "/tmp")
    t.write(b"new")
    t.sync()
    t.close()
    fs.rename(d + "/tmp", d + "/log")
    fs.power_cut()
    assert sorted(os.listdir(d)) == ["log"]
    assert open(d + "/log", "rb").read() == b"old"


@pytest.fixture
def small_checkpoints(monkeypatch):
    monkeypatch.setattr(cacheshard, "CHECKPOINT_FLOOR_BYTES", 512)


def contents(cache: PersistentCache) -> dict[bytes, bytes]:
    """Every held entry (white-box, no recency change)."""
    out = {}
    for s in cache._shards:
        with s._mu:
            out.update(s._map.items())
    return out


def order(cache: PersistentCache, shard: int = 0) -> list[bytes]:
    s = cache._shards[shard]
    with s._mu:
        return list(s._map)


# -- unit tests ----------------------------------------------------------------------

def test_basic_get_put_delete(tmp_path):
    with PersistentCache(tmp_path / "c") as c:
        assert c.get(b"a") is None
        assert c.get(b"a", b"dflt") == b"dflt"
        c.put(b"a", b"1")
        c.put(bytearray(b"b"), memoryview(b"2"))
        c.put(b"", b"empty key is a key")
        assert c.get(b"a") == b"1" and c.get(b"b") == b"2" and c.get(b"") == b"empty key is a key"
        assert b"a" in c and b"zz" not in c
        assert len(c) == 3
        assert c.delete(b"a") is True
        assert c.delete(b"a") is False
        assert c.get(b"a") is None and len(c) == 2
        c.put(b"b", b"3")
        assert c.get(b"b") == b"3"
        st_ = c.stats()
        assert st_["items"] == 2 and st_["bytes"] == 2 + len(b"empty key is a key")
        c._check()


def test_lru_order_and_get_refreshes(tmp_path):
    with PersistentCache(tmp_path, max_items=3, shards=1) as c:
        for k in (b"a", b"b", b"c"):
            c.put(k, b"v")
        assert c.get(b"a") == b"v"  # a is now most recent
        c.put(b"d", b"v")  # evicts b
        assert order(c) == [b"c", b"a", b"d"]
        assert c.get(b"b") is None
        assert c.stats()["evictions"] == 1
        c.put(b"c", b"new")  # overwrite: no eviction, moves to the end
        assert order(c) == [b"a", b"d", b"c"] and c.stats()["evictions"] == 1


def test_contains_changes_neither_recency_nor_stats(tmp_path):
    with PersistentCache(tmp_path, max_items=2, shards=1) as c:
        c.put(b"a", b"1")
        c.put(b"b", b"2")
        assert b"a" in c
        c.put(b"c", b"3")
        assert b"a" not in c
        s = c.stats()
        assert (s["hits"], s["misses"]) == (0, 0)


def test_max_bytes_eviction(tmp_path):
    with PersistentCache(tmp_path, max_bytes=100, shards=1) as c:
        for i in range(10):
            c.put(b"k%d" % i, b"x" * 18)  # 20 bytes each
        assert len(c) == 5 and c.stats()["bytes"] == 100
        c.put(b"big", b"y" * 57)  # 60 bytes: evicts 3 (k5, k6, k7)
        assert sorted(contents(c)) == [b"big", b"k8", b"k9"]
        assert c.stats()["bytes"] == 100
        c._check()


def test_bounds_split_per_shard(tmp_path):
    with PersistentCache(tmp_path, max_items=40, max_bytes=4000, shards=4) as c:
        for i in range(500):
            c.put(b"key%d" % i, b"v" * (i % 50))
        for s in c._shards:
            assert len(s._map) <= 10 and s._bytes <= 1000
        assert len(c) <= 40 and c.stats()["bytes"] <= 4000
        c._check()


def test_persistence_and_recency_after_restart(tmp_path):
    with PersistentCache(tmp_path, max_items=3, shards=1) as c:
        c.put(b"a", b"1")
        c.put(b"b", b"2")
        c.put(b"c", b"3")
        c.get(b"a")  # not logged: after a restart a is the LRU again
    with PersistentCache(tmp_path, max_items=3, shards=1) as c:
        assert order(c) == [b"a", b"b", b"c"]
        c.put(b"d", b"4")
        assert contents(c) == {b"b": b"2", b"c": b"3", b"d": b"4"}


def test_evicted_and_deleted_never_come_back(tmp_path):
    with PersistentCache(tmp_path, max_items=4, shards=2) as c:
        for i in range(50):
            c.put(b"k%02d" % i, b"v%d" % i)
        c.delete(next(iter(contents(c))))
        before = contents(c)
    with PersistentCache(tmp_path, max_items=1000, shards=2) as c:  # larger bounds
        assert contents(c) == before


def test_smaller_bounds_at_reopen_evict_and_log(tmp_path):
    with PersistentCache(tmp_path, shards=1) as c:
        for i in range(10):
            c.put(b"k%d" % i, b"v")
    with PersistentCache(tmp_path, max_items=3, shards=1) as c:
        assert order(c) == [b"k7", b"k8", b"k9"]
        assert c.stats()["evictions"] == 7
    with PersistentCache(tmp_path, shards=1) as c:  # the evictions were logged
        assert order(c) == [b"k7", b"k8", b"k9"]


def test_ttl_with_injected_clock(tmp_path):
    now = [1000.0]
    with PersistentCache(tmp_path, shards=2, clock=lambda: now[0], default_ttl=100) as c:
        c.put(b"short", b"1", ttl=10)
        c.put(b"default", b"2")
        c.put(b"long", b"3", ttl=1000)
        now[0] = 1010.0  # expires_at <= now: expired
        assert c.get(b"short") is None and b"short" not in c
        assert c.get(b"default") == b"2"
        now[0] = 1100.0
        assert b"default" not in c and c.get(b"long") == b"3"
        assert c.delete(b"default") is False  # expired: reclaimed, reports False
        s = c.stats()
        assert s["expirations"] == 2 and s["misses"] == 1 and s["hits"] == 2
    now[0] = 1500.0
    with PersistentCache(tmp_path, shards=2, clock=lambda: now[0]) as c:
        assert contents(c) == {b"long": b"3"}
    now[0] = 2001.0
    with PersistentCache(tmp_path, shards=2, clock=lambda: now[0]) as c:
        assert len(c) == 0 and c.stats()["expirations"] == 1


def test_expire_is_logged_so_a_clock_going_back_does_not_resurrect(tmp_path):
    now = [1000.0]
    with PersistentCache(tmp_path, shards=1, clock=lambda: now[0]) as c:
        c.put(b"a", b"1", ttl=5)
        c.put(b"b", b"2", ttl=5)
        now[0] = 1010.0
        assert c.get(b"a") is None  # reclaimed by get: EXPIRE goes out with the next record
        c.put(b"c", b"3")  # the proactive heap pass reclaims b in the same record
        assert c.stats()["expirations"] == 2
    now[0] = 1000.0  # the wall clock went back: only the log can keep a and b away
    with PersistentCache(tmp_path, shards=1, clock=lambda: now[0]) as c:
        assert contents(c) == {b"c": b"3"}


def test_pending_expire_is_logged_at_close(tmp_path):
    now = [1000.0]
    with PersistentCache(tmp_path, shards=1, clock=lambda: now[0]) as c:
        c.put(b"a", b"1", ttl=5)
        now[0] = 1010.0
        assert c.get(b"a") is None
    now[0] = 1000.0
    with PersistentCache(tmp_path, shards=1, clock=lambda: now[0]) as c:
        assert len(c) == 0


def test_proactive_expiry_on_put_is_bounded(tmp_path):
    now = [1000.0]
    with PersistentCache(tmp_path, shards=1, clock=lambda: now[0]) as c:
        for i in range(50):
            c.put(b"t%d" % i, b"v", ttl=1)
        now[0] = 1002.0
        c.put(b"x", b"v")
        assert c.stats()["expirations"] == cacheshard.PROACTIVE_EXPIRE
        for i in range(10):
            c.put(b"y%d" % i, b"v")
        assert c.stats()["expirations"] == 50 and len(c) == 11
        c._check()


def test_expired_entries_go_before_live_ones_are_evicted(tmp_path, monkeypatch):
    monkeypatch.setattr(cacheshard, "PROACTIVE_EXPIRE", 0)  # only the full purge before eviction
    now = [1000.0]
    with PersistentCache(tmp_path, shards=1, max_items=20, clock=lambda: now[0]) as c:
        for i in range(10):
            c.put(b"live%d" % i, b"v")
        for i in range(10):
            c.put(b"ttl%d" % i, b"v", ttl=1)
        now[0] = 1005.0
        for i in range(10):
            c.put(b"new%d" % i, b"v")
        s = c.stats()
        assert s["evictions"] == 0 and s["expirations"] == 10
        assert all(c.get(b"live%d" % i) == b"v" for i in range(10))


def test_heap_stays_bounded_under_ttl_overwrites(tmp_path):
    now = [1000.0]
    with PersistentCache(tmp_path, shards=1, clock=lambda: now[0]) as c:
        for i in range(5000):
            c.put(b"k%d" % (i % 10), b"v", ttl=100 + i)
        assert len(c._shards[0]._heap) <= 2 * 10 + 65
        c._check()


def test_bad_input(tmp_path):
    with PersistentCache(tmp_path, max_bytes=400, shards=4) as c:
        size = c.stats()["log_bytes"]
        with pytest.raises(TypeError, match="key"):
            c.put("str", b"v")
        with pytest.raises(TypeError, match="value"):
            c.put(b"k", "str")
        with pytest.raises(TypeError, match="value"):
            c.put(b"k", None)
        with pytest.raises(TypeError, match="key"):
            c.get(1)
        with pytest.raises(TypeError, match="key"):
            c.delete(["k"])
        with pytest.raises(TypeError, match="key"):
            "k" in c  # noqa: B015
        with pytest.raises(ValueError, match=r"limit is max_bytes // shards = 100"):
            c.put(b"k" * 50, b"v" * 51)
        c.put(b"k" * 50, b"v" * 50)  # exactly the per-shard limit fits
        size = c.stats()["log_bytes"]
        with pytest.raises(ValueError, match="ttl"):
            c.put(b"k", b"v", ttl=0)
        with pytest.raises(ValueError, match="ttl"):
            c.put(b"k", b"v", ttl=-1)
        with pytest.raises(ValueError, match="ttl"):
            c.put(b"k", b"v", ttl=math.inf)
        with pytest.raises(ValueError, match="ttl"):
            c.put(b"k", b"v", ttl=math.nan)
        with pytest.raises(TypeError, match="ttl"):
            c.put(b"k", b"v", ttl="1")
        with pytest.raises(ValueError, match="key is 65536 bytes; the limit is 65535"):
            c.put(b"k" * 65536, b"")
        with pytest.raises(ValueError, match="key is 65536 bytes"):
            c.get(b"k" * 65536)
        assert c.stats()["log_bytes"] == size  # nothing partial logged
        assert c.get(b"k") is None


@pytest.mark.parametrize("kwargs, name", [
    ({"max_items": 0}, "max_items"), ({"max_items": 3}, "max_items"), ({"max_items": -5}, "max_items"),
    ({"max_bytes": 0}, "max_bytes"), ({"max_bytes": 7}, "max_bytes"),
    ({"default_ttl": 0}, "default_ttl"), ({"default_ttl": -1.0}, "default_ttl"),
    ({"default_ttl": math.inf}, "default_ttl"), ({"sync_mode": "sometimes"}, "sync_mode"),
    ({"shards": 0}, "shards"), ({"shards": 100000}, "shards"),
])
def test_constructor_validation(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        PersistentCache(tmp_path, **kwargs)
    assert not os.path.exists(tmp_path / "LOCK")  # nothing created before validation


@pytest.mark.parametrize("kwargs, name", [
    ({"max_items": 1.5}, "max_items"), ({"max_bytes": "10"}, "max_bytes"),
    ({"shards": 2.0}, "shards"), ({"default_ttl": "1"}, "default_ttl"), ({"max_items": True}, "max_items"),
])
def test_constructor_types(tmp_path, kwargs, name):
    with pytest.raises(TypeError, match=name):
        PersistentCache(tmp_path, **kwargs)


def test_closed(tmp_path):
    c = PersistentCache(tmp_path)
    c.put(b"a", b"1")
    c.close()
    c.close()  # idempotent
    for call in (lambda: c.get(b"a"), lambda: c.put(b"a", b"1"), lambda: c.delete(b"a"),
                 lambda: len(c), lambda: b"a" in c, c.stats):
        with pytest.raises(ClosedError):
            call()
    with PersistentCache(tmp_path) as c2:
        assert c2.get(b"a") == b"1"
    with pytest.raises(ClosedError):
        c2.get(b"a")


def test_lock(tmp_path):
    with PersistentCache(tmp_path):
        with pytest.raises(LockError, match="LOCK"):
            PersistentCache(tmp_path)
    PersistentCache(tmp_path).close()  # released


def test_shard_count_is_fixed(tmp_path):
    PersistentCache(tmp_path, shards=4).close()
    with pytest.raises(ValueError, match="shards=4"):
        PersistentCache(tmp_path, shards=8)
    PersistentCache(tmp_path, shards=4).close()  # the failed open released the lock


def test_stats_shape(tmp_path):
    with PersistentCache(tmp_path, max_items=100, shards=4) as c:
        for i in range(20):
            c.put(b"k%d" % i, b"v")
            c.get(b"k%d" % i)
        c.get(b"missing")
        s = c.stats()
        json.dumps(s)
        for k in ("hits", "misses", "evictions", "expirations", "items", "bytes", "log_bytes", "qps"):
            assert k in s
        assert s["hits"] == 20 and s["misses"] == 1 and s["items"] == 20
        assert s["qps"]["get"] > 0 and s["qps"]["put"] > 0
        # Open logs run ahead of their records in zeros (at most MAP_STEP each);
        # close() trims them back to the records.
        assert s["log_bytes"] <= _log_file_bytes(tmp_path) <= s["log_bytes"] + 4 * cacheshard.MAP_STEP
    assert _log_file_bytes(tmp_path) == s["log_bytes"]


def _log_file_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".log"))


def test_qps_counts_every_call_and_is_sampled_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setattr(cacheshard, "QPS_BUCKET", 0.01)
    with PersistentCache(tmp_path, max_items=100, shards=4) as c:
        for i in range(30):
            c.put(b"k%d" % i, b"v")
        for i in range(50):
            c.get(b"k%d" % i)  # 30 hits, 20 misses
        c.delete(b"k1")
        c.delete(b"nope")
        totals = [s.op_totals() for s in c._shard_list]
        assert sum(t["get"] for t in totals) == 50
        assert sum(t["put"] for t in totals) == 30
        assert sum(t["delete"] for t in totals) == 2
        deadline = time.monotonic() + 10
        while any(len(s.qps["get"]._samples) < 3 for s in c._shard_list):
            assert time.monotonic() < deadline, "the housekeeping thread took no samples"
            time.sleep(0.01)
        qps = c.stats()["qps"]
        assert qps["get"] > 0 and qps["put"] > 0 and qps["delete"] > 0
    assert not c._housekeeper.is_alive()


def _key_in(shard: int, n: int, tag: str) -> bytes:
    i = 0
    while True:
        k = f"{tag}{i}".encode()
        if shard_of(k, n) == shard:
            return k
        i += 1


def test_periodic_fsync_of_other_shards_is_not_held_up_by_a_busy_shard(tmp_path, monkeypatch):
    # A shard holds _mu across a checkpoint (tmp write, fsync, rename, directory
    # fsync). The periodic fsyncs need only _file_mu, so the other shards' logs
    # must keep being fsynced; the QPS sampling in the same thread must not
    # wait for that _mu either.
    monkeypatch.setattr(cacheshard, "QPS_BUCKET", 0.1)  # several samples while shard 0 is held
    with PersistentCache(tmp_path, sync_mode="periodic", shards=2) as c:
        s0, s1 = c._shards
        still_dirty = []
        with s0._mu:
            deadline = time.monotonic() + 1.0
            i = 0
            while time.monotonic() < deadline:
                c.put(_key_in(1, 2, f"k{i}-"), b"v")
                i += 1
                time.sleep(10 * pcache.SYNC_INTERVAL)
                still_dirty.append(s1._dirty)
        assert not any(still_dirty), still_dirty


_FORK_CHILD_CLOSES = textwrap.dedent(r"""
    import os, sys
    from lsm.pcache import PersistentCache
    path = sys.argv[1]
    c = PersistentCache(path, shards=1)
    c.put(b"before", b"x" * 100)
    pid = os.fork()
    if pid == 0:
        c.close()  # e.g. a with-block or __del__ in the child
        os._exit(0)
    os.waitpid(pid, 0)
    for i in range(3000):
        c.put(b"k%d" % i, b"y" * 100)
    c.close()
    with PersistentCache(path, shards=1) as c2:
        missing = [i for i in range(3000) if c2.get(b"k%d" % i) is None]
    sys.exit(1 if missing else 0)
""")


def test_close_in_a_forked_child_does_not_shorten_the_parents_mapped_log(tmp_path):
    # The child shares the parent's file: trimming it to the child's view
    # would SIGBUS the parent's next store past the new end.
    r = subprocess.run([sys.executable, "-c", _FORK_CHILD_CLOSES, str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])


def test_failing_to_start_the_housekeeping_thread_leaves_nothing_open(tmp_path, monkeypatch):
    def no_threads(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_threads)
    with pytest.raises(RuntimeError, match="new thread"):
        PersistentCache(tmp_path, shards=2)
    monkeypatch.undo()
    with PersistentCache(tmp_path, shards=2) as c:  # the LOCK was released, the logs closed
        c.put(b"k", b"v")


def test_shard_function_is_stable():
    # Persistent: the shard of a key must never change between versions.
    assert [shard_of(k, 8) for k in (b"", b"a", b"hello", b"key000001")] == \
        [shard_of(k, 8) for k in (b"", b"a", b"hello", b"key000001")]
    assert shard_of(b"anything", 1) == 0
    import xxhash
    assert shard_of(b"hello", 8) == xxhash.xxh3_64_intdigest(b"hello") % 8


def test_checkpoint_compacts_and_preserves_order(tmp_path, small_checkpoints):
    with PersistentCache(tmp_path, shards=1) as c:
        for i in range(2000):
            c.put(b"k%d" % (i % 8), b"v%d" % i)
        c.get(b"k0")
        s = c.stats()
        assert s["checkpoints"] > 10
        assert s["log_bytes"] < 2 * 512 + 200
        # force one more checkpoint now that k0 was read: the read order is kept
        sh = c._shards[0]
        with sh._mu:
            sh._checkpoint_locked(time.time())
        want = order(c)
        assert want[-1] == b"k0"
        data = contents(c)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    with PersistentCache(tmp_path, shards=1) as c:
        assert contents(c) == data and order(c) == want


def test_checkpoint_drops_expired(tmp_path, small_checkpoints):
    now = [1000.0]
    with PersistentCache(tmp_path, shards=1, clock=lambda: now[0]) as c:
        for i in range(10):
            c.put(b"t%d" % i, b"v" * 10, ttl=1)
        now[0] = 1005.0
        for i in range(200):
            c.put(b"k%d" % (i % 3), b"v" * 10)
        assert c.stats()["checkpoints"] >= 1 and len(c) == 3


def test_leftover_tmp_is_removed(tmp_path):
    with PersistentCache(tmp_path, shards=2) as c:
        c.put(b"a", b"1")
    tmp = cachelog.make_shard_temp_name(str(tmp_path), 0, 2)
    with open(tmp, "wb") as f:
        f.write(b"half a checkpoint")
    with PersistentCache(tmp_path, shards=2) as c:
        assert c.get(b"a") == b"1"
    assert not os.path.exists(tmp)


def _log_path(tmp_path, shard=0, shards=1):
    return cachelog.make_shard_log_name(str(tmp_path), shard, shards)


def test_torn_tail_is_dropped_and_truncated(tmp_path):
    with PersistentCache(tmp_path, shards=1) as c:
        for i in range(5):
            c.put(b"k%d" % i, b"v" * 100)
    log = _log_path(tmp_path)
    good = os.path.getsize(log)
    with open(log, "r+b") as f:
        f.truncate(good - 30)  # tear the last record
    with PersistentCache(tmp_path, shards=1) as c:
        assert sorted(contents(c)) == [b"k0", b"k1", b"k2", b"k3"]
        assert c.stats()["recovery"]["dropped_tail_bytes"] > 0
        c.put(b"k9", b"new")
    with open(log, "ab") as f:
        f.write(b"\0" * 17)  # zeros after a power cut
    with PersistentCache(tmp_path, shards=1) as c:
        assert sorted(contents(c)) == [b"k0", b"k1", b"k2", b"k3", b"k9"]
    with PersistentCache(tmp_path, shards=1) as c:
        assert len(c) == 5


def test_zeros_a_crash_leaves_after_the_records_are_the_end_not_torn_bytes(tmp_path):
    # A mapped log runs ahead of its records in zeros; a crash keeps them.
    with PersistentCache(tmp_path, shards=1) as c:
        c.put(b"a", b"1")
        c.put(b"b", b"2")
    log = _log_path(tmp_path)
    with open(log, "ab") as f:
        f.write(bytes(cacheshard.MAP_STEP - os.path.getsize(log)))
    with PersistentCache(tmp_path, shards=1) as c:
        assert contents(c) == {b"a": b"1", b"b": b"2"}
        assert c.stats()["recovery"]["dropped_tail_bytes"] == 0
    with open(log, "ab") as f:  # a torn record, then the zeros after it
        f.write(encode_record(b"\x01\x01z" + bytes(8) + b"\x01q", CACHE)[:-4] + bytes(1000))
    with PersistentCache(tmp_path, shards=1) as c:
        assert contents(c) == {b"a": b"1", b"b": b"2"}
        assert c.stats()["recovery"]["dropped_tail_bytes"] == 25  # the torn bytes (ending in "q"), not the zeros


@pytest.mark.parametrize("prefix", [b"", b"\xa5\xb1\x02\x03"])
def test_log_whose_creation_was_cut_short_in_its_zeros_is_reset(tmp_path, prefix):
    # A crash right after the file was extended (and before, or while, the
    # header record was stored): nothing but a torn header, then zeros.
    PersistentCache(tmp_path, shards=1).close()
    log = _log_path(tmp_path)
    with open(log, "wb") as f:
        f.write(prefix + bytes(cacheshard.MAP_STEP - len(prefix)))
    with PersistentCache(tmp_path, shards=1) as c:
        assert len(c) == 0
        c.put(b"k", b"v")
    with PersistentCache(tmp_path, shards=1) as c:
        assert contents(c) == {b"k": b"v"}


def _edit_log_of(tmp_path, n: int, edit) -> list[int]:
    """Write k0..k(n-1) to a one-shard cache, then ``edit(data, record_offsets)``
    its log in place; return the offsets (record 0 is the header)."""
    with PersistentCache(tmp_path, shards=1) as c:
        for i in range(n):
            c.put(b"k%d" % i, b"v" * 100)
    log = _log_path(tmp_path)
    data = bytearray(open(log, "rb").read())
    offsets = [off for off, _, _ in iter_records(bytes(data), lambda *a: False)]
    edit(data, offsets)
    with open(log, "wb") as f:
        f.write(data)
    return offsets


def test_zeroed_pages_before_intact_records_are_skipped_as_a_power_cut_leaves_them(tmp_path):
    # The file's length is reserved ahead and write-back need not go in order:
    # after a power cut, records can be followed by a never-written (zero)
    # stretch and then records that were written back.
    def zero_k2_to_k4s_head(data: bytearray, offsets: list[int]) -> None:
        lo, hi = offsets[3], offsets[5] + 20  # records 3.. are k2.. (0 is the header)
        data[lo:hi] = bytes(hi - lo)

    offsets = _edit_log_of(tmp_path, 6, zero_k2_to_k4s_head)
    lo = offsets[3]
    with PersistentCache(tmp_path, shards=1) as c:
        assert sorted(contents(c)) == [b"k0", b"k1", b"k5"]
        rec = c.stats()["recovery"]
        assert rec["skipped_zeroed_bytes"] == offsets[6] - lo and rec["dropped_tail_bytes"] == 0


def test_garbage_between_records_is_still_corruption(tmp_path):
    def flip_inside_k1(data: bytearray, offsets: list[int]) -> None:
        data[offsets[2] + 20] ^= 0xFF  # k1's header still checks out

    offsets = _edit_log_of(tmp_path, 4, flip_inside_k1)
    with pytest.raises(CorruptionError) as info:
        PersistentCache(tmp_path, shards=1)
    assert info.value.offset == offsets[2]


def test_garbage_before_zeros_is_not_mistaken_for_a_new_log(tmp_path):
    PersistentCache(tmp_path, shards=1).close()
    log = _log_path(tmp_path)
    with open(log, "wb") as f:
        f.write(b"\x07" * 200 + bytes(4096))
    with pytest.raises(CorruptionError, match="no intact header"):
        PersistentCache(tmp_path, shards=1)


def test_corruption_before_tail_names_file_and_offset(tmp_path):
    with PersistentCache(tmp_path, shards=1) as c:
        for i in range(5):
            c.put(b"k%d" % i, b"v" * 100)
    log = _log_path(tmp_path)
    data = bytearray(open(log, "rb").read())
    offsets = [off for off, _, _ in iter_records(bytes(data), lambda *a: False)]
    target = offsets[2]
    data[target + 20] ^= 0xFF
    open(log, "wb").write(bytes(data))
    with pytest.raises(CorruptionError) as ei:
        PersistentCache(tmp_path, shards=1)
    assert ei.value.path == log and ei.value.offset == target
    with pytest.raises(CorruptionError):  # the failed open released the lock
        PersistentCache(tmp_path, shards=1)


def test_foreign_log_is_corruption(tmp_path):
    PersistentCache(tmp_path, shards=2).close()
    a, b = _log_path(tmp_path, 0, 2), _log_path(tmp_path, 1, 2)
    os.replace(a, b + ".x")
    os.replace(b, a)
    os.replace(b + ".x", b)
    with pytest.raises(CorruptionError, match="shard 1 of 2"):
        PersistentCache(tmp_path, shards=2)


def test_unreadable_log_is_corruption_not_reset(tmp_path):
    # Regression: a log with no intact header used to be reset as if new,
    # silently dropping every entry (seen when the record framing changed).
    with PersistentCache(tmp_path, shards=1) as c:
        for i in range(20):
            c.put(b"k%d" % i, b"v" * 50)
    log = _log_path(tmp_path)
    data = bytearray(open(log, "rb").read())
    data[0] ^= 0xFF  # the header record's magic
    open(log, "wb").write(bytes(data))
    with pytest.raises(CorruptionError) as ei:
        PersistentCache(tmp_path, shards=1)
    assert ei.value.path == log
    assert open(log, "rb").read() == bytes(data)  # untouched


@pytest.mark.parametrize("keep", [0, 1, 7, 12])
def test_log_whose_creation_was_cut_short_is_reset(tmp_path, keep):
    PersistentCache(tmp_path, shards=1).close()
    log = _log_path(tmp_path)
    data = open(log, "rb").read()
    open(log, "wb").write(data[:keep])  # a torn header record: nothing was ever acknowledged
    with PersistentCache(tmp_path, shards=1) as c:
        c.put(b"a", b"1")
    with PersistentCache(tmp_path, shards=1) as c:
        assert contents(c) == {b"a": b"1"}


def test_bad_op_in_intact_record_is_corruption(tmp_path):
    from lsm.record import CACHE, encode_record
    with PersistentCache(tmp_path, shards=1) as c:
        c.put(b"a", b"1")
    with open(_log_path(tmp_path), "ab") as f:
        f.write(encode_record(b"\x09junk", CACHE))
    with pytest.raises(CorruptionError, match="unknown cache op kind 9"):
        PersistentCache(tmp_path, shards=1)


def test_sync_modes_fsync_as_documented(tmp_path):
    for mode in ("never", "periodic", "always"):
        fs = FaultFS()
        c = PersistentCache(tmp_path / mode, sync_mode=mode, shards=2, fs=fs)
        base = fs.counts["sync"]
        for i in range(10):
            c.put(b"k%d" % i, b"v")
        after_puts = fs.counts["sync"] - base
        time.sleep(0.2)
        later = fs.counts["sync"] - base
        c.close()
        if mode == "never":
            assert later == 0
        elif mode == "always":
            assert after_puts == 10
        else:
            assert 1 <= later <= 2 * 10  # the background syncer ran, at most once per shard per tick


def test_failed_write_leaves_no_partial_state(tmp_path):
    fs = FaultFS()
    c = PersistentCache(tmp_path, shards=1, sync_mode="always", fs=fs)
    c.put(b"a", b"1")
    size = c.stats()["log_bytes"]
    fs.fail("write", path_contains=".log", torn=True)
    with pytest.raises(DiskError):
        c.put(b"a", b"2" * 100)
    assert c.get(b"a") == b"1"
    # The torn half was rewound: the log ends where it did, zeros after it.
    assert c.stats()["log_bytes"] == size
    with open(_log_path(tmp_path), "rb") as f:
        assert f.read()[size:].count(0) == os.path.getsize(_log_path(tmp_path)) - size
    c.put(b"b", b"3")
    c.close()
    with PersistentCache(tmp_path, shards=1) as c:
        assert contents(c) == {b"a": b"1", b"b": b"3"}


def test_failed_fsync_refuses_writes_until_reopen(tmp_path):
    fs = FaultFS()
    c = PersistentCache(tmp_path, shards=1, sync_mode="always", fs=fs)
    c.put(b"a", b"1")
    fs.fail("sync", path_contains=".log")
    with pytest.raises(DiskError):
        c.put(b"b", b"2")
    assert c.get(b"b") is None and c.get(b"a") == b"1"  # reads keep working
    with pytest.raises(BackgroundError, match="fsync"):
        c.put(b"c", b"3")
    c.close()
    with PersistentCache(tmp_path, shards=1) as c:
        got = contents(c)
        assert got in ({b"a": b"1"}, {b"a": b"1", b"b": b"2"})  # b was never acknowledged
        c.put(b"c", b"3")


# -- model test --------------------------------------------------------------------------

KEYS = [b"", b"a", b"b", b"c", b"d", b"e", b"f", b"gg", b"hhh", b"iiiii"]
PER_SHARD_ITEMS = 4
PER_SHARD_BYTES = 40


class _ShardModel:
    def __init__(self) -> None:
        self.entries: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()  # live only, LRU first
        self.base: list[bytes] = []  # recency order in the log's last checkpoint (or at open)
        self.since: OrderedDict[bytes, None] = OrderedDict()  # keys put since, by last put
        self.checkpoints = 0


class CacheMachine(RuleBasedStateMachine):
    """The cache against one reference LRU per shard, using the cache's own
    per-shard rule (even split of the bounds, xxh3 shard choice)."""

    SHARDS = 1

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pcache-model-")
        self.now = 1000.0
        self.saved_floor = cacheshard.CHECKPOINT_FLOOR_BYTES
        cacheshard.CHECKPOINT_FLOOR_BYTES = 96  # checkpoints every few writes
        self.fs = FixedFaultFS()
        self.cache = self._open()
        self.models = [_ShardModel() for _ in range(self.SHARDS)]
        self.hits = self.misses = self.evictions = 0

    def _open(self) -> PersistentCache:
        return PersistentCache(self.dir, max_items=PER_SHARD_ITEMS * self.SHARDS,
                               max_bytes=PER_SHARD_BYTES * self.SHARDS, shards=self.SHARDS,
                               fs=self.fs, clock=lambda: self.now)

    def teardown(self) -> None:
        cacheshard.CHECKPOINT_FLOOR_BYTES = self.saved_floor
        try:
            self.cache.close()
        except lsm.Error:
            pass
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def _m(self, key: bytes) -> _ShardModel:
        return self.models[shard_of(key, self.SHARDS)]

    def _note_checkpoint(self, key: bytes, before: list[bytes]) -> None:
        i = shard_of(key, self.SHARDS)
        m = self.models[i]
        n = self.cache._shards[i].checkpoints
        if n != m.checkpoints:
            m.checkpoints = n
            m.base = before
            m.since.clear()

    def _drop_expired(self) -> None:
        for m in self.models:
            for k in [k for k, (_, e) in m.entries.items() if e <= self.now]:
                del m.entries[k]

    @rule(key=st.sampled_from(KEYS), value=st.binary(max_size=16),
          ttl=st.none() | st.sampled_from([0.5, 1.0, 3.0]))
    def put(self, key, value, ttl):
        m = self._m(key)
        if len(key) + len(value) > PER_SHARD_BYTES:
            with pytest.raises(ValueError):
                self.cache.put(key, value, ttl=ttl)
            return
        before = list(m.entries)
        self.cache.put(key, value, ttl=ttl)
        self._note_checkpoint(key, before)
        m.entries.pop(key, None)
        size = len(key) + len(value)
        while (len(m.entries) + 1 > PER_SHARD_ITEMS
               or sum(len(k) + len(v) for k, (v, _) in m.entries.items()) + size > PER_SHARD_BYTES):
            m.entries.popitem(last=False)
            self.evictions += 1
        m.entries[key] = (value, math.inf if ttl is None else self.now + ttl)
        m.since[key] = None
        m.since.move_to_end(key)

    @rule(key=st.sampled_from(KEYS))
    def get(self, key):
        m = self._m(key)
        got = self.cache.get(key)
        if key in m.entries:
            m.entries.move_to_end(key)
            self.hits += 1
            assert got == m.entries[key][0]
        else:
            self.misses += 1
            assert got is None

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key):
        m = self._m(key)
        before = list(m.entries)
        assert self.cache.delete(key) == (key in m.entries)
        self._note_checkpoint(key, before)
        m.entries.pop(key, None)
        m.since.pop(key, None)

    @rule(key=st.sampled_from(KEYS))
    def contains(self, key):
        assert (key in self.cache) == (key in self._m(key).entries)

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 2.0]))
    def advance_clock(self, dt):
        self.now += dt
        self._drop_expired()

    def _reopened(self) -> None:
        for i, m in enumerate(self.models):
            live = m.entries
            new = [k for k in m.base if k in live and k not in m.since] + [k for k in m.since if k in live]
            assert sorted(new) == sorted(live)
            m.entries = OrderedDict((k, live[k]) for k in new)
            m.base = list(new)
            m.since.clear()
            m.checkpoints = self.cache._shards[i].checkpoints
        self.hits = self.misses = self.evictions = 0

    @rule()
    def restart(self):
        self.cache.close()
        self.fs = FixedFaultFS()
        self.cache = self._open()
        self._reopened()

    @rule()
    def process_crash(self):
        self.fs.process_crash()  # SIGKILL: written bytes stay, pending EXPIREs are lost
        self.fs = FixedFaultFS()
        self.cache = self._open()
        self._reopened()

    @invariant()
    def agrees(self):
        self.cache._check()
        for i, m in enumerate(self.models):
            s = self.cache._shards[i]
            live = [(k, v) for k, v in s._map.items() if s._expiry.get(k, math.inf) > self.now]
            assert live == [(k, v) for k, (v, _) in m.entries.items()]
        st_ = self.cache.stats()
        assert (st_["hits"], st_["misses"], st_["evictions"]) == (self.hits, self.misses, self.evictions)
        assert len(self.cache) >= sum(len(m.entries) for m in self.models)


class CacheMachine3(CacheMachine):
    SHARDS = 3


CacheMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
CacheMachine3.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestCacheModel = CacheMachine.TestCase
TestCacheModel3Shards = CacheMachine3.TestCase


# -- concurrency -------------------------------------------------------------------------

def test_concurrent_get_put_delete(tmp_path, small_checkpoints):
    max_items, max_bytes, shards = 64, 6400, 4
    c = PersistentCache(tmp_path, max_items=max_items, max_bytes=max_bytes, shards=shards,
                        sync_mode="periodic")
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(tid: int) -> None:
        rng = random.Random(tid)
        try:
            for n in range(3000):
                k = b"key%03d" % rng.randrange(200)
                r = rng.random()
                if r < 0.5:
                    v = c.get(k)
                    assert v is None or v.startswith(k + b":"), (k, v)
                elif r < 0.9:
                    c.put(k, k + b":%d:%d:" % (tid, n) + b"x" * rng.randrange(60),
                          ttl=None if rng.random() < 0.9 else 30.0)
                else:
                    c.delete(k)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def checker() -> None:
        try:
            while not stop.is_set():
                assert len(c) <= max_items
                s = c.stats()
                assert s["items"] <= max_items and s["bytes"] <= max_bytes
                time.sleep(0.001)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    chk = threading.Thread(target=checker)
    chk.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    chk.join()
    assert not errors, errors
    c._check()
    s = c.stats()
    assert s["items"] <= max_items and s["bytes"] <= max_bytes and s["checkpoints"] > 0
    assert s["hits"] + s["misses"] > 0
    before = contents(c)
    c.close()
    with PersistentCache(tmp_path, max_items=max_items, max_bytes=max_bytes, shards=shards) as c:
        assert contents(c) == before
        c._check()


# -- SIGKILL crash tests -----------------------------------------------------------------

_CHILD = r"""
import sys
from lsm.pcache import cache as pcache, log as cachelog, shard as cacheshard
cacheshard.CHECKPOINT_FLOOR_BYTES = 4096
path, start, max_items, deletes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
c = pcache.PersistentCache(path, sync_mode="always", shards=4,
                           max_items=None if max_items == "none" else int(max_items))
out = sys.stdout
i = start
while True:
    c.put(b"key%06d" % i, b"val%06d" % i * 4)
    out.write("P %d\n" % i)
    out.flush()
    if deletes and i % 7 == 3:
        c.delete(b"key%06d" % (i - 3))
        out.write("D %d\n" % (i - 3))
        out.flush()
    i += 1
"""


def _run_and_kill(path: str, start: int, max_items: str, deletes: bool, rng: random.Random) -> list[tuple[str, int]]:
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.Popen([sys.executable, "-c", _CHILD, path, str(start), max_items, "1" if deletes else "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = p.stdout.readline()
    assert first.startswith(b"P "), (first, p.stderr.read() if p.poll() is not None else b"")
    time.sleep(rng.uniform(0.05, 0.3))
    os.kill(p.pid, signal.SIGKILL)
    rest = p.stdout.read()
    p.wait()
    assert p.returncode == -signal.SIGKILL
    acked = []
    for line in (first + rest).split(b"\n")[:-1]:  # a line without its newline was not acknowledged
        kind, n = line.split()
        acked.append((kind.decode(), int(n)))
    return acked


def _inflight(acked: list[tuple[str, int]], deletes: bool) -> tuple[str, int]:
    """The operation the child was doing when it was killed (it follows the last acknowledged one)."""
    kind, n = acked[-1]
    if kind == "P" and deletes and n % 7 == 3:
        return "D", n - 3
    if kind == "D":
        return "P", n + 4
    return "P", n + 1


def test_sigkill_acknowledged_writes_survive(tmp_path):
    _sigkill_rounds(str(tmp_path / "c"), rounds=3, seed=1234)


@pytest.mark.slow
def test_sigkill_acknowledged_writes_survive_many_rounds(tmp_path):
    _sigkill_rounds(str(tmp_path / "c"), rounds=25, seed=int(time.time()))


def _sigkill_rounds(path: str, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    expect: dict[bytes, bytes] = {}
    start = 0
    for _ in range(rounds):
        acked = _run_and_kill(path, start, "none", True, rng)
        for kind, n in acked:
            k = b"key%06d" % n
            if kind == "P":
                expect[k] = b"val%06d" % n * 4
            else:
                expect.pop(k, None)
        kind, n = _inflight(acked, True)
        applied = dict(expect)
        if kind == "P":
            applied[b"key%06d" % n] = b"val%06d" % n * 4
        else:
            applied.pop(b"key%06d" % n, None)
        with PersistentCache(path, shards=4) as c:
            got = contents(c)
            c._check()
        # every acknowledged write is there; at most the one in flight differs
        assert got in (expect, applied), (len(got), len(expect), kind, n)
        expect = got
        start = max(n for k, n in acked if k == "P") + 5


def test_sigkill_evicted_entries_are_not_resurrected(tmp_path):
    rng = random.Random(99)
    path = str(tmp_path / "c")
    per_shard = 10
    history: list[int] = []  # keys put, in order, by acknowledged runs
    start = 0
    for _ in range(2):
        acked = [n for kind, n in _run_and_kill(path, start, str(4 * per_shard), False, rng) if kind == "P"]
        assert acked == list(range(start, start + len(acked)))
        history += acked
        inflight = _inflight([("P", acked[-1])], False)[1]
        with PersistentCache(path, shards=4, max_items=10_000) as c:  # larger bounds: nothing re-admitted
            got = set(contents(c))
        for s in range(4):
            seq = [b"key%06d" % n for n in history if shard_of(b"key%06d" % n, 4) == s]
            present = {k for k in got if shard_of(k, 4) == s}
            ok = [set(seq[-per_shard:])]
            k_in = b"key%06d" % inflight
            if shard_of(k_in, 4) == s:
                ok.append(set((seq + [k_in])[-per_shard:]))
            assert present in ok, (s, sorted(present))
        if b"key%06d" % inflight in got:
            history.append(inflight)
        start = inflight + 1


# -- checkpoint crash points -------------------------------------------------------------

def _prime(path: str, fs) -> tuple[PersistentCache, list[tuple[bytes, bytes]]]:
    """A cache whose next write starts a checkpoint; returns it and its (durable) state."""
    c = PersistentCache(path, shards=1, sync_mode="always", fs=fs)
    s = c._shards[0]
    i = 0
    while True:
        with s._mu:
            due = s._log.size > s._checkpoint_threshold_locked()
        if due:
            break
        c.put(b"k%d" % (i % 6), b"v%d" % i * 5)
        i += 1
    assert c.stats()["checkpoints"] == 0
    return c, list(s._map.items())


def _state(path: str) -> list[tuple[bytes, bytes]]:
    with PersistentCache(path, shards=1) as c:
        c._check()
        return list(c._shards[0]._map.items())


PUT = (b"new", b"value")

CRASH_POINTS = [
    # (op, path fragment): power is cut instead of doing this step of the put that checkpoints
    ("open", ".tmp"),       # before anything
    ("write", ".tmp"),      # tmp created, nothing written
    ("sync", ".tmp"),       # tmp written, not synced
    ("rename", ".tmp"),     # tmp synced, not renamed
    ("open", ".log"),       # renamed (not dir-synced), before reopening the log
    ("fsync_dir", ""),      # renamed, log reopened, directory not synced
    ("write", ".log"),      # checkpoint durable, the put's record not written
    ("sync", ".log"),       # the put's record written, not synced
]


@pytest.mark.parametrize("op, where", CRASH_POINTS)
def test_checkpoint_power_cut_at_each_step(tmp_path, small_checkpoints, op, where):
    path = str(tmp_path / "c")
    fs = FixedFaultFS()
    c, old = _prime(path, fs)
    fs.crash_before(op, where)
    with pytest.raises(DiskError):
        c.put(*PUT)
    assert fs.dead
    assert _state(path) == old  # nothing of the unacknowledged put; everything acknowledged
    assert not [n for n in os.listdir(path) if n.endswith(".tmp")]


def test_checkpoint_power_cut_after_completion(tmp_path, small_checkpoints):
    path = str(tmp_path / "c")
    fs = FixedFaultFS()
    c, old = _prime(path, fs)
    c.put(*PUT)
    assert c.stats()["checkpoints"] == 1
    fs.power_cut()
    assert _state(path) == old + [PUT]


@pytest.mark.parametrize("op, where", [("open", ".tmp"), ("write", ".tmp"), ("sync", ".tmp"),
                                       ("rename", ".tmp"), ("fsync_dir", ""), ("open", ".log")])
def test_checkpoint_step_failure_then_recovery(tmp_path, small_checkpoints, op, where):
    path = str(tmp_path / "c")
    fs = FixedFaultFS()
    c, old = _prime(path, fs)
    fs.fail(op, path_contains=where, torn=(op == "write"))
    with pytest.raises(DiskError):
        c.put(*PUT)
    assert list(c._shards[0]._map.items()) == old  # the put was not applied
    assert not [n for n in os.listdir(path) if n.endswith(".tmp")]
    # the cache stays usable: the next write retries what was left (checkpoint or dir fsync)
    c.put(*PUT)
    c.put(b"after", b"x")
    c._check()
    fs.power_cut()
    assert _state(path) == old + [PUT, (b"after", b"x")]


def test_checkpoint_failure_then_power_cut_keeps_old_state(tmp_path, small_checkpoints):
    for op, where in [("rename", ".tmp"), ("sync", ".tmp"), ("fsync_dir", "")]:
        path = str(tmp_path / op)
        fs = FixedFaultFS()
        c, old = _prime(path, fs)
        fs.fail(op, path_contains=where)
        with pytest.raises(DiskError):
            c.put(*PUT)
        fs.power_cut()
        assert _state(path) == old, op


@pytest.mark.parametrize("mode", ["periodic", "never"])
def test_unclosed_cache_is_collected_and_unlocked(tmp_path, mode):
    # Every cache has a housekeeping thread (QPS samples; fsyncs if periodic);
    # it must not keep an unclosed cache alive.
    import gc
    c = PersistentCache(tmp_path, sync_mode=mode)
    c.put(b"a", b"1")
    time.sleep(0.12)
    del c
    gc.collect()
    with PersistentCache(tmp_path) as c:  # the LOCK was released by __del__
        assert c.get(b"a") == b"1"
