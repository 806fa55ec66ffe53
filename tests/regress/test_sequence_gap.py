"""Regression: with two live logs, an older log that ended cleanly at a
record boundary (its last records lost, e.g. to a power cut in
sync_mode="never" with the newer log written back first) was replayed, then
the newer one: the writes between were gone, later ones present, and no
recovery mode reported anything. Sequence numbers run on without a hole
across the records recovery replays (each log's START record says where it
begins), so a record that does not continue them is a hole: writes lost
before it. See test_recovery.py for holes across logs; these are the other
shapes of the same rule, and a check that the engine itself never writes
one."""

import os
import struct
import threading

import pytest

import lsm
from faultfs import FaultFS
from lsm.batch import encode_batch
from lsm.keys import PUT
from lsm.wal import BATCH, START, WalWriter, scan_log


class _Buf:
    def __init__(self):
        self.buf = bytearray()
        self.path = "log"
        self.size = 0

    def write(self, b):
        self.buf += b
        self.size = len(self.buf)


def _log(start: int, records: list[tuple[int, list[bytes], int]]) -> bytes:
    """A format 3 log: START at ``start``, then ``(first_seq, keys, synced)`` batches."""
    f = _Buf()
    w = WalWriter(f)
    w.append(bytes((START,)) + struct.pack("<Q", start))
    for seq, keys, synced in records:
        w.append(bytes((BATCH,)) + encode_batch(seq, [(PUT, k, b"v" + k) for k in keys], synced))
    return bytes(f.buf)


def _db_with_logs(path, *logs):
    """A closed, empty database whose live logs are replaced by ``logs``."""
    with lsm.open(path, sync_mode="never"):
        pass
    n = min(int(f[:-4]) for f in os.listdir(path) if f.endswith(".log"))
    names = []
    for i, data in enumerate(logs):
        name = os.path.join(str(path), f"{n + i:06d}.log")
        with open(name, "wb") as f:
            f.write(data)
        names.append(name)
    return names


def _open(path, mode):
    db = lsm.open(path, wal_recovery=mode)
    try:
        return {k: v for k, v in db.scan()}, db.stats()["recovery"]["problems"]
    finally:
        db.close()


@pytest.mark.parametrize("synced", [0, 3])
@pytest.mark.parametrize("mode", ["tolerate_tail", "absolute", "point_in_time", "skip_corrupt"])
def test_a_hole_within_one_log(tmp_path, mode, synced):
    """Seq 1, then 2-3 missing, then 4 and 5, in one log. The default
    refuses when a later record says the missing writes had been durable,
    and otherwise keeps what came before the hole (nothing after it can be
    replayed over the gap)."""
    (name,) = _db_with_logs(tmp_path / "db", _log(1, [(1, [b"a"], 0), (4, [b"d"], synced), (5, [b"e"], synced)]))
    if mode == "absolute" or (mode == "tolerate_tail" and synced):
        with pytest.raises(lsm.CorruptionError, match="missing") as ei:
            lsm.open(tmp_path / "db", wal_recovery=mode)
        assert ei.value.path == name
        return
    state, problems = _open(tmp_path / "db", mode)
    if mode == "skip_corrupt":
        assert state == {b"a": b"va", b"d": b"vd", b"e": b"ve"}
    else:
        assert state == {b"a": b"va"}
    assert len(problems) == 1
    with lsm.open(tmp_path / "db") as db:  # what it kept is the database now
        assert dict(db.scan()) == state


def test_a_sequence_going_back_is_damage(tmp_path):
    _db_with_logs(tmp_path / "db", _log(1, [(1, [b"a", b"b"], 2), (2, [b"c"], 2)]))
    with pytest.raises(lsm.CorruptionError):
        lsm.open(tmp_path / "db")


def test_the_first_log_may_start_past_the_manifest(tmp_path):
    # the manifest's last_sequence is 0 here; a first log starting at 7 is no hole
    _db_with_logs(tmp_path / "db", _log(7, [(7, [b"a"], 0)]), _log(8, [(8, [b"b"], 0)]))
    state, problems = _open(tmp_path / "db", "absolute")
    assert state == {b"a": b"va", b"b": b"vb"} and problems == []


