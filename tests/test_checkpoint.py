"""db.checkpoint(): a consistent, openable copy of a live database taken
while other threads write, flush and compact; hard links or copies per file
system; bad arguments; and injected failures (tests/faultfs.py), which leave
no destination and the source database unharmed."""

from __future__ import annotations

import errno
import os
import random
import threading
import time

import pytest

import lsm
from faultfs import FaultFS
from lsm import Options
from lsm.errors import DiskError
from lsm.fs import OsFileSystem

SMALL = dict(memtable_bytes=4096, block_bytes=512, target_file_bytes=8192, level_base_bytes=16384,
             l0_compaction_trigger=2, sync_mode="never")


def _open(path, fs=None, **opts):
    return lsm.DB(path, Options(**{**SMALL, **opts}), fs=fs)


def _contents(db) -> dict:
    return dict(db.scan())


def _fill(db, n=400, seed=0):
    rng = random.Random(seed)
    for i in range(n):
        k = b"k%04d" % rng.randrange(300)
        if rng.random() < 0.1:
            db.delete(k)
        else:
            db.put(k, b"v%d-" % i + bytes(rng.randrange(40)))


def _assert_unpinned(db) -> None:
    """The checkpoint released its pins (background jobs may still run a while)."""
    assert db._checkpoint_pins == {}
    deadline = time.monotonic() + 10
    while db._bg_active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert db._bg_active == 0


def _table_names(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".sst"))


def test_checkpoint_opens_equal_and_links_tables(tmp_path):
    db = _open(tmp_path / "db")
    _fill(db)
    db.flush()
    db.compact_range()
    _fill(db, 50, seed=1)  # some writes only in the memtable and its log
    want = _contents(db)
    seq = db.checkpoint(tmp_path / "cp")
    assert seq == db.stats()["sequence"]
    _fill(db, 200, seed=2)  # later writes do not reach the copy
    assert not os.path.exists(str(tmp_path / "cp") + ".tmp")
    tables = _table_names(tmp_path / "cp")
    assert tables
    for name in tables:  # the same inode: a hard link, not a copy
        a, b = os.stat(tmp_path / "db" / name), os.stat(tmp_path / "cp" / name)
        assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev) or not os.path.exists(tmp_path / "db" / name)
    with lsm.open(tmp_path / "cp", read_only=True) as cp:
        assert _contents(cp) == want
        assert cp.stats()["sequence"] == seq
    with _open(tmp_path / "cp") as cp:  # writable too, independent of the source
        assert _contents(cp) == want
        cp.put(b"only-in-copy", b"1")
        cp.compact_range()
    assert db.get(b"only-in-copy") is None
    assert _contents(db) != want
    db.close()


def test_checkpoint_of_a_checkpoint_and_of_a_read_only_db(tmp_path):
    with _open(tmp_path / "db") as db:
        _fill(db)
        want = _contents(db)
    with lsm.open(tmp_path / "db", read_only=True) as ro:
        seq = ro.checkpoint(tmp_path / "cp1")  # from the replayed logs of a read-only open
    with lsm.open(tmp_path / "cp1", read_only=True) as cp1:
        assert _contents(cp1) == want and cp1.stats()["sequence"] == seq
        cp1.checkpoint(tmp_path / "cp2")  # of a read-only checkpoint
    with _open(tmp_path / "cp1") as cp1:
        cp1.put(b"more", b"x")
        want2 = _contents(cp1)
        cp1.checkpoint(tmp_path / "cp3")  # of a live checkpoint
    for name, expected in (("cp2", want), ("cp3", want2)):
        with lsm.open(tmp_path / name, read_only=True) as cp:
            assert _contents(cp) == expected, name


def test_empty_database_and_existing_empty_destination(tmp_path):
    with lsm.open(tmp_path / "db") as db:
        os.mkdir(tmp_path / "empty")
        assert db.checkpoint(tmp_path / "empty") == 0
    with lsm.open(tmp_path / "empty", read_only=True) as cp:
        assert _contents(cp) == {}


class _History:
    """Every acknowledged write with its sequence numbers, from any thread."""

    def __init__(self) -> None:
        self.mu = threading.Lock()
        self.ops: list[tuple[int, bytes, bytes | None]] = []

    def add(self, last_seq: int, ops: list[tuple[bytes, bytes | None]]) -> None:
        first = last_seq - len(ops) + 1
        with self.mu:
            self.ops += [(first + i, k, v) for i, (k, v) in enumerate(ops)]

    def state_at(self, seq: int) -> dict:
        with self.mu:
            ops = sorted(self.ops)
        state: dict = {}
        for s, k, v in ops:
            if s > seq:
                break
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        return state


