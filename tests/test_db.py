"""DB public API behaviour (the names in ``lsm.__all__``, the errors of
lsm/errors.py): reads, writes, batches, scans, snapshots, versions,
arguments, closed objects, locking, options."""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest

import lsm
from lsm import ClosedError, LockError, Options, ReadOnlyError


@pytest.fixture
def db(tmp_path):
    d = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=16 << 10)
    yield d
    d.close()


def test_put_get_delete_versions(db):
    v1 = db.put(b"a", b"1")
    v2 = db.put(b"b", b"2")
    assert v2 == v1 + 1
    assert db.get(b"a") == b"1"
    assert db.get_entry(b"a") == lsm.Entry(b"1", v1, None)
    v3 = db.delete(b"a")
    assert v3 == v2 + 1
    assert db.get(b"a") is None
    assert db.get(b"a", b"dflt") == b"dflt"
    assert db.get_entry(b"a") is None
    assert db.delete(b"never-there") == v3 + 1  # deleting an absent key is a write


def test_empty_key_is_a_key(db):
    db.put(b"", b"empty")
    assert db.get(b"") == b"empty"
    assert list(db.scan()) == [(b"", b"empty")]
    db.flush()
    assert db.get(b"") == b"empty"


def test_bytearray_and_memoryview_are_copied(db):
    k = bytearray(b"key")
    v = bytearray(b"val")
    db.put(k, memoryview(v))
    k[0] = ord("X")
    v[0] = ord("X")
    assert db.get(b"key") == b"val"
    assert type(db.get(b"key")) is bytes


@pytest.mark.parametrize("call", [
    lambda db: db.put("str", b"v"),
    lambda db: db.put(b"k", "str"),
    lambda db: db.put(1, b"v"),
    lambda db: db.get("k"),
    lambda db: db.delete(None),
    lambda db: db.scan(prefix="p"),
    lambda db: db.write([(b"k", b"v")]),
])
def test_wrong_types_raise_type_error(db, call):
    with pytest.raises(TypeError):
        call(db)
    assert list(db.scan()) == []


def test_size_limits_name_argument_and_write_nothing(db):
    with pytest.raises(ValueError, match="key is 65536 bytes; the limit is 65535"):
        db.put(b"k" * 65536, b"v")
    db.put(b"k" * 65535, b"v")  # at the limit is fine
    with pytest.raises(ValueError, match="value is .* the limit is 268435456"):
        db.put(b"k", b"\0" * ((256 << 20) + 1))
    b = lsm.WriteBatch()
    b.put(b"ok", b"1")
    with pytest.raises(ValueError, match="key"):
        b.put(b"x" * 70000, b"v")
    assert db.get(b"k") is None
    assert db.get(b"ok") is None


def test_ttl_argument_validation(db):
    with pytest.raises(ValueError, match="ttl"):
        db.put(b"k", b"v", ttl=0)
    with pytest.raises(TypeError, match="ttl"):
        db.put(b"k", b"v", ttl="5")
    assert db.get(b"k") is None


def test_batch_atomic_consecutive_sequences(db):
    b = lsm.WriteBatch()
    b.put(b"x", b"1").put(b"y", b"2").delete(b"x")
    last = db.write(b)
    assert db.get_entry(b"y").version == last - 1
    assert db.get(b"x") is None
    assert db.write(lsm.WriteBatch()) == 0  # empty batch uses no sequence
    assert db.put(b"z", b"3") == last + 1


def test_write_batch_context_manager_applies_or_discards(db):
    with db.write_batch() as b:
        b.put(b"a", b"1")
        b.put(b"b", b"2")
    assert db.get(b"b") == b"2"
    seq = db.stats()["sequence"]
    with pytest.raises(RuntimeError):
        with db.write_batch() as b:
            b.put(b"c", b"3")
            raise RuntimeError("boom")
    assert db.get(b"c") is None
    assert db.stats()["sequence"] == seq


def test_mapping_sugar(db):
    db[b"k"] = b"v"
    assert db[b"k"] == b"v"
    assert b"k" in db
    assert b"nope" not in db
    with pytest.raises(KeyError):
        db[b"nope"]
    del db[b"k"]
    with pytest.raises(KeyError):
        del db[b"k"]
    db[b"a"] = b"1"
    db[b"b"] = b"2"
    assert list(db) == [b"a", b"b"]
    assert len(db) == 2


