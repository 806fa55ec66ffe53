"""The write paths under concurrency, with memtables small enough that
switches and flushes happen all the time.

Writer threads mix plain puts (the fast path), ``sync=True`` puts and
batches (the commit queue and its group commit), ``WriteBatch``es, deletes,
range deletions, TTL puts and compare-and-swap, while reader threads scan
and take snapshots. Checked: every acknowledged write is there, with the version
its call returned (after the threads join, and after close and reopen);
each thread's successive writes get strictly increasing versions, and it
reads its own write back at once; no two writes share a sequence number;
compare-and-swap increments are never lost; and no reader ever sees part
of a batch.

Scans over a memtable that writers keep inserting into (before and after
the scan's position, overwriting and deleting too) return exactly the
state at the scan's creation, in both directions; so does a scan that runs
while a writer is half-way through adding a key. Last, reads stopped
between taking their sequence and their super version while a switch or
compaction installs.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from unittest import mock

import pytest

import lsm
import lsm.iterators
from dbmodel import FlushGate, switch_memtable
from lsm.snapshot import View

GROUP_KEYS = 6  # keys a group batch writes, all with one token
GROUPS = 4
COUNTERS = 3


def _threads(fns, timeout: float = 60.0) -> None:
    """Run ``fns`` in threads; re-raise the first error; fail on a hang."""
    errors: list[BaseException] = []

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append(e)
        return run

    ts = [threading.Thread(target=guard(fn), daemon=True) for fn in fns]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    if errors:
        raise errors[0]
    hung = [t.name for t in ts if t.is_alive()]
    assert not hung, f"threads still running after {timeout} s: {hung}"


def _group_key(g: int, j: int) -> bytes:
    return b"group%d:%d" % (g, j)


def _check_groups(read) -> int:
    """Every group's keys hold one token (or are all absent) in ``read``:
    ``read(prefix) -> {key: value}``. Returns the groups seen written."""
    seen = 0
    for g in range(GROUPS):
        rows = read(b"group%d:" % g)
        values = {rows.get(_group_key(g, j)) for j in range(GROUP_KEYS)}
        assert len(values) == 1, f"part of a batch visible in group {g}: {rows}"
        seen += values != {None}
    return seen


class Writer:
    """One writer thread's plan and record."""

    def __init__(self, db, wid: int, ops: int) -> None:
        self.db = db
        self.wid = wid
        self.rnd = random.Random(1000 + wid)
        self.ops = ops
        self.seqs: list[int] = []  # every sequence number its writes returned, in call order
        self.own: dict[bytes, tuple[bytes | None, int]] = {}  # its own keys: (value or None, version)
        self.batch_ranges: list[tuple[int, int]] = []
        self.increments = [0] * COUNTERS
        self.unsynced = 0  # writes that needed no fsync: candidates for the fast path

    def sync(self, *choices):
        """One of ``choices`` for a write's ``sync=``, counting the unsynced ones."""
        sync = self.rnd.choice(choices)
        self.unsynced += not sync
        return sync

    def own_key(self) -> bytes:
        return b"own%d:%03d" % (self.wid, self.rnd.randrange(120))

    def record(self, seq: int, writes: dict[bytes, bytes | None]) -> None:
        assert not self.seqs or seq > self.seqs[-1], "a thread's versions went backwards"
        self.seqs.append(seq)
        for k, v in writes.items():
            self.own[k] = (v, seq)
            e = self.db.get_entry(k)  # read your own write, at once
            if v is None:
                assert e is None, k
            else:
                assert e is not None and (e.value, e.version) == (v, seq), (k, e, seq)

    def run(self) -> None:
        db, rnd = self.db, self.rnd
        for n in range(self.ops):
            r = rnd.random()
            value = b"w%d-%d-" % (self.wid, n) + b"x" * rnd.choice([0, 10, 200])
            if r < 0.35:  # plain put: the fast path
                k = self.own_key()
                self.record(db.put(k, value, sync=self.sync(None, False)), {k: value})
            elif r < 0.45:  # synchronous put: the queue, group commit
                k = self.own_key()
                self.record(db.put(k, value, sync=True), {k: value})
            elif r < 0.5:
                k = self.own_key()
                self.record(db.put(k, value, ttl=1e6, sync=self.sync(None, True)), {k: value})
            elif r < 0.56:
                k = self.own_key()
                self.record(db.delete(k, sync=self.sync(None, True)), {k: None})
            elif r < 0.6:  # a range deletion of own keys
                lo, hi = sorted([self.own_key(), self.own_key()])
                seq = db.delete_range(lo, hi, sync=self.sync(None, True))
                if lo == hi:
                    assert seq == 0
                    continue
                self.record(seq, {k: None for k in self.own if lo <= k < hi})
            elif r < 0.7:  # a batch of own keys: puts, deletes, range deletions
                b = lsm.WriteBatch()
                ops = []
                for _ in range(rnd.randrange(1, 5)):
                    x = rnd.random()
                    if x < 0.15:
                        lo, hi = sorted([self.own_key(), self.own_key()])
                        if lo < hi:
                            b.delete_range(lo, hi)
                            ops.append((lo, hi))
                    elif x < 0.3:
                        k = self.own_key()
                        b.delete(k)
                        ops.append((k, None))
                    else:
                        k = self.own_key()
                        b.put(k, value)
                        ops.append((k, value))
                last = db.write(b, sync=self.sync(None, None, True))
                if not ops:
                    assert last == 0  # an empty batch writes nothing
                    continue
                first = last - len(ops) + 1
                self.batch_ranges.append((first, last))
                assert not self.seqs or first > self.seqs[-1]
                self.seqs.append(last)
                touched = set()
                for i, (k, x) in enumerate(ops):  # op i has sequence first + i
                    if isinstance(x, bytes) and x.startswith(b"own"):  # a range [k, x)
                        for key in [key for key in self.own if k <= key < x]:
                            self.own[key] = (None, first + i)
                            touched.add(key)
                    else:
                        self.own[k] = (x, first + i)
                        touched.add(k)
                for k in touched:
                    v, ver = self.own[k]
                    e = db.get_entry(k)
                    assert (None if e is None else (e.value, e.version)) == (None if v is None else (v, ver)), k
            elif r < 0.8:  # a group batch: one token on every key of the group
                g = rnd.randrange(GROUPS)
                b = lsm.WriteBatch()
                token = b"%d-%d" % (self.wid, n)
                delete = rnd.random() < 0.15
                for j in range(GROUP_KEYS):
                    b.delete(_group_key(g, j)) if delete else b.put(_group_key(g, j), token)
                last = db.write(b, sync=self.sync(None, None, True))
                assert not self.seqs or last - GROUP_KEYS + 1 > self.seqs[-1]
                self.seqs.append(last)
                self.batch_ranges.append((last - GROUP_KEYS + 1, last))
                e = db.get_entry(_group_key(g, 0))  # ours, or a later group write
                assert e is None or e.version >= last - GROUP_KEYS + 1
            elif r < 0.9:  # compare-and-swap on an own key: nobody else writes it
                k = self.own_key()
                v, ver = self.own.get(k, (None, 0))
                expected = ver if v is not None else 0
                got = db.compare_and_swap(k, expected, value, sync=rnd.choice([None, True]))
                assert got is not None, (k, expected)
                self.record(got, {k: value})
                assert db.compare_and_swap(k, expected, b"stale") is None  # its version moved on
            else:  # compare-and-swap increments of a shared counter, retried on conflict
                c = rnd.randrange(COUNTERS)
                key = b"counter%d" % c
                while True:
                    e = db.get_entry(key)
                    cur, ver = (int(e.value), e.version) if e is not None else (0, 0)
                    got = db.compare_and_swap(key, ver, b"%d" % (cur + 1))
                    if got is not None:
                        break
                assert got > ver
                self.increments[c] += 1
                assert not self.seqs or got > self.seqs[-1]
                self.seqs.append(got)


