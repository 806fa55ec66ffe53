"""Power cuts and injected I/O failures through the filesystem seam
(tests/faultfs.py): nothing acknowledged is lost, a failed operation leaves
no partial state, the DB reopens, and background failures make the DB
read-only with BackgroundError while reads keep working."""

from __future__ import annotations

import errno
import random
import time

import pytest

import lsm
from faultfs import FaultFS
from lsm import BackgroundError, Options

SMALL = dict(memtable_bytes=2048, block_bytes=512, target_file_bytes=4096, level_base_bytes=8192,
             l0_compaction_trigger=2, block_cache_bytes=1 << 16)


def _open(path, fs=None, **opts):
    return lsm.DB(path, Options(**{**SMALL, **opts}), fs=fs)


def _close_ghost(db) -> None:
    """Close a DB whose filesystem was cut: close() reports the failed final
    fsync (DiskError) but still releases everything."""
    try:
        db.close()
    except lsm.DiskError:
        pass
    assert db._closed


class Recorder:
    """Acknowledged state plus the writes that were in flight when they failed."""

    def __init__(self) -> None:
        self.acked: dict[bytes, bytes | None] = {}
        self.pending: dict[bytes, set] = {}

    def put(self, db, k, v, **kw):
        self.pending.setdefault(k, set()).add(v)
        db.put(k, v, **kw)
        self.acked[k] = v
        self.pending[k] = set()

    def delete(self, db, k):
        self.pending.setdefault(k, set()).add(None)
        db.delete(k)
        self.acked[k] = None
        self.pending[k] = set()

    def check(self, db):
        for k, v in self.acked.items():
            got = db.get(k)
            assert got == v or got in self.pending.get(k, ()), (k, got, v)


def _workload(db, rec, rng, n, start=0):
    for i in range(start, start + n):
        k = b"k%03d" % rng.randrange(150)
        if rng.random() < 0.15:
            rec.delete(db, k)
        else:
            rec.put(db, k, b"v%d-" % i + bytes(rng.randrange(60)))
        if i % 97 == 0:
            db.flush()
        if i % 251 == 0:
            db.compact_range()


