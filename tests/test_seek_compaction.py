"""Seek compaction (LevelDB's): a table that point reads look in first and
then pass by is pushed down once it has used up its allowed seeks, so those
reads find one table fewer in their way."""

from __future__ import annotations

import lsm
from lsm.compaction import pick_compaction, pick_seek, seek_level
from lsm.manifest import SEEK_BYTES, SEEK_MIN, FileMeta
from lsm.version import Version

OPTIONS = dict(sync_mode="never", memtable_bytes=64 << 10, compaction_process=False)


def _meta(number: int, lo: bytes, hi: bytes, size: int = 1000, seq: int = 1) -> FileMeta:
    return FileMeta(number, size, 10, lo, hi, seq, seq)


def test_allowed_seeks_follow_the_table_size() -> None:
    assert _meta(1, b"a", b"b", size=1000).allowed_seeks == SEEK_MIN
    assert _meta(2, b"a", b"b", size=SEEK_BYTES * 1000).allowed_seeks == 1000


def test_pick_seek_pushes_the_file_down_with_its_l0_cluster() -> None:
    l0_new, l0_old = _meta(3, b"c", b"f", seq=9), _meta(2, b"e", b"h", seq=5)
    l1 = _meta(1, b"a", b"z")
    v = Version([[l0_new, l0_old], [l1], [], [], [], [], []])
    assert pick_seek(v, lsm.Options()) is None and seek_level(v) is None
    v.seek_file = l0_new
    c = pick_seek(v, lsm.Options())
    assert c is not None and (c.level, c.output_level) == (0, 1)
    assert {f.number for f in c.inputs[0]} == {2, 3} and [f.number for f in c.inputs[1]] == [1]
    # only when no level needs compacting by size, and never intra-L0
    c2 = pick_compaction(v, lsm.Options(), {})
    assert c2 is not None and c2.reason.endswith(" seeks") and c2.output_level == 1
    # a file no longer in the version is not picked
    v2 = Version([[l0_old], [l1], [], [], [], [], []])
    v2.seek_file = l0_new
    assert seek_level(v2) is None and pick_seek(v2, lsm.Options()) is None


def _l0_over_a_deeper_level(db) -> None:
    """Even keys 0..2998 in a deeper level, then one L0 table over most of
    their range (k000100..k002900, two newer values)."""
    for i in range(0, 3000, 2):
        db.put(b"k%06d" % i, b"v" * 50)
    db.compact_range(None, None)
    db.put(b"k000100", b"newer")
    db.put(b"k002900", b"newer")
    db.flush()
    db.wait_for_compactions()


def test_misses_push_an_l0_table_down(tmp_path) -> None:
    db = lsm.open(tmp_path, **OPTIONS)
    try:
        _l0_over_a_deeper_level(db)
        levels = [len(lv) for lv in db._sv.version.levels]
        assert levels[0] == 1 and sum(levels[1:]) >= 1, levels
        l0 = db._sv.version.levels[0][0]
        allowed = l0.allowed_seeks
        # misses in the L0 table's range look in it first, then below
        for i in range(allowed + 10):
            assert db.get(b"k%06d" % (2 * (50 + i % 1350) + 1)) is None
        assert l0.allowed_seeks <= 0
        db.wait_for_compactions()
        levels = [len(lv) for lv in db._sv.version.levels]
        assert levels[0] == 0, levels
        assert db.stats()["compaction"]["seek"] == 1
        assert db.get(b"k000100") == b"newer" and db.get(b"k002900") == b"newer"
        assert db.get(b"k000102") == b"v" * 50
        assert sum(1 for _ in db.scan()) == 1500
    finally:
        db.close()


def test_found_in_the_first_table_charges_nothing(tmp_path) -> None:
    db = lsm.open(tmp_path, **OPTIONS)
    try:
        _l0_over_a_deeper_level(db)
        l0 = db._sv.version.levels[0][0]
        before = l0.allowed_seeks
        for _ in range(300):
            assert db.get(b"k000100") == b"newer"
        assert l0.allowed_seeks == before
        assert db.multi_get([b"k000100", b"k000102"]) == [b"newer", b"v" * 50]
    finally:
        db.close()