def _check_final(db, writers: list[Writer]) -> None:
    for w in writers:
        for k, (v, ver) in w.own.items():
            e = db.get_entry(k)
            if v is None:
                assert e is None, k
            else:
                assert e is not None and (e.value, e.version) == (v, ver), (k, e, v, ver)
    for c in range(COUNTERS):
        total = sum(w.increments[c] for w in writers)
        e = db.get_entry(b"counter%d" % c)
        assert (int(e.value) if e is not None else 0) == total, "a compare-and-swap increment was lost"
    _check_groups(lambda p: dict(db.scan(p)))


OPTS = dict(sync_mode="never", memtable_bytes=2048, block_bytes=256, target_file_bytes=4096,
            level_base_bytes=8192, level_multiplier=2, l0_compaction_trigger=2, l0_slowdown_trigger=6,
            l0_stop_trigger=10, max_immutable_memtables=2, compaction_process=False)


def _write_paths_run(tmp_path, n_writers: int, ops: int, seconds_cap: float) -> None:
    db = lsm.open(tmp_path / "db", **OPTS)
    submitted = [0]
    real_submit = db._submit

    def counting_submit(w):
        if w.ops and w.cas is None and not w.sync:
            submitted[0] += 1  # an unsynced write that did not take the fast path
        return real_submit(w)

    db._submit = counting_submit  # the queue's entries: writes that did not take the fast path
    writers = [Writer(db, i, ops) for i in range(n_writers)]
    done = threading.Event()
    reads = {"snapshots": 0, "scans": 0, "seen": 0}

    def writer(w):
        return w.run

    def snapshot_reader():
        while not done.is_set():
            with db.snapshot() as s:
                # point reads through one snapshot: the batch's keys agree
                seen = _check_groups(lambda p: {k: v for k in [p + b"%d" % j for j in range(GROUP_KEYS)]
                                                if (v := s.get(k)) is not None})
                _check_groups(lambda p: dict(s.scan(p)))
            reads["snapshots"] += 1
            reads["seen"] += seen
            time.sleep(0.002)

    def scan_reader():
        while not done.is_set():
            rows = dict(db.scan())  # unbounded: windows over every source
            _check_groups(lambda p, rows=rows: {k: v for k, v in rows.items() if k.startswith(p)})
            _check_groups(lambda p: dict(db.scan(p, reverse=True)))  # bounded: read whole at the call
            reads["scans"] += 1
            time.sleep(0.002)

    def maintenance():
        while not done.is_set():
            db.flush()
            time.sleep(0.05)

    def writers_then_done():
        try:
            _threads([writer(w) for w in writers], timeout=seconds_cap)
        finally:
            done.set()

    _threads([writers_then_done, snapshot_reader, scan_reader, maintenance], timeout=seconds_cap + 30)

    all_seqs = [s for w in writers for s in w.seqs]
    assert len(set(all_seqs)) == len(all_seqs)
    ranges = sorted(r for w in writers for r in w.batch_ranges)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:])), "two batches share sequence numbers"
    assert db._versions.last_sequence >= max(all_seqs)
    _check_final(db, writers)
    stats = db.stats()
    assert stats["compaction"]["flushes"] >= 3
    unsynced = sum(w.unsynced for w in writers)
    assert submitted[0] < unsynced, (submitted[0], unsynced)  # some took the fast path
    assert reads["snapshots"] and reads["scans"] and reads["seen"]
    db.close()

    with lsm.open(tmp_path / "db", **OPTS) as db2:
        _check_final(db2, writers)


