"""Regression: a snapshot pinned its whole super version (memtables and
table files), so one forgotten snapshot kept every memtable of its time in
memory and every table compacted since on disk. A snapshot is now a
sequence number: compaction keeps the versions it can see, nothing more;
only its scans and cursors pin files, while they are open."""

import os
import random

import lsm

SMALL = dict(sync_mode="never", memtable_bytes=8 << 10, block_bytes=512, target_file_bytes=8 << 10,
             level_base_bytes=32 << 10, level_multiplier=4, compaction_process=False)


def _tables_on_disk(path):
    return {int(n[:-4]) for n in os.listdir(path) if n.endswith(".sst")}


def test_a_long_lived_snapshot_holds_no_files_or_memtables(tmp_path):
    db = lsm.open(tmp_path / "db", **SMALL)
    rng = random.Random(4)
    keys = [b"k%04d" % i for i in range(500)]
    for k in keys:
        db.put(k, b"v0-" + k)
    snap = db.snapshot()
    frozen = dict(db.scan())
    for round_ in range(1, 8):  # overwrite everything several times: many flushes and compactions
        for k in rng.sample(keys, len(keys)):
            db.put(k, b"v%d-" % round_ + k + b"." * 40)
    db.flush()
    db.wait_for_compactions()
    s = db.stats()["snapshots"]
    assert s["count"] == 1 and s["iterators"] == 0 and s["oldest_sequence"] == snap.sequence
    assert s["pinned_memtable_bytes"] == 0 and s["pinned_tables"] == 0
    # no file kept for the snapshot: what is on disk is what the version lists
    assert _tables_on_disk(tmp_path / "db") == db._versions.current.numbers()
    assert db.stats()["memory"]["immutable_memtables"] == 0
    # and it still reads its own state, by get and by scan
    assert dict(snap.scan()) == frozen
    assert all(snap.get(k) == frozen[k] for k in keys[::17])
    # a full compaction keeps exactly one version per key for it, and the newest
    db.compact_range()
    db.wait_for_compactions()
    assert sum(f.entries for _, f in db._versions.current.files()) == 2 * len(keys)
    assert dict(snap.scan()) == frozen
    snap.close()
    assert db.stats()["snapshots"]["count"] == 0 and db.stats()["snapshots"]["oldest_sequence"] is None
    db.close()


def test_an_iterator_pins_its_files_until_it_ends_and_stats_say_so(tmp_path):
    db = lsm.open(tmp_path / "db", **SMALL)
    for i in range(500):
        db.put(b"k%04d" % i, b"x" * 50)
    db.flush()
    it = db.scan()
    first = next(it)
    for i in range(500):
        db.put(b"k%04d" % i, b"y" * 50)
    db.flush()
    db.compact_range()
    db.wait_for_compactions()
    s = db.stats()["snapshots"]
    assert s["iterators"] == 1 and s["pinned_tables"] > 0 and s["pinned_table_bytes"] > 0
    rest = list(it)  # its view is intact: the old values, every key once
    assert [first] + rest == [(b"k%04d" % i, b"x" * 50) for i in range(500)]
    s = db.stats()["snapshots"]
    assert s["iterators"] == 0 and s["pinned_tables"] == 0
    db.wait_for_compactions()  # the next obsolete-file pass removes what it pinned
    db.put(b"z", b"z")
    db.flush()
    db.wait_for_compactions()
    assert _tables_on_disk(tmp_path / "db") == db._versions.current.numbers()
    db.close()
