"""Regression: a DB dropped without close() was never collected: its
threads' targets were bound methods, so the LOCK, its descriptors and its
threads lived as long as the process, and a reopen in the same process
raised LockError. The threads now hold the DB only weakly, and collecting
it releases everything, with a ResourceWarning as for an unclosed file."""

import gc
import time
import warnings
import weakref

import pytest

import lsm


def _drop_and_collect(make):
    """Build a DB with ``make()``, drop it, collect it; return its threads and
    the warnings the collection emitted."""
    db = make()
    threads = list(db._threads)
    worker = db._worker
    ref = weakref.ref(db)
    del db
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
        # A background thread may hold the DB for the length of one round
        # (it takes it from a weak reference): collected once that ends.
        deadline = time.monotonic() + 10
        while ref() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
            gc.collect()
    return threads, worker, [w for w in caught if issubclass(w.category, ResourceWarning)]


def _all_stop(threads, timeout=5.0):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("sync_mode", ["always", "periodic", "never"])
def test_an_unclosed_db_is_collected_and_releases_everything(tmp_path, sync_mode):
    path = tmp_path / "db"

    def make():
        db = lsm.open(path, sync_mode=sync_mode, sync_interval=60.0, memtable_bytes=4096)
        for i in range(200):
            db.put(b"k%03d" % i, b"v" * 50)
        db.snapshot().close()
        assert list(db.scan(keys_only=True))[:1] == [b"k000"]
        db.wait_for_compactions()
        return db

    threads, _, caught = _drop_and_collect(make)
    assert len(caught) == 1 and "unclosed database" in str(caught[0].message) and str(path) in str(caught[0].message)
    assert threads and _all_stop(threads), "threads of the collected DB still run"
    with lsm.open(path) as db:  # the LOCK was released
        assert db.get(b"k199") == b"v" * 50


def test_an_unclosed_read_only_db_releases_its_shared_lock(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path) as db:
        db.put(b"k", b"v")
    _, _, caught = _drop_and_collect(lambda: lsm.open(path, read_only=True))
    assert len(caught) == 1
    with lsm.open(path) as db:  # a writer gets the LOCK
        assert db.get(b"k") == b"v"


def test_the_compaction_worker_is_killed(tmp_path):
    path = tmp_path / "db"

    def make():
        db = lsm.open(path)
        assert db._worker is not None
        db._worker._proc = db._worker._start()  # as its first job would
        return db

    _, worker, _ = _drop_and_collect(make)
    proc = worker._proc
    assert proc is None or proc.wait(10) is not None


def test_a_closed_db_is_collected_without_warning(tmp_path):
    def make():
        db = lsm.open(tmp_path / "db")
        db.close()
        return db

    threads, _, caught = _drop_and_collect(make)
    assert caught == [] and _all_stop(threads, 0.1)
