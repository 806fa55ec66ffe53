"""WAL recovery under each ``wal_recovery`` mode (lsm/recovery.py): truncation
at every offset of the last record (and a sample elsewhere), damage in the
middle, holes in the sequence within and across logs, and the rule that
tells writes lost before they were durable (dropped under
``tolerate_tail``) from damage to acknowledged data (an error)."""

from __future__ import annotations

import os
import shutil
import struct

import pytest

import lsm
from lsm.batch import encode_batch
from lsm.keys import PUT
from lsm.wal import BATCH, START, WalWriter, scan_log

N = 12
MODES = ["tolerate_tail", "absolute", "point_in_time", "skip_corrupt"]


def _build(path, sync_mode: str = "never") -> tuple[list[tuple[bytes, bytes]], str, list[int]]:
    """N writes that stay in the WAL; returns (writes, log path, record end offsets)."""
    writes = []
    with lsm.open(path, sync_mode=sync_mode) as db:
        for i in range(N):
            k, v = b"key%02d" % (i % 9), b"value-%d" % i  # some overwrites
            db.put(k, v)
            writes.append((k, v))
    logs = sorted(f for f in os.listdir(path) if f.endswith(".log"))
    assert len(logs) == 1
    log = os.path.join(path, logs[0])
    data = open(log, "rb").read()
    scan = scan_log(data)
    ends = [off + 7 + 1 + len(body) for off, rtype, body in scan.records if rtype == BATCH]
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
        # a cut at a record boundary (or inside the log's header and START) loses no record's bytes
        clean = cut in ends or cut <= ends[0] - (ends[1] - ends[0]) - 1 and cut in (0,)
        if cut in ends or cut == 0:
            assert _state(path, wal_recovery="absolute") == _expected(writes, sum(1 for e in ends if e <= cut))
        elif not clean:
            try:
                got = _state(path, wal_recovery="absolute")
            except lsm.CorruptionError as e:
                assert log in str(e)
                # nothing was changed by the failed open: a tolerant open still recovers
                assert _state(path) == _expected(writes, sum(1 for e in ends if e <= cut))
            else:  # a cut inside the file header or the START record: no write was there
                assert cut < ends[0] - 20 and got == {}


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


@pytest.mark.parametrize("where", ["header", "payload"])
def test_damage_in_the_middle_of_never_synced_writes(template, tmp_path, where):
    """sync_mode="never": no write was ever durable, so damage followed by
    records is what a power cut can leave (pages written back out of order).
    tolerate_tail keeps what comes before it; a later write cannot be
    replayed over the hole."""
    path, writes, log, ends = _copy(template, tmp_path)
    bad = 5  # record index
    start = ends[bad - 1]
    _flip(log, start + 1 if where == "header" else start + 20)
    with pytest.raises(lsm.CorruptionError) as ei:
        _state(path, wal_recovery="absolute")
    assert log in str(ei.value) and f"offset {start}" in str(ei.value)
    for mode in ("tolerate_tail", "point_in_time"):
        d2 = tmp_path / mode
        shutil.copytree(path, d2)
        assert _state(d2, wal_recovery=mode) == _expected(writes, bad)
    # skip_corrupt: the block's records after the damage are lost with it (one 32 KiB block here)
    assert _state(path, wal_recovery="skip_corrupt") == _expected(writes, bad)
    with lsm.open(path) as db:
        assert db.stats()["recovery"]["records_replayed"] == 0  # the reopen after repair is clean


def test_damage_to_synced_writes_is_an_error(tmp_path):
    """sync_mode="always": every record says what was durable when it was
    written, so damage to a write that a later record saw synced is damage
    to acknowledged data: tolerate_tail refuses to guess."""
    path = tmp_path / "db"
    writes, log, ends = _build(path, "always")
    _flip(log, ends[4] + 20)  # record 5
    for mode in ("tolerate_tail", "absolute"):
        with pytest.raises(lsm.CorruptionError, match="durable|damaged") as ei:
            _state(path, wal_recovery=mode)
        assert log in str(ei.value)
    d2 = tmp_path / "pit"
    shutil.copytree(path, d2)
    assert _state(d2, wal_recovery="point_in_time") == _expected(writes, 5)


