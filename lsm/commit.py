"""The writer queue: group commit as in LevelDB's ``DBImpl::Write``.

Writers enqueue under the DB mutex. The writer at the head of the queue is
the *leader*: it takes the writers queued behind it (up to a byte budget),
runs the group (one WAL ``write`` and at most one fsync for all of them,
then the memtable inserts), marks every member done and wakes them. A
writer never returns before the fsync covering its record, when it asked
for one, has succeeded.

Locking: ``submit`` is called without the mutex and takes it. ``run_group``
is called with the mutex held; it may release and re-take it (the DB does so
around the WAL I/O), but only the leader runs at a time, so the log and the
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
from typing import TYPE_CHECKING

from .invariants import assert_held

if TYPE_CHECKING:  # annotations only
    from .memtable import Memtable

__all__ = ["CommitQueue", "Writer"]

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


class CommitQueue:
    """FIFO of writers with leader election. See the module docstring."""

    def __init__(self, mu) -> None:
        self._mu = mu
        self._queue: deque[Writer] = deque()  # guarded by _mu
        # The same deque, for the fast path's "is anyone queued?" (under _mu):
        # a writer may take the fast path only when it is empty.
        self.waiting = self._queue

    def submit(self, w: Writer, run_group: Callable[[list[Writer]], None]) -> Writer:
        """Enqueue ``w``; return once it is done. Re-raises the group's error."""
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

    def idle_locked(self) -> bool:
        """Requires: mutex held. True when no writer is queued."""
        assert_held(self._mu)
        return not self._queue


def _signal(w: Writer) -> None:
    """Wake ``w`` if it sleeps (see the module docstring). Requires: mutex held."""
    wake = w.wake
    if wake is not None and wake.locked():
        wake.release()