def test_checkpoint_under_concurrent_writes_flushes_and_compactions(tmp_path):
    db = _open(tmp_path / "db")
    hist = _History()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int, sync: bool) -> None:
        rng = random.Random(n)
        i = 0
        try:
            while not stop.is_set():
                i += 1
                k = b"k%04d" % rng.randrange(500)
                r = rng.random()
                if r < 0.1:
                    hist.add(db.delete(k, sync=sync), [(k, None)])
                elif r < 0.2:
                    ops = [(b"b%d-%04d" % (n, rng.randrange(200)), b"batch%d" % i) for _ in range(3)]
                    b = lsm.WriteBatch()
                    for bk, bv in ops:
                        b.put(bk, bv)
                    hist.add(db.write(b, sync=sync), ops)
                else:
                    v = b"%d-%d-" % (n, i) + bytes(rng.randrange(60))
                    hist.add(db.put(k, v, sync=sync), [(k, v)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(0, False)), threading.Thread(target=writer, args=(1, True))]
    for t in threads:
        t.start()
    results = []
    try:
        for i in range(4):
            time.sleep(0.15)
            before = db.stats()["sequence"]
            seq = db.checkpoint(tmp_path / f"cp{i}")
            after = db.stats()["sequence"]
            assert before <= seq <= after
            results.append((i, seq))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert db.stats()["compaction"]["flushes"] > 0
    for i, seq in results:
        with lsm.open(tmp_path / f"cp{i}", read_only=True, wal_recovery="absolute") as cp:
            assert cp.stats()["sequence"] == seq
            assert _contents(cp) == hist.state_at(seq), i
    db.close()


def test_logs_and_tables_stay_while_the_copy_runs(tmp_path):
    """A flush and a compaction during the copy would delete the log and
    tables the checkpoint is copying, but for its pins."""
    fired = threading.Event()

    class Racing(OsFileSystem):
        def open_readable(self, path: str):
            if path.endswith(".log") and "cp.tmp" not in path and not fired.is_set():
                fired.set()
                t = threading.Thread(target=lambda: (db.put(b"zz", b"after"), db.compact_range()))
                t.start()
                t.join()
                assert db.get(b"zz") == b"after"
            return super().open_readable(path)

        def link(self, src: str, dst: str) -> None:
            raise DiskError(errno.EXDEV, "cross-device", dst)  # copy the tables too

    db = lsm.DB(tmp_path / "db", Options(**SMALL), fs=Racing())
    _fill(db)
    db.flush()
    _fill(db, 30, seed=5)
    want = _contents(db)
    db.checkpoint(tmp_path / "cp")
    assert fired.is_set()
    _assert_unpinned(db)
    db.close()
    with lsm.open(tmp_path / "cp", read_only=True) as cp:
        assert _contents(cp) == want


def test_a_write_in_flight_is_waited_for(tmp_path):
    """A synchronous write appends its log record without the DB mutex: the
    checkpoint waits for it (it captures as the head of the commit queue),
    so it never copies part of a group, nor records beyond its sequence."""
    appending, release = threading.Event(), threading.Event()

    class Blocking:
        def __init__(self, inner) -> None:
            self._inner = inner

        def write(self, data: bytes) -> None:
            if b"slow-key" in bytes(data):
                appending.set()
                release.wait(5)
            self._inner.write(data)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    class FS(OsFileSystem):
        def open_mapped(self, path: str, *, step: int):
            return Blocking(super().open_mapped(path, step=step))

    db = lsm.DB(tmp_path / "db", Options(**SMALL), fs=FS())
    db.put(b"a", b"1")
    writer = threading.Thread(target=lambda: db.put(b"slow-key", b"2", sync=True))
    writer.start()
    assert appending.wait(5)
    result = []
    cp = threading.Thread(target=lambda: result.append(db.checkpoint(tmp_path / "cp")))
    cp.start()
    time.sleep(0.2)
    assert not result  # behind the write in flight
    release.set()
    writer.join(5)
    cp.join(5)
    assert result == [db.stats()["sequence"]] == [2]
    db.close()
    with lsm.open(tmp_path / "cp", read_only=True, wal_recovery="absolute") as copy:
        assert _contents(copy) == {b"a": b"1", b"slow-key": b"2"}


@pytest.mark.parametrize("err", [errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK])
def test_copies_where_links_are_not_possible(tmp_path, err):
    calls = []

    class NoLinks(OsFileSystem):
        def link(self, src: str, dst: str) -> None:
            calls.append(dst)
            raise DiskError(err, os.strerror(err), dst)

    with lsm.DB(tmp_path / "db", Options(**SMALL), fs=NoLinks()) as db:
        _fill(db)
        db.flush()
        want = _contents(db)
        db.checkpoint(tmp_path / "cp")
    assert len(calls) == 1  # tried once, then copied every table
    for name in _table_names(tmp_path / "cp"):
        assert os.stat(tmp_path / "cp" / name).st_nlink == 1
    with lsm.open(tmp_path / "cp", read_only=True) as cp:
        assert _contents(cp) == want


def test_cross_device_checkpoint(tmp_path):
    other = "/dev/shm"
    if not os.path.isdir(other) or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm on another device) to copy across")
    import tempfile
    with tempfile.TemporaryDirectory(dir=other) as d:
        with _open(tmp_path / "db") as db:
            _fill(db)
            db.flush()
            want = _contents(db)
            db.checkpoint(os.path.join(d, "cp"))
        with lsm.open(os.path.join(d, "cp"), read_only=True) as cp:
            assert _contents(cp) == want


