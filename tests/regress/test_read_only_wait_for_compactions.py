"""Regression: wait_for_compactions() on a read_only=True database never
returned when the log held writes (their memtable is kept as an immutable
one that nothing can flush there). Nothing runs on a read-only DB: it
returns at once."""

import threading

import lsm


def test_wait_for_compactions_returns_at_once_when_read_only(tmp_path):
    with lsm.open(tmp_path / "db", l0_compaction_trigger=1) as db:
        for i in range(20):
            db.put(b"k%02d" % i, b"v")  # left in the log: replayed into memory below
    ro = lsm.open(tmp_path / "db", read_only=True)
    assert ro.stats()["memtable"]["immutable"] == 1
    t = threading.Thread(target=ro.wait_for_compactions, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "wait_for_compactions() hung on a read-only DB"
    ro.close()
