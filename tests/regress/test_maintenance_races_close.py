"""Regression: flush() and compact_range() returned normally when close()
ran concurrently, although their work never happened: their wait loops
ended on the stop flag. They now raise ClosedError unless their work
completed (so does wait_for_compactions())."""

import threading

import pytest

import lsm
from faultfs import FaultFS
from lsm import Options


class GatedFS(FaultFS):
    """Table creation in the thread named ``thread`` waits for ``gate``."""

    def __init__(self, thread):
        super().__init__()
        self.thread = thread
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def open_writable(self, path, *, preallocate=0):
        if path.endswith(".sst") and threading.current_thread().name.startswith(self.thread):
            self.waiting.set()
            self.gate.wait(30)
        return super().open_writable(path, preallocate=preallocate)


def _in_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _wait_for(cond, timeout=10.0):
    ev = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        ev.wait(0.01)
    raise AssertionError("condition not reached")


def _close_while_blocked(db, fs):
    closer, _ = _in_thread(db.close)
    _wait_for(lambda: db._stop)
    fs.gate.set()  # the running job finishes; nothing after it starts
    closer.join(30)
    assert not closer.is_alive()


def test_flush_raises_closed_error_when_close_comes_first(tmp_path):
    fs = GatedFS("lsm-flush")
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never", memtable_bytes=1024, max_immutable_memtables=3),
                fs=fs)
    for i in range(12):
        db.put(b"a%02d" % i, b"x" * 100)  # fills and switches a memtable: its flush blocks
    assert fs.waiting.wait(10)
    db.put(b"mine", b"1")
    flusher, out = _in_thread(db.flush)
    _wait_for(lambda: len(db._sv.imms) == 2)  # flush() switched "mine" and waits for it
    _close_while_blocked(db, fs)
    flusher.join(10)
    assert not flusher.is_alive()
    assert isinstance(out.get("error"), lsm.ClosedError), out


def test_compact_range_raises_closed_error_when_close_comes_first(tmp_path):
    fs = GatedFS("lsm-compact")
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never", l0_compaction_trigger=2), fs=fs)
    for round_ in range(2):
        for i in range(10):
            db.put(b"k%02d" % i, b"%d" % round_)
        db.flush()
    assert fs.waiting.wait(10)  # an automatic compaction is under way, blocked
    compactor, out = _in_thread(db.compact_range)
    _wait_for(lambda: db._manual)  # the request is queued behind it
    _close_while_blocked(db, fs)
    compactor.join(10)
    assert not compactor.is_alive()
    assert isinstance(out.get("error"), lsm.ClosedError), out


def test_wait_for_compactions_raises_closed_error_when_close_comes_first(tmp_path):
    fs = GatedFS("lsm-compact")
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never", l0_compaction_trigger=2), fs=fs)
    for round_ in range(3):
        for i in range(10):
            db.put(b"k%02d" % i, b"%d" % round_)
        db.flush()
    assert fs.waiting.wait(10)
    waiter, out = _in_thread(db.wait_for_compactions)
    _close_while_blocked(db, fs)
    waiter.join(10)
    assert not waiter.is_alive()
    assert isinstance(out.get("error"), lsm.ClosedError), out


def test_completed_work_returns_normally(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="never")
    db.put(b"k", b"v")
    db.flush()
    db.compact_range()
    db.wait_for_compactions()
    db.close()
    with pytest.raises(lsm.ClosedError):
        db.flush()
