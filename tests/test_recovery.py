"""WAL recovery under each ``wal_recovery`` mode: truncation at every offset
of the last record (and a sample elsewhere), and damage in the middle."""

from __future__ import annotations

import os
import shutil

import pytest

import lsm
from lsm.wal import OVERHEAD, iter_records

N = 12


def _build(path) -> tuple[list[tuple[bytes, bytes]], str, list[int]]:
    """N writes that stay in the WAL; returns (writes, log path, record end offsets)."""
    writes = []
    with lsm.open(path, sync_mode="never") as db:
        for i in range(N):
            k, v = b"key%02d" % (i % 9), b"value-%d" % i  # some overwrites
            db.put(k, v)
            writes.append((k, v))
    logs = sorted(f for f in os.listdir(path) if f.endswith(".log"))
    assert len(logs) == 1
    log = os.path.join(path, logs[0])
    data = open(log, "rb").read()
    ends = [off + OVERHEAD + len(p) for off, _, p in iter_records(data, lambda *a: False)]
    assert len(ends) == N and ends[-1] == len(data)
    return writes, log, ends


def _expected(writes, n):
    state = {}
    for k, v in writes[:n]:
        state[k] = v
    return state


def _state(path, **opts):
    with lsm.open(path, **opts) as db:
        return dict(db.scan())


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("tpl") / "db"
    writes, log, ends = _build(path)
    return path, writes, os.path.basename(log), ends


def _copy(template, tmp_path):
    src, writes, logname, ends = template
    dst = tmp_path / "db"
    shutil.copytree(src, dst)
    return dst, writes, str(dst / logname), ends


def _cut_points(ends):
    last_start = ends[-2]
    points = list(range(last_start, ends[-1]))  # every offset of the last record
    points += [0, 1, 7, ends[0] - 1, ends[0], ends[3] + 5, ends[6] + 11]  # a sample elsewhere
    return sorted(set(points))


@pytest.mark.parametrize("mode", ["tolerate_tail", "point_in_time", "skip_corrupt"])
def test_truncation_gives_a_prefix(template, tmp_path, mode):
    for cut in _cut_points(template[3]):
        d = tmp_path / f"c{cut}"
        d.mkdir()
        path, writes, log, ends = _copy(template, d)
        os.truncate(log, cut)
        whole = sum(1 for e in ends if e <= cut)
        got = _state(path, wal_recovery=mode)
        assert got == _expected(writes, whole), f"cut at {cut}"
        # the dropped tail must not come back on a second reopen
        assert _state(path) == got


def test_truncation_under_absolute_is_an_error(template, tmp_path):
    for cut in _cut_points(template[3]):
        d = tmp_path / f"c{cut}"
        d.mkdir()
        path, writes, log, ends = _copy(template, d)
        os.truncate(log, cut)
        if cut in ends or cut == 0:
            assert _state(path, wal_recovery="absolute") == _expected(writes, sum(1 for e in ends if e <= cut))
        else:
            with pytest.raises(lsm.CorruptionError) as ei:
                _state(path, wal_recovery="absolute")
            assert log in str(ei.value)
            # nothing was changed by the failed open: a tolerant open still recovers
            assert _state(path) == _expected(writes, sum(1 for e in ends if e <= cut))


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


@pytest.mark.parametrize("where", ["header", "payload", "checksum"])
def test_damage_in_the_middle(template, tmp_path, where):
    path, writes, log, ends = _copy(template, tmp_path)
    bad = 5  # record index
    start = ends[bad - 1]
    offset = {"header": start + 1, "payload": start + 20, "checksum": ends[bad] - 2}[where]
    _flip(log, offset)
    for mode in ("tolerate_tail", "absolute"):
        with pytest.raises(lsm.CorruptionError) as ei:
            _state(path, wal_recovery=mode)
        assert log in str(ei.value) and f"offset {start}" in str(ei.value)
    # point_in_time: everything before the damage, nothing after
    d2 = tmp_path / "pit"
    shutil.copytree(path, d2)
    assert _state(d2, wal_recovery="point_in_time") == _expected(writes, bad)
    # skip_corrupt: everything but the damaged record
    got = _state(path, wal_recovery="skip_corrupt")
    assert got == _expected(writes[:bad] + writes[bad + 1:], N - 1)
    with lsm.open(path) as db:
        assert db.stats()["recovery"]["records_replayed"] == 0  # the reopen after repair is clean


