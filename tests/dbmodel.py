"""Test helpers shared by the model and differential tests: a model of
the writes (every version, so any sequence number can be read), a fake
clock for TTL, and hooks that hold flushes back and switch memtables."""

from __future__ import annotations

import contextlib
import types
from unittest import mock

import lsm.batch
from lsm.commit import Writer
from lsm.keys import DELETE

START_TIME = 2_000_000_000.0


class Model:
    """Every acknowledged write: key -> [(seq, kind, value, expires)], ascending,
    and the range deletions [(seq, start, stop)]."""

    def __init__(self) -> None:
        self.hist: dict[bytes, list[tuple[int, int, bytes, float | None]]] = {}
        self.range_dels: list[tuple[int, bytes, bytes]] = []
        self.last = 0

    def add(self, seq: int, key: bytes, kind: int, value: bytes = b"", expires: float | None = None) -> None:
        self.hist.setdefault(key, []).append((seq, kind, value, expires))
        self.hist[key].sort(key=lambda e: e[0])
        self.last = max(self.last, seq)

    def add_range(self, seq: int, start: bytes, stop: bytes) -> None:
        self.range_dels.append((seq, start, stop))
        self.last = max(self.last, seq)

    def entry(self, key: bytes, seq: int, now: float) -> tuple[bytes, int, float | None] | None:
        """``(value, version, expires)`` of ``key`` as a reader at ``seq`` sees it at ``now``."""
        for s, kind, value, expires in reversed(self.hist.get(key, ())):
            if s <= seq:
                if kind == DELETE or (expires is not None and expires <= now):
                    return None
                if any(s < r <= seq and start <= key < stop for r, start, stop in self.range_dels):
                    return None
                return value, s, expires
        return None

    def state(self, seq: int, now: float) -> dict[bytes, tuple[bytes, int, float | None]]:
        out = {}
        for k in self.hist:
            e = self.entry(k, seq, now)
            if e is not None:
                out[k] = e
        return out

    def version_of(self, key: bytes, now: float) -> int:
        e = self.entry(key, self.last, now)
        return 0 if e is None else e[1]


def want_scan(state: dict, prefix: bytes, start, stop, reverse: bool, keys_only: bool) -> list:
    rows = sorted((k, e[0]) for k, e in state.items()
                  if k.startswith(prefix) and (start is None or k >= start) and (stop is None or k < stop))
    if reverse:
        rows.reverse()
    return [k for k, _ in rows] if keys_only else rows


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.t = START_TIME

    def __call__(self) -> float:
        return self.t


@contextlib.contextmanager
def fake_time(clock: FakeClock):
    """TTL expiries are written from ``lsm.batch``'s ``time.time()``; reads and
    compactions judge them by ``DB._now`` (set per open DB, with the version
    set's ``clock``, which manifest edits record)."""
    with mock.patch.object(lsm.batch, "time", types.SimpleNamespace(time=clock)):
        yield


class FlushGate:
    """Holds the flush thread back while closed, so that switched memtables
    stay immutable memtables (the job waits on the DB's condition, releasing
    the mutex, and runs once the gate opens or the DB closes)."""

    def __init__(self, db) -> None:
        self.db = db
        self.closed = False
        real = db._flush_job_locked

        def job():
            while self.closed and not db._closed:  # close() flushes what waits: let it
                db._bg_cv.wait(0.02)
            if not db._stop:
                real()

        db._flush_job_locked = job

    def open(self) -> None:
        with self.db._mu:
            self.closed = False
            self.db._bg_cv.notify_all()


def switch_memtable(db) -> None:
    """Make the active memtable immutable without waiting for its flush (what
    ``flush()`` does first)."""
    w = Writer([], [], 0, False)
    w.force_switch = True
    db._submit(w)


