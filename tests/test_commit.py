"""Unit tests of lsm.commit, the writer queue (group commit as in LevelDB's
``DBImpl::Write``): the head of the queue leads and runs one group for the
writers queued behind it, in submission order; a group stops at the byte
cap and at a CAS, control or memtable-switch request (never grouped); an
error of the group's run reaches every member and the writers behind the
group still run, in order; many threads submitting at once each complete
exactly once, with distinct contiguous sequences.

The protocol (``CommitQueue.commit_group``) is driven with stub steps
(``CommitSteps``) that record what they see: sequences assigned in queue
order, contiguous; the log written, then the memtable, then the publish, with
the mutex released around the first two only; nothing published by a group
that fails, and nothing logged for a group its ``prepare`` completed. Two
properties belong to the DB's steps (lsm.writes) and are tested through
them: a synced writer makes its whole group synced (one fsync), and a failed
log write fails every writer of the group and refuses the writers behind it."""

from __future__ import annotations

import threading
import time

import pytest

import lsm
from faultfs import FaultFS
from lsm import commit as commit_mod
from lsm.batch import WriteBatch
from lsm.commit import MAX_GROUP_BYTES, CommitQueue, CommitSteps, Writer
from lsm.errors import BackgroundError, DiskError
from lsm.invariants import DebugLock
from lsm.keys import PUT
from lsm.options import Options

TIMEOUT = 10.0


def wait_until(cond, what: str = "condition") -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def writer(nbytes: int = 10, sync: bool = False, nops: int = 1) -> Writer:
    ops = [(PUT, b"k", b"v")] * nops
    return Writer(ops, [b"x"] * nops, nbytes, sync)


class StubDB:
    """The DB's steps of the protocol, stubbed: a ``prepare`` that completes
    control and switch requests itself (no sequences), the last published
    sequence in ``last``, a "log write" (mutex released) where ``hooks`` run:
    they may wait for more writers to queue, or raise as a failed log write.
    ``events`` records each step with what it saw."""

    def __init__(self, mu) -> None:
        self.mu = mu
        self.last = 0  # published
        self.groups: list[list[Writer]] = []  # every group the leader committed (prepare called)
        self.synced: list[bool] = []  # per published group: whether its one fsync ran
        self.hooks: list = []  # per group, in order: called with the group, mutex released
        self.finished: set[int] = set()  # id() of every writer whose group was published
        self.events: list[tuple] = []

    def steps(self) -> CommitSteps:
        return CommitSteps(prepare=self.prepare, last_sequence=self.last_sequence, encode=self.encode,
                           write_log=self.write_log, apply=self.apply, publish=self.publish)

    def prepare(self, group: list[Writer]) -> bool:
        assert self.mu._is_owned()
        self.groups.append(list(group))
        self.events.append(("prepare", len(group)))
        lead = group[0]
        return lead.control is None and not lead.force_switch

    def last_sequence(self) -> int:
        assert self.mu._is_owned()
        return self.last

    def encode(self, group: list[Writer], first: int, sync: bool):
        assert self.mu._is_owned()
        self.events.append(("encode", first, [w.seq for w in group], sync))
        hook = self.hooks.pop(0) if self.hooks else None
        return group, sync, hook

    def write_log(self, pending) -> None:
        assert not self.mu._is_owned()
        group, _sync, hook = pending
        self.events.append(("write_log",))
        if hook is not None:
            hook(group)

    def apply(self, group: list[Writer], first: int) -> None:
        assert not self.mu._is_owned()
        self.events.append(("apply", first, self.last))  # what a reader could see meanwhile

    def publish(self, last: int, pending) -> None:
        assert self.mu._is_owned()
        group, sync, _hook = pending
        self.events.append(("publish", last))
        self.last = last
        self.synced.append(sync)
        self.finished.update(id(w) for w in group)


class Submitter(threading.Thread):
    """Submits one writer; keeps what ``submit`` returned or raised."""

    def __init__(self, q: CommitQueue, w: Writer, run_group=None) -> None:
        super().__init__(daemon=True)
        self.q, self.w, self.run_group = q, w, run_group
        self.result: Writer | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.q.submit(self.w, self.run_group)
        except BaseException as e:  # noqa: BLE001 - checked by the test
            self.error = e