def test_concurrent_writes_on_every_path(tmp_path):
    _write_paths_run(tmp_path, n_writers=5, ops=300, seconds_cap=60)


@pytest.mark.slow
def test_concurrent_writes_on_every_path_longer(tmp_path):
    _write_paths_run(tmp_path, n_writers=8, ops=1500, seconds_cap=300)


# -- scans over a memtable that writers insert into ------------------------------------------


def _state_at(history: dict, covered: dict, seq: int) -> list[tuple[bytes, bytes]]:
    """The live rows at ``seq`` from ``history``: key -> [(seq, value or None)]
    (in the order the writers noted them, not necessarily ascending), and
    ``covered``: key -> the sequences of the range deletions over it."""
    out = []
    for k, versions in history.items():
        v = None
        for s, value in sorted(versions, key=lambda x: x[0]):
            if s > seq:
                break
            v = value
            if any(s < r <= seq for r in covered.get(k, ())):
                v = None
        if v is not None:
            out.append((k, v))
    out.sort()
    return out


@pytest.mark.parametrize("memtable_bytes", [64 << 20, 8192], ids=["one-memtable", "switching"])
@pytest.mark.parametrize("tiny_windows", [False, True], ids=["windows", "tiny-windows"])
def test_scans_over_a_memtable_being_written(tmp_path, memtable_bytes, tiny_windows):
    """Scans (forward, reverse; of the DB and of snapshots) read slowly
    while two writers insert keys before and after their position,
    overwrite, delete and delete ranges: each returns exactly its view's
    rows."""
    db = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=memtable_bytes, block_bytes=256,
                  compaction_process=False)
    history: dict[bytes, list[tuple[int, bytes | None]]] = {}
    ranges: list[tuple[int, bytes, bytes]] = []  # range deletions: (seq, start, stop)
    mu = threading.Lock()

    def note(seq, k, v):
        with mu:
            history.setdefault(k, []).append((seq, v))

    for i in range(0, 3000, 3):  # the keys a scan starts with: every third number
        k = b"k%05d" % i
        note(db.put(k, b"v0-%d" % i), k, b"v0-%d" % i)
    views: list[View] = []
    real_new_view = db._new_view

    def new_view():
        v = real_new_view()
        views.append(v)
        return v

    db._new_view = new_view  # the sequence each windowed scan reads at
    done = threading.Event()

    def writer(wid):
        def run():
            rnd = random.Random(wid)
            n = 0
            while not done.is_set():
                n += 1
                i = rnd.randrange(3000)
                k = b"k%05d" % i
                r = rnd.random()
                if r < 0.6:
                    v = b"v%d-%d" % (wid, n)
                    note(db.put(k, v), k, v)
                elif r < 0.75:
                    note(db.delete(k), k, None)
                elif r < 0.8:  # a short range: a few keys, inserted or not
                    hi = b"k%05d" % (i + rnd.randrange(1, 8))
                    seq = db.delete_range(k, hi)
                    with mu:
                        ranges.append((seq, k, hi))
                else:
                    b = lsm.WriteBatch()
                    ks = sorted({b"k%05d" % rnd.randrange(3000) for _ in range(3)})
                    for x in ks:
                        b.put(x, b"b%d-%d" % (wid, n))
                    last = db.write(b)
                    for j, x in enumerate(ks):
                        note(last - len(ks) + 1 + j, x, b"b%d-%d" % (wid, n))
                if n % 50 == 0:
                    time.sleep(0.0005)
        return run

    results = []  # (seq, reverse, rows)

    def scanner():
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for reverse in (False, True):
                if random.Random(len(results)).random() < 0.5:
                    with db.snapshot() as s:
                        it = s.scan(b"k", reverse=reverse) if len(results) % 4 else s.scan(reverse=reverse)
                        seq = s.sequence
                        rows = _slow_list(it)
                else:
                    before = len(views)
                    it = db.scan(reverse=reverse)
                    assert len(views) == before + 1
                    seq = views[-1].seq
                    rows = _slow_list(it)
                results.append((seq, reverse, rows))
        done.set()

    patch = (mock.patch.multiple(lsm.iterators, FIRST_WINDOW=1, WINDOW=4) if tiny_windows
             else mock.patch.multiple(lsm.iterators, FIRST_WINDOW=lsm.iterators.FIRST_WINDOW))
    with patch:
        _threads([writer(1), writer(2), scanner], timeout=60)
    assert len(results) >= 4
    first_seq = 1000
    assert any(seq > first_seq for seq, _, _ in results), "no scan started while the writers ran"
    keys = sorted(history)
    covered: dict[bytes, list[int]] = {}
    for r, a, b in ranges:
        for k in keys[bisect.bisect_left(keys, a):bisect.bisect_left(keys, b)]:
            covered.setdefault(k, []).append(r)
    for seq, reverse, rows in results:
        want = _state_at(history, covered, seq)
        if reverse:
            want.reverse()
        if rows != want:
            got_d, want_d = dict(rows), dict(want)
            diff = sorted(k for k in set(got_d) | set(want_d) if got_d.get(k) != want_d.get(k))
            detail = [(k, got_d.get(k), want_d.get(k), [h for h in history[k] if abs(h[0] - seq) < 3000])
                      for k in diff[:5]]
            raise AssertionError(f"scan at {seq} (reverse={reverse}): {len(diff)} rows differ: {detail}")
    db.close()


