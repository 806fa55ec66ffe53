"""Several threads at once: writers, point readers, scanners and snapshots
while flushes and compactions run. No reader ever sees a missing or stale
key, a torn batch, or a view that changes under it."""

from __future__ import annotations

import threading
import time

import lsm

OPTS = dict(sync_mode="never", memtable_bytes=4096, block_bytes=512, target_file_bytes=8192,
            level_base_bytes=16384, level_multiplier=4, l0_compaction_trigger=2,
            block_cache_bytes=1 << 16)


def _run(threads, seconds):
    stop = threading.Event()
    errors: list[BaseException] = []

    def guard(fn):
        def run():
            try:
                fn(stop)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                stop.set()
        return run

    ts = [threading.Thread(target=guard(fn)) for fn in threads]
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join(30)
    if errors:
        raise errors[0]


def test_monotonic_reads_and_atomic_batches(tmp_path):
    db = lsm.open(tmp_path / "db", **OPTS)
    published = {}  # key -> highest counter whose write returned
    mu = threading.Lock()

    def writer(wid):
        def fn(stop):
            n = 0
            while not stop.is_set():
                n += 1
                k = b"w%d-%02d" % (wid, n % 40)
                # pair a/b updated atomically in one batch
                with db.write_batch() as b:
                    b.put(k + b"a", b"%08d" % n)
                    b.put(k + b"b", b"%08d" % n)
                with mu:
                    published[k] = n
        return fn

    def reader(stop):
        last_seen = {}
        while not stop.is_set():
            with mu:
                items = list(published.items())
            for k, _n in items[:50]:
                v = db.get(k + b"a")
                assert v is not None, k  # acknowledged before the read started
                got = int(v)
                assert got >= last_seen.get(k, 0), "read went backwards"
                last_seen[k] = got

    def scanner(stop):
        while not stop.is_set():
            rows = dict(db.scan(b"w"))
            for k, v in rows.items():
                if k.endswith(b"a"):
                    assert rows.get(k[:-1] + b"b") == v, "torn batch in a scan"

    def snapshotter(stop):
        while not stop.is_set():
            with db.snapshot() as s:
                first = dict(s.scan(b"w0"))
                time.sleep(0.01)
                assert dict(s.scan(b"w0")) == first, "snapshot changed"

    def maintenance(stop):
        while not stop.is_set():
            db.flush()
            time.sleep(0.02)
            db.compact_range(b"w1", b"w2")

    _run([writer(0), writer(1), reader, scanner, snapshotter, maintenance], 3.0)
    db.wait_for_compactions()
    stats = db.stats()
    assert stats["compaction"]["flushes"] > 3
    assert stats["compaction"]["count"] > 0
    db.close()


def test_iterator_consistent_while_tree_changes(tmp_path):
    db = lsm.open(tmp_path / "db", **OPTS)
    for i in range(2000):
        db.put(b"k%05d" % i, b"v0")
    it = db.scan()
    first = [next(it) for _ in range(10)]

    def churn(stop):
        n = 0
        while not stop.is_set() and n < 3000:
            n += 1
            db.put(b"k%05d" % (n % 2000), b"v%d" % n)
            if n % 300 == 0:
                db.delete(b"k%05d" % (n % 2000 + 1))

    def flusher(stop):
        while not stop.is_set():
            db.flush()
            db.wait_for_compactions()

    t = threading.Thread(target=lambda: _run([churn, flusher], 2.0))
    t.start()
    rest = list(it)
    t.join()
    rows = first + rest
    assert len(rows) == 2000
    assert all(v == b"v0" for _, v in rows)
    assert [k for k, _ in rows] == sorted(k for k, _ in rows)
    db.close()


def test_group_commit_many_sync_writers(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="always", memtable_bytes=1 << 16)
    n_threads, per = 8, 60

    def writer(i):
        for j in range(per):
            db.put(b"t%d-%03d" % (i, j), b"x")

    ts = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(list(db.scan(keys_only=True))) == n_threads * per
    versions = sorted(db.get_entry(k).version for k in db.scan(keys_only=True))
    assert versions == list(range(1, n_threads * per + 1))  # unique, gap-free sequences
    db.close()


def test_close_while_threads_write(tmp_path):
    db = lsm.open(tmp_path / "db", **OPTS)
    done = []

    def writer():
        try:
            for i in range(100000):
                db.put(b"k%06d" % i, b"v")
        except lsm.ClosedError:
            done.append(True)

    ts = [threading.Thread(target=writer) for _ in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.3)
    db.close()
    for t in ts:
        t.join(30)
    assert len(done) == 3
    with lsm.open(tmp_path / "db") as db2:
        assert db2.get(b"k000000") == b"v"
