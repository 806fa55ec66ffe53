"""stats()["memory"]: the engine's account of the heap it holds, by kind,
checked against what tracemalloc sees the same objects allocate."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc

import lsm

KINDS = ("memtables", "immutable_memtables", "block_cache", "table_readers", "index_blocks",
         "bloom_filters", "table_metadata")


def _traced(fn) -> tuple[int, object]:
    """Bytes tracemalloc sees still allocated after ``fn()``, and its result."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, out
    finally:
        tracemalloc.stop()


def _close_to(accounted: int, traced: int) -> bool:
    # The account counts allocated bytes (rounded up as the allocator does);
    # tracemalloc counts requested ones: the account runs a little above.
    return abs(accounted / traced - 1) <= 0.2


def test_memory_section_adds_up(tmp_path) -> None:
    with lsm.open(tmp_path / "db", sync_mode="never") as db:
        for i in range(1000):
            db.put(b"%08d" % i, b"v" * 50)
        db.flush()
        db.put(b"x", b"y")
        assert db.get(b"%08d" % 7) == b"v" * 50
        mem = db.stats()["memory"]
    assert set(KINDS) <= set(mem)
    assert mem["total"] == sum(mem[k] for k in KINDS)
    assert mem["open_tables"] == 1 and mem["index_blocks"] > 0 and mem["bloom_filters"] > 0
    assert mem["mapped"] > 0  # uncompressed tables are mapped: page cache, kept out of the total
    assert mem["memtables"] > 0 and mem["table_metadata"] > 0


def test_memtable_memory_matches_tracemalloc(tmp_path) -> None:
    n = 30_000
    with lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=64 << 20, metrics=False) as db:
        def load():
            for i in range(n):  # keys and values made here: the memtable keeps them
                db.put(b"%016d" % (i * 7919 % n), b"%0100d" % i)

        traced, _ = _traced(load)
        mem = db.stats()["memory"]
    assert mem["immutable_memtables"] == 0
    assert _close_to(mem["memtables"], traced), (mem, traced)


# Run in a fresh interpreter: resident memory grows by whole pages, so the
# heap must be the test's alone. Prints accounted and resident growth.
_OPEN_EVERY_TABLE = r"""
import gc, json, sys
import lsm

def heap():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon"))

with lsm.open(sys.argv[1], sync_mode="never") as db:
    files = [f for lv in db.stats()["levels"] for f in lv["files"]]
    gc.collect()
    before, rss = db.stats()["memory"], heap()
    for f in files:
        assert db.get(bytes.fromhex(f["smallest"])) == b"v" * 100
    gc.collect()
    rss = heap() - rss
    after = db.stats()["memory"]
print(json.dumps({"tables": len(files), "rss": rss, "open_tables": after["open_tables"],
                  "accounted": sum(after[k] - before[k] for k in ("table_readers", "index_blocks", "bloom_filters"))}))
"""


_FILL_MEMTABLE = r"""
import gc, json, sys
import lsm

def heap():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon"))

with lsm.open(sys.argv[1], sync_mode="never", memtable_bytes=1 << 30, metrics=False) as db:
    gc.collect()
    rss = heap()
    for i in range(200_000):
        db.put(b"%016d" % (i * 7919 % 200_000), b"%0100d" % i)
    gc.collect()
    rss = heap() - rss
    print(json.dumps({"rss": rss, "accounted": db.stats()["memory"]["memtables"]}))
"""


def test_memtable_memory_matches_resident_growth(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", _FILL_MEMTABLE, str(tmp_path / "db")], capture_output=True,
                         text=True, check=True)
    got = json.loads(out.stdout)
    assert _close_to(got["accounted"], got["rss"]), got


def test_table_memory_matches_resident_growth(tmp_path) -> None:
    # Small blocks make the indexes big enough (about 10 MB) to measure in pages.
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never", memtable_bytes=4 << 20, block_bytes=256) as db:
        for start in range(0, 300_000, 1000):
            with db.write_batch() as batch:
                for i in range(start, start + 1000):
                    batch.put(b"%016d" % i, b"v" * 100)
        db.compact_range()
    out = subprocess.run([sys.executable, "-c", _OPEN_EVERY_TABLE, str(path)], capture_output=True, text=True,
                         check=True)
    got = json.loads(out.stdout)
    assert got["open_tables"] == got["tables"] >= 5
    assert got["accounted"] > 5 << 20
    assert _close_to(got["accounted"], got["rss"]), got


def test_table_memory_matches_tracemalloc(tmp_path) -> None:
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never", memtable_bytes=1 << 20, compaction_process=False) as db:
        for start in range(0, 120_000, 1000):
            with db.write_batch() as batch:
                for i in range(start, start + 1000):
                    batch.put(b"%016d" % i, b"v" * 100)
        db.compact_range()
    with lsm.open(path, sync_mode="never") as db:
        before = db.stats()["memory"]
        files = [f for lv in db.stats()["levels"] for f in lv["files"]]
        assert len(files) >= 5

        def touch_every_table():
            for f in files:
                assert db.get(bytes.fromhex(f["smallest"])) == b"v" * 100

        traced, _ = _traced(touch_every_table)
        after = db.stats()["memory"]
    assert after["open_tables"] == len(files)
    grown = sum(after[k] - before[k] for k in ("table_readers", "index_blocks", "bloom_filters"))
    # tracemalloc counts requested bytes: 49 for a 16-byte key the allocator
    # hands 64 for. The account (allocated bytes) runs 15-20% above it here.
    assert 1.0 <= grown / traced <= 1.25, (after, before, traced)


def test_table_cache_bounds_what_readers_hold(tmp_path) -> None:
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never", memtable_bytes=64 << 10, disable_auto_compactions=True) as db:
        for i in range(40):
            with db.write_batch() as batch:
                for j in range(300):
                    batch.put(b"%04d%04d" % (i, j), b"v" * 100)
            db.flush()
    with lsm.open(path, sync_mode="never", max_open_files=10, disable_auto_compactions=True) as db:
        for i in range(40):
            assert db.get(b"%04d%04d" % (i, 7)) == b"v" * 100
        mem = db.stats()["memory"]
        per_table = (mem["index_blocks"] + mem["bloom_filters"] + mem["table_readers"]) / mem["open_tables"]
        assert mem["open_tables"] == 10
        assert mem["mapped"] < 11 * 64 << 10
        assert per_table < 20_000
