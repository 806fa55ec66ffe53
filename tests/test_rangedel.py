"""Range tombstones: fragmenting (against brute force), and delete_range
through the DB — reads, snapshots, batches, TTL, CAS, recovery, flush,
compaction (what it drops, how it cuts tombstones between tables, the
clean-up of the bottom level), the manifest, and bad arguments."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

import lsm
from lsm.manifest import FileMeta, VersionEdit
from lsm.rangedel import Fragments, Visible, clip, end_bound, key_successor

KEY = st.binary(max_size=3).map(lambda b: bytes(x % 5 + 0x61 for x in b))  # a..e, short: many overlaps
TOMBS = st.lists(st.tuples(KEY, KEY, st.integers(1, 30)).map(lambda t: (min(t[0], t[1]), max(t[0], t[1]), t[2])),
                 max_size=12)


def _brute(tombs, key, seq):
    return max((t for a, b, t in tombs if a <= key < b and t <= seq), default=0)


@settings(max_examples=300, deadline=None)
@given(TOMBS, st.lists(KEY, min_size=1, max_size=20), st.integers(0, 35))
def test_fragments_answer_as_the_tombstones_do(tombs, keys, seq):
    f = Fragments.build(tombs)
    for k in keys:
        assert f.covering(k, seq) == _brute(tombs, k, seq)
    # disjoint, ordered, non-empty fragments with ascending sequences
    for i, (a, b, ss) in enumerate(f):
        assert a < b and ss == sorted(ss) and ss
        if i:
            assert f.ends[i - 1] <= a
    # what a table stores re-fragments to the same answers
    g = Fragments.build(f.tombstones())
    for k in keys:
        assert g.covering(k, seq) == f.covering(k, seq)


@settings(max_examples=300, deadline=None)
@given(st.lists(TOMBS, min_size=1, max_size=3), st.lists(st.tuples(KEY, st.integers(0, 35)), max_size=20),
       st.integers(0, 35), KEY, KEY)
def test_visible_view_of_several_sets(sets, versions, seq, lo, hi):
    vis = Visible.at([Fragments.build(t) for t in sets], seq)
    every = [t for ts in sets for t in ts]
    if not any(a < b and t <= seq for a, b, t in every):
        assert vis is None
        return
    assert vis is not None
    for k, s in versions:
        assert vis.hides(k, s) == (s < _brute(every, k, seq))
    keys = sorted({k for k, _ in versions})
    seqs = [dict(versions)[k] for k in keys]
    values = list(range(len(keys)))
    TOMB = object()
    hit = vis.mask(keys, seqs, values, TOMB)
    want = [vis.hides(k, s) for k, s in zip(keys, seqs)]
    assert [v is TOMB for v in values] == want and hit == any(want)
    lo, hi = min(lo, hi), max(lo, hi)
    brute_touch = any(a < b and t <= seq and a <= hi and lo < b for a, b, t in every)
    assert vis.touches(lo, hi) == brute_touch
    # restricted to a key range: the same answers inside it
    part = Visible.at([Fragments.build(t) for t in sets], seq, lo, hi)
    for k, s in versions:
        if lo <= k < hi:
            assert (part is not None and part.hides(k, s)) == vis.hides(k, s)


def test_clip_and_bounds():
    assert clip([(b"a", b"m", 1), (b"x", b"z", 2)], b"c", b"y") == [(b"c", b"m", 1), (b"x", b"y", 2)]
    assert clip([(b"a", b"c", 1)], b"c", None) == []
    m = b"key"
    assert key_successor(m) > m and end_bound(key_successor(m)) == m
    assert end_bound(b"b") == b"b"


def test_manifest_round_trips_range_tombstones():
    e = VersionEdit()
    e.add_file(1, FileMeta(7, 100, 3, b"a", b"q", 1, 9, range_dels=((b"b", b"f", 9), (b"c", b"q\x00", 4))))
    e.add_file(1, FileMeta(8, 100, 3, b"r", b"z", 1, 9))
    got = VersionEdit.decode(e.encode(), "MANIFEST", 0)
    assert [m for _, m in got.added] == [m for _, m in e.added]
    assert got.added[0][1].range_dels == ((b"b", b"f", 9), (b"c", b"q\x00", 4)) and got.added[1][1].range_dels == ()


def test_manifest_refuses_an_empty_or_orphan_range_tombstone():
    from lsm.coding import encode_varint as v, put_length_prefixed
    from lsm.errors import CorruptionError
    from lsm.manifest import TAG_RANGE_DELS
    e = VersionEdit()
    e.add_file(1, FileMeta(7, 100, 3, b"a", b"q", 1, 9))
    base = e.encode()
    body = bytearray(v(TAG_RANGE_DELS) + v(7) + v(1))
    put_length_prefixed(body, b"m")
    put_length_prefixed(body, b"m")
    body += v(3)
    with pytest.raises(CorruptionError, match="empty"):
        VersionEdit.decode(base + bytes(body), "MANIFEST", 40)
    orphan = bytearray(v(TAG_RANGE_DELS) + v(99) + v(0))
    with pytest.raises(CorruptionError, match="does not add"):
        VersionEdit.decode(base + bytes(orphan), "MANIFEST", 40)


# -- through the DB ----------------------------------------------------------------

SMALL = dict(sync_mode="never", memtable_bytes=4096, block_bytes=256, target_file_bytes=4096,
             level_base_bytes=16384, level_multiplier=4)


def _keys(db):
    return list(db.scan(keys_only=True))


def test_delete_range_basics(tmp_path):
    db = lsm.open(tmp_path / "db")
    for k in (b"a", b"b", b"b1", b"b2", b"c"):
        db.put(k, b"v")
    snap = db.snapshot()
    seq = db.delete_range(b"b", b"c")
    assert seq == 6
    assert _keys(db) == [b"a", b"c"]
    assert db.get(b"b1") is None and db.get_entry(b"b") is None and b"b2" not in db
    assert list(db.scan(reverse=True, keys_only=True)) == [b"c", b"a"]
    assert list(db.scan(b"b")) == [] and list(db.scan(start=b"a", stop=b"b5", keys_only=True)) == [b"a"]
    # a snapshot taken before still sees the keys
    assert list(snap.scan(keys_only=True)) == [b"a", b"b", b"b1", b"b2", b"c"] and snap.get(b"b1") == b"v"
    snap.close()
    # keys written after the tombstone are not affected
    db.put(b"b1", b"again")
    assert _keys(db) == [b"a", b"b1", b"c"] and db.get(b"b1") == b"again"
    # the range's end is exclusive and its start inclusive
    db.delete_range(b"a", b"b1")
    assert _keys(db) == [b"b1", b"c"]
    assert db.delete_range(b"x", b"x") == 0  # empty: nothing written
    db.close()


def test_delete_range_bad_arguments(tmp_path):
    db = lsm.open(tmp_path / "db")
    with pytest.raises(ValueError, match="after stop"):
        db.delete_range(b"b", b"a")
    with pytest.raises(TypeError, match="start"):
        db.delete_range("a", b"b")
    with pytest.raises(TypeError, match="stop"):
        db.delete_range(b"a", None)
    with pytest.raises(TypeError, match="sync"):
        db.delete_range(b"a", b"b", sync="yes")
    with pytest.raises(ValueError, match="after stop"):
        lsm.WriteBatch().delete_range(b"z", b"a")
    assert db.delete_range(b"a", b"a") == 0
    assert db.put(b"k", b"v") == 1  # nothing above consumed a sequence number
    db.close()
    with pytest.raises(lsm.ClosedError):
        db.delete_range(b"a", b"b")


def test_delete_range_in_a_batch_is_atomic_with_its_puts(tmp_path):
    db = lsm.open(tmp_path / "db")
    for i in range(10):
        db.put(b"k%d" % i, b"old")
    with db.write_batch() as b:
        b.delete_range(b"k2", b"k8")
        b.put(b"k5", b"new")  # after the tombstone in the batch: survives
        b.put(b"x", b"y")
    assert dict(db.scan()) == {b"k0": b"old", b"k1": b"old", b"k5": b"new", b"k8": b"old", b"k9": b"old",
                               b"x": b"y"}
    b = lsm.WriteBatch().put(b"k0", b"first").delete_range(b"k0", b"k1")  # put then range delete: gone
    db.write(b)
    assert db.get(b"k0") is None
    db.close()


def test_delete_range_and_ttl_and_cas(tmp_path):
    db = lsm.open(tmp_path / "db")
    db.put(b"t", b"v", ttl=1000)
    v = db.put(b"u", b"v")
    db.delete_range(b"t", b"v")
    assert db.get(b"t") is None and db.get_entry(b"u") is None
    assert db.compare_and_swap(b"u", v, b"w") is None  # the version it had is gone
    assert db.compare_and_swap(b"u", 0, b"w") is not None  # absent: version 0
    assert db.get(b"u") == b"w"
    db.close()


@pytest.mark.parametrize("stage", ["memtable", "log", "table", "compacted"])
def test_delete_range_survives_every_stage(tmp_path, stage):
    db = lsm.open(tmp_path / "db", **SMALL)
    rng = random.Random(3)
    model = {}
    for i in range(600):
        k = b"k%04d" % rng.randrange(400)
        db.put(k, b"v%d" % i)
        model[k] = b"v%d" % i
    db.flush()
    db.delete_range(b"k0100", b"k0300")
    model = {k: v for k, v in model.items() if not b"k0100" <= k < b"k0300"}
    if stage == "log":
        db.close()
        db = lsm.open(tmp_path / "db", **SMALL)
    elif stage == "table":
        db.flush()
    elif stage == "compacted":
        db.compact_range()
        db.wait_for_compactions()
    assert dict(db.scan()) == model
    assert list(db.scan(reverse=True)) == sorted(model.items(), reverse=True)
    for i in range(0, 400, 3):
        k = b"k%04d" % i
        for _ in range(2):  # the inlined get and, every 16th call, the sampled one
            assert db.get(k) == model.get(k)
    db._versions.current._check(db._fs, db.path)
    db.close()
    with lsm.open(tmp_path / "db", **SMALL) as db2:
        assert dict(db2.scan()) == model


def test_compaction_drops_covered_entries_then_the_tombstone(tmp_path):
    db = lsm.open(tmp_path / "db", **SMALL)
    for i in range(2000):
        db.put(b"k%05d" % i, b"x" * 50)
    db.compact_range()
    db.wait_for_compactions()
    before = sum(f.entries for _, f in db._versions.current.files())
    db.delete_range(b"k00500", b"k01500")
    db.compact_range()
    db.wait_for_compactions()
    v = db._versions.current
    assert sum(f.entries for _, f in v.files()) == before - 1000
    assert not v.rd_files, "a tombstone at the bottom with no snapshot is dropped"
    assert db.stats()["compaction"]["entries_dropped"] >= 1000
    assert len(_keys(db)) == 1000
    db.close()


def test_a_snapshot_keeps_the_entries_and_the_tombstone(tmp_path):
    db = lsm.open(tmp_path / "db", **SMALL)
    for i in range(1000):
        db.put(b"k%05d" % i, b"x" * 50)
    snap = db.snapshot()
    db.delete_range(b"k00100", b"k00900")
    db.compact_range()
    db.wait_for_compactions()
    assert len(list(snap.scan())) == 1000 and snap.get(b"k00500") == b"x" * 50
    assert len(_keys(db)) == 200
    assert db._versions.current.rd_files, "a snapshot older than the tombstone needs it"
    snap.close()
    # with the snapshot gone, the tables at the bottom holding tombstones are
    # rewritten on their own and the tombstones leave
    db.wait_for_compactions()
    assert not db._versions.current.rd_files
    assert len(_keys(db)) == 200
    assert sum(f.entries for _, f in db._versions.current.files()) == 200
    db.close()


def test_compaction_cuts_tombstones_between_output_tables(tmp_path):
    """A tombstone wider than one output table is cut at the tables' edges:
    each table's bounds cover its part, the level's tables stay disjoint,
    and older data below is still hidden everywhere in the range."""
    db = lsm.open(tmp_path / "db", **dict(SMALL, disable_auto_compactions=True))
    for i in range(3000):
        db.put(b"k%05d" % i, b"x" * 40)
    db.compact_range()  # the data goes to the bottom
    snap = db.snapshot()  # keeps the tombstone through the compactions below
    db.delete_range(b"k00010", b"k02990")
    for i in range(0, 3000, 2):  # newer data over the range: the compaction writes many tables
        db.put(b"k%05d" % i, b"y" * 40)
    db.flush()
    v = db._versions.current
    files = v.levels[0]
    assert any(f.range_dels for f in files)
    c = lsm.compaction.setup_compaction(v, db._opts, 0, list(files), "test", manual=True)
    with db._mu:
        db._run_compaction_locked(c)
    v = db._versions.current
    out = v.levels[1]
    assert len(out) > 2 and sum(1 for f in out if f.range_dels) > 1
    for a, b in zip(out, out[1:]):
        assert a.largest < b.smallest
    for f in out:
        for start, end, _ in f.range_dels:
            assert f.smallest <= start and end_bound(end) <= f.largest
    v._check(db._fs, db.path)
    want = {b"k%05d" % i: b"y" * 40 if i % 2 == 0 else b"x" * 40 for i in range(3000)
            if i % 2 == 0 or not 10 <= i < 2990}
    assert dict(db.scan()) == want
    for i in range(0, 3000, 7):
        assert db.get(b"k%05d" % i) == want.get(b"k%05d" % i)
    snap.close()
    db.close()


def test_many_tombstones_read_correctly(tmp_path):
    db = lsm.open(tmp_path / "db", **SMALL)
    model = {}
    for i in range(3000):
        db.put(b"k%05d" % i, b"v")
        model[b"k%05d" % i] = b"v"
    for i in range(0, 3000, 10):  # 300 tombstones, each over 5 keys
        db.delete_range(b"k%05d" % i, b"k%05d" % (i + 5))
        for j in range(i, i + 5):
            model.pop(b"k%05d" % j, None)
        if i % 500 == 0:
            db.flush()
    assert dict(db.scan()) == model
    assert [k for k in db.scan(start=b"k01000", stop=b"k01100", keys_only=True)] == \
        sorted(k for k in model if b"k01000" <= k < b"k01100")
    for i in range(3000):
        assert db.get(b"k%05d" % i) == model.get(b"k%05d" % i)
    db.close()


def test_tombstone_only_table_and_typed_and_prefixed_views(tmp_path):
    db = lsm.open(tmp_path / "db")
    db.put(b"a1", b"x")
    db.flush()
    db.delete_range(b"a", b"b")
    db.flush()  # an L0 table that holds only the tombstone
    assert any(f.range_dels and not f.entries for f in db._versions.current.levels[0])
    assert db.get(b"a1") is None and _keys(db) == []
    t = db.typed(lsm.serde.Int(), lsm.serde.Str())
    for i in range(10):
        t.put(i, "v")
    t.delete_range(3, 7)
    assert [k for k in t.scan(keys_only=True)] == [0, 1, 2, 7, 8, 9]
    p = db.prefixed(b"ns:")
    for k in (b"a", b"b", b"c"):
        p.put(k, b"v")
    p.delete_range(b"b")  # from b to the end of the namespace
    assert list(p.scan(keys_only=True)) == [b"a"]
    db.close()
    with lsm.open(tmp_path / "db") as db2:
        assert db2.get(b"a1") is None


def test_lsm_dump_shows_range_tombstones(tmp_path, capsys):
    from lsm.cli import main
    d = tmp_path / "db"
    with lsm.open(d) as db:
        db.put(b"a", b"1")
        db.delete_range(b"a", b"m")
        db.flush()
        db.delete_range(b"n", b"q")
    sst = next(d.glob("*.sst"))
    log = max(d.glob("*.log"))
    assert main(["sst", str(sst)]) == 0
    out = capsys.readouterr().out
    assert "a .. m" in out and ["range", "deletions", "1"] in [line.split() for line in out.splitlines()]
    assert main(["wal", str(log)]) == 0
    assert "DELRANGE" in capsys.readouterr().out
    assert main(["manifest", str(d)]) == 0
    assert "range dels" in capsys.readouterr().out
    assert main(["verify", str(d)]) == 0


@pytest.mark.parametrize("stage", ["memtable", "table"])
def test_cursor_and_multi_get_honour_range_tombstones(tmp_path, stage):
    db = lsm.open(tmp_path / "db", **SMALL)
    for i in range(300):
        db.put(b"k%04d" % i, b"v%d" % i)
    db.flush()
    snap = db.snapshot()
    db.delete_range(b"k0100", b"k0200")
    if stage == "table":
        db.flush()
    live = [b"k%04d" % i for i in range(300) if not 100 <= i < 200]
    with db.cursor() as c:
        assert c.seek(b"k0095")
        got = [c.key]
        while len(got) < 10 and c.next():
            got.append(c.key)
        assert got == live[95:105]
        assert c.seek_for_prev(b"k0150") and c.key == b"k0099"
        assert c.seek(b"k0150") and c.key == b"k0200"
        assert c.prev() and c.key == b"k0099"
    keys = [b"k%04d" % i for i in range(0, 300, 7)] + [b"k0150"]
    assert db.multi_get(keys) == [db.get(k) for k in keys]
    assert db.multi_get([b"k0150", b"k0099"]) == [None, b"v99"]
    with snap.cursor() as c:  # a snapshot from before still sees them
        assert c.seek(b"k0150") and c.key == b"k0150"
    snap.close()
    db.close()