def _slow_list(it) -> list:
    """The rows of ``it``, yielding the GIL every few rows so writers run in between."""
    out = []
    for i, row in enumerate(it):
        out.append(row)
        if i % 40 == 0:
            time.sleep(0.0002)
    return out


def test_scan_while_a_new_key_is_half_inserted(tmp_path):
    """The writer puts a new key in the memtable's fold list before its dict
    (lsm/memtable.py): a scan that runs between the two steps finds the key
    in the index with no version yet, and must skip it (it is newer than
    any view), in every scan path."""
    db = lsm.open(tmp_path / "db", sync_mode="never")
    db.put(b"a", b"1")
    db.put(b"c", b"3")
    reached, resume = threading.Event(), threading.Event()

    class PausingTail(list):
        def append(self, key):
            super().append(key)
            reached.set()  # the writer is between the fold list and the dict
            assert resume.wait(30)

    mem = db._sv.mem
    mem._tail = PausingTail(mem._tail)
    writer = threading.Thread(target=db.put, args=(b"b", b"2"), daemon=True)
    writer.start()
    try:
        assert reached.wait(30)
        want = [(b"a", b"1"), (b"c", b"3")]
        assert list(db.scan(start=b"a", stop=b"z")) == want  # read whole at the call
        assert list(db.scan()) == want  # in windows
        assert list(db.scan(reverse=True)) == want[::-1]
        with db.snapshot() as s:
            assert list(s.scan()) == want
        assert db.get(b"b") is None and db.get_entry(b"b") is None
    finally:
        resume.set()
        writer.join(30)
    assert not writer.is_alive()
    assert list(db.scan()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    db.close()



# -- a read preempted between its sequence and its super version -----------------------------
#
# A read takes its read point: the published sequence and the super version.
# A thread switch can fall between the two (any bytecode boundary may switch
# threads: under a tracer such as coverage's, between lines; in
# free-threaded builds, anywhere), and meanwhile a memtable switch, flush or
# compaction may install a super version holding writes above the read's
# sequence and, since a point read or a short scan registers no view,
# without the versions it would see at that sequence. These tests stop a
# reader right after its sequence read and let writes, switches and
# compactions run: the read must still see one whole state.


class _PausingVersions:
    """Forwards to the DB's version set; the reader thread stops right after
    reading ``last_sequence`` until ``resume`` is set."""

    def __init__(self, inner, reader: list, reached: threading.Event, resume: threading.Event) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_hook", (reader, reached, resume))

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)

    @property
    def last_sequence(self):
        value = self._inner.last_sequence
        reader, reached, resume = self._hook
        if threading.get_ident() == reader[0]:
            reached.set()
            assert resume.wait(30)
        return value


