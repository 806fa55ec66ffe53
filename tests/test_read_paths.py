"""Every read path against a model of the writes.

Hypothesis draws a data set — keys with shared prefixes, the empty key,
long keys, empty and long values, overwrites, deletes, range deletions,
batches, compare-and-swap, TTL puts that expire before or after the reads
(a fake clock) — and spreads it over every place a version can live: the active
memtable, immutable memtables (flushes held back), L0 tables and deeper
levels, in table format 1 (flushes and compactions write it while a flag is
set, with ``tests/v1format.py``; or the tables of ``tests/fixtures/v1db``)
and format 2, compressed or not, with and without filters and block cache.

Every read is then compared with the model: ``get`` (the inlined path and
the sampled ``_timed_get``), ``get`` with a default, ``get_entry`` (value,
version, expiry), ``in``, ``[]``, ``len``, and scans forward and reverse with
``prefix``/``start``/``stop`` bounds (between keys, equal, inverted, a
prefix matching nothing) and ``keys_only``, each read as it would be, whole
at the call (eager) and in tiny windows; through the DB, through snapshots
taken along the way, and through iterators opened (and partly read) along
the way. The checks run with the flushes held, again once every flush and
compaction has run and after a full compaction under the open snapshots,
then after reopening read-only and read-write.

Every run goes through the OS filesystem (uncompressed format 2 tables are
memory-mapped) and through ``tests/faultfs.py``'s filesystem, which cannot
map files (every block is read, checked and decoded): the results must be
identical.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from unittest import mock

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis.control import currently_in_test_context

import lsm
import lsm.builder
import lsm.iterators
import lsm.reads
from dbmodel import FakeClock, FlushGate, Model, fake_time, switch_memtable, want_scan
from faultfs import FaultFS
from lsm.keys import DELETE, PUT, PUT_TTL
from lsm.sstable.format import COMPRESSION_NONE
from v1format import V1TableWriter

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "v1db")
MISSING = object()

# -- test hooks: format 1 tables, scan modes --------------------------------------------------------


@contextlib.contextmanager
def v1_tables(flag: dict):
    """While ``flag["on"]``, flushes and in-process compactions write format 1 tables."""
    real = lsm.builder._new_writer

    def new_writer(fs, dbpath, number, options):
        if not flag["on"]:
            return real(fs, dbpath, number, options)
        return V1TableWriter(fs.open_writable(lsm.builder.make_table_name(dbpath, number)),
                             block_bytes=options.block_bytes, bloom_bits_per_key=options.bloom_bits_per_key,
                             compression=flag.get("compression", "zstd"))

    with mock.patch.object(lsm.builder, "_new_writer", new_writer):
        yield


@contextlib.contextmanager
def windowed():
    """Every scan through the window merge (no eager read), one entry per first window, at most 3 per window."""
    with mock.patch.object(lsm.reads, "read_range", lambda *a, **k: None), \
            mock.patch.object(lsm.iterators, "FIRST_WINDOW", 1), mock.patch.object(lsm.iterators, "WINDOW", 3):
        yield


@contextlib.contextmanager
def eager():
    """Every bounded scan read whole at the call, however long."""
    with mock.patch.object(lsm.reads, "read_range",
                           functools.partial(lsm.iterators.read_range, max_blocks=1 << 30)):
        yield


SCAN_MODES = {"natural": contextlib.nullcontext, "windowed": windowed, "eager": eager}

# -- the data ------------------------------------------------------------------------------------

TTLS = (5.0, 50.0, 1e6)  # seconds: the first two expire as the clock steps on, the last never does here
CLOCK_STEPS = (1.0, 10.0, 100.0)


@st.composite
def key_values(draw):
    """(keys, values): a key and value space, either mixed (empty, short,
    long, shared prefixes, 0x00/0xff edges) or of one width (fixed-width
    blocks: the in-place key search)."""
    if draw(st.booleans()):
        width = draw(st.integers(0, 4))
        alphabet = draw(st.sampled_from([b"ab", b"a\x00\xff", b"abcdefgh"]))
        keys = st.lists(st.sampled_from(alphabet), min_size=width, max_size=width).map(bytes)
        vwidth = draw(st.sampled_from([0, 1, 8]))
        values = st.binary(min_size=vwidth, max_size=vwidth)
        return keys, values
    keys = st.one_of(
        st.sampled_from([b"", b"\x00", b"a", b"a\x00", b"ab", b"abc", b"b", b"\xff", b"\xff\xff", b"\xff\x00"]),
        st.binary(min_size=1, max_size=4).map(lambda b: bytes(b"ab\x00\xff"[x % 4] for x in b)),
        st.builds(lambda p, n: p + b"%d" % n, st.sampled_from([b"user:", b"user:1", b"x" * 40, b"\xff" * 300]),
                  st.integers(0, 150)),
    )
    values = st.one_of(st.just(b""), st.binary(max_size=12), st.binary(min_size=200, max_size=700))
    return keys, values


def write_steps(keys, values):
    sync = st.sampled_from([None, None, None, False, True])
    ttl = st.sampled_from(TTLS)
    return st.one_of(
        st.tuples(st.just("put"), keys, values, sync),
        st.tuples(st.just("put"), keys, values, sync),
        st.tuples(st.just("ttl"), keys, values, ttl, sync),
        st.tuples(st.just("del"), keys, sync),
        st.tuples(st.just("batch"), st.lists(st.one_of(
            st.tuples(keys, st.one_of(st.none(), values), st.one_of(st.none(), ttl)),
            st.tuples(st.just("range"), keys, keys)), min_size=1, max_size=6), sync),
        st.tuples(st.just("rdel"), keys, keys, sync),
        st.tuples(st.just("cas"), keys, st.one_of(st.none(), values), st.one_of(st.none(), ttl), st.booleans(),
                  sync),
        st.tuples(st.just("clock"), st.sampled_from(CLOCK_STEPS)),
    )


def bounds(keys):
    """(prefix, start, stop): keys, keys between keys, equal and inverted bounds, prefixes of nothing."""
    bound = st.one_of(st.none(), keys, keys.map(lambda k: k + b"\x00"), keys.map(lambda k: k[:-1]))
    prefix = st.one_of(st.just(b""), keys.map(lambda k: k[:(len(k) + 1) // 2]), keys,
                       st.sampled_from([b"\xff", b"\xff\xff\xff\xff", b"nothing-here", b"user:"]))
    return st.tuples(prefix, bound, bound)


def view_steps(keys):
    return st.one_of(
        st.tuples(st.just("snap")),
        st.tuples(st.just("iter"), bounds(keys), st.booleans(), st.booleans(), st.integers(0, 12)),
    )


@st.composite
def scenarios(draw, max_ops: int = 40):
    """A database laid out in segments, oldest first: segments compacted to
    the deeper levels, segments flushed to L0 tables, segments switched to
    immutable memtables (their flushes held), the active memtable. Each
    segment is a list of writes with views (snapshots, iterators) and, in
    the table segments, flushes and compactions mixed in; a table segment's
    tables are format 1 or 2."""
    keys, values = draw(key_values())
    writes = write_steps(keys, values)
    views = view_steps(keys)
    maintenance = st.one_of(
        st.tuples(st.just("flush")),
        st.tuples(st.just("compact"), st.one_of(st.none(), keys), st.one_of(st.none(), keys)),
        st.tuples(st.just("wait")),
    )
    table_ops = st.one_of(writes, writes, writes, writes, writes, writes, maintenance, views)
    mem_ops = st.one_of(writes, writes, writes, writes, writes, views)
    steps = []
    for _ in range(draw(st.integers(1, 2))):  # to the deeper levels
        steps.append(("v1", draw(st.booleans())))
        steps += draw(st.lists(table_ops, min_size=1, max_size=max_ops))
        steps.append(("compact", None, None) if draw(st.booleans()) else
                     ("compact", *sorted([draw(keys), draw(keys)])))
    for _ in range(draw(st.integers(0, 3))):  # L0 tables
        steps.append(("v1", draw(st.booleans())))
        steps += draw(st.lists(table_ops, min_size=1, max_size=max_ops))
        steps.append(("flush",))
    steps.append(("v1", False))
    for _ in range(draw(st.integers(0, 3))):  # immutable memtables
        steps += draw(st.lists(mem_ops, min_size=1, max_size=max_ops))
        steps.append(("switch",))
    steps += draw(st.lists(mem_ops, max_size=max_ops))  # the active memtable
    trigger = draw(st.sampled_from([2, 4, 8]))
    opts = dict(
        sync_mode="never",
        memtable_bytes=draw(st.sampled_from([1024, 4096, 1 << 20])),
        max_immutable_memtables=1000,  # held flushes never stall a writer
        block_bytes=256,
        target_file_bytes=draw(st.sampled_from([1024, 4096])),
        level_base_bytes=draw(st.sampled_from([1024, 8192])),
        level_multiplier=2,
        l0_compaction_trigger=trigger,
        l0_slowdown_trigger=2 * trigger, l0_stop_trigger=4 * trigger,
        compression=draw(st.sampled_from(["none", "none", "zstd"])),
        bloom_bits_per_key=draw(st.sampled_from([10, 10, 0])),
        block_cache_bytes=draw(st.sampled_from([0, 4096, 1 << 20])),
        compaction_process=False,  # merges in this process, where format 1 tables are patched in
    )
    return dict(keys=keys, base=draw(st.sampled_from(["empty", "empty", "fixture"])), opts=opts,
                v1_compression=draw(st.sampled_from(["zstd", "none"])), steps=steps)


# -- running a scenario -------------------------------------------------------------------------


class Run:
    """One database under a scenario, with its model and the views opened along the way."""

    def __init__(self, path: str, opts: dict, fs_kind: str, clock: FakeClock) -> None:
        self.path = path
        self.opts = opts
        self.fs = FaultFS() if fs_kind == "fault" else None
        self.clock = clock
        self.model = Model()
        self.snaps: list[tuple[lsm.Snapshot, int]] = []
        self.iters: list[tuple[lsm.ScanIterator, list, list]] = []  # (iterator, read so far, expected whole)
        self.v1 = {"on": False}
        self.timed_gets = 0
        self.db = self.open()
        self.gate = FlushGate(self.db)

    def open(self, **extra):
        db = lsm.DB(self.path, lsm.Options(**dict(self.opts, **extra)), fs=self.fs)
        db._now = db._versions.clock = self.clock  # TTL's clock, and the one manifest edits record
        assert db._metrics is not None  # the sampled _timed_get path exists
        real = db._timed_get

        def timed_get(key, default):
            self.timed_gets += 1
            return real(key, default)

        db._timed_get = timed_get
        return db

    def reopen(self, **extra) -> None:
        self.db.close()
        self.db = self.open(**extra)

    # -- steps --

    def step(self, s: tuple) -> None:
        db, model, now = self.db, self.model, self.clock.t
        op = s[0]
        if op == "put":
            _, k, v, sync = s
            model.add(db.put(k, v, sync=sync), k, PUT, v)
        elif op == "ttl":
            _, k, v, ttl, sync = s
            model.add(db.put(k, v, ttl=ttl, sync=sync), k, PUT_TTL, v, now + ttl)
        elif op == "del":
            _, k, sync = s
            model.add(db.delete(k, sync=sync), k, DELETE)
        elif op == "rdel":
            _, a, b, sync = s
            a, b = min(a, b), max(a, b)
            seq = db.delete_range(a, b, sync=sync)
            if a == b:
                assert seq == 0  # an empty range writes nothing
            else:
                model.add_range(seq, a, b)
        elif op == "batch":
            _, ops, sync = s
            b = lsm.WriteBatch()
            applied = []  # ops that take a sequence number (an empty range takes none)
            for o in ops:
                if o[0] == "range":
                    lo, hi = min(o[1], o[2]), max(o[1], o[2])
                    b.delete_range(lo, hi)
                    if lo < hi:
                        applied.append(("range", lo, hi))
                elif o[1] is None:
                    b.delete(o[0])
                    applied.append(o)
                else:
                    b.put(o[0], o[1], ttl=o[2])
                    applied.append(o)
            assert len(b) == len(applied)
            last = db.write(b, sync=sync)
            if not applied:
                assert last == 0
            for i, o in enumerate(applied):
                seq = last - len(applied) + 1 + i
                if o[0] == "range":
                    model.add_range(seq, o[1], o[2])
                elif o[1] is None:
                    model.add(seq, o[0], DELETE)
                else:
                    k, v, ttl = o
                    model.add(seq, k, PUT if ttl is None else PUT_TTL, v, None if ttl is None else now + ttl)
        elif op == "cas":
            _, k, v, ttl, stale, sync = s
            if v is None:
                ttl = None
            cur = model.version_of(k, now)
            got = db.compare_and_swap(k, cur + 1 if stale else cur, v, ttl=ttl, sync=sync)
            if stale:
                assert got is None
            else:
                assert got == model.last + 1
                if v is None:
                    model.add(got, k, DELETE)
                else:
                    model.add(got, k, PUT if ttl is None else PUT_TTL, v, None if ttl is None else now + ttl)
        elif op == "clock":
            self.clock.t += s[1]
        elif op == "flush":
            db.flush()
        elif op == "compact":
            lo, hi = s[1], s[2]
            if lo is not None and hi is not None and lo > hi:
                lo, hi = hi, lo
            db.compact_range(lo, hi)
        elif op == "wait":
            db.wait_for_compactions()
        elif op == "v1":
            self.v1["on"] = s[1]
        elif op == "switch":
            self.gate.closed = True
            switch_memtable(db)
        elif op == "snap":
            snap = db.snapshot()
            assert snap.sequence == model.last
            self.snaps.append((snap, model.last))
        elif op == "iter":
            _, (prefix, start, stop), reverse, keys_only, n = s
            it = db.scan(prefix, start=start, stop=stop, reverse=reverse, keys_only=keys_only)
            whole = want_scan(model.state(model.last, now), prefix, start, stop, reverse, keys_only)
            got = [x for _, x in zip(range(n), it)]
            assert got == whole[:n]
            self.iters.append((it, got, whole))
        else:
            raise AssertionError(op)
        assert db._versions.last_sequence == model.last

    # -- checks --

    def check_point_reads(self, reader, seq: int, probes, is_db: bool) -> None:
        now = self.clock.t
        for k in probes:
            e = self.model.entry(k, seq, now)
            got = reader.get_entry(k)
            assert (None if got is None else (got.value, got.version, got.expires_at)) == e, k
            want = None if e is None else e[0]
            assert reader.get(k) == want, k
            assert reader.get(k, MISSING) is MISSING if e is None else reader.get(k, MISSING) == want, k
            assert (k in reader) == (e is not None), k
            if is_db:
                db = reader
                for n in (0, 15):  # the next call is the n+1-th: inline, then the sampled _timed_get
                    db._gets = n
                    before = self.timed_gets
                    assert db.get(k, MISSING) == (MISSING if e is None else want), (k, n)
                    assert self.timed_gets == before + (n == 15)
                if e is None:
                    with pytest.raises(KeyError):
                        db[k]
                else:
                    assert db[k] == want

    def check_scans(self, reader, seq: int, bound_list, modes=SCAN_MODES) -> None:
        state = self.model.state(seq, self.clock.t)
        for prefix, start, stop in bound_list:
            for mode in modes:
                with SCAN_MODES[mode]():
                    for reverse in (False, True):
                        for keys_only in ((False, True) if mode == "natural" else (reverse,)):
                            want = want_scan(state, prefix, start, stop, reverse, keys_only)
                            got = list(reader.scan(prefix, start=start, stop=stop, reverse=reverse,
                                                   keys_only=keys_only))
                            assert got == want, (mode, prefix, start, stop, reverse, keys_only)

    def check_all(self, probes, bound_list, snap_bounds) -> None:
        db, model = self.db, self.model
        self.check_point_reads(db, model.last, probes, True)
        self.check_scans(db, model.last, [(b"", None, None)] + bound_list)
        live = model.state(model.last, self.clock.t)
        assert len(db) == len(live)
        assert list(db) == sorted(live)
        for snap, seq in self.snaps:
            assert snap.sequence == seq
            self.check_point_reads(snap, seq, probes, False)
            self.check_scans(snap, seq, [(b"", None, None)] + snap_bounds, modes=("natural", "windowed"))

    def finish_iters(self) -> None:
        for it, got, whole in self.iters:
            assert got + list(it) == whole
        self.iters = []

    def table_formats(self) -> dict[tuple[int, int], int]:
        """{(level > 0, table format): count} of the current version, checking
        that no table is memory-mapped through FaultFS."""
        out: dict[tuple[int, int], int] = {}
        for level, f in self.db._sv.version.files():
            r = self.db._tables.reader(f)
            if self.fs is not None:
                assert r.buf is None, "FaultFS cannot map files"
            elif r.version >= 2 and r.props["compression"] == COMPRESSION_NONE:
                assert r.buf is not None, "an uncompressed format 2 table is read in place"
            key = (min(level, 1), r.version)
            out[key] = out.get(key, 0) + 1
        return out


def run_scenario(sc: dict, fs_kind: str, choose) -> None:
    """Run ``sc`` and check every read at every stage; ``choose(probes,
    keys)`` picks the probe keys and the scan bounds once the writes are
    known (``keys``: a strategy of keys)."""
    tmp = tempfile.mkdtemp(prefix="lsm-read-paths-")
    path = os.path.join(tmp, "db")
    clock = FakeClock()
    run = None
    try:
        if sc["base"] == "fixture":
            shutil.copytree(FIXTURE, path)
        with fake_time(clock), contextlib.ExitStack() as stack:
            run = Run(path, sc["opts"], fs_kind, clock)
            run.v1["compression"] = sc["v1_compression"]
            stack.enter_context(v1_tables(run.v1))
            if sc["base"] == "fixture":
                base = json_fixture()
                for k, (v, version, expires) in base.items():
                    run.model.add(version, k, PUT if expires is None else PUT_TTL, v, expires)
                run.model.last = run.db._versions.last_sequence
            for s in sc["steps"]:
                run.step(s)
            run.v1["on"] = False

            written = sorted(run.model.hist)
            extra = [b"", b"\x00", b"\xff", b"\xff" * 4, b"nothing-here", b"user:", b"u:0001", b"w:07"]
            probes = sorted(set(written) | set(extra) | {k + b"\x00" for k in written[:20]}
                            | {k[:-1] for k in written[:20]})
            probes, bound_list = choose(probes, st.one_of(sc["keys"], st.sampled_from(probes)))
            snap_bounds = bound_list[:2]

            formats = run.table_formats()
            if sc.get("expect_layout"):
                assert set(formats) == {(0, 1), (0, 2), (1, 1), (1, 2)}, formats
                assert len(run.db._sv.imms) >= 2 and len(run.db._sv.mem)
            if currently_in_test_context():
                for deep, version in formats:
                    event(f"{'deeper' if deep else 'L0'} table format {version}")
                event(f"{len(run.db._sv.imms)} immutable memtables held")
                sv = run.db._sv
                if any(f.range_dels for _, f in sv.version.files()):
                    event("range tombstones in tables")
                if any(m.range_dels for m in (sv.mem,) + sv.imms):
                    event("range tombstones in memtables")

            # A: flushes held back (immutable memtables in place), compactions may be running
            run.check_all(probes, bound_list, snap_bounds)
            # B: every flush and due compaction done
            run.gate.open()
            run.db.wait_for_compactions()
            run.check_all(probes, bound_list, snap_bounds)
            # C: everything pushed to the bottom under the open snapshots and iterators
            run.db.compact_range()
            run.check_all(probes, bound_list, snap_bounds)
            run.finish_iters()
            for snap, _ in run.snaps:
                snap.close()
            run.snaps = []
            # D: reopened read-only (the log's writes in memory), then read-write
            run.reopen(read_only=True)
            run.check_all(probes, bound_list, snap_bounds)
            run.reopen()
            run.check_all(probes, bound_list, snap_bounds)
            run.table_formats()
            run.db.close()
    finally:
        if run is not None and not run.db._closed:
            run.db.close()
        shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _fixture_json() -> dict:
    import json
    with open(os.path.join(os.path.dirname(FIXTURE), "v1db.json")) as f:
        return json.load(f)["entries"]


def json_fixture() -> dict[bytes, tuple[bytes, int, float | None]]:
    return {bytes.fromhex(k): (bytes.fromhex(v), version, expires)
            for k, (v, version, expires) in _fixture_json().items()}


def _draw_reads(data, probes: list, keys) -> tuple[list, list]:
    if len(probes) > 120:
        probes = data.draw(st.lists(st.sampled_from(probes), min_size=120, max_size=120, unique=True))
    return probes, data.draw(st.lists(bounds(keys), min_size=2, max_size=5))


# -- the tests ------------------------------------------------------------------------------------

QUICK = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
THOROUGH = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("fs_kind", ["os", "fault"])
@QUICK
@given(sc=scenarios(), data=st.data())
def test_every_read_path_matches_the_model(fs_kind, sc, data):
    run_scenario(sc, fs_kind, functools.partial(_draw_reads, data))


@pytest.mark.slow
@pytest.mark.parametrize("fs_kind", ["os", "fault"])
@THOROUGH
@given(sc=scenarios(max_ops=100), data=st.data())
def test_every_read_path_matches_the_model_thoroughly(fs_kind, sc, data):
    run_scenario(sc, fs_kind, functools.partial(_draw_reads, data))


def _fixed_scenario(seed: int) -> dict:
    """A scenario with every place and format in it, from a seeded generator."""
    import random
    rnd = random.Random(seed)
    keys = [b"user:%d" % i for i in range(60)] + [b"", b"\x00", b"a", b"ab", b"\xff", b"\xff\xff", b"x" * 40]

    def writes(n, among=keys, ranges=True):
        out = []
        for _ in range(n):
            k = rnd.choice(among)
            r = rnd.random()
            if ranges and r < 0.04:  # (format 1 cannot hold range tombstones: none in its segments)
                out.append(("rdel", k, rnd.choice(among), None))
                continue
            if r < 0.55:
                out.append(("put", k, rnd.randbytes(rnd.choice([0, 5, 300])), None))
            elif r < 0.7:
                out.append(("ttl", k, b"t" * rnd.randrange(20), rnd.choice(TTLS), None))
            elif r < 0.8:
                out.append(("del", k, None))
            elif r < 0.9:
                out.append(("batch", [(rnd.choice(among), rnd.choice([None, b"b1", b"b2"]), None)
                                      for _ in range(4)], rnd.choice([None, True])))
            elif r < 0.95:
                out.append(("cas", k, b"cas", None, rnd.random() < 0.3, None))
            else:
                out.append(("clock", rnd.choice(CLOCK_STEPS)))
        return out

    # two deep segments in disjoint key ranges: format 1 below user:4, format 2 from user:5
    steps = [("v1", True)] + writes(150, [k for k in keys if k < b"user:4"], ranges=False)
    steps += [("snap",), ("compact", None, None), ("v1", False)]
    steps += writes(100, [k for k in keys if k >= b"user:5"])
    steps += [("iter", (b"user:", None, None), False, False, 3), ("compact", None, None)]
    steps += [("v1", True)] + writes(40, ranges=False) + [("flush",), ("v1", False)]  # two L0 tables
    steps += writes(40) + [("flush",), ("snap",)]
    steps += writes(40) + [("switch",)] + writes(40) + [("switch",), ("iter", (b"", None, None), True, True, 5)]
    steps += writes(40) + [("snap",)] + writes(10)
    opts = dict(sync_mode="never", memtable_bytes=1 << 20, max_immutable_memtables=1000, block_bytes=256,
                target_file_bytes=2048, level_base_bytes=4096, level_multiplier=2, l0_compaction_trigger=8,
                l0_slowdown_trigger=16, l0_stop_trigger=32, compression="none", compaction_process=False,
                disable_auto_compactions=True)  # the layout stays as built
    return dict(keys=st.sampled_from(keys), base="empty", opts=opts, v1_compression="zstd", steps=steps,
                expect_layout=True)




FIXED_BOUNDS = [(b"user:", None, None), (b"", b"user:3", b"user:5\x00"), (b"", b"user:7", b"user:7"),
                (b"", b"user:9", b"user:1"), (b"nothing", None, None), (b"\xff", None, None),
                (b"", b"a\x00", None), (b"", None, b"user:"), (b"user:1", b"user:15", b"user:2")]


@pytest.mark.parametrize("fs_kind", ["os", "fault"])
def test_every_place_and_format_at_once(fs_kind):
    """A seeded run whose layout is checked: format 1 and 2 tables in L0 and
    in the deeper levels, two held immutable memtables, an active memtable."""
    run_scenario(_fixed_scenario(7), fs_kind, lambda probes, keys: (probes, FIXED_BOUNDS))