def queued(q: CommitQueue) -> int:
    return len(q._queue)


def start_in_order(q: CommitQueue, writers: list[Writer], run_group=None) -> list[Submitter]:
    """Start one thread per writer, each queued before the next starts."""
    threads = []
    for w in writers:
        t = Submitter(q, w, run_group)
        t.start()
        wait_until(lambda w=w: is_queued(q, w), "a writer to queue")
        threads.append(t)
    return threads


def is_queued(q: CommitQueue, w: Writer) -> bool:
    with q._mu:
        return w.done or any(x is w for x in q._queue)


def hold_until_queued(q: CommitQueue, n: int):
    """A hook: keep the group's I/O going until ``n`` writers wait behind it
    (the group itself still counts as queued until it returns)."""
    def hook(group):
        wait_until(lambda: queued(q) >= len(group) + n, f"{n} writers behind the group")
    return hook


def join_all(threads) -> None:
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a writer never returned"


@pytest.fixture
def setup():
    mu = DebugLock()
    log = StubDB(mu)
    return mu, CommitQueue(mu, log.steps()), log


# --- one writer, one group ---------------------------------------------------------------------------

def test_a_lone_writer_leads_its_own_group(setup) -> None:
    mu, q, log = setup
    w = writer(nops=3)
    assert q.submit(w) is w
    assert w.done and w.error is None and w.seq == 3
    assert log.groups == [[w]] and w.wake is None  # never had to wait: no lock made for it
    with mu:
        assert q.idle_locked() and not q.waiting
    w2 = writer()
    q.submit(w2)
    assert w2.seq == 4 and log.groups == [[w], [w2]]


def test_the_leader_runs_one_group_for_the_writers_queued_behind_it(setup) -> None:
    mu, q, log = setup
    first = writer()
    log.hooks = [hold_until_queued(q, 4)]
    t0 = Submitter(q, first)
    t0.start()
    wait_until(lambda: len(log.groups) == 1, "the first group to start")
    followers = [writer(nops=n) for n in (1, 2, 1, 3)]
    threads = start_in_order(q, followers)
    join_all([t0, *threads])
    assert log.groups == [[first], followers]  # the second leader took every writer queued behind it
    assert [w.seq for w in followers] == [2, 4, 5, 8]  # contiguous, in submission order
    assert all(t.result is t.w and t.w.done and t.error is None for t in [t0, *threads])
    assert log.finished == {id(w) for w in [first, *followers]}
    with mu:
        assert q.idle_locked()


def test_a_follower_returns_only_after_its_group_ran(setup) -> None:
    _mu, q, log = setup
    release = threading.Event()
    log.hooks = [hold_until_queued(q, 2), lambda group: release.wait(TIMEOUT)]
    t0 = Submitter(q, writer())
    t0.start()
    wait_until(lambda: len(log.groups) == 1)
    a, b = writer(), writer()
    ta, tb = start_in_order(q, [a, b])
    wait_until(lambda: len(log.groups) == 2, "the followers' group")
    time.sleep(0.05)
    # a leads, b follows; the group's I/O is still running: neither has returned
    assert ta.is_alive() and tb.is_alive() and not a.done and not b.done
    assert log.groups[1] == [a, b] and (a.seq, b.seq) == (2, 3)  # assigned, not yet published
    assert log.last == 1
    release.set()
    join_all([t0, ta, tb])
    assert ta.result is a and tb.result is b and log.last == 3 and log.finished >= {id(a), id(b)}


# --- the protocol: the order of the steps ---------------------------------------------------------------

def test_a_group_is_logged_then_applied_then_published(setup) -> None:
    _mu, q, log = setup
    log.last = 7
    w = writer(nops=3, sync=True)
    q.submit(w)
    assert log.events == [
        ("prepare", 1),
        ("encode", 8, [10], True),  # sequences assigned before the records are made
        ("write_log",),
        ("apply", 8, 7),  # inserted while the published sequence is still the previous one
        ("publish", 10),
    ]
    assert w.seq == 10 and log.last == 10


