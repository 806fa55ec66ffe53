"""Unit tests of lsm.version (LevelDB's ``db/version_set_test.cc``): which
files a point read consults (L0 overlapping newest first, one bisected
candidate per deeper level), overlap selection for a key range (and L0's
transitive expansion, lsm.compaction.expand_l0), the invariant checker,
apply_edit, and the VersionSet: edits applied and logged, recovered from
the manifest, the manifest rolled, a failed write, live files; range
tombstone files and ingested (global sequence) files.

FileMeta objects are built directly; VersionSet tests touch empty table
files because recovery (and, with invariants on, every install) checks
that each listed table exists."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings, strategies as st

from lsm import version as version_mod
from lsm.compaction import expand_l0, setup_compaction
from lsm.errors import CorruptionError, Error
from lsm.filenames import make_table_name
from lsm.fs import OsFileSystem
from lsm.invariants import InvariantError
from lsm.manifest import (
    FileMeta,
    ManifestWriter,
    VersionEdit,
    install_current,
    read_current,
)
from lsm.options import Options
from lsm.rangedel import Fragments
from lsm.version import NUM_LEVELS, Version, VersionSet, apply_edit

FS = OsFileSystem()


def fm(number: int, smallest: bytes, largest: bytes, min_seq: int = 1, max_seq: int | None = None,
       size: int = 100, **kw) -> FileMeta:
    return FileMeta(number, size, 10, smallest, largest, min_seq, number if max_seq is None else max_seq, **kw)


def version_of(*levels: list[FileMeta]) -> Version:
    """A version whose levels are ``levels`` (then empty), placed by apply_edit
    so each level is in the order the engine keeps it."""
    edit = VersionEdit()
    for level, files in enumerate(levels):
        for f in files:
            edit.add_file(level, f)
    v = apply_edit(Version([[] for _ in range(NUM_LEVELS)]), edit)
    v._check()
    return v


def nums(files) -> list[int]:
    return [f.number for f in files]


# --- candidates: what a point read consults --------------------------------------------------------

# L0: three overlapping files and one far away; max_seq decides newest first.
L0 = [fm(1, b"a", b"c", 1, 10), fm(2, b"b", b"e", 11, 20), fm(3, b"c", b"c", 21, 30), fm(4, b"x", b"z", 31, 40)]
# L1: disjoint files with gaps; L2 empty; L3 one file over everything.
L1 = [fm(10, b"c", b"f"), fm(11, b"h", b"j"), fm(12, b"p", b"r")]
L3 = [fm(30, b"a", b"zz")]


@pytest.mark.parametrize("key, want", [
    (b"", []),                       # before every file
    (b"a", [1]),                     # L0 lower boundary
    (b"b", [2, 1]),                  # two L0 files, newest first
    (b"c", [3, 2, 1]),               # all three: a one-key file is newest
    (b"c\x00", [2]),
    (b"e", [2]),                     # upper boundary is inclusive
    (b"e\x00", []),
    (b"y", [4]),
    (b"zz", []),
])
def test_candidates_at_l0_overlapping_newest_first(key: bytes, want: list[int]) -> None:
    v = version_of(L0)
    assert nums(v.levels[0]) == [4, 3, 2, 1]
    assert nums(v.candidates(key)) == want


@pytest.mark.parametrize("key, want", [
    (b"", []),            # before the first file
    (b"b", []),
    (b"c", [10]),         # on a smallest boundary
    (b"d", [10]),         # inside
    (b"f", [10]),         # on a largest boundary
    (b"f\x00", []),       # just past it: between files
    (b"g", []),           # between files
    (b"h", [11]),
    (b"j", [11]),
    (b"k", []),
    (b"p", [12]),
    (b"r", [12]),         # the last file's last key
    (b"r\x00", []),       # after the last file
    (b"zzz", []),
])
def test_candidates_bisect_a_deeper_level(key: bytes, want: list[int]) -> None:
    v = version_of([], L1)
    assert v.deep_levels == [1]
    assert nums(v.candidates(key)) == want


def test_candidates_of_an_empty_version() -> None:
    v = version_of()
    assert v.deep_levels == [] and v.deep == []
    for key in (b"", b"a", b"\xff" * 10):
        assert v.candidates(key) == []


@pytest.mark.parametrize("key, want", [
    (b"b", [2, 1, 30]),       # L0 newest first, then L1 (a gap: none), L3
    (b"c", [3, 2, 1, 10, 30]),
    (b"i", [11, 30]),
    (b"y", [4, 30]),
    (b"zz", [30]),
    (b"zz\x00", []),
])
def test_candidates_in_read_order_across_levels_skip_empty_ones(key: bytes, want: list[int]) -> None:
    v = version_of(L0, L1, [], L3)
    assert v.deep_levels == [1, 3]  # the empty L2 is not visited
    assert [files for _, files in v.deep] == [v.levels[1], v.levels[3]]
    assert nums(v.candidates(key)) == want


def test_candidates_many_files_agree_with_a_linear_scan() -> None:
    files = [fm(100 + i, b"k%04d" % (10 * i), b"k%04d" % (10 * i + 4)) for i in range(50)]
    v = version_of([], [], files)
    for i in range(520):
        key = b"k%04d" % i
        want = [f.number for f in files if f.smallest <= key <= f.largest]
        assert nums(v.candidates(key)) == want, key
        assert len(want) == (1 if i % 10 <= 4 and i < 500 else 0)


# --- overlapping: files meeting a key range -----------------------------------------------------------

@pytest.mark.parametrize("lo, hi, want", [
    (None, None, [10, 11, 12]),
    (b"a", b"b", []),             # before the first
    (b"a", b"c", [10]),           # touches a smallest boundary
    (b"f", b"h", [10, 11]),       # touches both boundaries
    (b"f\x00", b"g", []),         # inside a gap
    (b"g", b"q", [11, 12]),
    (b"r", None, [12]),           # from the last key on
    (b"r\x00", None, []),
    (None, b"c", [10]),
    (None, b"b", []),
    (b"d", b"d", [10]),           # a single key
])
def test_overlapping_of_a_sorted_level(lo, hi, want) -> None:
    v = version_of([], L1)
    assert nums(v.overlapping(1, lo, hi)) == want
    assert v.overlapping(2, lo, hi) == []  # an empty level


@pytest.mark.parametrize("lo, hi, want", [
    (b"a", b"a", [1]),
    (b"d", b"d", [2]),
    (b"c", b"c", [3, 2, 1]),
    (b"f", b"w", []),
    (b"e", b"x", [4, 2]),
    (None, None, [4, 3, 2, 1]),
])
def test_overlapping_at_l0_keeps_newest_first(lo, hi, want) -> None:
    v = version_of(L0)
    assert nums(v.overlapping(0, lo, hi)) == want


def test_expand_l0_grows_the_range_transitively() -> None:
    # a chain: 1 meets 2, 2 meets 3, 3 meets 4; 5 is apart
    chain = [fm(1, b"a", b"c", 1, 1), fm(2, b"c", b"f", 2, 2), fm(3, b"e", b"h", 3, 3), fm(4, b"h", b"k", 4, 4),
             fm(5, b"m", b"p", 5, 5)]
    v = version_of(chain)
    by = {f.number: f for f in v.levels[0]}
    assert sorted(nums(expand_l0(v, [by[1]]))) == [1, 2, 3, 4]  # 1..c pulls 2, whose ..f pulls 3, ...
    assert sorted(nums(expand_l0(v, [by[4]]))) == [1, 2, 3, 4]
    assert nums(expand_l0(v, [by[5]])) == [5]
    # and a compaction of L0 takes the expanded inputs and the L1 files under their whole range
    v2 = version_of(chain, [fm(20, b"a", b"b"), fm(21, b"j", b"l"), fm(22, b"n", b"o")])
    c = setup_compaction(v2, Options(), 0, [f for f in v2.levels[0] if f.number == 3], "test")
    assert sorted(nums(c.inputs[0])) == [1, 2, 3, 4]
    assert nums(c.inputs[1]) == [20, 21]


def test_setup_compaction_of_a_deeper_level_takes_parents_and_grandparents() -> None:
    v = version_of([], [fm(10, b"d", b"g")], [fm(20, b"a", b"c"), fm(21, b"e", b"e"), fm(22, b"g", b"k")],
                   [fm(30, b"a", b"b"), fm(31, b"j", b"z")])
    c = setup_compaction(v, Options(), 1, [v.levels[1][0]], "test")
    assert (c.level, c.output_level) == (1, 2)
    assert nums(c.inputs[0]) == [10] and nums(c.inputs[1]) == [21, 22]
    assert nums(c.grandparents) == [31]  # L3 under [d, k]: the parents widened it to k


# --- the invariant checker ---------------------------------------------------------------------------

@pytest.mark.parametrize("levels, message", [
    ([[fm(1, b"a", b"b")], [fm(1, b"c", b"d")]], "appears twice"),
    ([[fm(1, b"b", b"a")]], "smallest > largest"),
    ([[fm(1, b"a", b"b", 1, 5), fm(2, b"a", b"b", 6, 9)]], "L0 not newest first"),
    ([[], [fm(1, b"a", b"c"), fm(2, b"c", b"d")]], "L1 files overlap"),   # sharing a boundary key
    ([[], [], [fm(1, b"d", b"e"), fm(2, b"a", b"b")]], "L2 files overlap or are unsorted"),
])
def test_check_refuses_a_broken_version(levels, message) -> None:
    v = Version(levels + [[] for _ in range(NUM_LEVELS - len(levels))])
    with pytest.raises(InvariantError, match=message):
        v._check()


def test_check_accepts_what_apply_edit_builds_and_finds_missing_files(tmp_path) -> None:
    v = version_of(L0, L1, [], L3)
    v._check()
    path = str(tmp_path)
    for _, f in v.files():
        if f.number != 11:
            open(make_table_name(path, f.number), "wb").close()
    with pytest.raises(InvariantError, match="file 11 missing"):
        v._check(FS, path)
    open(make_table_name(path, 11), "wb").close()
    v._check(FS, path)


# --- apply_edit -------------------------------------------------------------------------------------

def test_apply_edit_adds_removes_and_leaves_the_base_alone() -> None:
    base = version_of(L0, L1)
    e = VersionEdit()
    e.delete_file(0, 2)
    e.delete_file(1, 11)
    e.add_file(1, fm(13, b"g", b"g"))
    e.add_file(0, fm(5, b"a", b"z", 41, 50))
    e.add_file(2, fm(20, b"a", b"b"))
    v = apply_edit(base, e)
    v._check()
    assert [nums(lv) for lv in v.levels[:3]] == [[5, 4, 3, 1], [10, 13, 12], [20]]
    assert [nums(lv) for lv in base.levels[:3]] == [[4, 3, 2, 1], [10, 11, 12], []]  # immutable
    assert v.largest(1) == [b"f", b"g", b"r"] and v.smallest[1] == [b"c", b"g", b"p"]
    assert v.numbers() == {1, 3, 4, 5, 10, 12, 13, 20}
    assert next(iter(v.files())) == (0, v.levels[0][0])
    assert v.level_bytes(1) == 300 and v.level_bytes(3) == 0


def test_apply_edit_moves_a_file_between_levels_in_one_edit() -> None:
    base = version_of([], [fm(10, b"a", b"b")])
    e = VersionEdit()
    e.delete_file(1, 10)
    e.add_file(2, base.levels[1][0])  # a trivial move: delete first, then add
    v = apply_edit(base, e)
    v._check()
    assert v.levels[1] == [] and nums(v.levels[2]) == [10] and v.deep_levels == [2]


def test_apply_edit_orders_l0_by_max_seq_then_number() -> None:
    e = VersionEdit()
    for f in (fm(7, b"a", b"b", 1, 5), fm(3, b"a", b"b", 1, 9), fm(8, b"a", b"b", 1, 5), fm(1, b"a", b"b", 1, 1)):
        e.add_file(0, f)
    v = apply_edit(version_of(), e)
    assert nums(v.levels[0]) == [3, 8, 7, 1]


@pytest.mark.parametrize("level, number, message", [
    (0, 99, "deletes file 99 which is not in L0"),
    (1, 1, "deletes file 1 which is not in L1"),  # file 1 is in L0, not L1
])
def test_apply_edit_refuses_deleting_an_absent_file(level, number, message) -> None:
    e = VersionEdit()
    e.delete_file(level, number)
    with pytest.raises(ValueError, match=message):
        apply_edit(version_of(L0), e)


def test_apply_edit_refuses_a_level_past_the_last() -> None:
    e = VersionEdit()
    e.add_file(NUM_LEVELS, fm(1, b"a", b"b"))
    with pytest.raises(ValueError, match=f"level {NUM_LEVELS} >= {NUM_LEVELS}"):
        apply_edit(version_of(), e)


# --- range tombstones and ingested files ------------------------------------------------------------

def test_rd_files_and_fragments() -> None:
    plain = version_of(L0, L1)
    assert plain.rd_files == [] and plain.fragments() is None
    a = fm(1, b"a", b"m", 1, 5, range_dels=((b"a", b"m", 5),))
    b = fm(10, b"f", b"z", range_dels=((b"f", b"z", 9), (b"x", b"y", 3)))
    v = version_of([a], [b, fm(11, b"zz", b"zzz")])
    assert nums(v.rd_files) == [1, 10]
    frags = v.fragments()
    assert [(s, e, q) for s, e, q in frags] == [(b"a", b"f", [5]), (b"f", b"m", [5, 9]), (b"m", b"x", [9]),
                                                (b"x", b"y", [3, 9]), (b"y", b"z", [9])]
    assert v.fragments() is frags  # built once
    assert frags.covering(b"g", 8) == 5 and frags.covering(b"g", 9) == 9 and frags.covering(b"z", 100) == 0
    # a version after an edit builds its own, from the tables it lists
    e = VersionEdit()
    e.delete_file(1, 10)
    v2 = apply_edit(v, e)
    assert nums(v2.rd_files) == [1]
    assert [(s, e_, q) for s, e_, q in v2.fragments()] == [(b"a", b"m", [5])]
    assert isinstance(v2.fragments(), Fragments)


def test_an_ingested_file_sorts_at_l0_by_its_global_sequence() -> None:
    older = fm(1, b"a", b"z", 1, 40)
    newer = fm(2, b"a", b"z", 51, 60)
    ing = fm(3, b"c", b"d", 50, 50, global_seq=50)
    v = version_of([older, newer, ing])
    assert nums(v.levels[0]) == [2, 3, 1]
    assert nums(v.candidates(b"c")) == [2, 3, 1]
    assert v.levels[0][1].global_seq == 50


# --- VersionSet -----------------------------------------------------------------------------------

def touch(path: str, *numbers: int) -> None:
    for n in numbers:
        open(make_table_name(path, n), "wb").close()


def snapshot(vs: VersionSet) -> tuple:
    return ([[(f.number, f.smallest, f.largest, f.min_seq, f.max_seq, f.global_seq, f.range_dels, f.size)
              for f in lv] for lv in vs.current.levels],
            vs.next_file, vs.last_sequence, vs.log_number, dict(vs.compact_pointers))


@pytest.fixture
def db(tmp_path):
    return str(tmp_path)


def test_versionset_starts_empty_and_hands_out_file_numbers(db) -> None:
    vs = VersionSet(FS, db, Options())
    assert (vs.next_file, vs.last_sequence, vs.log_number) == (2, 0, 0)
    assert all(lv == [] for lv in vs.current.levels) and len(vs.current.levels) == NUM_LEVELS
    assert [vs.new_file_number() for _ in range(3)] == [2, 3, 4]
    vs.mark_file_number_used(3)  # below: no change
    assert vs.next_file == 5
    vs.mark_file_number_used(9)
    assert vs.new_file_number() == 10


def test_log_and_apply_then_recover(db) -> None:
    vs = VersionSet(FS, db, Options())
    touch(db, 5, 6, 7, 8)
    e1 = VersionEdit(log_number=4)
    e1.add_file(0, fm(5, b"a", b"k", 1, 10))
    e1.add_file(0, fm(6, b"c", b"p", 11, 20, range_dels=((b"d", b"f", 15),)))
    e1.add_file(1, fm(7, b"a", b"z", 1, 1))
    vs.last_sequence = 20
    vs.next_file = 9
    v1 = vs.log_and_apply(e1)
    assert vs.current is v1 and nums(v1.levels[0]) == [6, 5] and vs.log_number == 4
    assert e1.next_file == 9 and e1.last_sequence == 20  # filled in from the set
    manifest1 = read_current(FS, db)

    e2 = VersionEdit(log_number=9)
    e2.delete_file(0, 5)
    e2.delete_file(0, 6)
    e2.add_file(1, fm(8, b"zz", b"zzz", 30, 30, global_seq=30))
    e2.compact_pointers = [(0, b"p")]
    vs.last_sequence = 30
    vs.new_file_number()
    v2 = vs.log_and_apply(e2)
    assert nums(v2.levels[0]) == [] and nums(v2.levels[1]) == [7, 8]
    assert vs.compact_pointers == {0: b"p"} and vs.log_number == 9
    assert read_current(FS, db) == manifest1  # appended, not rolled
    want = snapshot(vs)
    vs.close()

    again = VersionSet(FS, db, Options())
    assert again.recover() == manifest1
    assert snapshot(again) == want
    assert again.current.levels[1][1].global_seq == 30
    assert again.next_file > again.manifest_number  # never hands out the manifest's number
    again.current._check(FS, db)
    again.close()


def test_recover_refuses_a_manifest_listing_a_missing_table(db) -> None:
    vs = VersionSet(FS, db, Options())
    touch(db, 5)
    e = VersionEdit()
    e.add_file(1, fm(5, b"a", b"b"))
    vs.log_and_apply(e)
    vs.close()
    FS.remove(make_table_name(db, 5))
    with pytest.raises(CorruptionError, match="000005.sst"):
        VersionSet(FS, db, Options()).recover()


def test_recover_refuses_an_inconsistent_edit(db) -> None:
    w = ManifestWriter(FS, db, 1)
    e = VersionEdit(format_version=2, log_number=0, next_file=3, last_sequence=0)
    e.delete_file(1, 42)
    w.append(e)
    w.close()
    install_current(FS, db, 1, 2)
    with pytest.raises(CorruptionError, match="deletes file 42"):
        VersionSet(FS, db, Options()).recover()


def test_recover_keeps_the_largest_next_file_and_last_sequence(db) -> None:
    w = ManifestWriter(FS, db, 1)
    w.append(VersionEdit(format_version=2, log_number=3, next_file=20, last_sequence=500))
    w.append(VersionEdit(log_number=7, next_file=10, last_sequence=100))  # smaller: ignored
    w.close()
    install_current(FS, db, 1, 2)
    vs = VersionSet(FS, db, Options())
    vs.recover()
    assert (vs.next_file, vs.last_sequence, vs.log_number) == (20, 500, 7)  # the log number is the last one


def test_a_rolled_manifest_recovers_the_same_state(db, monkeypatch) -> None:
    vs = VersionSet(FS, db, Options())
    manifests = []
    for i in range(4):
        if i == 2:
            monkeypatch.setattr(version_mod, "MANIFEST_ROLL_BYTES", 0)  # every edit rolls from now on
        n = vs.new_file_number()
        touch(db, n)
        e = VersionEdit(log_number=i)
        e.add_file(1, fm(n, b"k%d" % i, b"k%d" % i))
        e.compact_pointers = [(1, b"k%d" % i)]
        vs.last_sequence += 5
        vs.log_and_apply(e)
        manifests.append(read_current(FS, db))
    assert manifests[0] == manifests[1] != manifests[2] != manifests[3]
    want = snapshot(vs)
    vs.close()
    again = VersionSet(FS, db, Options())
    assert again.recover() == manifests[3]
    assert snapshot(again) == want
    assert len(again.current.levels[1]) == 4


def test_an_edits_last_sequence_survives_a_manifest_roll(db, monkeypatch) -> None:
    for roll in (False, True):
        path = f"{db}/{roll}"
        FS.makedirs(path)
        vs = VersionSet(FS, path, Options())
        vs.log_and_apply(VersionEdit(log_number=1))  # the first manifest
        if roll:
            monkeypatch.setattr(version_mod, "MANIFEST_ROLL_BYTES", 0)
        vs.log_and_apply(VersionEdit(last_sequence=77))  # as an ingest does
        vs.close()
        again = VersionSet(FS, path, Options())
        again.recover()
        assert again.last_sequence == 77, f"roll={roll}"


def test_a_failed_manifest_write_installs_nothing_and_refuses_later_edits(db, monkeypatch) -> None:
    vs = VersionSet(FS, db, Options())
    touch(db, 5, 6)
    e = VersionEdit()
    e.add_file(1, fm(5, b"a", b"b"))
    vs.log_and_apply(e)
    before = vs.current

    def boom(edit, version):
        raise OSError("disk on fire")

    monkeypatch.setattr(vs, "_write_edit", boom)
    e2 = VersionEdit()
    e2.add_file(1, fm(6, b"c", b"d"))
    with pytest.raises(OSError, match="disk on fire"):
        vs.log_and_apply(e2)
    assert vs.current is before
    monkeypatch.undo()
    with pytest.raises(Error, match="no manifest edit after a failed manifest write"):
        vs.log_and_apply(VersionEdit())
    assert vs.current is before


def test_live_files_include_versions_still_held(db) -> None:
    vs = VersionSet(FS, db, Options())
    touch(db, 5, 6)
    e = VersionEdit()
    e.add_file(1, fm(5, b"a", b"b"))
    held = vs.log_and_apply(e)
    e2 = VersionEdit()
    e2.delete_file(1, 5)
    e2.add_file(1, fm(6, b"a", b"b"))
    vs.log_and_apply(e2)
    assert vs.current.numbers() == {6}
    assert vs.live_files() == {5, 6}  # a reader still holds the version listing 5
    del held
    gc.collect()
    assert vs.live_files() == {6}


def test_install_without_a_manifest_write(db) -> None:
    vs = VersionSet(FS, db, Options())
    touch(db, 5)
    v = version_of([], [fm(5, b"a", b"b")])
    vs.install(v)
    assert vs.current is v and not FS.exists(f"{db}/CURRENT")
    with pytest.raises(InvariantError, match="file 6 missing"):
        vs.install(version_of([], [fm(6, b"a", b"b")]))
    assert vs.current is v


# --- random versions and edit histories against a model ---------------------------------------------------

KEYS = [b"%02d" % i for i in range(40)]


@st.composite
def versions(draw):
    """L0: any files (possibly overlapping); L1..L3: disjoint files cut from the key space."""
    numbers = iter(range(1, 1000))
    l0 = []
    for _ in range(draw(st.integers(0, 4))):
        a, b = sorted(draw(st.lists(st.sampled_from(KEYS), min_size=2, max_size=2)))
        n = next(numbers)
        l0.append(fm(n, a, b, n, n))
    deep = []
    for _ in range(3):
        cuts = sorted(draw(st.sets(st.integers(0, len(KEYS) - 1), max_size=8)))
        files = []
        for i, j in zip(cuts[::2], cuts[1::2]):
            files.append(fm(next(numbers), KEYS[i], KEYS[j]))  # [i, j], the next starts past j
        deep.append(files)
    return version_of(l0, *deep)


@given(versions(), st.sampled_from([*KEYS, b"", b"05\x00", b"zz"]))
@settings(max_examples=150, deadline=None)
def test_candidates_and_overlapping_match_a_linear_scan(v, key) -> None:
    want = [f for f in v.levels[0] if f.smallest <= key <= f.largest]
    for level in range(1, NUM_LEVELS):
        want += [f for f in v.levels[level] if f.smallest <= key <= f.largest]
    assert nums(v.candidates(key)) == nums(want)
    assert all(len([f for f in v.levels[lv] if f.smallest <= key <= f.largest]) <= 1 for lv in range(1, NUM_LEVELS))
    for level in range(NUM_LEVELS):
        assert nums(v.overlapping(level, key, key)) == nums(f for f in v.levels[level]
                                                           if f.smallest <= key <= f.largest)
    # expand_l0 from any L0 file: closed under overlap, and the smallest such set
    for f in v.levels[0]:
        got = expand_l0(v, [f])
        lo, hi = min(g.smallest for g in got), max(g.largest for g in got)
        assert sorted(nums(v.overlapping(0, lo, hi))) == sorted(nums(got))


@given(st.lists(st.tuples(st.sampled_from(["add", "del", "move"]), st.integers(0, 39), st.integers(0, 3)),
                max_size=25), st.sets(st.integers(0, 24), max_size=4))
@settings(max_examples=25, deadline=None)
def test_edit_histories_recover_to_the_model(tmp_path_factory, steps, rolls) -> None:
    path = str(tmp_path_factory.mktemp("vs"))
    roll_bytes = version_mod.MANIFEST_ROLL_BYTES
    vs = VersionSet(FS, path, Options())
    model: dict[int, tuple[int, FileMeta]] = {}  # number -> (level, meta)
    try:
        for i, (op, k, level) in enumerate(steps):
            version_mod.MANIFEST_ROLL_BYTES = 0 if i in rolls else roll_bytes
            e = VersionEdit(log_number=i)
            if op == "add" or not model:
                n = vs.new_file_number()
                touch(path, n)
                f = fm(n, KEYS[k], KEYS[k], n, n)
                if level and any(lv == level and g.smallest == f.smallest for lv, g in model.values()):
                    level = 0  # keep L1+ disjoint
                e.add_file(level, f)
                model[n] = (level, f)
            else:
                n = sorted(model)[k % len(model)]
                lv, f = model.pop(n)
                e.delete_file(lv, n)
                if op == "move" and lv < NUM_LEVELS - 1 and not any(
                        g.smallest == f.smallest for lv2, g in model.values() if lv2 == lv + 1):
                    e.add_file(lv + 1, f)
                    model[n] = (lv + 1, f)
            vs.last_sequence += 3
            vs.log_and_apply(e)
            assert {(lv, f.number) for lv, f in vs.current.files()} == {(lv, n) for n, (lv, _) in model.items()}
        want = snapshot(vs)
        vs.close()
        again = VersionSet(FS, path, Options())
        if steps:
            again.recover()
            assert snapshot(again) == want
    finally:
        version_mod.MANIFEST_ROLL_BYTES = roll_bytes
