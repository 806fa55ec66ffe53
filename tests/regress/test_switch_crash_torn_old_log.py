"""Regression (found in review): a log switch created the new log (and made its
name durable) before syncing the old log's tail; a power cut in between left
a torn record at the end of the old log and an empty newer log, and the
default tolerate_tail refused to open ("only the newest log may be torn").

Since logs carry sequence numbers and sync points, a torn older log followed
by records is a hole: replayed up to it when no later record says the lost
writes were durable, refused when one does."""

import os
import struct

import pytest

import lsm
from lsm.batch import encode_batch
from lsm.filenames import make_log_name
from lsm.fs import OsFileSystem
from lsm.wal import BATCH, START, WalWriter


def _db_with_torn_log(path):
    with lsm.open(path, sync_mode="never") as db:
        for i in range(5):
            db.put(b"k%d" % i, b"v" * 100)
    n = max(int(f[:-4]) for f in os.listdir(path) if f.endswith(".log"))
    log = make_log_name(str(path), n)
    os.truncate(log, os.path.getsize(log) - 7)  # the last put was torn
    return n


@pytest.mark.parametrize("newer_log", ["none", "empty"])
def test_torn_tail_followed_only_by_an_empty_log_is_a_tail(tmp_path, newer_log):
    path = tmp_path / "db"
    n = _db_with_torn_log(path)
    if newer_log == "empty":
        open(make_log_name(str(path), n + 1), "wb").close()
    with lsm.open(path) as db:
        assert [db.get(b"k%d" % i) for i in range(5)] == [b"v" * 100] * 4 + [None]


@pytest.mark.parametrize("synced", [0, 5])
def test_torn_end_of_a_log_followed_by_records(tmp_path, synced):
    path = tmp_path / "db"
    n = _db_with_torn_log(path)
    w = WalWriter(OsFileSystem().open_writable(make_log_name(str(path), n + 1)), n + 1)
    w.append(bytes((START,)) + struct.pack("<Q", 6))
    w.append(bytes((BATCH,)) + encode_batch(6, [(1, b"z", b"later")], synced))
    w.close()
    if synced >= 5:  # the later record says write 5 was durable: the torn bytes were acknowledged data
        with pytest.raises(lsm.CorruptionError, match="writes 5..5 are missing"):
            lsm.open(path)
        return
    with lsm.open(path) as db:  # write 5 was never durable: lost to the crash, and what follows it too
        assert [db.get(b"k%d" % i) for i in range(5)] == [b"v" * 100] * 4 + [None]
        assert db.get(b"z") is None