def test_the_protocol_publishes_only_after_apply_for_every_group(setup) -> None:
    _mu, q, log = setup
    nthreads, per = 6, 40
    log.hooks = [lambda g: time.sleep(0.0002)] * (nthreads * per)

    def work() -> None:
        for j in range(per):
            q.submit(writer(nops=1 + j % 3))

    threads = [threading.Thread(target=work) for _ in range(nthreads)]
    for t in threads:
        t.start()
    join_all(threads)
    steps = [e for e in log.events if e[0] != "prepare"]
    published = 0
    for enc, wl, ap, pub in zip(steps[0::4], steps[1::4], steps[2::4], steps[3::4]):
        assert (enc[0], wl[0], ap[0], pub[0]) == ("encode", "write_log", "apply", "publish")
        first = enc[1]
        assert first == published + 1  # contiguous with the group before
        assert ap[1] == first and ap[2] == published  # applied before anything of it was published
        assert pub[1] == enc[2][-1]  # the group's last sequence: its last writer's
        published = pub[1]
    assert len(steps) == 4 * len(log.groups) and published == log.last


def test_a_prepare_that_completes_the_group_assigns_and_logs_nothing(setup) -> None:
    _mu, q, log = setup
    for kind in ("control", "switch"):
        w = special(kind)
        assert q.submit(w) is w and w.seq == 0 and w.error is None
    assert log.events == [("prepare", 1), ("prepare", 1)] and log.last == 0


@pytest.mark.parametrize("step", ["write_log", "apply"])
def test_a_failed_step_publishes_nothing_and_returns_with_the_mutex_held(setup, step) -> None:
    mu, q, log = setup
    boom = OSError(step)
    real = getattr(log, step)

    def failing(*args):
        real(*args)
        raise boom

    fields = {f: getattr(q._steps, f) for f in CommitSteps.__dataclass_fields__}
    q._steps = CommitSteps(**{**fields, step: failing})
    ran = ["prepare", "encode", "write_log"] + (["apply"] if step == "apply" else [])
    w = writer(nops=2)
    with mu:
        with pytest.raises(OSError) as err:
            q.commit_group([w])
        assert mu._is_owned()  # re-taken on the way out, for the hand-off
    assert err.value is boom and w.seq == 2  # assigned, never published
    assert [e[0] for e in log.events] == ran and log.last == 0 and log.finished == set()
    # through the queue: the writer gets the error, the queue moves on
    log.events.clear()
    w = writer()
    with pytest.raises(OSError):
        q.submit(w)
    assert w.done and w.error is boom and log.last == 0
    with mu:
        assert q.idle_locked()


