"""Debug-only invariant checking, switched on with ``LSM_INVARIANTS=1``.

Checkers (``Version._check()``, ``Memtable._check()``, ``Block._check()``) are
always callable from tests; with the switch on, the engine also runs them after
every version install. ``DebugLock`` is a plain lock whose ``assert_held()`` is
free unless the switch is on.
"""

from __future__ import annotations

import os
import threading

from .errors import Error

ENABLED = os.environ.get("LSM_INVARIANTS", "") not in ("", "0")


class InvariantError(Error, AssertionError):
    """An internal invariant does not hold: a bug in ``lsm``, never a user error."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`InvariantError` with ``message`` unless ``condition``."""
    if not condition:
        raise InvariantError(message)


def make_lock():
    """A mutex for ``_locked``-method discipline: a :class:`DebugLock` when
    invariants are on, else a plain ``threading.Lock`` (no Python-level
    overhead on hot paths)."""
    return DebugLock() if ENABLED else threading.Lock()


def assert_held(lock) -> None:
    """Check that the calling thread holds ``lock`` (when invariants are on)."""
    if ENABLED:
        lock.assert_held()


class DebugLock:
    """A non-reentrant mutex that can say whether the calling thread holds it.

    Thread safety: as ``threading.Lock``. ``assert_held`` is a no-op unless
    ``LSM_INVARIANTS`` is set, so ``*_locked`` methods may call it freely.
    """

    __slots__ = ("_lock", "_owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self._lock.acquire(blocking, timeout)
        if ok:
            self._owner = threading.get_ident()
        return ok

    def release(self) -> None:
        self._owner = None
        self._lock.release()

    def __enter__(self) -> DebugLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # threading.Condition support: it calls these on the underlying lock.
    def _is_owned(self) -> bool:
        return self._owner == threading.get_ident()

    def locked(self) -> bool:
        return self._lock.locked()

    def assert_held(self) -> None:
        if ENABLED and self._owner != threading.get_ident():
            raise InvariantError("lock not held by the calling thread")
