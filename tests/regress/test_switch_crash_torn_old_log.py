"""Regression (found in review): a log switch created the new log (and made its
name durable) before syncing the old log's tail; a power cut in between left
a torn record at the end of the old log and an empty newer log, and the
default tolerate_tail refused to open ("only the newest log may be torn")."""

import os

import pytest

import lsm
from lsm.batch import encode_batch
from lsm.filenames import make_log_name
from lsm.wal import encode_record


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


def test_torn_end_of_a_log_followed_by_records_is_still_corruption(tmp_path):
    path = tmp_path / "db"
    n = _db_with_torn_log(path)
    with open(make_log_name(str(path), n), "rb") as f:
        first = f.read(60)
    with open(make_log_name(str(path), n + 1), "wb") as f:
        f.write(encode_record(encode_batch(100, [(1, b"z", b"later")])))
    with pytest.raises(lsm.CorruptionError):
        lsm.open(path)
    assert first