def _fill(db, n, prefix=b"k"):
    for i in range(n):
        db.put(prefix + b"%05d" % i, b"v%d" % i)


@pytest.mark.parametrize("flush", [False, True])
def test_scan_bounds_prefix_reverse(db, flush):
    _fill(db, 300)
    _fill(db, 20, b"j")
    _fill(db, 20, b"l")
    if flush:
        db.flush()
        _fill(db, 10, b"k9")  # some in memtable too
    allkeys = sorted(k for k, _ in db.scan())
    assert allkeys == sorted(set(allkeys))
    got = [k for k, _ in db.scan(b"k001")]
    assert got == [k for k in allkeys if k.startswith(b"k001")]
    got = list(db.scan(start=b"k00100", stop=b"k00200", keys_only=True))
    assert got == [k for k in allkeys if b"k00100" <= k < b"k00200"]
    got = list(db.scan(b"k", start=b"j", stop=b"k00005"))
    assert [k for k, _ in got] == [k for k in allkeys if k.startswith(b"k") and k < b"k00005"]
    rev = list(db.scan(b"k00", reverse=True, keys_only=True))
    assert rev == sorted([k for k in allkeys if k.startswith(b"k00")], reverse=True)
    assert list(db.scan(start=b"z")) == []
    assert list(db.scan(start=b"b", stop=b"a")) == []
    assert list(db.scan(b"\xff\xff")) == []


def test_scan_prefix_of_ff_bytes(db):
    db.put(b"\xff", b"1")
    db.put(b"\xff\xff", b"2")
    db.put(b"\xfe", b"3")
    assert [k for k, _ in db.scan(b"\xff")] == [b"\xff", b"\xff\xff"]
    assert [k for k, _ in db.scan(b"\xff", reverse=True)] == [b"\xff\xff", b"\xff"]


def test_scan_view_fixed_at_call(db):
    _fill(db, 100)
    it = db.scan()
    db.put(b"k00000", b"changed")
    db.put(b"k99999", b"new")
    db.delete(b"k00050")
    db.flush()
    db.compact_range()
    got = dict(it)
    assert len(got) == 100
    assert got[b"k00000"] == b"v0"
    assert b"k99999" not in got
    assert got[b"k00050"] == b"v50"


def test_snapshot_frozen_across_flush_and_compaction(db):
    _fill(db, 200)
    with db.snapshot() as snap:
        for i in range(0, 200, 2):
            db.put(b"k%05d" % i, b"new")
        db.delete(b"k00001")
        db.flush()
        db.compact_range()
        assert snap.get(b"k00000") == b"v0"
        assert snap.get(b"k00001") == b"v1"
        assert dict(snap.scan())[b"k00002"] == b"v2"
        assert len(list(snap.scan())) == 200
        assert snap.get_entry(b"k00003").value == b"v3"
    assert db.get(b"k00000") == b"new"
    assert db.get(b"k00001") is None
    with pytest.raises(ClosedError):
        snap.get(b"k00000")


def test_closed_objects_raise(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="never")
    db.put(b"a", b"1")
    snap = db.snapshot()
    it = db.scan()
    db.close()
    db.close()  # idempotent
    for call in (lambda: db.get(b"a"), lambda: db.put(b"a", b"1"), lambda: db.scan(),
                 lambda: snap.get(b"a"), lambda: next(it), lambda: db.stats(),
                 lambda: db.flush(), lambda: db.snapshot()):
        with pytest.raises(ClosedError):
            call()


def test_exhausted_iterator_keeps_raising_stop_iteration(db):
    db.put(b"a", b"1")
    it = db.scan()
    assert list(it) == [(b"a", b"1")]
    assert list(it) == []
    it2 = db.scan()
    it2.close()
    with pytest.raises(ClosedError):
        next(it2)


