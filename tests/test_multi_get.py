"""DB.multi_get: get's answers for many keys at once (memtables, L0 and
deeper levels, tombstones, TTL, duplicates, order), from one view; bad
arguments name the argument."""

from __future__ import annotations

import random
import sys
import threading
import time

import pytest

import lsm

OPTIONS = dict(sync_mode="never", memtable_bytes=4096, block_bytes=256, target_file_bytes=4096,
               l0_compaction_trigger=2, level_base_bytes=16384)


def test_multi_get_answers_as_get_does_everywhere(tmp_path, monkeypatch):
    """Generations of writes placed by hand (no automatic compaction): a
    deeper level, overlapping L0 tables, the memtable; newer versions
    shadow older ones wherever they lie."""
    clock = [2_000_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    rng = random.Random(5)
    db = lsm.open(tmp_path, **OPTIONS, disable_auto_compactions=True)
    keys = [b"%04d" % i for i in range(1500)]
    model: dict[bytes, tuple[bytes, float | None]] = {}

    def generation(rnd: int, n: int) -> None:
        for k in rng.sample(keys, n):
            r = rng.random()
            if r < 0.15:
                db.delete(k)
                model.pop(k, None)
            else:
                v = b"%s.%d" % (k, rnd) * rng.randrange(1, 6)
                ttl = 30.0 if r > 0.9 else None
                db.put(k, v, ttl=ttl)
                model[k] = (v, None if ttl is None else clock[0] + ttl)
        clock[0] += 20.0

    generation(0, 1200)
    db.compact_range(None, None)  # the deepest level
    for rnd in (2, 3, 4):  # overlapping L0 tables, newest last
        generation(rnd, 400)
        db.flush()
    generation(5, 300)  # the memtable
    shape = [len(level) for level in db._sv.version.levels]
    assert shape[0] >= 3 and sum(shape[1:]) and db._sv.mem.entries, shape
    probes = keys + [b"", b"0", b"9999", b"none"]
    for size in (800, 800, 5, 40, 63, 64, 200):  # the sorted per-table passes, and few keys one by one
        ask = [rng.choice(probes) for _ in range(size)]  # duplicates, absent keys, any order
        want = [e[0] if (e := model.get(k)) and (e[1] is None or e[1] > clock[0]) else None for k in ask]
        assert db.multi_get(ask) == want == [db.get(k) for k in ask]
    assert db.multi_get(keys) == [db.get(k) for k in keys]
    assert db.multi_get(iter(keys[:3])) == [db.get(k) for k in keys[:3]]  # any iterable
    assert db.multi_get([]) == []
    assert db.multi_get([bytearray(b"0001"), memoryview(b"0002")]) == [db.get(b"0001"), db.get(b"0002")]
    db.close()
    with pytest.raises(lsm.ClosedError):
        db.multi_get([b"0001"])


def test_multi_get_reads_one_view(tmp_path):
    """Every write is a batch setting all keys to one generation: one
    multi_get must never mix generations, while the writer writes, flushes
    and compacts."""
    db = lsm.open(tmp_path, **OPTIONS)
    keys = [b"k%04d" % i for i in range(600)]

    def generation(g: int) -> None:
        with db.write_batch() as b:
            for k in keys:
                b.put(k, b"%d" % g)

    generation(0)
    stop = threading.Event()
    errors: list = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: the writer lands inside a multi_get

    def writer() -> None:
        g = 1
        try:
            while not stop.is_set():
                generation(g)
                if g % 4 == 0:
                    db.flush()
                g += 1
        except BaseException as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 1.0
        n = 0
        while time.monotonic() < deadline or n < 20:
            got = db.multi_get(keys[::-1] + keys[:10])
            assert len(set(got)) == 1, sorted(set(got))
            n += 1
    finally:
        sys.setswitchinterval(switch)
        stop.set()
        t.join()
        db.close()
    assert not errors, errors


def test_multi_get_bad_arguments(tmp_path):
    with lsm.open(tmp_path, sync_mode="never") as db:
        for bad in (b"abc", "abc", bytearray(b"ab")):
            with pytest.raises(TypeError, match="keys must be an iterable of keys"):
                db.multi_get(bad)
        for bad in (None, 5):
            with pytest.raises(TypeError, match="keys"):
                db.multi_get(bad)
        with pytest.raises(TypeError, match=r"keys\[1\]"):
            db.multi_get([b"a", 1])
        with pytest.raises(TypeError, match=r"keys\[0\]"):
            db.multi_get(["a"])
        with pytest.raises(ValueError, match=r"keys\[2\]"):
            db.multi_get([b"a", b"b", b"x" * 70000])
