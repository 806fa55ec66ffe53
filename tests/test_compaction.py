"""Compaction: the picker, what may be dropped, output splitting, the worker
process, and a power cut at each step of a compaction (outputs written,
manifest appended, CURRENT renamed) — the DB opens and reads the same data
every time."""

from __future__ import annotations

import os
import random
import struct

import pytest

import lsm
from faultfs import FaultFS
from lsm import Options
from lsm.background import ManualCompaction
from lsm.builder import write_tables
from lsm.compaction import INTRA_L0_RATIO, drop_obsolete, expand_l0, grandparent_splitter, level_scores, pick_compaction
from lsm.fs import OsFileSystem
from lsm.keys import DELETE, PUT, PUT_TTL
from lsm.manifest import FileMeta
from lsm.sstable import TableReader
from lsm.version import NUM_LEVELS, Version

TINY = dict(memtable_bytes=2048, block_bytes=256, target_file_bytes=2048, level_base_bytes=4096,
            level_multiplier=2, l0_compaction_trigger=2)


def meta(n, lo, hi, size=100, max_seq=None):
    return FileMeta(n, size, 1, lo, hi, 1, max_seq if max_seq is not None else n)


def version(levels):
    full = [[] for _ in range(NUM_LEVELS)]
    for i, lvl in enumerate(levels):
        full[i] = lvl
    return Version(full)


# -- drop rules -------------------------------------------------------------------


def _ttl(expires, value=b"v"):
    return struct.pack("<d", expires) + value


def test_drop_keeps_newest_per_snapshot_stripe():
    entries = [(b"k", 9, PUT, b"v9"), (b"k", 7, PUT, b"v7"), (b"k", 5, PUT, b"v5"), (b"k", 2, PUT, b"v2")]
    assert [e[1] for e in drop_obsolete(entries, [], lambda k: True, 0)] == [9]
    # a snapshot at 6 sees v5; one at 2 sees v2
    assert [e[1] for e in drop_obsolete(entries, [2, 6], lambda k: True, 0)] == [9, 5, 2]
    assert [e[1] for e in drop_obsolete(entries, [8], lambda k: True, 0)] == [9, 7]


def test_tombstones_dropped_only_at_the_bottom_and_below_every_snapshot():
    entries = [(b"a", 5, DELETE, b""), (b"a", 3, PUT, b"old"), (b"b", 4, PUT, b"x")]
    assert list(drop_obsolete(entries, [], lambda k: True, 0)) == [(b"b", 4, PUT, b"x")]
    # not bottommost: the tombstone must stay to hide older data deeper down
    assert list(drop_obsolete(entries, [], lambda k: False, 0)) == [(b"a", 5, DELETE, b""), (b"b", 4, PUT, b"x")]
    # a snapshot at 4 still sees "old": both stay
    assert [e[1] for e in drop_obsolete(entries, [4], lambda k: True, 0)] == [5, 3, 4]


def test_expired_entries_follow_the_tombstone_rule():
    entries = [(b"a", 5, PUT_TTL, _ttl(100.0)), (b"a", 3, PUT, b"old")]
    # not yet expired: kept, and it shadows "old"
    assert [e[1] for e in drop_obsolete(entries, [], lambda k: True, 50.0)] == [5]
    # expired at the bottom: gone, and "old" with it (never resurrected)
    assert list(drop_obsolete(entries, [], lambda k: True, 200.0)) == []
    # expired but not bottommost: kept so that nothing deeper comes back
    assert [e[1] for e in drop_obsolete(entries, [], lambda k: False, 200.0)] == [5]


# -- picker -------------------------------------------------------------------------


