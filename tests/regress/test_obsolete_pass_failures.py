"""Regression: the obsolete-file pass is best-effort, yet a failed directory
listing in it (EMFILE, ENOMEM, EIO) escaped. In a background thread's idle
branch it ended the thread with no background error recorded: writes were
acknowledged until the immutable memtables were full, then every writer
waited forever. After a flush or compaction it turned the DB read-only; at
open it failed the open; at close it left the LOCK held."""

import errno
import threading
import time

import pytest

import lsm
from faultfs import FaultFS
from lsm import Options

SMALL = dict(sync_mode="never", memtable_bytes=2048, max_immutable_memtables=1, l0_compaction_trigger=2)


def _run(fn, timeout=20):
    """Run ``fn`` in a thread; fail (instead of hanging) if it does not finish."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung: a background thread is gone"
    return out[0] if out else None


def _fill(db, n, start=0):
    for i in range(start, start + n):
        db.put(b"k%05d" % i, b"v" * 100)


def test_failed_listing_in_the_idle_branch_keeps_both_threads_alive(tmp_path):
    fs = FaultFS()
    db = lsm.DB(tmp_path / "db", Options(**SMALL), fs=fs)
    _fill(db, 50)
    db.wait_for_compactions()  # idle from here: only the idle branch lists the directory
    for _ in range(2):  # each thread may be the one that runs the pass
        rule = fs.fail("listdir", errno=errno.EMFILE, times=1)
        db.snapshot().close()  # a released view makes the idle branch look for obsolete files
        with db._mu:
            db._bg_cv.notify_all()
        for _ in range(250):
            if rule.seen:
                break
            time.sleep(0.02)
        assert rule.seen, "the idle branch never listed the directory"
    assert all(t.is_alive() for t in db._threads)
    _run(lambda: _fill(db, 400, 50))  # many memtables: needs the flush thread
    _run(db.flush)
    assert db.stats()["background_error"] is None
    assert db.stats()["compaction"]["obsolete_file_errors"] >= 2
    assert db.get(b"k00449") == b"v" * 100
    db.close()


def test_failed_listing_after_a_flush_is_not_a_background_error(tmp_path):
    fs = FaultFS()
    db = lsm.DB(tmp_path / "db", Options(**SMALL), fs=fs)
    _fill(db, 30)
    fs.fail("listdir", errno=errno.ENOMEM, times=1000)  # every pass fails
    _run(db.flush)
    _run(lambda: _fill(db, 300, 30))
    _run(db.wait_for_compactions)
    assert db.stats()["background_error"] is None
    assert db.stats()["compaction"]["obsolete_file_errors"] >= 1
    db.put(b"after", b"ok")
    fs.clear()
    db.close()
    with lsm.open(tmp_path / "db") as db2:
        assert db2.get(b"k00329") == b"v" * 100 and db2.get(b"after") == b"ok"


def test_failed_listing_at_open_and_close(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path, **SMALL) as db:
        _fill(db, 30)
    fs = FaultFS()
    fs.fail("listdir", errno=errno.EIO, nth=2)  # the 1st lists the logs to replay; the 2nd is the pass
    db = lsm.DB(path, Options(**SMALL), fs=fs)
    assert db.stats()["compaction"]["obsolete_file_errors"] == 1
    db.put(b"x", b"1")
    fs.fail("listdir", errno=errno.EIO, times=1000)
    db.close()  # the pass at close fails: close still releases the LOCK
    with lsm.open(path) as db2:
        assert db2.get(b"x") == b"1" and db2.get(b"k00029") == b"v" * 100


@pytest.mark.parametrize("err", [errno.EMFILE, errno.EIO])
def test_failed_remove_is_counted_too(tmp_path, err):
    fs = FaultFS()
    db = lsm.DB(tmp_path / "db", Options(**SMALL), fs=fs)
    _fill(db, 30)
    fs.fail("remove", errno=err, times=1000)
    _run(db.flush)  # its old log is obsolete, and cannot be removed
    assert db.stats()["compaction"]["obsolete_file_errors"] >= 1
    assert db.stats()["background_error"] is None
    fs.clear()
    db.close()


def test_an_unexpected_failure_in_the_idle_pass_is_a_background_error(tmp_path, monkeypatch):
    db = lsm.DB(tmp_path / "db", Options(**SMALL), fs=FaultFS())
    _fill(db, 30)
    db.wait_for_compactions()

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(lsm.background, "obsolete_files", boom)
    db.snapshot().close()  # the idle branch runs the pass
    with db._mu:
        db._bg_cv.notify_all()
    for _ in range(250):
        if db.stats()["background_error"]:
            break
        time.sleep(0.02)
    assert "boom" in db.stats()["background_error"]  # recorded, not a thread ended unseen
    assert all(t.is_alive() for t in db._threads)
    with pytest.raises(lsm.BackgroundError):
        db.put(b"k", b"v")
    monkeypatch.undo()
    db.close()
