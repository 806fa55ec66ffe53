"""Regression: in sync_mode="never" a memtable switch does not fsync the old
log, and a later put(sync=True) fsynced only the new one. With A (synced),
B (not synced, fills the memtable), C (synced, in the new log), a power cut
kept A and C and lost B: not a prefix of the writes, and no recovery mode
noticed. A synced write now fsyncs every older log still holding unsynced
records first (as RocksDB does), so acknowledging C makes B durable too.
Run in every sync mode: "always" and "periodic" sync the old log at the
switch, and must keep doing so."""

import threading

import pytest

import lsm
from faultfs import FaultFS
from lsm import Options


class GatedFS(FaultFS):
    """Table creation waits for ``gate``: the old memtable's flush cannot make
    its log obsolete before the power cut."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def open_writable(self, path, *, preallocate=0):
        if path.endswith(".sst"):
            self.gate.wait(30)
        return super().open_writable(path, preallocate=preallocate)


def _ghost_close(db, fs):
    fs.gate.set()
    try:
        db.close()
    except lsm.Error:
        pass


@pytest.mark.parametrize("mode", ["never", "periodic", "always"])
def test_synced_write_after_a_switch_makes_the_older_log_durable(tmp_path, mode):
    fs = GatedFS()
    # periodic: an interval long enough that the syncer never runs here
    db = lsm.DB(tmp_path / "db", Options(sync_mode=mode, sync_interval=600.0, memtable_bytes=1024), fs=fs)
    db.put(b"a", b"A", sync=True)
    db.put(b"b", b"B" * 2000, sync=False)  # fills the memtable: the next write switches
    db.put(b"c", b"C", sync=True)  # lands in the new log
    assert db.stats()["memtable"]["immutable"] == 1  # the old memtable is not flushed
    fs.power_cut()
    _ghost_close(db, fs)
    with lsm.open(tmp_path / "db") as db2:
        assert (db2.get(b"a"), db2.get(b"b"), db2.get(b"c")) == (b"A", b"B" * 2000, b"C")


@pytest.mark.parametrize("mode", ["never", "periodic", "always"])
def test_power_cut_across_several_switches_keeps_a_prefix_with_every_synced_write(tmp_path, mode):
    fs = GatedFS()
    db = lsm.DB(tmp_path / "db", Options(sync_mode=mode, sync_interval=600.0, memtable_bytes=1024,
                                         max_immutable_memtables=20), fs=fs)
    history = []
    last_synced = -1
    for i in range(60):
        sync = i % 7 == 3
        db.put(b"k%02d" % (i % 25), b"%d" % i + b"." * 150, sync=sync)
        history.append((b"k%02d" % (i % 25), b"%d" % i + b"." * 150))
        if sync or mode == "always":
            last_synced = i
    assert db.stats()["memtable"]["immutable"] >= 3
    fs.power_cut()
    _ghost_close(db, fs)
    with lsm.open(tmp_path / "db") as db2:
        got = dict(db2.scan())
    state = {}
    prefixes = []
    for i, (k, v) in enumerate(history):
        state[k] = v
        if i >= last_synced:
            prefixes.append(dict(state))
    assert got in prefixes, "not a prefix of the writes that includes every synced one"


def test_older_unsynced_logs_are_closed_once_flushed(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=1024)
    for i in range(40):
        db.put(b"k%02d" % i, b"x" * 200)
    db.flush()
    assert db._unsynced_logs == []  # every older log's memtable is in a table
    db.close()