# --- group limits ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, groups", [
    ([400_000] * 5, [[0, 1], [2, 3], [4]]),
    ([MAX_GROUP_BYTES // 2] * 3, [[0, 1], [2]]),                # exactly the cap fits
    ([MAX_GROUP_BYTES // 2 + 1] * 3, [[0], [1], [2]]),           # one byte over does not
    ([MAX_GROUP_BYTES * 3, 10, 10], [[0], [1, 2]]),              # a big writer leads alone
    ([10, 10, MAX_GROUP_BYTES, 10], [[0, 1], [2], [3]]),         # the group stops at the first that does not fit
])
def test_a_group_stops_at_the_byte_cap(setup, sizes, groups) -> None:
    _mu, q, log = setup
    ws = [writer(nbytes=n) for n in sizes]
    blocker = writer()
    log.hooks = [hold_until_queued(q, len(ws))]
    t0 = Submitter(q, blocker)
    t0.start()
    wait_until(lambda: len(log.groups) == 1)
    threads = start_in_order(q, ws)
    join_all([t0, *threads])
    assert [[ws.index(w) for w in g] for g in log.groups[1:]] == groups
    assert [w.seq for w in ws] == list(range(2, 2 + len(ws)))


def special(kind: str) -> Writer:
    w = writer()
    if kind == "cas":
        w.cas = (b"k", 0)
    elif kind == "control":
        w.control = lambda: None
    else:
        w.force_switch = True
    return w


def test_cas_control_and_switch_requests_are_never_grouped(setup) -> None:
    _mu, q, log = setup
    # each special stops the plain group before it, and leads a group of its own
    ws = [writer(), writer(), special("cas"), writer(), special("switch"), writer(), special("control"), writer(),
          writer()]
    log.hooks = [hold_until_queued(q, len(ws))]
    t0 = Submitter(q, writer())
    t0.start()
    wait_until(lambda: len(log.groups) == 1)
    threads = start_in_order(q, ws)
    join_all([t0, *threads])
    assert [[ws.index(w) for w in g] for g in log.groups[1:]] == [[0, 1], [2], [3], [4], [5], [6], [7, 8]]
    assert all(t.error is None for t in threads)


def test_the_cap_is_the_module_constant(setup, monkeypatch) -> None:
    monkeypatch.setattr(commit_mod, "MAX_GROUP_BYTES", 25)
    _mu, q, log = setup
    ws = [writer(nbytes=10) for _ in range(5)]
    log.hooks = [hold_until_queued(q, len(ws))]
    t0 = Submitter(q, writer())
    t0.start()
    wait_until(lambda: len(log.groups) == 1)
    join_all([t0, *start_in_order(q, ws)])
    assert [len(g) for g in log.groups[1:]] == [2, 2, 1]


# --- errors -----------------------------------------------------------------------------------------------

def test_an_error_reaches_every_member_and_later_writers_still_run(setup) -> None:
    mu, q, log = setup
    boom = OSError("log write failed")
    group = [writer(), writer(), writer()]
    later = [writer(), writer()]

    def fail(g):
        wait_until(lambda: queued(q) >= len(g) + len(later), "the later writers")
        raise boom

    log.hooks = [hold_until_queued(q, len(group)), fail]
    t0 = Submitter(q, writer())
    t0.start()
    wait_until(lambda: len(log.groups) == 1)
    tg = start_in_order(q, group)
    wait_until(lambda: len(log.groups) == 2, "the group to start")
    tl = start_in_order(q, later)
    join_all([t0, *tg, *tl])
    assert [t.error for t in tg] == [boom] * 3  # the same error, to every member
    assert all(w.done and w.error is boom for w in group)
    assert log.groups[1] == group and log.groups[2] == later  # the later writers: one group, in order
    assert all(t.error is None and t.w.done for t in tl)
    assert [w.seq for w in later] == [2, 3]  # the failed group published nothing
    with mu:
        assert q.idle_locked()


def test_a_leader_that_fails_alone_raises_and_the_queue_moves_on(setup) -> None:
    _mu, q, log = setup

    def fail(group):
        raise ValueError("bad")

    log.hooks = [fail]
    w = writer()
    with pytest.raises(ValueError, match="bad"):
        q.submit(w)
    assert w.done and isinstance(w.error, ValueError)
    w2 = writer()
    assert q.submit(w2).seq == 1 and w2.error is None


# --- many threads ----------------------------------------------------------------------------------------

def test_concurrent_submitters_each_complete_once_with_contiguous_sequences(setup) -> None:
    mu, q, log = setup
    nthreads, per = 8, 60
    results: dict[int, list[Writer]] = {i: [] for i in range(nthreads)}
    errors = []

    def io(group):
        time.sleep(0.0002)  # let others queue behind the group

    def work(i: int) -> None:
        try:
            for j in range(per):
                w = writer(nbytes=10 + j, sync=(i + j) % 7 == 0, nops=1 + (i + j) % 3)
                assert q.submit(w) is w
                assert id(w) in log.finished  # its group's I/O completed before it returned
                results[i].append(w)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    log.hooks = [io] * (nthreads * per)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    join_all(threads)
    assert errors == []
    everyone = [w for ws in results.values() for w in ws]
    assert len(everyone) == nthreads * per
    in_groups = [w for g in log.groups for w in g]
    assert len(in_groups) == len(everyone) and {id(w) for w in in_groups} == {id(w) for w in everyone}
    # each writer's sequences: a range of its own; together 1..last with no gap or overlap
    used = sorted(s for w in everyone for s in range(w.seq - len(w.ops) + 1, w.seq + 1))
    assert used == list(range(1, log.last + 1))
    # groups run in order, and a thread's writes are in its submission order
    assert [w.seq for w in in_groups] == sorted(w.seq for w in in_groups)
    for ws in results.values():
        assert [w.seq for w in ws] == sorted(w.seq for w in ws)
    assert all(w.done and w.error is None for w in everyone)
    assert len(log.groups) < len(everyone)  # some grouping did happen
    with mu:
        assert q.idle_locked()


# --- through the DB: what its steps do for a group ------------------------------------------------

def batch_writer(key: bytes, value: bytes, sync: bool) -> Writer:
    b = WriteBatch().put(key, value)
    return Writer(list(b.ops), list(b._parts), b.nbytes, sync)


def run_db_group(db, ws: list[Writer], lead_hook=None) -> list[Submitter]:
    """Queue ``ws`` behind a blocker so they form one group run by the DB's
    ``commit_group`` with its steps (after ``lead_hook``, if given, runs mutex released)."""
    q = db._queue

    def blocker(group):
        db._mu.release()
        try:
            wait_until(lambda: queued(q) >= 1 + len(ws), "the group to queue")
        finally:
            db._mu.acquire()

    def lead(group):
        if lead_hook is not None:
            db._mu.release()
            try:
                lead_hook(group)
            finally:
                db._mu.acquire()
        q.commit_group(group)

    t0 = Submitter(q, writer(), blocker)
    t0.start()
    wait_until(lambda: queued(q) == 1)
    threads = start_in_order(q, ws[:1], lead) + start_in_order(q, ws[1:])
    join_all([t0, *threads])
    return threads


def counting_syncs(db) -> list[int]:
    calls = []
    f = db._log.file
    inner = f.sync
    f.sync = lambda: (calls.append(1), inner())[1]
    return calls


@pytest.mark.parametrize("syncs", [(False, False, False), (False, True, False), (True, True, True)])
def test_db_a_synced_writer_makes_its_group_synced_with_one_fsync(tmp_path, syncs) -> None:
    db = lsm.DB(str(tmp_path), Options(sync_mode="never"), fs=FaultFS())
    try:
        db.put(b"before", b"x")
        base = db._versions.last_sequence
        synced_before = db._synced_seq
        calls = counting_syncs(db)
        ws = [batch_writer(b"k%d" % i, b"v%d" % i, s) for i, s in enumerate(syncs)]
        threads = run_db_group(db, ws)
        assert all(t.error is None for t in threads)
        assert [w.seq for w in ws] == [base + 1, base + 2, base + 3]
        assert db._versions.last_sequence == base + 3
        if any(syncs):
            assert len(calls) == 1  # one fsync for the whole group
            assert db._synced_seq == base + 3  # and every member is durable, the unsynced ones too
        else:
            assert calls == [] and db._synced_seq == synced_before
        assert [db.get(b"k%d" % i) for i in range(3)] == [b"v0", b"v1", b"v2"]
    finally:
        db.close()


def test_db_a_failed_log_write_fails_the_group_and_refuses_later_writers(tmp_path) -> None:
    fs = FaultFS()
    db = lsm.DB(str(tmp_path), Options(sync_mode="never"), fs=fs)
    try:
        db.put(b"before", b"x")
        base = db._versions.last_sequence
        group = [batch_writer(b"g%d" % i, b"v", False) for i in range(3)]
        later = batch_writer(b"later", b"v", True)
        later_t: list[Submitter] = []

        def queue_later_then_fail(g):
            t = Submitter(db._queue, later)
            t.start()
            wait_until(lambda: queued(db._queue) == len(g) + 1, "a writer behind the group")
            later_t.append(t)
            fs.fail("write", path_contains=".log")

        threads = run_db_group(db, group, queue_later_then_fail)
        join_all(later_t)
        errors = [t.error for t in threads]
        assert all(isinstance(e, DiskError) for e in errors) and len({id(e) for e in errors}) == 1
        assert isinstance(later_t[0].error, BackgroundError)  # not lost, not hanging: refused
        assert later.done and later.seq == 0
        assert db._versions.last_sequence == base  # no sequence of the failed group published
        assert [db.get(b"g%d" % i) for i in range(3)] == [None] * 3 and db.get(b"later") is None
        assert db.get(b"before") == b"x"
        with pytest.raises(BackgroundError):
            db.put(b"after", b"x")
    finally:
        try:
            db.close()
        except lsm.Error:
            pass
