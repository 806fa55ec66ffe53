"""approximate_sizes and approximate_count: accuracy on uniform data (tables
and memtables), monotonicity, concurrency with compaction, bad arguments."""

from __future__ import annotations

import random
import threading

import pytest

import lsm

SMALL = dict(memtable_bytes=64 << 10, block_bytes=1024, target_file_bytes=32 << 10, level_base_bytes=128 << 10,
             l0_compaction_trigger=2, sync_mode="never")
N = 6000


def _key(i: int) -> bytes:
    return b"user%08d" % i


def _fill(db, n=N, value=bytes(100)):
    for i in range(n):
        db.put(_key(i), value)


@pytest.fixture
def tabled(tmp_path):
    """N uniform keys, all in tables spread over levels."""
    db = lsm.open(tmp_path / "db", **SMALL)
    _fill(db)
    db.flush()
    db.compact_range()
    yield db
    db.close()


def _table_bytes(db) -> int:
    return sum(lv["bytes"] for lv in db.stats()["levels"])


def test_sizes_are_proportional_on_uniform_tables(tabled):
    total = _table_bytes(tabled)
    assert tabled.approximate_sizes([(None, None)]) == [total]
    rng = random.Random(1)
    for _ in range(20):
        a = rng.randrange(0, N - 1000)
        b = rng.randrange(a + 1000, N + 1)
        [est] = tabled.approximate_sizes([(_key(a), _key(b))])
        want = total * (b - a) / N
        assert abs(est - want) <= 0.25 * want, (a, b, est, want)


def test_counts_are_proportional_on_uniform_tables(tabled):
    assert abs(tabled.approximate_count() - N) <= 0.05 * N
    rng = random.Random(2)
    for _ in range(20):
        a = rng.randrange(0, N - 1000)
        b = rng.randrange(a + 1000, N + 1)
        est = tabled.approximate_count(_key(a), _key(b))
        assert abs(est - (b - a)) <= 0.25 * (b - a), (a, b, est)


def test_memtable_share_is_its_key_and_value_bytes(tmp_path):
    with lsm.open(tmp_path / "db", memtable_bytes=64 << 20, sync_mode="never") as db:
        _fill(db, 3000)
        for i in range(0, 3000, 7):  # overwritten keys: their versions count too
            db.put(_key(i), bytes(100))
        keys = [_key(i) for i in range(3000)]
        raw_per_key = (sum(len(k) + 100 for k in keys) + (3000 // 7 + 1) * (len(keys[0]) + 100)) / 3000
        [est] = db.approximate_sizes([(_key(1000), _key(2000))])
        assert abs(est - 1000 * raw_per_key) <= 0.05 * 1000 * raw_per_key
        assert db.approximate_count(_key(1000), _key(2000)) == 1000
        assert db.approximate_count() == 3000
        assert db.approximate_count(_key(1000), _key(1000)) == 0


def test_tables_and_memtables_add_up(tmp_path):
    with lsm.open(tmp_path / "db", **{**SMALL, "memtable_bytes": 16 << 20}) as db:
        for i in range(0, N, 2):
            db.put(_key(i), bytes(100))
        db.flush()
        for i in range(1, N, 2):
            db.put(_key(i), bytes(100))
        est = db.approximate_count(_key(1000), _key(3000))
        assert abs(est - 2000) <= 0.25 * 2000


def test_estimates_grow_with_the_range(tabled):
    for i in range(0, 800, 3):  # something in the memtable too
        tabled.put(_key(i * 7) + b"x", bytes(50))
    rng = random.Random(3)
    bounds = sorted({_key(rng.randrange(N)) for _ in range(60)} | {b"", b"user", b"zzz"})
    sizes = tabled.approximate_sizes([(bounds[0], b) for b in bounds])
    assert sizes == sorted(sizes)
    sizes = tabled.approximate_sizes([(a, bounds[-1]) for a in bounds])
    assert sizes == sorted(sizes, reverse=True)
    counts = [tabled.approximate_count(bounds[0], b) for b in bounds]
    assert counts == sorted(counts)
    for _ in range(50):
        a, b, c, d = sorted(rng.sample(bounds, 4))
        inner, outer = tabled.approximate_sizes([(b, c), (a, d)])
        assert inner <= outer
        assert tabled.approximate_count(b, c) <= tabled.approximate_count(a, d)


def test_empty_and_inverted_ranges(tmp_path):
    with lsm.open(tmp_path / "db") as db:
        assert db.approximate_sizes([]) == []
        assert db.approximate_sizes([(None, None), (b"a", b"b")]) == [0, 0]
        assert db.approximate_count() == 0
        db.put(b"k", b"v")
        assert db.approximate_sizes([(b"z", b"a"), (b"k", b"k")]) == [0, 0]
        assert db.approximate_count(b"z", b"a") == 0
        # pairs may be lists, bounds any bytes-like object
        assert db.approximate_sizes([[bytearray(b"a"), memoryview(b"z")]])[0] > 0


def test_estimates_during_compactions(tmp_path):
    db = lsm.open(tmp_path / "db", **SMALL)
    stop = threading.Event()
    errors = []

    def writer():
        try:
            i = 0
            while not stop.is_set():
                db.put(_key(i % N), bytes(100))
                i += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            s = db.approximate_sizes([(None, None), (_key(100), _key(4000))])
            assert s[0] >= s[1] >= 0
            assert db.approximate_count(None, _key(3000)) >= 0
    finally:
        stop.set()
        t.join()
        db.close()
    assert not errors


@pytest.mark.parametrize("ranges, exc, words", [
    (None, TypeError, "ranges must be"),
    (b"ab", TypeError, "ranges must be"),
    (5, TypeError, "ranges must be"),
    ([b"ab"], TypeError, "ranges[0] must be a (start, stop) pair"),
    ([(b"a", b"b"), (b"a",)], ValueError, "ranges[1] must be a (start, stop) pair"),
    ([(b"a", b"b", b"c")], ValueError, "ranges[0]"),
    ([("a", b"b")], TypeError, "ranges[0] start must be bytes"),
    ([(b"a", 3)], TypeError, "ranges[0] stop must be bytes"),
    ([(b"a", bytes(70000))], ValueError, "ranges[0] stop is 70000 bytes"),
])
def test_bad_ranges(tmp_path, ranges, exc, words):
    with lsm.open(tmp_path / "db") as db:
        with pytest.raises(exc) as info:
            db.approximate_sizes(ranges)
        assert words in str(info.value)


def test_bad_count_bounds_and_closed(tmp_path):
    db = lsm.open(tmp_path / "db")
    with pytest.raises(TypeError, match="start must be bytes"):
        db.approximate_count("a")
    with pytest.raises(TypeError, match="stop must be bytes"):
        db.approximate_count(None, 1)
    db.close()
    with pytest.raises(lsm.ClosedError):
        db.approximate_sizes([(None, None)])
    with pytest.raises(lsm.ClosedError):
        db.approximate_count()