def _read_preempted(db, read, meanwhile):
    """``read()`` in a thread stopped after its sequence read while ``meanwhile()`` runs; its result."""
    reader, reached, resume = [None], threading.Event(), threading.Event()
    result = []
    db._versions = _PausingVersions(db._versions, reader, reached, resume)

    def run():
        reader[0] = threading.get_ident()
        result.append(read())

    t = threading.Thread(target=run, daemon=True)
    try:
        t.start()
        assert reached.wait(30)
        meanwhile()
    finally:
        resume.set()
        t.join(30)
        db._versions = db._versions._inner
    assert not t.is_alive() and result
    return result[0]


def test_get_preempted_across_a_memtable_switch_sees_whole_batches(tmp_path):
    with lsm.open(tmp_path / "db", sync_mode="never") as db:
        db.put(b"other", b"x")

        def meanwhile():
            # one batch: k is written and deleted again; no reader may see k
            db.write(lsm.WriteBatch().put(b"k", b"v").delete_range(b"k", b"l"))
            switch_memtable(db)

        assert _read_preempted(db, lambda: db.get(b"k"), meanwhile) is None


def test_get_entry_preempted_across_a_compaction_finds_the_key(tmp_path):
    with lsm.open(tmp_path / "db", sync_mode="never", compaction_process=False) as db:
        db.put(b"k", b"v1")
        db.flush()

        def meanwhile():
            db.put(b"k", b"v2")
            db.compact_range()  # v1 is shadowed by v2 and no view needs it: dropped

        e = _read_preempted(db, lambda: db.get_entry(b"k"), meanwhile)
        assert e is not None and e.value in (b"v1", b"v2")  # k was never deleted


