"""Flushes in the worker process: the memtable export that carries a
memtable there, the request framing, the result against an in-process
flush, and every way the worker can fail (the flush then runs in-process;
nothing is lost)."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

import lsm
from lsm.builder import FlushJob, build_memtable, run_flush
from lsm.errors import Error
from lsm.filenames import make_table_name
from lsm.fs import OsFileSystem
from lsm.keys import DELETE, PUT, PUT_TTL
from lsm.manifest import FileMeta
from lsm.memtable import Memtable
from lsm.options import Options
from lsm.sstable import TableReader
from lsm.worker import CompactionWorker, decode_request, encode_request

SMALL = dict(memtable_bytes=64 << 10, block_bytes=512, target_file_bytes=32 << 10, level_base_bytes=128 << 10)

ops = st.lists(st.tuples(st.sampled_from([PUT, PUT, DELETE, PUT_TTL, "range"]),
                         st.binary(min_size=0, max_size=6), st.binary(max_size=20)), max_size=60)


def _memtable(script) -> Memtable:
    m = Memtable(7)
    for seq, (kind, key, value) in enumerate(script, 1):
        if kind == "range":
            if key != value:  # an empty range is refused before it reaches a memtable
                m.add_range_del(seq, min(key, value), max(key, value))
        else:
            if kind == PUT_TTL:
                value = struct.pack("<d", 1e12) + value
            m.add(seq, kind, key, value if kind != DELETE else b"")
    m.immutable = True
    return m


@settings(max_examples=200, deadline=None)
@given(ops)
def test_export_round_trips_every_version(script):
    m = _memtable(script)
    n = Memtable.from_export(m.export())
    n._check()
    assert list(n.iter_entries()) == list(m.iter_entries())
    assert n.newest_columns() == m.newest_columns()
    assert n.range_dels == m.range_dels
    assert (n.log_number, n.max_seq, n.entries, n.special, n.nbytes, n.immutable) == \
        (m.log_number, m.max_seq, m.entries, m.special, m.nbytes, True)
    assert n.has_older() == m.has_older()


@pytest.mark.parametrize("data", [b"", b"junk", Memtable(1).export()[:-3]])
def test_from_export_rejects_what_export_did_not_write(data):
    with pytest.raises(ValueError, match="memtable export"):
        Memtable.from_export(data)


def test_flush_request_round_trips_and_a_short_payload_is_refused():
    m = _memtable([(PUT, b"a", b"1"), (PUT, b"b", b"2")])
    job = FlushJob("/x", Options(), m.export(), [3], 10, 4)
    raw = encode_request(job)
    line, payload = raw.split(b"\n", 1)
    got = decode_request(line, lambda n: payload[:n])
    assert isinstance(got, FlushJob)
    assert (got.dbpath, got.memtable, got.snapshots, got.first_number, got.reserved) == ("/x", job.memtable, [3], 10, 4)
    assert got.options == Options()
    with pytest.raises(EOFError):
        decode_request(line, lambda n: payload[:-1])


_keys = st.binary(max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 1 << 40), st.integers(0, 1 << 40), st.integers(0, 1 << 30), _keys, _keys,
       st.integers(0, (1 << 56) - 1), st.integers(0, (1 << 56) - 1),
       st.lists(st.tuples(_keys, _keys, st.integers(0, (1 << 56) - 1)), max_size=3))
def test_file_meta_crosses_the_worker_protocol_unchanged(number, size, entries, lo, hi, mn, mx, dels):
    m = FileMeta(number, size, entries, lo, hi, mn, mx, range_dels=tuple(dels))
    wire = json.loads(json.dumps(m.to_wire()))  # as the response line carries it
    assert FileMeta.from_wire(wire) == m


@settings(max_examples=40, deadline=None)
@given(ops, st.lists(st.integers(0, 70), max_size=3))
def test_run_flush_writes_what_an_in_process_flush_writes(tmp_path_factory, script, snaps):
    """The worker's job is build_memtable on the exported copy: the same table, entry for entry."""
    m = _memtable(script)
    snaps = sorted(set(snaps))
    fs = OsFileSystem()
    d1, d2 = str(tmp_path_factory.mktemp("a")), str(tmp_path_factory.mktemp("b"))
    numbers = iter(range(1, 100))
    want = build_memtable(fs, d1, m, snaps, Options(), lambda: next(numbers))
    got = run_flush(fs, FlushJob(d2, Options(), m.export(), snaps, 1, 4))
    assert [(x.number, x.entries, x.smallest, x.largest, x.min_seq, x.max_seq) for x in got] == \
        [(x.number, x.entries, x.smallest, x.largest, x.min_seq, x.max_seq) for x in want]
    for x in got:
        a = TableReader(fs.open_readable(make_table_name(d1, x.number)), x.number)
        b = TableReader(fs.open_readable(make_table_name(d2, x.number)), x.number)
        assert list(a.iter_entries()) == list(b.iter_entries())
        assert a.range_dels == b.range_dels
        a.close()
        b.close()


