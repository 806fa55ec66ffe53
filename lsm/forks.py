"""What an open ``DB`` or ``PersistentCache`` becomes in a child made by
``os.fork()`` (a ``multiprocessing`` worker, a pre-forking server).

The child inherits the parent's open objects, but not its threads: the
background workers are gone and any lock one of them held stays held. Had
the child used them, or merely closed them (a ``with`` block, ``__del__``),
it would have written into the parent's log, flushed or deleted files under
it, cut back a preallocated log the parent was still appending to (SIGBUS
for a mapped one), or released the parent's ``flock`` (an ``LOCK_UN`` on an
inherited descriptor unlocks every copy) so that a second process could open
the database beside it.

So, in the child, right after ``fork()``, every tracked object is told
(``_forked()``): it turns closed, each call then raises ``ClosedError``, and
``close()`` touches nothing. The child opens its own handle if it needs one
(after the parent closed, or with ``read_only=True``). The files' own
guards (:mod:`lsm.fs`: trim and unlock only in the opening process) cover
any object this registry does not know.

Thread safety: :func:`track` may be called from any thread; the hook runs in
the child, which has one thread.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["Forkable", "fork_note", "track"]


class Forkable(Protocol):
    def _forked(self) -> None:
        """Called in a forked child: become closed without touching any file or lock."""


# id -> object: a DB is a Mapping, so unhashable, and cannot be in a WeakSet.
_open: weakref.WeakValueDictionary[int, Forkable] = weakref.WeakValueDictionary()
_mu = threading.Lock()


def track(obj: Forkable) -> None:
    """Tell ``obj`` it is closed in every child forked from now on."""
    with _mu:
        _open[id(obj)] = obj


def fork_note(pid: int) -> str:
    """The hint a ClosedError carries in a child forked from process ``pid``
    (empty in the process that opened the object)."""
    if pid == os.getpid():
        return ""
    return (f" (it was opened by process {pid}; this process {os.getpid()} was forked from it, "
            f"and must open its own handle)")


def _after_fork_in_child() -> None:
    global _mu
    _mu = threading.Lock()  # another thread may have held it at fork()
    for obj in list(_open.values()):
        obj._forked()
    _open.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