def test_short_scan_preempted_across_a_compaction_finds_the_key(tmp_path):
    with lsm.open(tmp_path / "db", sync_mode="never", compaction_process=False) as db:
        db.put(b"k", b"v1")
        db.flush()

        def meanwhile():
            db.put(b"k", b"v2")
            db.compact_range()

        rows = _read_preempted(db, lambda: list(db.scan(start=b"k", stop=b"l")), meanwhile)
        assert rows in ([(b"k", b"v1")], [(b"k", b"v2")])  # k was never deleted


class _CountingLock:
    """A lock that counts the threads waiting for it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.waiting = 0
        self._count = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._count:
            self.waiting += 1
        try:
            return self.inner.acquire(blocking, timeout)
        finally:
            with self._count:
                self.waiting -= 1

    def release(self) -> None:
        self.inner.release()

    def locked(self) -> bool:
        return self.inner.locked()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def test_synced_write_while_a_flush_retires_the_log_it_syncs(tmp_path):
    """``sync_mode="never"``: a synchronous write fsyncs the older logs still
    unsynced (their list taken under the mutex), then its own. A flush that
    finishes in between makes such a log obsolete and closes it: the write
    must not fsync a closed log (that failed it, and stopped every later
    write with a background error)."""
    db = lsm.open(tmp_path / "db", sync_mode="never", compaction_process=False)
    try:
        gate = FlushGate(db)
        log_sync = db._log_sync_mu = _CountingLock(db._log_sync_mu)
        db.put(b"a", b"1")
        gate.closed = True
        switch_memtable(db)  # the old log stays open, unsynced, until its memtable is flushed
        assert len(db._unsynced_logs) == 1
        seqs, errors = [], []

        def synced_put():
            try:
                seqs.append(db.put(b"b", b"2", sync=True))
            except BaseException as e:  # noqa: BLE001 - checked below
                errors.append(e)

        deadline = time.monotonic() + 30
        log_sync.acquire()  # the synced write stops where it is about to fsync the logs
        try:
            writer = threading.Thread(target=synced_put, daemon=True)
            writer.start()
            while log_sync.waiting < 1:  # its record appended, the list of older logs taken
                assert time.monotonic() < deadline and writer.is_alive()
                time.sleep(0.001)
            gate.open()  # the flush writes the old memtable and retires its log
            while log_sync.waiting < 2 and db._unsynced_logs:
                assert time.monotonic() < deadline
                time.sleep(0.001)
        finally:
            log_sync.release()
        writer.join(30)
        assert not writer.is_alive()
        assert not errors and seqs == [2], errors
        assert db.put(b"c", b"3") == 3  # writes go on
        assert list(db.scan()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    finally:
        db.close()
    with lsm.open(tmp_path / "db") as db:
        assert list(db.scan()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