def test_damage_skipped_is_not_reported_again_as_a_hole(tmp_path):
    """A damaged fragment costs the rest of its 32 KiB block (where the next
    fragment starts is then unknown), not a hole report for what follows."""
    f = _Buf()
    w = WalWriter(f)
    w.append(bytes((START,)) + struct.pack("<Q", 1))
    w.append(bytes((BATCH,)) + encode_batch(1, [(PUT, b"a", b"va")], 0))
    w.append(bytes((BATCH,)) + encode_batch(2, [(PUT, b"b", b"x" * 40000)], 0))  # into the next block
    w.append(bytes((BATCH,)) + encode_batch(3, [(PUT, b"c", b"vc")], 0))  # in the next block
    data = bytearray(f.buf)
    offs = [off for off, t, _ in scan_log(bytes(data)).records if t == BATCH]
    assert offs[2] > 32768
    data[offs[1] + 9] ^= 0xFF  # inside the second batch's first fragment: its checksum fails
    _db_with_logs(tmp_path / "db", bytes(data))
    state, problems = _open(tmp_path / "db", "skip_corrupt")
    assert state == {b"a": b"va", b"c": b"vc"} and len(problems) == 1 and "writes 2..2 lost" in problems[0]


class GatedFS(FaultFS):
    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def open_writable(self, path, *, preallocate=0):
        if path.endswith(".sst"):
            self.gate.wait(30)
        return super().open_writable(path, preallocate=preallocate)


@pytest.mark.parametrize("sync_mode", ["always", "periodic", "never"])
def test_no_hole_in_what_the_engine_writes(tmp_path, sync_mode):
    """Many live logs (flushes held back), batches, CAS, empty batches, a
    reopen in between: the strictest mode replays them without a problem."""
    path = tmp_path / "db"
    for _round in range(2):
        fs = GatedFS()
        db = lsm.DB(path, lsm.Options(sync_mode=sync_mode, memtable_bytes=1024, max_immutable_memtables=20),
                    fs=fs)
        for i in range(60):
            k = b"k%02d" % (i % 17)
            if i % 5 == 0:
                db.write(lsm.WriteBatch().put(k, b"b%d" % i).delete(b"k%02d" % (i % 3)))
            elif i % 7 == 0:
                assert db.compare_and_swap(k, 123456, b"never") is None  # a mismatch writes nothing
                db.write(lsm.WriteBatch())  # nor does an empty batch
            elif i % 11 == 0:
                db.delete_range(k, k + b"\x00")
            else:
                db.put(k, b"%d" % i + b"." * 100, sync=i % 4 == 0)
        assert db.stats()["memtable"]["immutable"] >= 3
        fs.process_crash()
        fs.gate.set()
        try:
            db.close()
        except lsm.Error:
            pass
        with lsm.open(path, wal_recovery="absolute") as db2:
            assert db2.stats()["recovery"]["problems"] == []
            assert db2.get(b"k16") is not None


@pytest.mark.parametrize("path", ["fast", "queue"])
def test_a_failed_memtable_insert_stops_writes(tmp_path, monkeypatch, path):
    """The log holds a write the memtable failed to take: no later write may
    reuse its sequence (recovery would see the sequence go back); the DB
    refuses writes and a reopen replays the log."""
    db = lsm.open(tmp_path / "db", sync_mode="never")
    db.put(b"a", b"1")
    mem_type = type(db._sv.mem)

    def broken(self, *args):
        raise MemoryError("injected")

    monkeypatch.setattr(mem_type, "add", broken)
    monkeypatch.setattr(mem_type, "add_ops", broken)
    with pytest.raises(MemoryError):
        db.put(b"b", b"2", sync=path == "queue")
    monkeypatch.undo()
    with pytest.raises(lsm.BackgroundError):
        db.put(b"c", b"3")
    try:
        db.close()
    except lsm.Error:
        pass
    with lsm.open(tmp_path / "db", wal_recovery="absolute") as db2:
        assert dict(db2.scan()) == {b"a": b"1", b"b": b"2"}