def _log_bytes(first_seq: int, batches: list[tuple[list, int]]) -> bytes:
    """A format 3 log: START at first_seq, then ``(ops, synced)`` batches."""
    class F:
        def __init__(self):
            self.buf = bytearray()
            self.path = "log"
            self.size = 0

        def write(self, b):
            self.buf += b
            self.size = len(self.buf)

    f = F()
    w = WalWriter(f)
    w.append(bytes((START,)) + struct.pack("<Q", first_seq))
    seq = first_seq
    for ops, synced in batches:
        w.append(bytes((BATCH,)) + encode_batch(seq, ops, synced))
        seq += len(ops)
    return bytes(f.buf)


def _db_with_logs(path, logs: list[bytes]) -> list[str]:
    """A database whose live logs are ``logs`` (numbered from the manifest's log number)."""
    with lsm.open(path, sync_mode="never"):
        pass
    first = min(int(f[:6]) for f in os.listdir(path) if f.endswith(".log"))
    names = []
    for i, data in enumerate(logs):
        name = os.path.join(path, f"{first + i:06d}.log")
        with open(name, "wb") as f:
            f.write(data)
        names.append(name)
    return names


def _put(i: int) -> list:
    return [(PUT, b"k%03d" % i, b"v%d" % i)]


@pytest.mark.parametrize("synced", [0, 3])
@pytest.mark.parametrize("mode", MODES)
def test_an_older_log_cut_at_a_record_boundary_is_a_hole(tmp_path, mode, synced):
    """Log A holds writes 1-4, log B starts at 5 (its START says so). If A
    loses 3-4 at a record boundary, B's writes no longer follow: a hole, not
    a silent gap. tolerate_tail keeps 1-2 when nothing later was synced past
    them, and refuses when B's records say 3-4 had been made durable."""
    a = _log_bytes(1, [(_put(i), synced if i > 3 else 0) for i in range(1, 5)])
    b = _log_bytes(5, [(_put(i), synced) for i in range(5, 8)])
    cut = [off + 7 + 1 + len(body) for off, t, body in scan_log(a).records][2]  # after write 2
    names = _db_with_logs(tmp_path / "db", [a[:cut], b])
    want = {b"k%03d" % i: b"v%d" % i for i in (1, 2)}
    if mode == "absolute" or (mode == "tolerate_tail" and synced >= 3):
        with pytest.raises(lsm.CorruptionError, match="writes 3..4 are missing") as ei:
            _state(tmp_path / "db", wal_recovery=mode)
        assert ei.value.path == names[1]
    elif mode == "skip_corrupt":
        assert _state(tmp_path / "db", wal_recovery=mode) == {**want, **{b"k%03d" % i: b"v%d" % i
                                                                          for i in range(5, 8)}}
    else:
        assert _state(tmp_path / "db", wal_recovery=mode) == want


@pytest.mark.parametrize("mode", ["tolerate_tail", "point_in_time"])
def test_a_torn_group_commit_that_spans_pages_is_dropped(tmp_path, mode):
    """A group of writes being fsynced when the power failed: its second page
    reached the disk, its first did not. Nothing in it was acknowledged (no
    record says it was synced), so the default recovery opens with what came
    before it."""
    big = b"x" * 5000
    data = _log_bytes(1, [(_put(1), 0), ([(PUT, b"g1", big)], 1), ([(PUT, b"g2", big)], 1)])
    offs = [off for off, t, _ in scan_log(data).records if t == BATCH]
    torn = bytearray(data)
    torn[offs[1]:offs[1] + 4096] = bytes(4096)  # the group's first page, never written back
    _db_with_logs(tmp_path / "db", [bytes(torn)])
    assert _state(tmp_path / "db", wal_recovery=mode) == {b"k001": b"v1"}