def test_reopen_keeps_everything(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never", memtable_bytes=8 << 10) as db:
        _fill(db, 1000)
        db.delete(b"k00007")
        last = db.put(b"last", b"x")
    with lsm.open(path) as db:
        assert db.get(b"k00999") == b"v999"
        assert db.get(b"k00007") is None
        assert db.get_entry(b"last").version == last
        assert db.put(b"next", b"y") == last + 1  # sequences continue
        assert len(list(db.scan())) == 1000 - 1 + 2  # one deleted; "last" and "next" added


def test_lock_conflicts(tmp_path):
    path = tmp_path / "db"
    db = lsm.open(path)
    with pytest.raises(LockError, match=str(path)):
        lsm.open(path)
    with pytest.raises(LockError):
        lsm.open(path, read_only=True)
    db.close()
    r1 = lsm.open(path, read_only=True)
    r2 = lsm.open(path, read_only=True)  # readers share
    with pytest.raises(LockError):
        lsm.open(path)
    r1.close()
    r2.close()
    lsm.open(path).close()


def test_read_only(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path) as db:
        db.put(b"a", b"1")
    before = sorted(os.listdir(path))
    with lsm.open(path, read_only=True) as db:
        assert db.get(b"a") == b"1"  # replayed from the WAL, in memory only
        with pytest.raises(ReadOnlyError):
            db.put(b"b", b"2")
        with pytest.raises(ReadOnlyError):
            db.delete(b"a")
    assert sorted(os.listdir(path)) == before


def test_create_if_missing_and_error_if_exists(tmp_path):
    with pytest.raises(lsm.Error, match="does not exist"):
        lsm.open(tmp_path / "nope", create_if_missing=False)
    assert not (tmp_path / "nope").exists()
    with pytest.raises(lsm.Error, match="does not exist"):
        lsm.open(tmp_path / "nope2", read_only=True)
    (tmp_path / "empty").mkdir()
    lsm.open(tmp_path / "empty", error_if_exists=True).close()  # an empty folder is fine
    with pytest.raises(lsm.Error, match="already exists"):
        lsm.open(tmp_path / "empty", error_if_exists=True)


def test_options_validation():
    with pytest.raises(ValueError, match="sync_mode"):
        Options(sync_mode="bogus")
    with pytest.raises(ValueError, match="wal_recovery"):
        Options(wal_recovery="bogus")
    with pytest.raises(ValueError, match="l0_compaction_trigger"):
        Options(l0_compaction_trigger=30)
    with pytest.raises(TypeError, match="memtable_bytes"):
        Options(memtable_bytes="big")
    with pytest.raises(ValueError, match="memtable_bytes"):
        Options(memtable_bytes=-1)
    with pytest.raises(TypeError):
        lsm.open("/tmp/x", no_such_option=1)
    o = Options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.sync_mode = "never"  # frozen


def test_compare_and_swap(db):
    assert db.compare_and_swap(b"k", 5, b"v") is None
    v1 = db.compare_and_swap(b"k", 0, b"v1")
    assert v1 and db.get(b"k") == b"v1"
    assert db.compare_and_swap(b"k", 0, b"again") is None
    v2 = db.compare_and_swap(b"k", v1, b"v2")
    assert v2 == v1 + 1 and db.get(b"k") == b"v2"
    assert db.compare_and_swap(b"k", v1, b"stale") is None
    v3 = db.compare_and_swap(b"k", v2, None)
    assert v3 and db.get(b"k") is None
    assert db.compare_and_swap(b"k", 0, b"back") == v3 + 1


def test_compare_and_swap_reads_tables_without_the_db_mutex(tmp_path):
    """A CAS whose key lives in a table reads it at the leader's turn, but not
    under the DB mutex (installs and every writer's enqueue need it)."""
    from lsm.fs import OsFileSystem
    from lsm.invariants import DebugLock

    reads = []

    class Watching(OsFileSystem):
        db = None

        def open_readable(self, path):
            f = super().open_readable(path)
            if self.db is None or not path.endswith(".sst"):
                return f
            db, inner = self.db, f

            class _F:
                size, path = inner.size, inner.path

                def read_at(self, offset, n):
                    reads.append(db._mu._is_owned())
                    return inner.read_at(offset, n)

                def close(self):
                    inner.close()
            return _F()

    fs = Watching()
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never"), fs=fs)
    if not isinstance(db._mu, DebugLock):
        db.close()
        pytest.skip("needs LSM_INVARIANTS=1 (a mutex that knows its owner)")
    v1 = db.put(b"k", b"v1")
    db.flush()
    db.close()
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never"), fs=fs)  # cold table cache
    fs.db = db
    assert db.compare_and_swap(b"k", v1, b"v2") is not None
    assert reads and not any(reads)
    assert db.get(b"k") == b"v2"
    db.close()


def test_reads_never_see_part_of_a_batch(tmp_path, monkeypatch):
    """A batch becomes visible to get/get_entry all at once, when its sequence
    is published (LevelDB reads at the last published sequence too), never
    op by op while the leader inserts it into the memtable."""
    db = lsm.open(tmp_path / "db", sync_mode="never")
    db.put(b"a", b"old")
    db.put(b"b", b"old")
    inserted_a, gate = threading.Event(), threading.Event()

    class Pausing(dict):
        """The memtable's key -> newest version map, holding the writer right
        after it stored the batch's first op (every insert path stores there)."""

        def __setitem__(self, key, version):
            super().__setitem__(key, version)
            if key == b"a" and version[1] == b"new":
                inserted_a.set()
                gate.wait(10)

    mem = db._sv.mem
    mem._d = Pausing(mem._d)
    mem._dget = mem._d.get

    def writer():
        with db.write_batch() as b:
            b.put(b"a", b"new").put(b"b", b"new")

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert inserted_a.wait(10)
        assert db.get(b"a") == b"old" and db.get(b"b") == b"old"
        assert db.get_entry(b"a").value == b"old"
    finally:
        gate.set()
        t.join()
    assert db.get(b"a") == b"new" and db.get(b"b") == b"new"
    assert db.get_entry(b"a").value == b"new"
    db.close()


def test_compare_and_swap_threads_count_exactly(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=4 << 10)
    successes = [0] * 4

    def worker(i):
        for _ in range(150):
            while True:
                e = db.get_entry(b"counter")
                cur = int(e.value) if e else 0
                if db.compare_and_swap(b"counter", e.version if e else 0, b"%d" % (cur + 1)):
                    successes[i] += 1
                    break

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(db.get(b"counter")) == sum(successes) == 600
    db.close()


def test_ttl_expiry_and_restart(tmp_path, monkeypatch):
    import time as _time
    now = [1_000_000.0]
    monkeypatch.setattr(_time, "time", lambda: now[0])
    path = tmp_path / "db"
    db = lsm.open(path, sync_mode="never")
    db.put(b"old", b"base")
    db.flush()
    db.compact_range()
    db.put(b"old", b"short", ttl=10)
    db.put(b"long", b"v", ttl=1000)
    e = db.get_entry(b"long")
    assert e.expires_at == pytest.approx(now[0] + 1000)
    assert db.get(b"old") == b"short"
    now[0] += 11
    assert db.get(b"old") is None  # expired: and never the older value
    assert [k for k, _ in db.scan()] == [b"long"]
    db.flush()
    db.compact_range()
    assert db.get(b"old") is None
    db.close()
    db = lsm.open(path)
    assert db.get(b"old") is None
    assert db.get(b"long") == b"v"
    now[0] -= 5  # wall clock steps back: an entry seen expired stays expired
    assert db.get(b"old") is None
    now[0] += 2000
    assert db.get(b"long") is None
    db.close()


def test_stats_shape_is_json(db):
    import json
    _fill(db, 500)
    db.flush()
    db.get(b"k00001")
    db.get(b"missing")
    s = db.stats()
    json.dumps(s)
    assert {"levels", "memtable", "wal", "recovery", "compaction", "bloom", "block_cache",
            "disk"} <= set(s)
    assert s["levels"][0]["level"] == 0
    f = next(f for lvl in s["levels"] for f in lvl["files"])
    assert set(f) == {"number", "bytes", "entries", "smallest", "largest"}
    bytes.fromhex(f["smallest"])
    assert s["compaction"]["write_amplification"] > 0


def test_metrics_in_stats_and_switch(tmp_path):
    db = lsm.open(tmp_path / "a", sync_mode="never")
    for i in range(200):
        db.put(b"k%d" % i, b"v")
        db.get(b"k%d" % i)
    s = db.stats()
    assert s["qps"]["get"] > 0 and s["qps"]["put"] > 0
    assert s["latency"]["get"]["p50"] > 0 and s["latency"]["get"]["p99"] >= s["latency"]["get"]["p50"]
    assert db.get.__doc__ == lsm.DB.get.__doc__  # the wrapper keeps the docs
    db.close()
    db = lsm.open(tmp_path / "b", metrics=False)
    db.put(b"k", b"v")
    assert "get" not in vars(db)  # no wrapper at all
    assert db.stats()["qps"] == {}
    db.close()
