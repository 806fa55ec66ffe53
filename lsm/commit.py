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
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Callable

from .invariants import assert_held

__all__ = ["CommitQueue", "Writer"]

MAX_GROUP_BYTES = 1 << 20  # cap on a group, so a small write behind a big one waits little


class Writer:
    """One pending write. ``ops`` is a list of ``(kind, key, stored_value)``.

    ``kind`` of the writer: a plain write; a compare-and-swap (``cas`` set,
    checked by the leader at its linearization point); or a control request
    (``force_switch``: switch the memtable so it can be flushed).
    """

    __slots__ = ("ops", "nbytes", "sync", "done", "seq", "error", "cas", "force_switch", "switched", "cv")

    def __init__(self, ops: list[tuple[int, bytes, bytes]], nbytes: int, sync: bool) -> None:
        self.ops = ops
        self.nbytes = nbytes
        self.sync = sync
        self.done = False
        self.seq = 0  # last sequence assigned, or 0 when nothing was written
        self.error: BaseException | None = None
        self.cas: tuple[bytes, int] | None = None  # (key, expected_version)
        self.force_switch = False
        self.switched = None  # force_switch: the memtable it made immutable (None if it was empty)
        self.cv: threading.Condition | None = None  # created only if this writer has to wait


class CommitQueue:
    """FIFO of writers with leader election. See the module docstring."""

    def __init__(self, mu) -> None:
        self._mu = mu
        self._queue: deque[Writer] = deque()  # guarded by _mu

    def submit(self, w: Writer, run_group: Callable[[list[Writer]], None]) -> Writer:
        """Enqueue ``w``; return once it is done. Re-raises the group's error."""
        with self._mu:
            q = self._queue
            q.append(w)
            if q[0] is not w:
                # Each waiter sleeps on its own condition (over the shared
                # mutex), so a finished group wakes exactly its members and
                # the next leader, not every queued thread (LevelDB's scheme).
                w.cv = threading.Condition(self._mu)  # type: ignore[arg-type]
                while not w.done and q[0] is not w:
                    w.cv.wait()
            if not w.done:
                group = [w]
                nbytes = w.nbytes
                if len(q) > 1 and not w.force_switch and w.cas is None:
                    for other in itertools.islice(q, 1, None):
                        if other.force_switch or other.cas is not None:
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
                        if x.cv is not None:
                            x.cv.notify()
                    if q and q[0].cv is not None:
                        q[0].cv.notify()  # the next leader
        if w.error is not None:
            raise w.error
        return w

    def idle_locked(self) -> bool:
        """Requires: mutex held. True when no writer is queued."""
        assert_held(self._mu)
        return not self._queue