@pytest.mark.parametrize("seed", range(4))
def test_power_cut_loses_nothing_acknowledged_under_always(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "db"
    fs = FaultFS()
    db = _open(path, fs, sync_mode="always")
    rec = Recorder()
    _workload(db, rec, rng, 400 + rng.randrange(300))
    fs.power_cut()
    db2 = _open(path)
    rec.check(db2)
    db2.close()
    _close_ghost(db)


def test_power_cut_under_never_keeps_a_prefix(tmp_path):
    path = tmp_path / "db"
    fs = FaultFS()
    db = _open(path, fs, sync_mode="never")
    history = []
    for i in range(600):
        k = b"k%03d" % (i % 80)
        db.put(k, b"%d" % i)
        history.append((k, b"%d" % i))
        if i == 300:
            db.flush()
    fs.power_cut()
    _close_ghost(db)
    with _open(path) as db2:
        got = dict(db2.scan())
    # The result is the state after some prefix of the writes, at least the flushed part.
    states = {}
    for n in range(len(history) + 1):
        if n:
            k, v = history[n - 1]
            states[k] = v
        if n >= 301 and dict(states) == got:
            break
    else:
        pytest.fail("recovered state is not a prefix of the writes that includes the flush")


def test_power_cut_under_periodic_loses_at_most_the_interval(tmp_path):
    path = tmp_path / "db"
    fs = FaultFS()
    db = _open(path, fs, sync_mode="periodic", sync_interval=0.02)
    for i in range(200):
        db.put(b"k%03d" % i, b"v")
    time.sleep(0.3)  # several intervals: all of the above is synced
    for i in range(200, 220):
        db.put(b"k%03d" % i, b"v")
    fs.power_cut()
    with _open(path) as db2:
        for i in range(200):
            assert db2.get(b"k%03d" % i) == b"v"
    _close_ghost(db)


def test_sync_true_per_call_survives_power_cut_in_never_mode(tmp_path):
    path = tmp_path / "db"
    fs = FaultFS()
    db = _open(path, fs, sync_mode="never")
    db.put(b"a", b"1")
    db.put(b"b", b"2", sync=True)  # covers a too: one log
    fs.power_cut()
    with _open(path) as db2:
        assert db2.get(b"a") == b"1" and db2.get(b"b") == b"2"
    _close_ghost(db)


# -- injected failures at every step -----------------------------------------------

OPS = ["write", "sync", "rename", "fsync_dir", "open"]


def _count_ops(tmp_path, seed):
    """How many of each operation a clean run performs (so every one can be failed)."""
    fs = FaultFS()
    db = _open(tmp_path / "count", fs, sync_mode="always")
    _workload(db, Recorder(), random.Random(seed), 300)
    db.wait_for_compactions()
    db.close()
    return dict(fs.counts)


@pytest.mark.parametrize("op", OPS)
def test_fail_each_operation_at_every_step(tmp_path, op):
    counts = _count_ops(tmp_path, 7)
    total = counts[op]
    assert total > 0
    step = max(1, total // 25)  # ~25 failure points spread over the whole run
    failures = 0
    for nth in range(1, total + 1, step):
        for torn in ([False, True] if op == "write" else [False]):
            path = tmp_path / f"{op}-{nth}-{torn}"
            fs = FaultFS()
            fs.fail(op, nth=nth, errno=random.choice([errno.EIO, errno.ENOSPC]), torn=torn)
            rec = Recorder()
            failed = None
            db = None
            try:
                db = _open(path, fs, sync_mode="always")
                _workload(db, rec, random.Random(7), 300)
                db.wait_for_compactions()
            except (lsm.DiskError, BackgroundError) as e:
                failed = e
                failures += 1
            if db is not None and failed is not None:
                # reads keep working after a failure, writes are refused or fail cleanly
                rec_copy = dict(rec.acked)
                for k, v in list(rec_copy.items())[:20]:
                    try:
                        assert db.get(k) in ({v} | rec.pending.get(k, set()))
                    except lsm.DiskError:
                        pass  # reading a table may hit the injected fault too
            fs.process_crash()
            with _open(path) as db2:
                rec.check(db2)
                db2.put(b"after", b"reopen")  # writable again
            if db is not None:
                _close_ghost(db)
    assert failures >= len(range(1, total + 1, step)) // 2, "the injected faults did not bite"


def test_background_error_makes_db_read_only(tmp_path):
    fs = FaultFS()
    db = _open(tmp_path / "db", fs, sync_mode="never")
    for i in range(50):
        db.put(b"k%02d" % i, b"v")
    fs.fail("sync", path_contains=".sst")
    with pytest.raises(BackgroundError, match="flush"):
        db.flush()
    assert db.get(b"k07") == b"v"  # reads keep working
    assert len(list(db.scan())) == 50
    with pytest.raises(BackgroundError) as ei:
        db.put(b"x", b"y")
    assert "EIO" in str(ei.value) or "Input/output" in str(ei.value)
    assert db.stats()["background_error"]
    db.close()
    with _open(tmp_path / "db") as db2:  # reopening recovers everything from the WAL
        assert len(list(db2.scan())) == 50


def test_failed_wal_fsync_is_never_treated_as_success(tmp_path):
    fs = FaultFS()
    db = _open(tmp_path / "db", fs, sync_mode="always")
    db.put(b"a", b"1")
    fs.fail("sync", path_contains=".log")
    with pytest.raises(lsm.DiskError):
        db.put(b"b", b"2")
    # the next write must not pretend the log is fine (the fsync-gate lesson)
    with pytest.raises(BackgroundError):
        db.put(b"c", b"3")
    _close_ghost(db)


def test_failed_log_creation_at_switch_loses_nothing(tmp_path):
    fs = FaultFS()
    db = _open(tmp_path / "db", fs, sync_mode="always")
    rec = Recorder()
    fs.fail("open", path_contains=".log", nth=1, times=1000)
    with pytest.raises(lsm.DiskError):
        for i in range(1000):
            rec.put(db, b"k%04d" % i, b"x" * 50)
    fs.clear()
    rec.put(db, b"later", b"ok")  # the switch is retried by the next write
    db.close()
    with _open(tmp_path / "db") as db2:
        rec.check(db2)