def test_close_waits_for_a_checkpoint(tmp_path):
    started, release = threading.Event(), threading.Event()

    class Slow(OsFileSystem):
        def link(self, src: str, dst: str) -> None:
            started.set()
            release.wait(5)
            super().link(src, dst)

    db = lsm.DB(tmp_path / "db", Options(**SMALL), fs=Slow())
    _fill(db)
    db.flush()
    want = _contents(db)
    result = []
    t = threading.Thread(target=lambda: result.append(db.checkpoint(tmp_path / "cp")))
    t.start()
    assert started.wait(5)
    closer = threading.Thread(target=db.close)
    closer.start()
    time.sleep(0.1)
    assert closer.is_alive()  # waiting for the checkpoint
    release.set()
    closer.join(5)
    t.join(5)
    assert result and not closer.is_alive()
    with lsm.open(tmp_path / "cp", read_only=True) as cp:
        assert _contents(cp) == want
    with pytest.raises(lsm.ClosedError):
        db.checkpoint(tmp_path / "cp2")


@pytest.mark.parametrize("dest, exc, words", [
    (None, TypeError, "dest must be a str or os.PathLike path, not NoneType"),
    (5, TypeError, "dest must be a str"),
    (b"/tmp/x", TypeError, "dest must be a str"),
    ("", ValueError, "dest must not be empty"),
])
def test_bad_dest_types(tmp_path, dest, exc, words):
    with lsm.open(tmp_path / "db") as db:
        with pytest.raises(exc, match=words):
            db.checkpoint(dest)


def test_dest_must_be_free(tmp_path):
    with lsm.open(tmp_path / "db") as db:
        _ = db.put(b"k", b"v")
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_bytes(b"1")
        with pytest.raises(lsm.Error, match="is not empty"):
            db.checkpoint(tmp_path / "full")
        (tmp_path / "file").write_bytes(b"1")
        with pytest.raises(lsm.Error, match="not a directory"):
            db.checkpoint(tmp_path / "file")
        with pytest.raises(lsm.Error, match="no such directory"):
            db.checkpoint(tmp_path / "missing" / "cp")
        with pytest.raises(lsm.Error, match="is not empty"):
            db.checkpoint(db.path)
        (tmp_path / "cp.tmp").mkdir()
        with pytest.raises(lsm.Error, match="interrupted checkpoint"):
            db.checkpoint(tmp_path / "cp")
        assert sorted(os.listdir(tmp_path)) == ["cp.tmp", "db", "file", "full"]
        assert db.get(b"k") == b"v"


# -- injected failures ---------------------------------------------------------

FAILURES = [
    ("link", dict(path_contains=".sst")),                       # a link fails (not a "no links here" error)
    ("read", dict(path_contains=".log")),                       # copying a log
    ("write", dict(path_contains="cp.tmp")),                    # writing the copy
    ("sync", dict(path_contains="cp.tmp" + os.sep + "0")),      # fsync of a copied file
    ("sync", dict(path_contains="cp.tmp" + os.sep + "MANIFEST")),  # the copy's manifest
    ("fsync_dir", dict(path_contains="cp.tmp")),                # the staging directory
    ("rename", dict(path_contains="dbtmp")),                    # installing the copy's CURRENT
    ("rename", dict(path_contains="cp.tmp")),                   # the staging directory to dest
    ("fsync_dir", dict(path_contains="ckpt", nth=3)),           # dest's parent, after the rename (3rd: after
                                                                # the staging directory's two)
    ("mkdir", dict()),                                          # the staging directory itself
]


@pytest.mark.parametrize("op, rule", FAILURES, ids=[f"{op}-{r.get('path_contains', '')}" for op, r in FAILURES])
@pytest.mark.parametrize("linking", [True, False])
def test_a_failure_leaves_nothing_and_the_source_unharmed(tmp_path, op, rule, linking):
    if op == "link" and not linking:
        pytest.skip("no link is tried twice: a file system without links copies")
    fs = FaultFS()
    if not linking:
        fs.fail("link", errno=errno.EXDEV, times=1 << 30)
    parent = tmp_path / "ckpt"
    parent.mkdir()
    db = _open(tmp_path / "db", fs)
    _fill(db)
    db.flush()
    _fill(db, 40, seed=3)
    want = _contents(db)
    fs.fail(op, **rule)
    with pytest.raises(DiskError) as info:
        db.checkpoint(parent / "cp")
    assert info.value.errno == errno.EIO  # the injected failure, not another
    fs.clear()
    assert os.listdir(parent) == []  # neither dest nor its staging directory
    _assert_unpinned(db)
    # the source is unharmed: reads, writes, flushes, compactions, a checkpoint
    assert _contents(db) == want
    assert db.stats()["background_error"] is None
    db.put(b"after", b"1")
    db.flush()
    db.compact_range()
    seq = db.checkpoint(parent / "cp")
    want[b"after"] = b"1"
    db.close()
    with lsm.open(parent / "cp", read_only=True) as cp:
        assert _contents(cp) == want and cp.stats()["sequence"] == seq
    with lsm.open(tmp_path / "db", read_only=True) as again:
        assert _contents(again) == want
