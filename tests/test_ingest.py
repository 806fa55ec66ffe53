"""External table files (lsm.TableFileWriter) and DB.ingest: the writer's
rules, a differential test against the same data loaded by put, placement,
recovery after an ingest, and bad input (each a clear error, nothing changed).
Crash points are in tests/test_ingest_crash.py."""

from __future__ import annotations

import os
import random
import struct

import pytest

import lsm
from lsm.ingest import pick_level
from lsm.manifest import FileMeta
from lsm.version import Version

OPTS = dict(memtable_bytes=16 << 10, block_bytes=512, target_file_bytes=8 << 10, level_base_bytes=32 << 10,
            l0_compaction_trigger=4, compaction_process=False)


def _write(path, entries, **kw) -> list[lsm.TableFileInfo]:
    """entries: sorted (key, value-or-None) pairs; None is a delete."""
    with lsm.TableFileWriter(path, **kw) as w:
        for k, v in entries:
            if v is None:
                w.delete(k)
            else:
                w.put(k, v)
    return w.finish()


def _levels(db) -> dict[int, int]:
    return {lv["level"]: len(lv["files"]) for lv in db.stats()["levels"] if lv["files"]}


def _files(path) -> set[str]:
    return set(os.listdir(path))


# -- the writer ---------------------------------------------------------------------


def test_writer_rejects_unsorted_and_duplicate_keys_naming_both_and_the_position(tmp_path):
    w = lsm.TableFileWriter(str(tmp_path / "a.sst"))
    w.put(b"b", b"1")
    with pytest.raises(ValueError, match=r"entry 1 has key 61 \(b'a'\), which is below the previous key 62"):
        w.put(b"a", b"2")
    with pytest.raises(ValueError, match=r"entry 2 has key 62 \(b'b'\), which repeats the previous key 62"):
        w.delete(b"b")
    w.put(b"c", b"3")  # still usable: the refused entries were not written
    info = w.finish()
    assert [(i.smallest, i.largest, i.entries) for i in info] == [(b"b", b"c", 2)]
    assert _files(tmp_path) == {"a.sst"}


def test_writer_leaves_no_final_name_until_finish_and_removes_everything_on_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError):
        with lsm.TableFileWriter(str(out), target_file_bytes=2048, prefix="p") as w:
            for i in range(5000):
                w.put(b"%05d" % i, b"v" * 50)
            names = _files(out)
            assert names and all(n.startswith(".") and n.endswith(".tmp") for n in names), names
            raise RuntimeError("the job failed")
    assert _files(out) == set()


def test_writer_splits_at_target_and_reports_files(tmp_path):
    rows = [(b"key%06d" % i, b"x" * 100) for i in range(3000)]
    infos = _write(str(tmp_path) + os.sep, rows, target_file_bytes=64 << 10, prefix="part-3")
    assert len(infos) > 2
    assert [os.path.basename(i.path) for i in infos] == [f"part-3-{n:05d}.sst" for n in range(len(infos))]
    assert sum(i.entries for i in infos) == 3000
    assert all(a.largest < b.smallest for a, b in zip(infos, infos[1:]))
    assert all(i.bytes == os.path.getsize(i.path) for i in infos)
    assert lsm.TableFileInfo.from_dict(infos[0].as_dict()) == infos[0]
    assert _write(str(tmp_path / "empty.sst"), []) == []
    assert not os.path.exists(tmp_path / "empty.sst")


# -- differential: put vs writer + ingest -----------------------------------------------


def _key(i: int) -> bytes:
    return b"k%05d" % i