def test_point_in_time_ignores_later_logs(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never", memtable_bytes=1024) as db:
        db._opts  # noqa: B018
        for i in range(40):
            db.put(b"k%02d" % i, b"x" * 100)
    # Make two logs: stop the bg thread from flushing by reopening read-only is not
    # possible, so build them by hand: copy the current log, then damage the first.
    logs = sorted(f for f in os.listdir(path) if f.endswith(".log"))
    assert logs
    log = str(path / logs[-1])
    data = open(log, "rb").read()
    later = str(path / ("%06d.log" % (int(logs[-1][:6]) + 1000)))
    with open(later, "wb") as f:
        f.write(data)  # same records again, numbered later
    if data:
        _flip(log, 3)
        got = _state(path, wal_recovery="point_in_time")
        with lsm.open(path, sync_mode="never") as db:
            assert dict(db.scan()) == got
        assert not os.path.exists(later)  # discarded, not replayed later


def test_recovery_stats(template, tmp_path):
    path, writes, log, ends = _copy(template, tmp_path)
    os.truncate(log, ends[-1] - 3)
    with lsm.open(path) as db:
        r = db.stats()["recovery"]
        assert r["records_replayed"] == N - 1
        assert r["bytes_dropped"] == ends[-1] - 3 - ends[-2]
        assert r["seconds"] >= 0 and len(r["problems"]) == 1


def test_missing_current_or_manifest_is_an_error(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path) as db:
        db.put(b"a", b"1")
    manifests = [f for f in os.listdir(path) if f.startswith("MANIFEST")]
    os.remove(path / manifests[0])
    with pytest.raises(lsm.CorruptionError) as ei:
        lsm.open(path)
    assert manifests[0] in str(ei.value) and "CURRENT" in str(ei.value)
    (path / "CURRENT").write_bytes(b"garbage\n")
    with pytest.raises(lsm.CorruptionError, match="CURRENT"):
        lsm.open(path)


def test_missing_current_with_tables_present_is_not_a_new_database(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never") as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"v")
        db.flush()
    os.remove(path / "CURRENT")
    before = sorted(os.listdir(path))
    with pytest.raises(lsm.CorruptionError, match="repair"):
        lsm.open(path)
    assert sorted(os.listdir(path)) == before  # nothing was deleted


def test_missing_table_is_reported_at_open(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never") as db:
        db.put(b"a", b"1")
        db.flush()
    table = next(f for f in os.listdir(path) if f.endswith(".sst"))
    os.remove(path / table)
    with pytest.raises(lsm.CorruptionError, match=table):
        lsm.open(path)


@pytest.mark.parametrize("mode", ["tolerate_tail", "absolute", "point_in_time", "skip_corrupt"])
def test_zero_tail_of_the_newest_log_is_not_damage(template, tmp_path, mode):
    """What a preallocated log leaves after a crash: its records, then zeros."""
    path, writes, log, ends = _copy(template, tmp_path)
    with open(log, "ab") as f:
        f.write(bytes(1 << 20))
    with lsm.open(path, wal_recovery=mode) as db:
        assert dict(db.scan()) == _expected(writes, N)
        r = db.stats()["recovery"]
        assert r["problems"] == [] and r["bytes_dropped"] == 0 and r["records_replayed"] == N


def test_zero_tail_of_an_older_log_is_damage(template, tmp_path):
    """A log is trimmed (durably) before the next one gets a record, so zeros at
    the end of a log with records after it are damage, as any other."""
    path, writes, log, ends = _copy(template, tmp_path)
    data = open(log, "rb").read()
    later = str(path / ("%06d.log" % (int(os.path.basename(log)[:6]) + 1000)))
    with open(later, "wb") as f:
        f.write(data)
    with open(log, "ab") as f:
        f.write(bytes(100))
    with pytest.raises(lsm.CorruptionError) as ei:
        _state(path)
    assert log in str(ei.value) and f"offset {ends[-1]}" in str(ei.value)


def test_a_synced_log_is_preallocated_and_trimmed(tmp_path):
    from lsm.db import WAL_PREALLOCATE_BYTES
    path = tmp_path / "db"
    db = lsm.open(path, sync_mode="always")
    db.put(b"k", b"v")
    log = [str(path / f) for f in os.listdir(path) if f.endswith(".log")]
    assert len(log) == 1 and os.path.getsize(log[0]) == WAL_PREALLOCATE_BYTES
    copy = tmp_path / "crashed"
    shutil.copytree(path, copy)  # the image a process crash leaves
    wal_bytes = db.stats()["wal"]["bytes"]
    db.close()
    assert os.path.getsize(log[0]) == wal_bytes  # close trims
    with lsm.open(copy, wal_recovery="absolute") as db2:
        assert db2.get(b"k") == b"v" and db2.stats()["recovery"]["problems"] == []
    for mode in ("never", "periodic"):
        with lsm.open(tmp_path / mode, sync_mode=mode) as db3:
            db3.put(b"k", b"v")
            logs = [f for f in os.listdir(tmp_path / mode) if f.endswith(".log")]
            assert os.path.getsize(tmp_path / mode / logs[0]) < 100  # not preallocated