def test_level_scores_and_l0_pick():
    opts = Options(l0_compaction_trigger=2, level_base_bytes=1024, level_multiplier=10)
    v = version([[meta(3, b"a", b"c", max_seq=30), meta(2, b"b", b"d", max_seq=20), meta(1, b"x", b"z", max_seq=10)],
                 [meta(4, b"a", b"b", size=500)]])
    assert level_scores(v, opts)[0] == (1.5, 0)
    c = pick_compaction(v, opts, {})
    assert c.level == 0 and [f.number for f in c.inputs[0]] == [1]  # the oldest; nothing overlaps it
    assert expand_l0(v, [v.levels[0][1]]) != [v.levels[0][1]]  # 2 overlaps 3: both go


def test_l0_cluster_merges_within_l0_when_l1_overlap_is_large():
    opts = Options(l0_compaction_trigger=2, level_base_bytes=1 << 20, level_multiplier=10)
    l0 = [meta(3, b"a", b"y", size=100, max_seq=30), meta(2, b"b", b"z", size=100, max_seq=20)]
    big = int(INTRA_L0_RATIO * 200) + 1  # L0 holds 200 bytes in 2 entries

    def l1_file(n, lo, hi, size, entries):
        return FileMeta(n, size, entries, lo, hi, 1, 1)

    c = pick_compaction(version([l0, [l1_file(4, b"a", b"m", big // 2, 2), l1_file(5, b"n", b"z", big - big // 2, 2)]]),
                        opts, {})
    assert (c.level, c.output_level) == (0, 0) and c.is_intra_l0() and not c.is_trivial_move()
    assert sorted(f.number for f in c.inputs[0]) == [2, 3] and c.inputs[1] == []
    # L1 overlap within the ratio: the cluster goes down to L1 as before
    c = pick_compaction(version([l0, [l1_file(4, b"a", b"z", int(INTRA_L0_RATIO * 200), 4)]]), opts, {})
    assert (c.level, c.output_level) == (0, 1) and [f.number for f in c.inputs[1]] == [4]
    # many more L1 bytes but not many more entries (L0 of tombstones over big
    # values): down to L1, where the tombstones reclaim the space
    c = pick_compaction(version([l0, [l1_file(4, b"a", b"z", 100 * big, 3)]]), opts, {})
    assert (c.level, c.output_level) == (0, 1)
    # nothing in L1 under the cluster (sequential loads): trivial moves stay possible
    seq = [meta(7, b"c", b"d", max_seq=70), meta(6, b"a", b"b", max_seq=60)]
    c = pick_compaction(version([seq, [meta(8, b"x", b"z", size=10_000)]]), opts, {})
    assert c.output_level == 1 and c.is_trivial_move()
    # a cluster of one file is never merged within L0
    c = pick_compaction(version([[meta(7, b"n", b"o", max_seq=70), meta(6, b"a", b"b", max_seq=60)],
                                 [meta(8, b"a", b"z", size=10_000)]]), opts, {})
    assert c.output_level == 1 and [f.number for f in c.inputs[0]] == [6]


def test_intra_l0_compactions_keep_every_key_and_tombstone(tmp_path, monkeypatch):
    """Random writes with deletes into a large L1: intra-L0 merges happen (in
    the worker too), never lose a key or resurrect a deleted one, and a
    reopened DB reads the same."""
    import lsm.background as bg
    monkeypatch.setattr(bg, "WORKER_MIN_BYTES", 0)
    rng = random.Random(7)
    opts = dict(TINY, level_base_bytes=1 << 20, l0_compaction_trigger=3)
    db = lsm.open(tmp_path / "db", sync_mode="never", **opts)
    model = _fill(db, 4000, rng)
    snap = db.snapshot()
    frozen = dict(snap.scan())
    model.update(_fill(db, 4000, rng, deletes=False))  # _fill's deletes are in its own model only
    for k in list(model)[::7]:
        db.delete(k)
        del model[k]
    db.flush()
    db.wait_for_compactions()
    s = db.stats()
    assert s["compaction"]["intra_l0"] > 0 and s["compaction"]["in_worker"] > 0
    db._versions.current._check(db._fs, db.path)
    assert dict(db.scan()) == model
    assert all(db.get(k) == v for k, v in model.items())
    assert dict(snap.scan()) == frozen
    snap.close()
    db.close()
    with lsm.open(tmp_path / "db", **opts) as db:
        assert dict(db.scan()) == model


def test_compaction_pointer_rotates_through_the_level():
    opts = Options(l0_compaction_trigger=4, level_base_bytes=1024, level_multiplier=10)
    l1 = [meta(i, b"%02d" % (2 * i), b"%02d" % (2 * i + 1), size=400) for i in range(1, 5)]
    v = version([[], l1])
    picked = []
    pointers: dict[int, bytes] = {}
    for _ in range(5):
        c = pick_compaction(v, opts, pointers)
        f = c.inputs[0][0]
        picked.append(f.number)
        pointers[1] = f.largest
    assert picked == [1, 2, 3, 4, 1]


def test_write_tables_never_splits_a_user_key(tmp_path):
    fs = OsFileSystem()
    entries = []
    for i in range(200):
        for seq in (3, 2, 1):
            entries.append((b"k%04d" % i, 1000 * i + seq, PUT, os.urandom(40)))
    numbers = iter(range(10, 1000))
    metas = write_tables(fs, str(tmp_path), entries, Options(target_file_bytes=1024, block_bytes=256),
                         lambda: next(numbers), split_bytes=1024)
    assert len(metas) > 5
    for a, b in zip(metas, metas[1:]):
        assert a.largest < b.smallest
    total = 0
    for m in metas:
        r = TableReader(fs.open_readable(str(tmp_path / (f"{m.number:06d}.sst"))), m.number)
        total += sum(1 for _ in r.iter_entries())
    assert total == len(entries)


def test_grandparent_splitter_limits_overlap():
    grand = [meta(i, b"%03d" % (10 * i), b"%03d" % (10 * i + 9), size=100) for i in range(10)]
    split = grandparent_splitter(grand, limit=250)
    splits = [k for k in (b"%03d" % j for j in range(0, 100, 3)) if split(k)]
    assert 2 <= len(splits) <= 4


# -- end to end ----------------------------------------------------------------------


def _fill(db, n, rng, deletes=True):
    model = {}
    for i in range(n):
        k = b"key%05d" % rng.randrange(n // 2)
        if deletes and rng.random() < 0.1:
            db.delete(k)
            model.pop(k, None)
        else:
            v = b"%d:" % i + os.urandom(rng.randrange(10, 60))
            db.put(k, v)
            model[k] = v
    return model


def test_levels_stay_sorted_and_disjoint_under_load(tmp_path):
    rng = random.Random(1)
    db = lsm.open(tmp_path / "db", sync_mode="never", **TINY)
    model = _fill(db, 9000, rng)
    db.wait_for_compactions()
    for _ in range(5):  # the shape depends on timing (stalls, intra-L0 merges): write until it is a real tree
        if sum(1 for lv in range(1, NUM_LEVELS) if db._versions.current.levels[lv]) >= 2:
            break
        for k, v in _fill(db, 3000, rng, deletes=False).items():
            model[k] = v
        db.wait_for_compactions()
    v = db._versions.current
    v._check(db._fs, db.path)
    assert sum(1 for lv in range(1, NUM_LEVELS) if v.levels[lv]) >= 2  # a real tree
    assert dict(db.scan()) == model
    s = db.stats()
    assert s["compaction"]["count"] > 5 and s["compaction"]["write_amplification"] > 1
    db.close()


def test_compaction_in_worker_process(tmp_path, monkeypatch):
    import lsm.background as bg
    monkeypatch.setattr(bg, "WORKER_MIN_BYTES", 0)  # every merge goes to the worker
    rng = random.Random(2)
    db = lsm.open(tmp_path / "db", sync_mode="never", **TINY)
    model = _fill(db, 3000, rng)
    db.compact_range()
    s = db.stats()
    assert s["compaction"]["in_worker"] > 0
    assert dict(db.scan()) == model
    db.close()
    with lsm.open(tmp_path / "db") as db:
        assert dict(db.scan()) == model


def test_worker_death_is_a_background_error_and_reopen_recovers(tmp_path, monkeypatch):
    import lsm.background as bg
    monkeypatch.setattr(bg, "WORKER_MIN_BYTES", 0)
    db = lsm.open(tmp_path / "db", sync_mode="never", **TINY)
    model = _fill(db, 800, random.Random(3), deletes=False)
    db.flush()
    db.compact_range()
    db._worker._proc.kill()  # the worker dies between jobs: the next job restarts it
    model.update(_fill(db, 800, random.Random(4), deletes=False))
    db.compact_range()
    assert dict(db.scan()) == model
    db.close()


STEPS = [
    ("sync", ".sst", "after"),         # an output table written and fsynced
    ("fsync_dir", "", "before"),       # outputs written, directory not yet synced
    ("sync", "MANIFEST", "after"),     # the compaction's edit appended
    ("rename", ".dbtmp", "before"),    # a new manifest written, CURRENT not yet switched
    ("rename", ".dbtmp", "after"),     # CURRENT switched, directory not yet synced
]


@pytest.mark.parametrize("op,path,when", STEPS)
@pytest.mark.parametrize("nth", [1, 2, 4])
def test_power_cut_at_each_step_of_compaction(tmp_path, monkeypatch, op, path, when, nth):
    import lsm.version as version_mod
    monkeypatch.setattr(version_mod, "MANIFEST_ROLL_BYTES", 600)  # make manifests roll often
    dbpath = tmp_path / "db"
    opts = Options(sync_mode="always", disable_auto_compactions=True, **TINY)
    db = lsm.DB(dbpath, opts)
    model = _fill(db, 1500, random.Random(nth))
    db.flush()
    db.close()
    fs = FaultFS()
    db = lsm.DB(dbpath, opts, fs=fs)
    fs.crash_at(op, path_contains=path, nth=nth, when=when)
    try:
        db.compact_range()
        _fill(db, 300, random.Random(99), deletes=False)  # may also reach the crash point
        db.compact_range()
    except (lsm.BackgroundError, lsm.DiskError, Exception):  # noqa: BLE001 - the cut surfaces somewhere
        pass
    fs.power_cut()
    try:
        db.close()
    except Exception:  # noqa: BLE001 - the ghost cannot sync
        pass
    with lsm.open(dbpath) as db2:
        got = dict(db2.scan())
        db2._versions.current._check(db2._fs, db2.path)
    # Everything acknowledged before the compaction is there; writes after it
    # may or may not be (they were fsynced only if acknowledged, and those we
    # did not record). Check the pre-compaction model on keys not rewritten.
    later = set(_fill_keys(300, 99))
    for k, v in model.items():
        if k not in later:
            assert got.get(k) == v, k
    assert set(got) - set(model) <= later


def _fill_keys(n, seed):
    rng = random.Random(seed)
    keys = []
    for _ in range(n):
        keys.append(b"key%05d" % rng.randrange(n // 2))
        rng.randrange(10, 60)
    return keys


def test_unusable_worker_falls_back_to_in_process(tmp_path, monkeypatch):
    """A worker that cannot start (or dies mid-job) must not stop compaction:
    the job reruns in-process and the DB keeps accepting writes."""
    import lsm.background as bg
    from lsm.worker import CompactionWorker
    monkeypatch.setattr(bg, "WORKER_MIN_BYTES", 0)

    def broken_start(self):
        raise OSError(2, "No such file or directory", "/no/such/python")

    monkeypatch.setattr(CompactionWorker, "_start", broken_start)
    db = lsm.open(tmp_path / "db", sync_mode="never", **TINY)
    model = _fill(db, 2000, random.Random(5))
    db.compact_range()
    db.put(b"after", b"ok")  # not in the background-error state
    s = db.stats()
    assert s["compaction"]["count"] > 0 and s["compaction"]["in_worker"] == 0
    assert s["background_error"] is None
    model[b"after"] = b"ok"
    assert dict(db.scan()) == model
    db.close()


@pytest.fixture
def hung_worker(monkeypatch):
    """Every merge goes to a compaction worker that reads its job and never
    answers; yields the list of worker processes started."""
    import subprocess
    import sys

    import lsm.background as bg
    from lsm.worker import CompactionWorker
    monkeypatch.setattr(bg, "WORKER_MIN_BYTES", 0)
    started: list = []

    def hung_start(self):
        p = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(600)"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(p)
        return p

    monkeypatch.setattr(CompactionWorker, "_start", hung_start)
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_close_abandons_a_hung_worker_job(tmp_path, hung_worker):
    """close() must not wait for a compaction worker that never answers: it
    kills the worker, the job is abandoned (its inputs stay live, any outputs
    are orphans) and a reopen reads everything, with no background error."""
    import time

    started = hung_worker
    db = lsm.open(tmp_path / "db", sync_mode="always", disable_auto_compactions=True, **TINY)
    db._flush_worker = None  # flushes in-process: only the merge goes to the hung worker
    model = _fill(db, 1500, random.Random(8))
    db.flush()
    with db._mu:
        db._manual.append(ManualCompaction(None, None))  # what compact_range queues, without waiting for it
        db._bg_cv.notify_all()
    deadline = time.monotonic() + 30
    while not (started and db._bg_active) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started and db._bg_active, "the job never reached the worker"
    t0 = time.monotonic()
    db.close()
    assert time.monotonic() - t0 < 10
    assert started[0].poll() is not None  # killed, not left behind
    with lsm.open(tmp_path / "db", **TINY) as db2:
        assert dict(db2.scan()) == model
        assert db2.stats()["background_error"] is None
        db2._versions.current._check(db2._fs, db2.path)


def test_hung_worker_times_out_and_the_job_reruns_in_process(tmp_path, monkeypatch, hung_worker):
    """A worker that never answers must not stop compaction: after the job's
    timeout it is killed and the merge reruns in-process."""
    import lsm.background as bg
    monkeypatch.setattr(bg, "WORKER_TIMEOUT_FLOOR", 0.5)
    started = hung_worker
    db = lsm.open(tmp_path / "db", sync_mode="never", **TINY)
    db._flush_worker = None  # flushes in-process: only merges go to the hung worker
    model = _fill(db, 1500, random.Random(9))
    db.compact_range()
    s = db.stats()["compaction"]
    assert s["worker_failures"] >= 1 and "no answer within" in s["worker_note"]
    assert s["count"] > s["in_worker"] and db.stats()["background_error"] is None
    assert all(p.poll() is not None for p in started)  # every hung worker was killed
    assert dict(db.scan()) == model
    db.close()


def test_obsolete_files_are_removed_without_the_db_mutex(tmp_path):
    """Writers need the DB mutex to enqueue; unlinking compacted tables (which
    can take milliseconds) must not hold it."""
    from lsm.fs import OsFileSystem

    held = []

    class Watching(OsFileSystem):
        db = None

        def remove(self, path):
            if self.db is not None:
                held.append((path, self.db._mu._is_owned()))  # by this (the removing) thread
            super().remove(path)

    from lsm.invariants import DebugLock
    fs = Watching()
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never", **TINY), fs=fs)
    if not isinstance(db._mu, DebugLock):
        db.close()
        pytest.skip("needs LSM_INVARIANTS=1 (a mutex that knows its owner)")
    fs.db = db
    model = _fill(db, 1500, random.Random(10))
    db.compact_range()
    db.wait_for_compactions()
    assert any(p.endswith(".sst") for p, _ in held), "no table was removed"
    assert not [p for p, owned in held if owned]
    assert dict(db.scan()) == model
    db.close()
