"""Regression: flush() waited until no immutable memtable was left at all, so
under a continuous write load (new memtables filling faster than the wait
noticed) it could wait indefinitely; it now waits for its own memtable."""

import threading
import time

import lsm
from lsm.fs import OsFileSystem


class SlowTableSync(OsFileSystem):
    """Table fsyncs take 50 ms, so writers always have memtables waiting."""

    def open_writable(self, path, *, preallocate=0):
        f = super().open_writable(path, preallocate=preallocate)
        return _SlowSync(f) if path.endswith(".sst") else f


class _SlowSync:
    def __init__(self, inner):
        self._inner = inner
        self.path = inner.path

    @property
    def size(self):
        return self._inner.size

    def write(self, data):
        self._inner.write(data)

    def sync(self):
        time.sleep(0.05)
        self._inner.sync()

    def trim(self):
        return self._inner.trim()

    def close(self):
        self._inner.close()


def test_flush_returns_while_writers_keep_switching_memtables(tmp_path):
    db = lsm.DB(tmp_path / "db", lsm.Options(sync_mode="never", memtable_bytes=2048, max_immutable_memtables=4),
                fs=SlowTableSync())
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            db.put(b"k%08d" % i, b"x" * 200)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        db.put(b"mine", b"1")
        time.sleep(0.3)  # the writer now keeps max_immutable_memtables waiting
        t0 = time.monotonic()
        db.flush()
        assert time.monotonic() - t0 < 5
        levels = db.stats()["levels"]
        assert any(f for lvl in levels for f in lvl["files"])  # "mine" reached a table
    finally:
        stop.set()
        t.join()
    db.close()


def test_concurrent_identical_compact_range_calls_both_return(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=2048)
    for i in range(500):
        db.put(b"k%04d" % i, b"v" * 50)
    ts = [threading.Thread(target=db.compact_range) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts)
    assert len(list(db.scan())) == 500
    db.close()