@pytest.mark.parametrize("seed", range(6))
def test_ingest_matches_the_same_writes_done_by_put(tmp_path, seed):
    """Older puts (some flushed to tables, some in the memtable), then an
    ingest of several files with puts and deletes, then later puts and
    deletes: every get and the whole scan (forward and reverse) match a
    database that did the same by put, and a snapshot from before the
    ingest does not see it."""
    rng = random.Random(seed)
    n = 1500
    a = lsm.open(str(tmp_path / "put"), **OPTS)
    b = lsm.open(str(tmp_path / "ing"), **OPTS)
    model: dict[bytes, bytes] = {}

    def both(fn):
        fn(a)
        fn(b)

    for phase in range(2):  # older data, in tables and in the memtable
        for _ in range(rng.randrange(200, 800)):
            k, v = _key(rng.randrange(n)), b"old%d-%d" % (phase, rng.randrange(1000))
            both(lambda db, k=k, v=v: db.put(k, v))
            model[k] = v
        if phase == 0 and rng.random() < 0.7:
            both(lambda db: db.flush())
    snap_model = dict(model)
    snap = b.snapshot()
    # the ingest: 1-4 files over disjoint key ranges, puts and deletes
    keys = sorted(rng.sample(range(n), rng.randrange(100, 900)))
    cuts = sorted(rng.sample(range(1, len(keys)), rng.randrange(0, 4)))
    paths = []
    for part, (lo, hi) in enumerate(zip([0] + cuts, cuts + [len(keys)])):
        entries = []
        for i in keys[lo:hi]:
            k = _key(i)
            if rng.random() < 0.15:
                entries.append((k, None))
                a.delete(k)
                model.pop(k, None)
            else:
                v = b"ing-%d" % rng.randrange(1000)
                entries.append((k, v))
                a.put(k, v)
                model[k] = v
        paths += [f.path for f in _write(str(tmp_path / f"ext{part}.sst"), entries, block_bytes=256)]
    rng.shuffle(paths)
    b.ingest(paths)
    for _ in range(rng.randrange(0, 300)):  # later writes win over the ingest
        k = _key(rng.randrange(n))
        if rng.random() < 0.2:
            both(lambda db, k=k: db.delete(k))
            model.pop(k, None)
        else:
            v = b"new-%d" % rng.randrange(1000)
            both(lambda db, k=k, v=v: db.put(k, v))
            model[k] = v
    for db in (a, b):
        assert dict(db.scan()) == model
        assert list(db.scan(reverse=True)) == sorted(model.items(), reverse=True)
        for i in range(0, n, 7):
            assert db.get(_key(i)) == model.get(_key(i))
        lo, hi = _key(n // 3), _key(n // 3 + 40)
        assert list(db.scan(start=lo, stop=hi)) == [(k, v) for k, v in sorted(model.items()) if lo <= k < hi]
    assert dict(snap.scan()) == snap_model and snap.get(_key(keys[0])) == snap_model.get(_key(keys[0]))
    snap.close()
    b.close()
    b = lsm.open(str(tmp_path / "ing"), **OPTS)  # replay over the ingest's INGEST record
    assert dict(b.scan()) == model
    b.compact_range()  # rewritten with the real sequence: ordinary tables afterwards
    assert dict(b.scan()) == model
    assert all(f.global_seq == 0 for _, f in b._sv.version.files())
    a.close()
    b.close()


def test_ingested_keys_carry_the_ingest_sequence(tmp_path):
    with lsm.open(str(tmp_path / "db")) as db:
        v1 = db.put(b"a", b"1")
        db.ingest([f.path for f in _write(str(tmp_path / "x.sst"), [(b"a", b"2"), (b"b", b"3")])])
        e = db.get_entry(b"b")
        assert e.value == b"3" and e.version == v1 + 1 == db.get_entry(b"a").version
        assert db.put(b"c", b"4") == v1 + 2
        assert db.compare_and_swap(b"b", v1 + 1, b"5") == v1 + 3


def test_multi_get_and_range_deletes_over_ingested_tables(tmp_path):
    """Ingested tables are read at their global sequence by every read path:
    multi_get's sorted probes, and range tombstones written before or after."""
    with lsm.open(str(tmp_path / "db")) as db:
        db.put(b"k0", b"old")
        early = db.delete_range(b"k5", b"k7")  # before the ingest: does not hide what it brings
        db.ingest([f.path for f in _write(str(tmp_path / "x.sst"), [(_key(i), b"v%d" % i) for i in range(20)])])
        keys = [_key(i) for i in range(0, 20, 3)] + [b"k0", b"nope"]
        assert db.multi_get(keys) == [db.get(k) for k in keys] == [b"v%d" % i for i in range(0, 20, 3)] + \
            [b"old", None]
        assert early < db.get_entry(_key(5)).version
        db.delete_range(_key(4), _key(8))  # after: hides them, in every path
        keys = [_key(i) for i in range(20)]
        want = [None if 4 <= i < 8 else b"v%d" % i for i in range(20)]
        assert db.multi_get(keys) == [db.get(k) for k in keys] == want
        assert [k for k, _ in db.scan(start=_key(0), stop=_key(20))] == [k for k, w in zip(keys, want) if w]


# -- placement ------------------------------------------------------------------------


def test_placement_bottom_when_new_l0_when_l0_overlaps_and_flush_only_on_overlap(tmp_path):
    with lsm.open(str(tmp_path / "db"), disable_auto_compactions=True) as db:
        db.ingest([f.path for f in _write(str(tmp_path / "1.sst"), [(b"m1", b"x"), (b"m5", b"x")])])
        assert _levels(db) == {6: 1}
        db.put(b"a", b"memtable")  # not in the next file's range: no flush
        db.ingest([f.path for f in _write(str(tmp_path / "2.sst"), [(b"p", b"x")])])
        assert _levels(db) == {6: 2} and db.stats()["memtable"]["entries"] == 1
        db.put(b"m3", b"memtable")  # in the range: flushed first, then the file goes above it
        db.ingest([f.path for f in _write(str(tmp_path / "3.sst"), [(b"m2", b"y"), (b"m4", b"y")])])
        assert db.stats()["memtable"]["entries"] == 0
        assert _levels(db) == {0: 2, 6: 2}
        assert [db.get(k) for k in (b"a", b"m1", b"m2", b"m3", b"p")] == [b"memtable", b"x", b"y", b"memtable", b"x"]
        l0 = db._sv.version.levels[0]
        assert l0[0].global_seq and l0[0].max_seq > l0[1].max_seq  # the ingested file is the newest


def test_pick_level_rules():
    def meta(n, lo, hi):
        return FileMeta(n, 10, 1, lo, hi, 1, 1)

    v = Version([[], [], [meta(1, b"c", b"f")], [], [meta(2, b"a", b"z")], [], []])
    assert pick_level(v, b"d", b"e", None) == 1  # above L2's overlapping file
    assert pick_level(v, b"g", b"h", None) == 3  # above L4's
    assert pick_level(v, b"g", b"h", (3, b"g", b"k")) == 2  # not where a merge is writing that range
    assert pick_level(v, b"g", b"h", (3, b"m", b"p")) == 3
    assert pick_level(Version([[] for _ in range(7)]), b"a", b"b", None) == 6
    v0 = Version([[meta(3, b"a", b"b")], [], [], [], [], [], []])
    assert pick_level(v0, b"b", b"c", None) == 0


# -- bad input ------------------------------------------------------------------------


@pytest.fixture
def loaded(tmp_path):
    db = lsm.open(str(tmp_path / "db"), **OPTS)
    for i in range(300):
        db.put(_key(i), b"v")
    db.flush()
    before = (dict(db.scan()), _files(db.path), db.stats()["sequence"])
    yield db, before
    db.close()


def _unchanged(db, before):
    assert (dict(db.scan()), _files(db.path), db.stats()["sequence"]) == before


def test_bad_overlapping_files(tmp_path, loaded):
    db, before = loaded
    p1 = _write(str(tmp_path / "1.sst"), [(b"a", b"1"), (b"m", b"1")])[0].path
    p2 = _write(str(tmp_path / "2.sst"), [(b"k", b"2"), (b"z", b"2")])[0].path
    with pytest.raises(ValueError, match="external files overlap: .*1.sst holds 61..6d and .*2.sst holds 6b..7a"):
        db.ingest([p2, p1])
    with pytest.raises(ValueError, match="listed twice"):
        db.ingest([p1, p1])
    _unchanged(db, before)


def test_bad_corrupt_file_names_file_and_offset(tmp_path, loaded):
    db, before = loaded
    info = _write(str(tmp_path / "c.sst"), [(_key(i), b"value") for i in range(400)], block_bytes=512)[0]
    data = bytearray(open(info.path, "rb").read())
    data[700] ^= 0x40  # inside a data block
    open(info.path, "wb").write(bytes(data))
    with pytest.raises(lsm.CorruptionError) as ei:
        db.ingest([info.path])
    assert ei.value.path == info.path and ei.value.offset <= 700
    _unchanged(db, before)


def test_bad_future_format_version(tmp_path, loaded):
    db, before = loaded
    info = _write(str(tmp_path / "f.sst"), [(b"a", b"1")])[0]
    data = bytearray(open(info.path, "rb").read())
    struct.pack_into("<I", data, len(data) - 16, 9)  # the footer's version field
    open(info.path, "wb").write(bytes(data))
    with pytest.raises(lsm.CorruptionError, match="unsupported table format version 9") as ei:
        db.ingest([info.path])
    assert ei.value.path == info.path
    _unchanged(db, before)


def test_bad_missing_path_and_not_external(tmp_path, loaded):
    db, before = loaded
    missing = str(tmp_path / "nope.sst")
    with pytest.raises(lsm.DiskError, match="nope.sst") as ei:
        db.ingest([missing])
    assert ei.value.filename == missing or missing in str(ei.value)
    own = sorted(n for n in os.listdir(db.path) if n.endswith(".sst"))[0]
    copy = tmp_path / "own.sst"
    copy.write_bytes(open(os.path.join(db.path, own), "rb").read())
    with pytest.raises(lsm.Error, match="not an external table"):
        db.ingest([str(copy)])
    with pytest.raises(ValueError, match="at least one"):
        db.ingest([])
    _unchanged(db, before)


def test_bad_read_only_and_closed(tmp_path):
    path = str(tmp_path / "db")
    with lsm.open(path) as db:
        db.put(b"a", b"1")
    p = _write(str(tmp_path / "x.sst"), [(b"b", b"1")])[0].path
    with lsm.open(path, read_only=True) as ro:
        with pytest.raises(lsm.ReadOnlyError):
            ro.ingest([p])
    db = lsm.open(path)
    db.close()
    with pytest.raises(lsm.ClosedError):
        db.ingest([p])
    with lsm.open(path) as db:
        assert db.get(b"b") is None and os.path.exists(p)


def test_move_links_and_removes_the_source(tmp_path):
    p = _write(str(tmp_path / "x.sst"), [(b"b", b"1")])[0].path
    q = _write(str(tmp_path / "y.sst"), [(b"c", b"1")])[0].path
    ino, size, qsize = os.stat(p).st_ino, os.path.getsize(p), os.path.getsize(q)
    with lsm.open(str(tmp_path / "db")) as db:
        db.ingest([p], move=True)
        assert not os.path.exists(p)
        assert db.stats()["ingest"] == {"files": 1, "bytes": size, "bytes_copied": 0}
        db.ingest([q])  # a copy: the source stays
        assert os.path.exists(q)
        assert db.stats()["ingest"] == {"files": 2, "bytes": size + qsize, "bytes_copied": qsize}
        f = db._sv.version.levels[6][0]
        assert os.stat(os.path.join(db.path, f"{f.number:06d}.sst")).st_ino == ino
        assert db.get(b"b") == b"1"


def test_reopen_after_ingest_with_synced_writes_around_it(tmp_path):
    """The ingest's sequence has no write in the log: its INGEST record keeps
    the log's sequences consecutive, so a replay does not see a hole."""
    path = str(tmp_path / "db")
    db = lsm.open(path, sync_mode="always")
    db.put(b"a", b"1")
    db.ingest([_write(str(tmp_path / "x.sst"), [(b"b", b"2")])[0].path])
    db.put(b"c", b"3")
    db.ingest([_write(str(tmp_path / "y.sst"), [(b"d", b"4")])[0].path])
    db.put(b"e", b"5")
    db._log.sync()
    db2_state = dict(db.scan())
    # no close: as after a crash, the log is replayed
    db._lock.release()
    db._stop = True
    re = lsm.DB(path, lsm.Options(wal_recovery="absolute"))
    assert dict(re.scan()) == db2_state == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4", b"e": b"5"}
    assert re.stats()["recovery"]["problems"] == []
    re.close()


def test_lsm_dump_shows_ingested_tables_and_verifies_them(tmp_path, capsys):
    from lsm import cli
    path = str(tmp_path / "db")
    info = _write(str(tmp_path / "x.sst"), [(b"a", b"1"), (b"b", None)])[0]
    with lsm.open(path) as db:
        db.put(b"z", b"2")
        db.ingest([info.path])
        seq = db.get_entry(b"a").version
    capsys.readouterr()
    assert cli.main(["manifest", path]) == 0
    out = capsys.readouterr().out
    assert f"gseq={seq}" in out and "L6" in out
    assert cli.main(["verify", path]) == 0
    out = capsys.readouterr().out
    assert f"ingested at sequence {seq}" in out
    assert cli.main(["sst", info.path]) == 0
    out = capsys.readouterr().out
    assert "external" in out and "yes: written by lsm.TableFileWriter" in out


def test_repair_keeps_global_sequences_and_sets_aside_what_it_cannot_place(tmp_path):
    from lsm.repair import repair
    path = str(tmp_path / "db")
    with lsm.open(path, **OPTS) as db:
        for i in range(50):
            db.put(_key(i), b"old")
        db.flush()
        db.ingest([f.path for f in _write(str(tmp_path / "x.sst"), [(_key(i), b"ing") for i in range(0, 50, 2)])])
        db.put(_key(4), b"new")
        model = dict(db.scan())
    os.remove(os.path.join(path, "CURRENT"))  # the manifest is still there to tell the global sequence
    repair(path)
    with lsm.open(path, **OPTS) as db:
        assert dict(db.scan()) == model
    for name in os.listdir(path):  # now without any manifest: the ingested table cannot be placed
        if name.startswith(("MANIFEST", "CURRENT")):
            os.remove(os.path.join(path, name))
    rep = repair(path)
    assert any("ingested external table whose global sequence is lost" in p for p in rep.problems)
    with lsm.open(path, **OPTS) as db:  # never an ingested value under an older one: it is set aside
        assert all(v != b"ing" for v in dict(db.scan()).values())


@pytest.mark.parametrize("op", ["write", "sync"])
def test_writer_io_failure_raises_and_leaves_nothing(tmp_path, op):
    """A failed write or fsync raises from the put (or finish) that met it,
    and every file the writer wrote is removed."""
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from faultfs import FaultFS
    fs = FaultFS()
    fs.fail(op, path_contains=".tmp", nth=2)
    w = lsm.TableFileWriter(str(tmp_path) + os.sep, target_file_bytes=16 << 10, fs=fs)
    with pytest.raises(lsm.DiskError):
        for i in range(20000):
            w.put(b"k%06d" % i, b"v" * 40)
        w.finish()
    assert os.listdir(tmp_path) == []