def test_point_in_time_ignores_later_logs(tmp_path):
    a = _log_bytes(1, [(_put(i), 0) for i in range(1, 5)])
    b = _log_bytes(5, [(_put(i), 0) for i in range(5, 8)])
    bad = bytearray(a)
    bad[len(a) - 3] ^= 1
    names = _db_with_logs(tmp_path / "db", [bytes(bad), b])
    got = _state(tmp_path / "db", wal_recovery="point_in_time")
    assert got == {b"k%03d" % i: b"v%d" % i for i in range(1, 4)}
    assert not os.path.exists(names[1])  # discarded, not replayed later


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


@pytest.mark.parametrize("mode", MODES)
def test_zero_tail_of_the_newest_log_is_not_damage(template, tmp_path, mode):
    """What a preallocated log leaves after a crash: its records, then zeros."""
    path, writes, log, ends = _copy(template, tmp_path)
    with open(log, "ab") as f:
        f.write(bytes(1 << 20))
    with lsm.open(path, wal_recovery=mode) as db:
        assert dict(db.scan()) == _expected(writes, N)
        r = db.stats()["recovery"]
        assert r["problems"] == [] and r["bytes_dropped"] == 0 and r["records_replayed"] == N


@pytest.mark.parametrize("mode", MODES)
def test_zero_tail_of_an_older_log_loses_nothing(tmp_path, mode):
    """An older log left with its preallocated zeros (a crash before the
    switch trimmed it): the next log's writes continue its sequence, so no
    write was lost and every mode replays everything."""
    a = _log_bytes(1, [(_put(i), 0) for i in range(1, 5)])
    b = _log_bytes(5, [(_put(i), 0) for i in range(5, 8)])
    _db_with_logs(tmp_path / "db", [a + bytes(70_000), b])
    assert _state(tmp_path / "db", wal_recovery=mode) == {b"k%03d" % i: b"v%d" % i for i in range(1, 8)}


@pytest.mark.parametrize("sync_mode", ["always", "periodic", "never"])
def test_logs_run_ahead_of_their_records_and_are_trimmed(tmp_path, sync_mode):
    from lsm.writes import WAL_STEP_BYTES
    path = tmp_path / "db"
    db = lsm.open(path, sync_mode=sync_mode)
    db.put(b"k", b"v")
    log = [str(path / f) for f in os.listdir(path) if f.endswith(".log")]
    assert len(log) == 1 and os.path.getsize(log[0]) == WAL_STEP_BYTES
    copy = tmp_path / "crashed"
    shutil.copytree(path, copy)  # the image a process crash leaves
    wal_bytes = db.stats()["wal"]["bytes"]
    db.close()
    assert os.path.getsize(log[0]) == wal_bytes  # close trims
    with lsm.open(copy, wal_recovery="absolute") as db2:
        assert db2.get(b"k") == b"v" and db2.stats()["recovery"]["problems"] == []


def test_close_flushes_waiting_memtables_so_the_next_open_replays_one(tmp_path, monkeypatch):
    """Memtables switched but not yet flushed at close() are flushed by it:
    the next open replays only the active memtable's log."""
    import threading

    from lsm.db import DB

    gate = threading.Event()
    original = DB._flush_job_locked

    def held_flush(self):  # flushes wait for the gate (the _mu is released meanwhile)
        self._mu.release()
        try:
            gate.wait(30)
        finally:
            self._mu.acquire()
        original(self)

    monkeypatch.setattr(DB, "_flush_job_locked", held_flush)
    db = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=64 << 10, max_immutable_memtables=2,
                  compaction_process=False)
    n = 0
    while len(db._sv.imms) < 2:
        db.put(b"%08d" % n, b"v" * 100)
        n += 1
    active = len(db._sv.mem)
    threading.Timer(0.2, gate.set).start()
    db.close()
    monkeypatch.setattr(DB, "_flush_job_locked", original)
    with lsm.open(tmp_path / "db", sync_mode="never") as db:
        assert db.stats()["recovery"]["entries_replayed"] == active
        assert all(db.get(b"%08d" % i) == b"v" * 100 for i in range(n))