def test_run_flush_stays_inside_its_reservation(tmp_path):
    m = _memtable([(PUT, b"a", b"1")])
    with pytest.raises(Error, match="reserved file numbers"):
        run_flush(OsFileSystem(), FlushJob(str(tmp_path), Options(), m.export(), [], 5, 0))
    assert os.listdir(tmp_path) == []


def _fill(db, n, rng):
    model = {}
    for i in range(n):
        k = b"key%05d" % rng.randrange(n // 2)
        if rng.random() < 0.1:
            db.delete(k)
            model.pop(k, None)
        else:
            v = b"%d:" % i + os.urandom(rng.randrange(10, 60))
            db.put(k, v)
            model[k] = v
    return model


@pytest.fixture
def worker_flushes(monkeypatch):
    import lsm.background as bg
    monkeypatch.setattr(bg, "WORKER_MIN_BYTES", 0)


def test_flushes_run_in_the_worker(tmp_path, worker_flushes):
    db = lsm.open(tmp_path / "db", sync_mode="never", **SMALL)
    rng = random.Random(1)
    model = _fill(db, 3000, rng)
    snap = db.snapshot()
    seen = dict(snap.scan())
    _fill(db, 3000, rng)  # overwrites under an open snapshot: older versions must reach the table
    before = dict(db.scan())
    db.flush()
    s = db.stats()["compaction"]
    assert s["flushes"] >= 2 and s["flushes_in_worker"] == s["flushes"] and s["flush_worker_failures"] == 0
    assert dict(snap.scan()) == seen == model
    snap.close()
    assert db.stats()["background_error"] is None
    got = dict(db.scan())
    assert got == before
    db.close()
    with lsm.open(tmp_path / "db", **SMALL) as db2:
        assert dict(db2.scan()) == got
        db2._versions.current._check(db2._fs, db2.path)


def test_a_failing_worker_leaves_the_flush_to_the_db(tmp_path, worker_flushes, monkeypatch):
    """Any failure in the worker (here: an error from the job) reruns the
    flush in-process from the memtable; after three the DB stops using it."""
    real_run = CompactionWorker.run

    def run(self, spec, timeout=None):
        if isinstance(spec, FlushJob):
            raise Error("worker: injected")
        return real_run(self, spec, timeout)

    monkeypatch.setattr(CompactionWorker, "run", run)
    db = lsm.open(tmp_path / "db", sync_mode="never", **SMALL)
    model = {}
    for round_ in range(5):
        model.update({b"k%d-%d" % (round_, i): b"v%d" % i for i in range(200)})
        for k, v in list(model.items())[-200:]:
            db.put(k, v)
        db.flush()
    s = db.stats()["compaction"]
    assert s["flushes_in_worker"] == 0 and s["flush_worker_failures"] == 3
    assert "injected" in s["worker_note"]
    assert db._flush_worker is None
    assert db.stats()["background_error"] is None
    assert dict(db.scan()) == model
    db.close()


def test_close_abandons_a_hung_flush_and_the_log_keeps_its_data(tmp_path, worker_flushes, monkeypatch):
    """A flush stuck in the worker does not hold close() up; its memtable's
    writes are still in the log and come back at the next open."""
    started: list = []

    def hung_start(self):
        p = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(600)"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(p)
        return p

    monkeypatch.setattr(CompactionWorker, "_start", hung_start)
    try:
        db = lsm.open(tmp_path / "db", sync_mode="always", **SMALL)
        model = {b"k%05d" % i: b"v%d" % i for i in range(500)}
        for k, v in model.items():
            db.put(k, v)
        with db._mu:
            db._make_room_locked(force=True)  # what flush() does first, without waiting
        deadline = time.monotonic() + 30
        while not (started and db._bg_active) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started and db._bg_active, "the flush never reached the worker"
        t0 = time.monotonic()
        db.close()
        assert time.monotonic() - t0 < 10
        assert started[0].poll() is not None
        with lsm.open(tmp_path / "db", **SMALL) as db2:
            assert dict(db2.scan()) == model
            assert db2.stats()["background_error"] is None
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
