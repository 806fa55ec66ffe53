"""The writer queue and the group commit protocol, as in LevelDB's
``DBImpl::Write`` (the queue) and Pebble's ``commitPipeline`` (the protocol
owns the sequences and calls back the DB for the log and the memtable).

Writers enqueue under the DB mutex. The writer at the head of the queue is
the *leader*: it takes the writers queued behind it (up to a byte budget),
commits the group (:meth:`CommitQueue.commit_group`: one WAL ``write`` and at
most one fsync for all of them, then the memtable inserts, then the publish),
marks every member done and wakes them. A writer never returns before the
fsync covering its record, when it asked for one, has succeeded.

The protocol is here; each step that touches the DB's state is a callback
(:class:`CommitSteps`). What readers rely on holds in ``commit_group`` alone:
a group's sequences are contiguous and follow the queue order, and every op
of the group is in the memtable before its last sequence is published.

Locking: ``submit`` is called without the mutex and takes it. The group is
committed with the mutex held; the steps may release and re-take it (see
:class:`CommitSteps`), and the protocol releases it around the log write and
the memtable inserts, but only the leader runs at a time, so the log and the
active memtable have a single writer.

Waking: each waiting writer sleeps on its own raw lock (``Writer.wake``), a
binary semaphore: it is held while no signal is pending, a signaller
releases it (with the mutex held, and only if it is held, so signals
collapse into one), and the sleeper's ``acquire`` consumes the signal. A
member woken with ``done`` set returns without touching the mutex again:
``done`` and ``error`` are written before the release that wakes it. This
is LevelDB's one-condition-variable-per-writer scheme without Python's
``threading.Condition`` (whose wait allocates a lock and re-takes the mutex
on the way out, a convoy of every group member through the mutex: with 16
synced writers that was a third of the CPU per put).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from .errors import Error
from .invariants import assert_held
from .keys import MAX_SEQUENCE

if TYPE_CHECKING:  # annotations only
    from .memtable import Memtable

__all__ = ["CommitQueue", "CommitSteps", "Writer"]

MAX_GROUP_BYTES = 1 << 20  # cap on a group, so a small write behind a big one waits little


class Writer:
    """One pending write. ``ops`` is a list of ``(kind, key, stored_value)``,
    ``parts`` the same ops encoded for the log (lsm.batch), joined behind the
    record's header by the leader.

    ``kind`` of the writer: a plain write; a compare-and-swap (``cas`` set,
    checked by the leader at its linearization point); or a control request
    (``force_switch``: switch the memtable so it can be flushed; ``control``:
    a function the leader calls, mutex held, as the only writer — an
    ingest, lsm.ingest). Control requests and CAS are never grouped.
    """

    __slots__ = ("ops", "parts", "nbytes", "sync", "done", "seq", "error", "cas", "force_switch", "switched",
                 "wake", "control")

    def __init__(self, ops: list[tuple[int, bytes, bytes]], parts: list[bytes], nbytes: int, sync: bool) -> None:
        self.ops = ops
        self.parts = parts
        self.nbytes = nbytes
        self.sync = sync
        self.done = False
        self.seq = 0  # last sequence assigned, or 0 when nothing was written
        self.error: BaseException | None = None
        self.cas: tuple[bytes, int] | None = None  # (key, expected_version)
        self.force_switch = False
        self.switched: Memtable | None = None  # force_switch: the memtable it made immutable (None if it was empty)
        self.wake: threading.Lock | None = None  # created only if this writer has to wait (see module doc)
        self.control: Callable[[], None] | None = None  # a callable run by the leader instead of a write


L = TypeVar("L")  # what the DB's log write carries from ``encode`` to ``write_log`` and ``publish``


@dataclass(frozen=True, slots=True)
class CommitSteps(Generic[L]):
    """The DB's part of a group commit, called by the leader in this order
    (:meth:`CommitQueue.commit_group`). A step that fails raises; the group
    then fails with that error (a step that leaves the DB unable to take
    more writes, as a failed log append, records that itself first).

    ``prepare(group) -> bool``, mutex held (it may release and re-take it):
    what comes before the sequences: refuse the group (closed, background
    error), run a control request, make room in the memtable (a switch, a
    stall), check a compare-and-swap (the leader's turn is its
    linearization point). False when that completed the group and there is
    nothing to write (a control or switch request, a CAS mismatch).

    ``last_sequence() -> int``, mutex held: the last published sequence.

    ``encode(group, first, sync) -> L``, mutex held: the group's log records,
    ``first`` being the sequence of its first op, and whatever ``write_log``
    and ``publish`` need (``sync``: one of the writers asked for an fsync).

    ``write_log(pending)``, mutex released: append the records; fsync them
    when ``sync``.

    ``apply(group, first)``, mutex released: insert every op of the group
    into the memtable, the first at sequence ``first``.

    ``publish(last, pending)``, mutex held: make sequences up to ``last``
    visible to readers, and note what the log write made durable.
    """

    prepare: Callable[[list[Writer]], bool]
    last_sequence: Callable[[], int]
    encode: Callable[[list[Writer], int, bool], L]
    write_log: Callable[[L], None]
    apply: Callable[[list[Writer], int], None]
    publish: Callable[[int, L], None]


class CommitQueue(Generic[L]):
    """FIFO of writers with leader election, and the group commit protocol.
    See the module docstring."""

    def __init__(self, mu, steps: CommitSteps[L]) -> None:
        self._mu = mu
        self._steps = steps
        self._queue: deque[Writer] = deque()  # guarded by _mu
        # The same deque, for the fast path's "is anyone queued?" (under _mu):
        # a writer may take the fast path only when it is empty.
        self.waiting = self._queue

    def submit(self, w: Writer, run_group: Callable[[list[Writer]], None] | None = None) -> Writer:
        """Enqueue ``w``; return once it is done. Re-raises the group's error.

        The leader commits its group (``commit_group``), or, when
        ``run_group`` is given, calls it instead, mutex held, as the only
        writer (a checkpoint's capture: a turn of the queue with no write)."""
        mu = self._mu
        q = self._queue
        mu.acquire()
        q.append(w)
        while q[0] is not w:
            wake = w.wake
            if wake is None:
                wake = w.wake = threading.Lock()
                wake.acquire()  # held: no signal pending
            mu.release()
            wake.acquire()  # sleep until signalled: done, or at the head of the queue
            if w.done:  # set before the signal, and never unset: no mutex needed
                if w.error is not None:
                    raise w.error
                return w
            mu.acquire()
        try:
            group = [w]
            nbytes = w.nbytes
            if len(q) > 1 and not w.force_switch and w.cas is None and w.control is None:
                for other in itertools.islice(q, 1, None):
                    if other.force_switch or other.cas is not None or other.control is not None:
                        break
                    if nbytes + other.nbytes > MAX_GROUP_BYTES:
                        break
                    group.append(other)
                    nbytes += other.nbytes
            try:
                if run_group is None:
                    self.commit_group(group)
                else:
                    run_group(group)
            except BaseException as e:  # noqa: BLE001 - handed to every member
                for x in group:
                    x.error = e
            finally:
                for x in group:
                    q.popleft()
                    x.done = True
                    if x is not w:
                        _signal(x)
                if q:
                    _signal(q[0])  # the next leader
        finally:
            mu.release()
        if w.error is not None:
            raise w.error
        return w

    def commit_group(self, group: list[Writer]) -> None:
        """Commit ``group``: the protocol, with the DB's steps (:class:`CommitSteps`).

        Sequences go to the writers in queue order, each writer's ops
        contiguous (``w.seq`` is its last); the records reach the log, then
        the memtable; only then is the group's last sequence published, so a
        reader (who reads at the published sequence) sees all of the group or
        none of it. A group that fails publishes nothing.

        Requires: mutex held, caller is the leader. Released around the log
        write and the memtable inserts; held again on return, raised or not.
        """
        mu = self._mu
        assert_held(mu)
        steps = self._steps
        if not steps.prepare(group):
            return
        first = seq = steps.last_sequence() + 1
        sync = False
        for w in group:
            seq += len(w.ops)
            w.seq = seq - 1
            sync = sync or w.sync
        last = seq - 1
        if last > MAX_SEQUENCE:
            raise Error("sequence numbers exhausted")
        pending = steps.encode(group, first, sync)
        mu.release()
        try:
            steps.write_log(pending)
            steps.apply(group, first)
        finally:
            mu.acquire()
        steps.publish(last, pending)

    def idle_locked(self) -> bool:
        """Requires: mutex held. True when no writer is queued."""
        assert_held(self._mu)
        return not self._queue


def _signal(w: Writer) -> None:
    """Wake ``w`` if it sleeps (see the module docstring). Requires: mutex held."""
    wake = w.wake
    if wake is not None and wake.locked():
        wake.release()
