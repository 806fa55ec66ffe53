"""Regression: with disable_auto_compactions=True, writers waited forever at
l0_stop_trigger for a compaction that could never be scheduled."""

import threading

import lsm


def test_writes_never_stall_forever_with_auto_compactions_off(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=1024, disable_auto_compactions=True,
                  l0_compaction_trigger=1, l0_slowdown_trigger=2, l0_stop_trigger=3)
    t = threading.Thread(target=lambda: [db.put(b"k%05d" % i, b"x" * 100) for i in range(3000)], daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "writer stalled"
    assert len(db.stats()["levels"][0]["files"]) > 3
    db.compact_range()
    assert len(list(db.scan())) == 3000
    db.close()
