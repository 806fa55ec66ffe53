"""Regression: a DB whose open failed (e.g. CorruptionError under
wal_recovery="absolute") was later garbage-collected; its __del__ ran close(),
whose obsolete-file pass deleted a table that a newer open had just written."""

import gc
import os

import pytest

import lsm


def test_failed_open_never_touches_the_directory_later(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never") as db:
        for i in range(5):
            db.put(b"k%d" % i, b"v%d" % i)
    log = next(f for f in os.listdir(path) if f.endswith(".log"))
    os.truncate(path / log, os.path.getsize(path / log) - 3)
    gc.disable()
    try:
        with pytest.raises(lsm.CorruptionError):
            lsm.open(path, wal_recovery="absolute")  # the failed DB object is garbage now
        db = lsm.open(path)  # writes the recovered memtable to a new table
        gc.collect()  # the failed object is finalised here
        assert db.get(b"k3") == b"v3"
        db.close()
        with lsm.open(path) as db:
            assert db.get(b"k3") == b"v3"
    finally:
        gc.enable()
