"""Regression: with two live logs, an older log that ended cleanly at a
record boundary (its last records lost, e.g. to a power cut in
sync_mode="never" with the newer log written back first) was replayed, then
the newer one: the writes between were gone, later ones present, and no
recovery mode reported anything. Sequence numbers are contiguous across the
records recovery replays, so a record that does not start right after the
previous one's last sequence now counts as damage at its offset."""

import os
import threading

import pytest

import lsm
from lsm.batch import encode_batch
from lsm.filenames import make_log_name
from lsm.keys import PUT
from lsm.wal import encode_record

from faultfs import FaultFS


def _record(seq, *keys):
    return encode_record(encode_batch(seq, [(PUT, k, b"v" + k) for k in keys]))


def _db_with_logs(path, *logs):
    """A closed, empty database whose live logs are replaced by ``logs``
    (each a list of records), numbered from the manifest's log number."""
    with lsm.open(path, sync_mode="never"):
        pass
    n = max(int(f[:-4]) for f in os.listdir(path) if f.endswith(".log"))
    for i, records in enumerate(logs):
        with open(make_log_name(str(path), n + i), "wb") as f:
            f.write(b"".join(records))
    return [make_log_name(str(path), n + i) for i in range(len(logs))]


def _open(path, mode):
    db = lsm.open(path, wal_recovery=mode)
    try:
        return {k: v for k, v in db.scan()}, db.stats()["recovery"]["problems"]
    finally:
        db.close()


# seq 1-2 in the older log, 3 lost with its end, 4-5 in the newer one
ACROSS = ([_record(1, b"a"), _record(2, b"b")], [_record(4, b"d", b"e")])
# seq 1, then 2-3 missing, then 4, all in one log
WITHIN = ([_record(1, b"a"), _record(4, b"d"), _record(5, b"e")],)


@pytest.mark.parametrize("mode", ["tolerate_tail", "absolute"])
@pytest.mark.parametrize("logs", [ACROSS, WITHIN], ids=["across", "within"])
def test_a_gap_is_damage(tmp_path, mode, logs):
    paths = _db_with_logs(tmp_path / "db", *logs)
    with pytest.raises(lsm.CorruptionError) as ei:
        lsm.open(tmp_path / "db", wal_recovery=mode)
    where = paths[1] if logs is ACROSS else paths[0]
    offset = 0 if logs is ACROSS else len(_record(1, b"a"))
    assert ei.value.path == where and ei.value.offset == offset and "sequence" in str(ei.value)


def test_point_in_time_stops_at_a_gap(tmp_path):
    _db_with_logs(tmp_path / "db", *ACROSS)
    state, problems = _open(tmp_path / "db", "point_in_time")
    assert state == {b"a": b"va", b"b": b"vb"}
    assert len(problems) == 1 and "sequence" in problems[0]
    with lsm.open(tmp_path / "db") as db:  # what it kept is the database now
        assert dict(db.scan()) == state


def test_point_in_time_stops_at_a_gap_within_a_log(tmp_path):
    _db_with_logs(tmp_path / "db", *WITHIN)
    state, problems = _open(tmp_path / "db", "point_in_time")
    assert state == {b"a": b"va"} and len(problems) == 1


def test_skip_corrupt_reports_a_gap_and_goes_on(tmp_path):
    _db_with_logs(tmp_path / "db", *ACROSS)
    state, problems = _open(tmp_path / "db", "skip_corrupt")
    assert state == {b"a": b"va", b"b": b"vb", b"d": b"vd", b"e": b"ve"}
    assert len(problems) == 1 and "sequence" in problems[0]


def test_a_sequence_going_back_is_damage_too(tmp_path):
    _db_with_logs(tmp_path / "db", [_record(1, b"a", b"b"), _record(2, b"c")])
    with pytest.raises(lsm.CorruptionError, match="sequence"):
        lsm.open(tmp_path / "db")


def test_the_first_record_may_start_anywhere(tmp_path):
    # the manifest's last_sequence is 0 here; a first record at 7 is no gap
    _db_with_logs(tmp_path / "db", [_record(7, b"a")], [_record(8, b"b")])
    state, problems = _open(tmp_path / "db", "absolute")
    assert state == {b"a": b"va", b"b": b"vb"} and problems == []


def test_damage_skipped_is_not_reported_again_as_a_gap(tmp_path):
    good = [_record(1, b"a"), _record(2, b"b"), _record(3, b"c")]
    bad = bytearray(good[1])
    bad[-1] ^= 0xFF  # checksum mismatch
    _db_with_logs(tmp_path / "db", [good[0], bytes(bad), good[2]])
    state, problems = _open(tmp_path / "db", "skip_corrupt")
    assert state == {b"a": b"va", b"c": b"vc"} and len(problems) == 1


class GatedFS(FaultFS):
    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def open_writable(self, path, *, preallocate=0):
        if path.endswith(".sst"):
            self.gate.wait(30)
        return super().open_writable(path, preallocate=preallocate)


@pytest.mark.parametrize("sync_mode", ["always", "periodic", "never"])
def test_no_gap_in_what_the_engine_writes(tmp_path, sync_mode):
    """Many live logs (flushes held back), batches, CAS, empty batches, a
    reopen in between: the strictest mode replays them without a problem."""
    path = tmp_path / "db"
    for round_ in range(2):
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
