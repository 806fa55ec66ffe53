"""Regression: close() marked the DB closed and then raised when its
obsolete-file pass failed: the threads were not joined, the log not closed,
the LOCK stayed held (a reopen in the same process raised LockError for
good), and a second close() did nothing. close() now releases everything
whatever fails inside it, then reports the first failure."""

import errno

import pytest

import lsm
from faultfs import FaultFS
from lsm import Options


def _released(db, path):
    assert db._closed
    assert not any(t.is_alive() for t in db._threads)
    with lsm.open(path) as again:  # the LOCK is free
        assert again.get(b"k") == b"v"
    db.close()  # a second close does nothing, and does not raise


def test_an_unexpected_failure_of_the_obsolete_file_pass(tmp_path, monkeypatch):
    db = lsm.open(tmp_path / "db", sync_mode="periodic")
    db.put(b"k", b"v")

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(lsm.background, "obsolete_files", boom)
    with pytest.raises(RuntimeError, match="boom"):
        db.close()
    monkeypatch.undo()
    _released(db, tmp_path / "db")


def test_a_failed_final_log_fsync_is_reported_after_releasing(tmp_path):
    fs = FaultFS()
    db = lsm.DB(tmp_path / "db", Options(sync_mode="periodic", sync_interval=600.0), fs=fs)
    db.put(b"k", b"v")
    fs.fail("sync", path_contains=".log", errno=errno.EIO)
    with pytest.raises(lsm.DiskError):
        db.close()
    _released(db, tmp_path / "db")


def test_failures_in_several_steps_report_the_first(tmp_path, monkeypatch):
    db = lsm.open(tmp_path / "db")
    db.put(b"k", b"v")

    def fail(what):
        def f(*args, **kwargs):
            raise OSError(errno.EIO, what)
        return f

    monkeypatch.setattr(db._tables, "close", fail("tables"))
    monkeypatch.setattr(db._versions, "close", fail("versions"))
    with pytest.raises(OSError, match="versions"):
        db.close()
    _released(db, tmp_path / "db")
