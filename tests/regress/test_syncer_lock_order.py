"""Regression (found in review): the periodic syncer held _log_sync_mu while
taking _mu to record a failed fsync, while a memtable switch holds _mu and
takes _log_sync_mu: the DB (and close()) hung. Also: a sync=True write after
the syncer's fsync failed must not be acknowledged (fsync-gate)."""

import errno
import threading
import time

import pytest

import lsm
from lsm.errors import DiskError
from lsm.fs import OsFileSystem


class _SlowFailingLog:
    def __init__(self, inner, arm, in_sync):
        self._i, self._arm, self._in_sync = inner, arm, in_sync
        self.path = inner.path

    @property
    def size(self):
        return self._i.size

    def write(self, data):
        self._i.write(data)

    def sync(self):
        if self._arm.is_set() and threading.current_thread().name.startswith("lsm-sync"):
            self._in_sync.set()
            time.sleep(0.5)  # a slow fsync that then fails
            raise DiskError(errno.EIO, "Input/output error", self.path)
        self._i.sync()

    def trim(self):
        return self._i.trim()

    def close(self):
        self._i.close()


class _FS(OsFileSystem):
    def __init__(self):
        self.arm = threading.Event()
        self.in_sync = threading.Event()

    def open_mapped(self, path, *, step):
        f = super().open_mapped(path, step=step)
        return _SlowFailingLog(f, self.arm, self.in_sync) if path.endswith(".log") else f


def test_failed_periodic_fsync_during_a_memtable_switch_does_not_deadlock(tmp_path):
    fs = _FS()
    db = lsm.DB(tmp_path / "db", lsm.Options(sync_mode="periodic", sync_interval=0.05), fs=fs)
    db.put(b"a", b"1")
    fs.arm.set()
    db.put(b"b", b"2")
    assert fs.in_sync.wait(5)
    errors = []

    def flush():
        try:
            db.flush()
        except lsm.Error as e:
            errors.append(e)

    t = threading.Thread(target=flush, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "flush() deadlocked against the periodic syncer"
    with pytest.raises(lsm.BackgroundError):
        db.put(b"c", b"3", sync=True)
    closer = threading.Thread(target=db.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() hung"
