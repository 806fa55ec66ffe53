"""``lsm-bench scale``: what a store does as its data grows 50x past the other figures.

One load of ``num`` keys (16-byte keys, 100-byte values, single puts, no
fsync: lsm ``sync_mode="never"``) in ``steps`` steps (the first of at most
1M keys, the others equal: :func:`step_bounds`), into one database
per engine, each engine in a child process of its own (so that its resident
memory is its own, and nothing another engine left behind counts against
it). The key order is a fixed pseudo-random permutation of ``0 .. num-1``
computed per key (:class:`ScatterOrder`: storing a shuffled list of 50M
indexes would itself take 2 GB), so every step writes keys spread over the
whole key space, as a random load does, and every key is written once.

After each step (untimed, but for the read samples):

- the step's put throughput (wall clock), the calling thread's CPU per put,
  and put latency p50/p99/p99.9/max (every put is timed; the percentiles
  rest on every k-th, at most 100,000 per step). Every put slower than
  :data:`SLOW_PUT_MS` is listed (when, and how long): the stalls;
- the engine's own stall seconds (lsm ``stats()["compaction"]``);
- resident memory of the measuring process (``/proc/self/status``:
  ``VmRSS``, ``RssAnon`` — heap —, ``RssFile`` — pages of memory-mapped
  files, i.e. tables read in place: page cache, not heap —, ``VmHWM``) and of
  its child processes (lsm's flush and compaction workers), and lsm's own
  account of its heap (``stats()["memory"]``);
- bytes on disk, files and bytes per level, write amplification so far
  (lsm's own figure, and ``wchar`` of the process and its children / user
  bytes for every engine);
- a sample of ``reads`` random gets of keys loaded so far (``readrandom``)
  and of absent keys (``readmissing``): wall throughput, thread CPU per get,
  p50/p99/p99.9 latency. Background compactions keep running meanwhile.

At the end: the time to ``close()`` as the load left the database
(memtables waiting for flush, compactions due) and to open it again, then
the time to settle (lsm ``flush()`` + ``wait_for_compactions()``;
LevelDB a memtable flush and a wait until no level is over its trigger),
then ``readrandom`` and ``readmissing`` (``final_reads`` each), ``scanprefix``
(``scans`` prefix scans of 100 keys) and ``readseq`` (``seq`` entries from
the first key), space amplification (bytes on disk / key + value bytes),
the time to ``close()``, the time to open again and the resident memory
right after it, and a read sample on the reopened database. Then two opens
that must replay a write-ahead log: after ``kill_puts`` overwrites (by
default 90% of a memtable's worth, so the log holds a memtable that no table
holds) and a clean ``close()``; and, with ``kill``, after a ``SIGKILL``: a
writer process opens the database, makes as many overwrites, is killed once
they are acknowledged, and the open that follows is timed and every
overwrite checked.

Every read is checked against the value written; anything wrong, missing
or unexpected marks the engine's result ``failed``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from lsm_bench.config import DEFAULT_KEY_SIZE, DEFAULT_SEED, DEFAULT_VALUE_SIZE, OptionValue
from lsm_bench.data import PREFIX_GROUP, KeySpace, ValueGen
from lsm_bench.engines import Engine
from lsm_bench.machine import (
    _descendants,
    cpu_delta,
    descendant_cpu,
    dir_bytes,
    io_counters,
    machine_info,
    package_versions,
)
from lsm_bench.measure import sample_every, summarize_latency
from lsm_bench.progress import make_progress

DEFAULT_NUM = 50_000_000
QUICK_NUM = 200_000
DEFAULT_STEPS = 10
DEFAULT_READS = 10_000  # per step, readrandom and readmissing each
DEFAULT_FINAL_READS = 100_000  # readrandom and readmissing at the end
DEFAULT_SCANS = 2_000  # scanprefix at the end
DEFAULT_SEQ = 1_000_000  # readseq entries at the end
DEFAULT_ENGINES = ("lsm", "plyvel")
SLOW_PUT_MS = 50.0  # puts slower than this are listed one by one
MAX_SLOW_LISTED = 2_000  # per step; beyond it only counted
SLOW_BUCKETS_MS = (1, 10, 100, 1000)  # puts at or above each are counted
PROGRESS_EVERY = 10_000
GET_CHUNK = 10_000  # gets timed between two untimed key-making and checking passes
FIRST_STEP_MAX = 1_000_000  # keys in the first step, at most (the baseline of the targets)
KILL_TIMEOUT = 600.0  # seconds the writer of the SIGKILL measurement may take to get ready
KILL_FRACTION = 0.9  # of a memtable's worth of puts, written before the SIGKILL
KILL_GEN = 2  # value generation the killed writer writes (1: the clean-close overwrite)

Log = Callable[[str], None]


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleConfig:
    """One ``lsm-bench scale`` run (built from the command line by ``lsm_bench.__main__``).

    :param num: keys loaded into each database (lsm; see ``peer_num``).
    :param peer_num: keys for every engine but lsm (``None``: ``num``), when a
        peer must run at a smaller size; the report says so.
    :param steps: steps of the load; measurements after each.
    :param first_step: keys in the first step (``None``: ``num / steps``, at
        most 1M); the other steps split the rest equally (:func:`step_bounds`).
    :param reads: gets per step in each read sample (readrandom, readmissing).
    :param final_reads: gets in the final readrandom and readmissing.
    :param scans: prefix scans (100 keys each) in the final scanprefix.
    :param seq: entries in the final readseq (capped at the keys loaded).
    :param kill: measure the open after a SIGKILL (module doc).
    :param kill_puts: puts before the SIGKILL (``None``: 90% of a memtable).
    :param isolate: run each engine in a child process (default); ``False``
        runs them in this process (tests; resident memory then includes
        whatever ran before).
    :param keep: keep the databases (their paths are in the report).
    """

    num: int = DEFAULT_NUM
    peer_num: int | None = None
    steps: int = DEFAULT_STEPS
    first_step: int | None = None
    reads: int = DEFAULT_READS
    final_reads: int = DEFAULT_FINAL_READS
    scans: int = DEFAULT_SCANS
    seq: int = DEFAULT_SEQ
    engines: tuple[str, ...] = DEFAULT_ENGINES
    key_size: int = DEFAULT_KEY_SIZE
    value_size: int = DEFAULT_VALUE_SIZE
    seed: int = DEFAULT_SEED
    engine_options: dict[str, dict[str, OptionValue]] = field(default_factory=dict)
    kill: bool = True
    kill_puts: int | None = None
    isolate: bool = True
    keep: bool = False
    out: Path | None = None
    progress: str = "auto"
    plots: bool = True
    tmpdir: Path | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        for name in ("num", "steps", "reads", "final_reads", "scans", "seq", "key_size", "value_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.peer_num is not None and self.peer_num < 1:
            raise ValueError(f"peer_num must be >= 1, got {self.peer_num}")
        if self.kill_puts is not None and self.kill_puts < 1:
            raise ValueError(f"kill_puts must be >= 1, got {self.kill_puts}")
        if self.steps > min(self.num, self.peer_num or self.num):
            raise ValueError(f"steps ({self.steps}) must not exceed the keys loaded")
        if self.first_step is not None and not 1 <= self.first_step <= min(self.num, self.peer_num or self.num):
            raise ValueError(f"first_step must be between 1 and the keys loaded, got {self.first_step}")
        largest = max(self.num, self.peer_num or 0)
        if len(str(largest)) > self.key_size:
            raise ValueError(f"key_size {self.key_size} is too small for {largest:,} keys")

    def num_for(self, engine: str) -> int:
        """Keys loaded into ``engine``'s database."""
        return self.num if engine == "lsm" or self.peer_num is None else self.peer_num

    def options_for(self, engine: str) -> dict[str, OptionValue]:
        """The pass-through options for ``engine`` (a copy)."""
        return dict(self.engine_options.get(engine, {}))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for the report and the child processes."""
        data = dataclasses.asdict(self)
        for name in ("out", "tmpdir"):
            data[name] = str(data[name]) if data[name] is not None else None
        data["engines"] = list(self.engines)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleConfig:
        """The inverse of :meth:`to_json`."""
        d = dict(data)
        for name in ("out", "tmpdir"):
            d[name] = Path(d[name]) if d.get(name) is not None else None
        d["engines"] = tuple(d["engines"])
        return cls(**d)


# -- key order ------------------------------------------------------------------------


class ScatterOrder:
    """A permutation of ``0 .. n-1`` computed per position, never stored:
    ``i -> (a * i + c) mod n``, with ``a`` coprime to ``n`` near ``n / phi``
    (so consecutive positions land far apart, all over the key space) and
    ``c`` drawn from ``seed``.

    >>> order = ScatterOrder(10, 301)
    >>> sorted(order(i) for i in range(10)) == list(range(10))
    True
    >>> [order(i) for i in range(4)] != [0, 1, 2, 3]
    True
    """

    __slots__ = ("n", "a", "c")

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        a = max(1, int(n * 0.6180339887498949))
        while math.gcd(a, n) != 1:
            a += 1
        self.a = a
        self.c = random.Random(seed).randrange(n)

    def __call__(self, i: int) -> int:
        return (self.a * i + self.c) % self.n


# -- process figures ------------------------------------------------------------------


_STATUS_FIELDS = {"VmRSS": "rss", "RssAnon": "rss_anon", "RssFile": "rss_file", "RssShmem": "rss_shmem",
                  "VmHWM": "rss_peak"}


def proc_memory(pid: str = "self") -> dict[str, int]:
    """Resident memory of process ``pid`` in bytes, from ``/proc/PID/status``
    (``{}`` where unavailable): ``rss``, ``rss_anon`` (heap and stacks),
    ``rss_file`` (resident pages of mapped files: page cache), ``rss_shmem``,
    ``rss_peak`` (the high-water mark)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                key = _STATUS_FIELDS.get(name)
                if key is not None:
                    out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


def memory_snapshot() -> dict[str, Any]:
    """This process's resident memory, and its live descendants' summed (``children``)."""
    snap: dict[str, Any] = dict(proc_memory())
    kids: dict[str, int] = {}
    for pid in _descendants(str(os.getpid())):
        for key, value in proc_memory(pid).items():
            if key != "rss_peak":
                kids[key] = kids.get(key, 0) + value
    snap["children"] = kids
    return snap


def leveldb_levels(stats_text: str | None) -> list[dict[str, int]]:
    """Files and bytes per level from LevelDB's ``leveldb.stats`` property.

    >>> leveldb_levels("Level  Files Size(MB) Time(sec) Read(MB) Write(MB)\\n"
    ...                "  0        2        4         0        0         4\\n"
    ...                "  2        9       17         1        2         3\\n")
    [{'level': 0, 'files': 2, 'bytes': 4194304}, {'level': 1, 'files': 0, 'bytes': 0}, \
{'level': 2, 'files': 9, 'bytes': 17825792}]
    """
    found: dict[int, tuple[int, float]] = {}
    for line in (stats_text or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            try:
                found[int(parts[0])] = (int(parts[1]), float(parts[2]))
            except ValueError:
                continue
    if not found:
        return []
    return [{"level": lv, "files": found.get(lv, (0, 0.0))[0], "bytes": int(found.get(lv, (0, 0.0))[1] * 2**20)}
            for lv in range(max(found) + 1)]


def _levels(engine: Engine, stats: dict[str, Any] | None) -> list[dict[str, int]]:
    if stats and isinstance(stats.get("levels"), list):  # lsm
        return [{"level": lv["level"], "files": len(lv["files"]), "bytes": lv["bytes"]} for lv in stats["levels"]]
    if stats and "leveldb.stats" in stats:
        return leveldb_levels(stats["leveldb.stats"])  # type: ignore[arg-type]
    return []


def _engine_memory(engine: Engine, stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if stats and isinstance(stats.get("memory"), dict):
        return dict(stats["memory"])
    db = getattr(engine, "db", None)
    prop = getattr(db, "get_property", None)
    if prop is not None:  # LevelDB: memtables and block cache
        try:
            raw = prop(b"leveldb.approximate-memory-usage")
            return {"total": int(raw)} if raw else None
        except Exception:  # informative only
            return None
    return None


# -- timed loops ------------------------------------------------------------------------


def _latency(samples: array, every: int) -> dict[str, Any]:
    lat = summarize_latency(samples, every)
    lat.pop("histogram_log2_ns", None)
    return lat


def timed_puts(put: Callable[[bytes, bytes], object], key: Callable[[int], bytes],
               value: Callable[[int], bytes], order: ScatterOrder, lo: int, hi: int,
               progress: Any) -> dict[str, Any]:
    """Put keys ``order(lo) .. order(hi - 1)``; time every put (module doc)."""
    n = hi - lo
    every = sample_every(n)
    samples = array("q")
    add = samples.append
    slow: list[tuple[int, float]] = []
    buckets = [0] * len(SLOW_BUCKETS_MS)
    limits = [int(ms * 1e6) for ms in SLOW_BUCKETS_MS]
    slow_ns = int(SLOW_PUT_MS * 1e6)
    floor = limits[0]
    worst = 0
    a, c, m = order.a, order.c, order.n
    pc = time.perf_counter_ns
    cpu0 = time.thread_time()
    t0 = pc()
    i = lo
    while i < hi:
        end = min(hi, i + PROGRESS_EVERY)
        for j in range(i, end):
            k = (a * j + c) % m
            kb = key(k)
            vb = value(k)
            s = pc()
            put(kb, vb)
            d = pc() - s
            if d >= floor:
                for b, limit in enumerate(limits):
                    if d >= limit:
                        buckets[b] += 1
                if d > worst:
                    worst = d
                if d >= slow_ns and len(slow) < MAX_SLOW_LISTED:
                    slow.append((j - lo, d / 1e6))
            if not j % every:
                add(d)
        i = end
        progress.update(i - lo)
    seconds = (pc() - t0) / 1e9
    cpu = time.thread_time() - cpu0
    lat = _latency(samples, every)
    if worst:
        lat["max_us"] = max(lat.get("max_us", 0.0), worst / 1000.0)
    return {"ops": n, "seconds": seconds, "ops_per_sec": n / seconds if seconds else None,
            "thread_cpu_us_per_op": cpu * 1e6 / n, "latency": lat,
            "slow_puts": {f">={ms}ms": count for ms, count in zip(SLOW_BUCKETS_MS, buckets)},
            "slow_listed": [[pos, round(ms, 1)] for pos, ms in slow],
            "max_put_ms": max(worst / 1e6, lat.get("max_us", 0.0) / 1000.0)}


def timed_gets(get: Callable[[bytes], bytes | None], count: int, key_of: Callable[[int], bytes],
               expect_of: Callable[[int], bytes | None]) -> dict[str, Any]:
    """``count`` gets of ``key_of(0) ..``, each timed, each checked against
    ``expect_of(i)``. Keys are made and results checked untimed, a chunk of
    :data:`GET_CHUNK` at a time, so that the harness holds little memory of
    its own while it measures the engine's."""
    every = sample_every(count)
    samples = array("q")
    add = samples.append
    pc = time.perf_counter_ns
    bad = {"missing": 0, "wrong": 0, "unexpected": 0}
    ns = 0
    cpu = 0.0
    for first in range(0, count, GET_CHUNK):
        keys = [key_of(i) for i in range(first, min(count, first + GET_CHUNK))]
        got: list[bytes | None] = []
        keep = got.append
        cpu0 = time.thread_time()
        t0 = pc()
        for j, k in enumerate(keys, first):
            s = pc()
            v = get(k)
            d = pc() - s
            keep(v)
            if not j % every:
                add(d)
        ns += pc() - t0
        cpu += time.thread_time() - cpu0
        for j, v in enumerate(got, first):
            want = expect_of(j)
            if v != want:
                bad["unexpected" if want is None else "missing" if v is None else "wrong"] += 1
    seconds = ns / 1e9
    return {"ops": count, "seconds": seconds, "ops_per_sec": count / seconds if seconds else None,
            "thread_cpu_us_per_op": cpu * 1e6 / count if count else None,
            "latency": _latency(samples, every), "verify": {"checked": count, **bad}}


# -- one engine -------------------------------------------------------------------------


class _Checks:
    """Reads that went wrong, over the whole measurement."""

    def __init__(self) -> None:
        self.total = {"checked": 0, "missing": 0, "wrong": 0, "unexpected": 0}

    def add(self, rec: dict[str, Any]) -> dict[str, Any]:
        for k, v in (rec.get("verify") or {}).items():
            self.total[k] = self.total.get(k, 0) + v
        return rec

    @property
    def failures(self) -> int:
        t = self.total
        return t["missing"] + t["wrong"] + t["unexpected"]


def _engine_class(name: str) -> type[Engine]:
    from lsm_bench.runner import ENGINES  # late: runner imports the workloads

    return ENGINES[name]


class WriteMeter:
    """Bytes this process and its live descendants passed to ``write(2)``
    (``wchar``) since :meth:`__init__`, across closes and opens: a worker
    process's count is lost when it exits, so :meth:`pause` banks the count
    before a close and :meth:`resume` starts again from the new processes."""

    def __init__(self) -> None:
        self.banked = 0
        self.ok = True
        self._from = self._now()

    @staticmethod
    def _now() -> int | None:
        io = io_counters()
        return None if io is None else io.get("wchar", 0)

    def total(self) -> int | None:
        now = self._now()
        if not self.ok or now is None or self._from is None:
            return None
        return self.banked + now - self._from

    def pause(self) -> None:
        t = self.total()
        if t is None:
            self.ok = False
        else:
            self.banked = t
        self._from = None

    def resume(self) -> None:
        self._from = self._now()

    def amplification(self, user_bytes: int) -> float | None:
        t = self.total()
        return t / user_bytes if t is not None and user_bytes else None


def step_bounds(num: int, steps: int, first: int | None = None) -> list[int]:
    """Keys loaded after each step: ``first`` (default ``num / steps``, at most
    1M, so a full run's first point is at 1M keys), then equal steps to ``num``.

    >>> step_bounds(50_000_000, 10)[:3], step_bounds(1000, 4)
    ([1000000, 6444444, 11888888], [250, 500, 750, 1000])
    """
    if steps == 1:
        return [num]
    first = max(1, min(num - steps + 1, first if first is not None else min(num // steps, FIRST_STEP_MAX)))
    return [first] + [first + (num - first) * i // (steps - 1) for i in range(1, steps)]


class Measure:
    """The whole measurement of one engine at one size (module doc)."""

    def __init__(self, cfg: ScaleConfig, engine: str, path: Path, say: Log) -> None:
        self.cfg = cfg
        self.name = engine
        self.cls = _engine_class(engine)
        self.n = cfg.num_for(engine)
        self.path = path
        self.say = say
        self.keys = KeySpace(cfg.key_size)
        self.values = ValueGen(cfg.value_size, cfg.seed)
        self.order = ScatterOrder(self.n, cfg.seed)
        self.checks = _Checks()
        self.options = cfg.options_for(engine)

    def _bar(self, desc: str, total: int) -> Any:
        return make_progress(self.cfg.progress, f"scale [{self.name}] {desc}", total)

    def _open(self) -> Engine:
        return self.cls(self.path, sync=False, options=self.options)

    def _timed_open(self) -> tuple[Engine, dict[str, Any]]:
        """Open, timed by the wall clock and by the opening thread's CPU (the
        log replay runs in it: on a busy machine the two differ)."""
        c, t = time.thread_time(), time.perf_counter()
        db = self._open()
        return db, {"seconds": time.perf_counter() - t, "cpu_seconds": time.thread_time() - c}

    def _sample(self, get: Callable[[bytes], bytes | None], loaded: int, count: int, salt: int,
                missing: bool) -> dict[str, Any]:
        """``count`` gets of random keys among the first ``loaded`` written (or,
        ``missing``, of keys never written), checked."""
        rng = random.Random(self.cfg.seed * 1000 + salt)
        idx = array("q", (self.order(rng.randrange(loaded)) for _ in range(count)))
        if missing:
            return self.checks.add(timed_gets(get, count, lambda i: self.keys.missing(idx[i]), lambda i: None))
        return self.checks.add(timed_gets(get, count, lambda i: self.keys.key(idx[i]),
                                          lambda i: self.values.value(idx[i])))

    def run(self) -> dict[str, Any]:
        cfg, n = self.cfg, self.n
        started = time.monotonic()
        entry = cfg.key_size + cfg.value_size
        self.cls.unavailable_reason()  # imports the store: its code is not part of the database's memory
        rec: dict[str, Any] = {"engine": self.name, "num": n, "path": str(self.path), "status": "ok",
                               "note": "", "memory_before_open": memory_snapshot(), "steps": []}
        db = self._open()
        rec["engine_settings"] = db.describe()
        rec["memory_after_open"] = memory_snapshot()
        rec["memtable_bound"] = self._memtable_bound()
        put, get = db.putter(), db.getter()
        key, value = self.keys.key, self.values.value
        meter = WriteMeter()
        cpu0, kids0 = time.process_time(), descendant_cpu()
        prev_stall = 0.0
        lo = 0
        try:
            for s, hi in enumerate(step_bounds(n, cfg.steps, cfg.first_step)):
                cpu_s, kids_s = time.process_time(), descendant_cpu()
                bar = self._bar(f"step {s + 1}/{cfg.steps}", hi - lo)
                try:
                    puts = timed_puts(put, key, value, self.order, lo, hi, bar)
                finally:
                    bar.close()
                step: dict[str, Any] = {"step": s + 1, "keys": hi, "puts": puts,
                                        "process_cpu_seconds": time.process_time() - cpu_s,
                                        "children_cpu_seconds": cpu_delta(kids_s, descendant_cpu())}
                stats = db.stats()
                step.update(self._shape(db, stats))
                stall = ((stats or {}).get("compaction") or {}).get("stall_seconds")
                if isinstance(stall, (int, float)):
                    step["stall_seconds"] = stall - prev_stall
                    prev_stall = stall
                step["loadavg"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                step["write_amp_syscall"] = meter.amplification(hi * entry)
                step["disk_bytes"] = dir_bytes(self.path)
                step["readrandom"] = self._sample(get, hi, cfg.reads, 2 * s, False)
                step["readmissing"] = self._sample(get, hi, cfg.reads, 2 * s + 1, True)
                # memory once the reads have opened the tables they need
                step["memory"] = memory_snapshot()
                step["engine_memory"] = _engine_memory(db, db.stats())
                rec["steps"].append(step)
                self.say(_step_line(self.name, step, cfg.steps))
                lo = hi
            rec["load_process_cpu_seconds"] = time.process_time() - cpu0
            rec["load_children_cpu_seconds"] = cpu_delta(kids0, descendant_cpu())
            # Close as the load left it (memtables waiting for flush, compactions
            # due) and open again: the open a user gets after a clean shutdown.
            meter.pause()
            t = time.perf_counter()
            db.close()
            rec["close_after_load_seconds"] = time.perf_counter() - t
            db, timed = self._timed_open()
            rec["open_after_load"] = {**timed, "memory": memory_snapshot(),
                                      "recovery": (db.stats() or {}).get("recovery")}
            meter.resume()
            rec["final"] = self._final(db, meter)
        finally:
            t = time.perf_counter()
            db.close()
            rec["close_seconds"] = time.perf_counter() - t
        rec["reopen"] = self._reopen()
        rec["reopen_with_log"] = self._reopen_with_log()
        if cfg.kill:
            rec["kill"] = self._kill()
        rec["verify"] = dict(self.checks.total)
        if self.checks.failures:
            rec["status"] = "failed"
            rec["note"] = f"{self.checks.failures} reads returned a wrong result"
        rec["wall_seconds"] = time.monotonic() - started
        return rec

    def _memtable_bound(self) -> int | None:
        """lsm: the heap its memtables may reach, by doc/design.md#memory:
        ``(1 + max_immutable_memtables) * memtable_bytes`` charged at 40 bytes
        an entry, held at :data:`lsm.memtable.ENTRY_HELD`, and one flush's
        export of a memtable (key + value + 48 bytes an entry)."""
        if self.name != "lsm":
            return None
        import lsm
        from lsm.memtable import ENTRY_HELD, ENTRY_OVERHEAD

        known = {f.name for f in dataclasses.fields(lsm.Options)}
        opts = lsm.Options(**{k: v for k, v in self.options.items() if k in known})
        entry = self.cfg.key_size + self.cfg.value_size
        entries = opts.memtable_bytes / (entry + ENTRY_OVERHEAD)
        return int((1 + opts.max_immutable_memtables) * entries * (entry + ENTRY_HELD) + entries * (entry + 48))

    def _shape(self, db: Engine, stats: dict[str, Any] | None) -> dict[str, Any]:
        comp = (stats or {}).get("compaction") or {}
        return {"levels": _levels(db, stats), "engine_memory": _engine_memory(db, stats),
                "write_amplification": comp.get("write_amplification"),
                "compactions": comp.get("count"),
                "stall_seconds_total": comp.get("stall_seconds")}

    def _final(self, db: Engine, meter: WriteMeter) -> dict[str, Any]:
        cfg, n = self.cfg, self.n
        get = db.getter()
        out: dict[str, Any] = {}
        t = time.perf_counter()
        db.quiesce()
        out["settle_seconds"] = time.perf_counter() - t
        stats = db.stats()
        out.update(self._shape(db, stats))
        out["write_amp_syscall"] = meter.amplification(n * (cfg.key_size + cfg.value_size))
        out["disk_bytes"] = dir_bytes(self.path)
        out["space_amp"] = out["disk_bytes"] / (n * (cfg.key_size + cfg.value_size))
        lsm_disk = (stats or {}).get("disk") or {}
        out["space_amplification_lsm"] = lsm_disk.get("space_amplification")
        out["readrandom"] = self._sample(get, n, cfg.final_reads, 10_001, False)
        out["readmissing"] = self._sample(get, n, cfg.final_reads, 10_002, True)
        out["scanprefix"] = self._scanprefix(db)
        out["readseq"] = self._readseq(db)
        out["memory"] = memory_snapshot()
        out["engine_memory"] = _engine_memory(db, db.stats())
        return out

    def _scanprefix(self, db: Engine) -> dict[str, Any]:
        n, keys, value = self.n, self.keys, self.values.value
        groups = KeySpace.group_count(n)
        rng = random.Random(self.cfg.seed * 1000 + 10_003)
        picks = [rng.randrange(groups) for _ in range(self.cfg.scans)]
        bad = {"checked": 0, "missing": 0, "wrong": 0, "unexpected": 0}
        every = sample_every(len(picks))
        samples = array("q")
        entries = 0
        pc, tt = time.perf_counter_ns, time.thread_time
        ns = 0
        cpu = 0.0
        for j, g in enumerate(picks):  # only the scans are timed, not the checks
            prefix = keys.prefix_of_group(g)
            c = tt()
            s = pc()
            got = list(db.scan_prefix(prefix))
            d = pc() - s
            cpu += tt() - c
            ns += d
            if not j % every:
                samples.append(d)
            entries += len(got)
            first, expect = g * PREFIX_GROUP, KeySpace.group_size(g, n)
            bad["checked"] += 1
            if len(got) < expect:
                bad["missing"] += expect - len(got)
            for x, (k, v) in enumerate(got):
                if x >= expect or k != keys.key(first + x) or v != value(first + x):
                    bad["wrong"] += 1
        seconds = ns / 1e9
        return self.checks.add({"ops": len(picks), "seconds": seconds, "entries": entries,
                                "ops_per_sec": len(picks) / seconds if seconds else None,
                                "thread_cpu_us_per_op": cpu * 1e6 / len(picks),
                                "latency": _latency(samples, every), "verify": bad})

    def _readseq(self, db: Engine) -> dict[str, Any]:
        """One forward scan of ``seq`` entries from the first key, timed a
        chunk of :data:`GET_CHUNK` entries at a time (checked between chunks)."""
        count = min(self.cfg.seq, self.n)
        keys, value = self.keys.key, self.values.value
        bad = {"checked": count, "missing": 0, "wrong": 0, "unexpected": 0}
        it = db.range_iter(None, None)
        pc, tt = time.perf_counter_ns, time.thread_time
        ns = 0
        cpu = 0.0
        done = 0
        try:
            while done < count:
                n = min(GET_CHUNK, count - done)
                c = tt()
                t0 = pc()
                got = list(islice(it, n))
                ns += pc() - t0
                cpu += tt() - c
                for i, (k, v) in enumerate(got, done):
                    if k != keys(i) or v != value(i):
                        bad["wrong"] += 1
                done += len(got)
                if len(got) < n:
                    break
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        bad["missing"] = count - done
        seconds = ns / 1e9
        return self.checks.add({"ops": count, "seconds": seconds,
                                "ops_per_sec": done / seconds if seconds else None,
                                "thread_cpu_us_per_op": cpu * 1e6 / max(1, done), "verify": bad})

    def _reopen(self) -> dict[str, Any]:
        out: dict[str, Any] = {"memory_before": memory_snapshot()}
        db, timed = self._timed_open()
        out.update(timed)
        try:
            out["memory"] = memory_snapshot()
            stats = db.stats()
            out["recovery"] = (stats or {}).get("recovery")
            out["engine_memory"] = _engine_memory(db, stats)
            out["readrandom"] = self._sample(db.getter(), self.n, self.cfg.reads, 10_004, False)
            out["memory_after_reads"] = memory_snapshot()
        finally:
            t = time.perf_counter()
            db.close()
            out["close_seconds"] = time.perf_counter() - t
        return out

    def _overwrite(self, db: Engine, count: int, gen: int) -> None:
        put, key, value = db.putter(), self.keys.key, self.values.value
        for i in range(count):
            k = self.order(i)
            put(key(k), value(k, gen))

    def _check_overwrites(self, db: Engine, count: int, gen: int) -> dict[str, int]:
        key, value, order = self.keys.key, self.values.value, self.order
        res = timed_gets(db.getter(), count, lambda i: key(order(i)), lambda i: value(order(i), gen))
        return self.checks.add(res)["verify"]  # type: ignore[no-any-return]

    def _reopen_with_log(self) -> dict[str, Any]:
        """Open, overwrite a memtable's worth of keys (90%), close, and time
        the open that must replay them from the log."""
        count = self._kill_puts()
        out: dict[str, Any] = {"puts": count}
        db = self._open()
        try:
            self._overwrite(db, count, 1)
        finally:
            t = time.perf_counter()
            db.close()
            out["close_seconds"] = time.perf_counter() - t
        db, timed = self._timed_open()
        out.update(timed)
        try:
            out["memory"] = memory_snapshot()
            out["recovery"] = (db.stats() or {}).get("recovery")
            out["verify"] = self._check_overwrites(db, count, 1)
        finally:
            db.close()
        return out

    def _kill_puts(self) -> int:
        if self.cfg.kill_puts is not None:
            return min(self.cfg.kill_puts, self.n)
        memtable = self.options.get("memtable_bytes")
        if not isinstance(memtable, int):
            from lsm_bench.engines import LSM_MEMTABLE_BYTES

            memtable = LSM_MEMTABLE_BYTES
        per = self.cfg.key_size + self.cfg.value_size + 40  # lsm's memtable charge per entry
        return max(1, min(self.n, int(KILL_FRACTION * memtable / per)))

    def _kill(self) -> dict[str, Any]:
        """Overwrite ``kill_puts`` keys in a writer process, SIGKILL it once
        they are acknowledged, then time the open and check every overwrite."""
        count = self._kill_puts()
        job = {"engine": self.name, "path": str(self.path), "num": self.n, "count": count, "gen": KILL_GEN,
               "seed": self.cfg.seed, "key_size": self.cfg.key_size, "value_size": self.cfg.value_size,
               "options": self.options}
        out: dict[str, Any] = {"puts": count}
        proc = subprocess.Popen([sys.executable, "-m", "lsm_bench.scale", "kill-writer", json.dumps(job)],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_child_env())
        try:
            assert proc.stdout is not None
            line = _readline(proc, KILL_TIMEOUT)
            if not line.startswith(b"ready"):
                raise RuntimeError(f"the writer process did not get ready: {line!r}")
            parts = line.split()
            out["writer_seconds"] = float(parts[1]) if len(parts) > 1 else None
            out["log_file_bytes"] = _log_bytes(self.path)  # allocated: lsm's log runs ahead of its records
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        db, timed = self._timed_open()
        out.update(timed)
        try:
            out["recovery"] = (db.stats() or {}).get("recovery")
            out["verify"] = self._check_overwrites(db, count, KILL_GEN)
        finally:
            db.close()
        return out


def _log_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.log") if p.is_file())


def _readline(proc: subprocess.Popen, timeout: float) -> bytes:
    """One line of ``proc``'s stdout, or ``b""`` when it ends or ``timeout`` passes."""
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.strip()


def kill_writer(job: Mapping[str, Any]) -> None:
    """The writer of the SIGKILL measurement: open, overwrite ``count`` keys
    (generation ``gen``) with single puts, print ``ready SECONDS``, wait to be killed."""
    cls = _engine_class(job["engine"])
    db = cls(Path(job["path"]), sync=False, options=dict(job["options"]))
    keys, values = KeySpace(job["key_size"]), ValueGen(job["value_size"], job["seed"])
    order = ScatterOrder(job["num"], job["seed"])
    put, key, value, gen = db.putter(), keys.key, values.value, job["gen"]
    t = time.perf_counter()
    for i in range(job["count"]):
        k = order(i)
        put(key(k), value(k, gen))
    sys.stdout.write(f"ready {time.perf_counter() - t:.3f}\n")
    sys.stdout.flush()
    while True:  # every put is acknowledged: now the parent kills us
        time.sleep(1)


def _step_line(name: str, step: dict[str, Any], steps: int) -> str:
    p = step["puts"]
    rr = step["readrandom"]
    mem = step.get("memory") or {}
    return (f"scale {name:<7} step {step['step']:>2}/{steps} {step['keys']:>12,} keys  "
            f"{p['ops_per_sec'] or 0:>9,.0f} puts/s  p99 {p['latency'].get('p99_us', 0):>8.1f} us  "
            f"max {p['max_put_ms']:>7.1f} ms  get p99 {rr['latency'].get('p99_us', 0):>8.1f} us  "
            f"RSS {mem.get('rss', 0) / 2**20:>7.1f} MiB (anon {mem.get('rss_anon', 0) / 2**20:.1f})")


# -- the run ------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    """The environment of child processes: this one's, with this checkout's
    ``lsm`` and ``lsm_bench`` first on the path (a child runs the same code)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def measure_engine(cfg: ScaleConfig, engine: str, path: Path, say: Log) -> dict[str, Any]:
    """One engine's record (in this process); never raises ``Exception``."""
    try:
        return Measure(cfg, engine, path, say).run()
    except Exception as exc:
        return {"engine": engine, "num": cfg.num_for(engine), "status": "error",
                "note": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}


def _in_child(cfg: ScaleConfig, engine: str, path: Path, say: Log) -> dict[str, Any]:
    """One engine's record, measured in a child process (``isolate``)."""
    with tempfile.TemporaryDirectory(prefix="lsm-bench-scale-") as tmp:
        result = Path(tmp) / "result.json"
        job = {"config": cfg.to_json(), "engine": engine, "path": str(path), "result": str(result)}
        proc = subprocess.run([sys.executable, "-m", "lsm_bench.scale", "measure", json.dumps(job)],
                              stdin=subprocess.DEVNULL, env=_child_env(), check=False)
        if result.exists():
            data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
            return data
        return {"engine": engine, "num": cfg.num_for(engine), "status": "error",
                "note": f"the measuring process exited with status {proc.returncode} and no result"}


def run_scale(cfg: ScaleConfig, log: Log | None = None) -> dict[str, Any]:
    """Run the scale workload on every engine; returns the report data
    (see :mod:`lsm_bench.scalereport`)."""
    say = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    for name in cfg.engines:
        cls = _engine_class(name)
        reason = cls.unavailable_reason()
        try:
            versions[name] = cls.version()
        except Exception:  # informative only
            versions[name] = None
        if reason is not None:
            results.append({"engine": name, "num": cfg.num_for(name), "status": "skipped", "note": reason})
            say(f"scale {name:<7} skipped: {reason}")
            continue
        parent = str(cfg.tmpdir) if cfg.tmpdir is not None else None
        path = Path(tempfile.mkdtemp(prefix=f"lsm-bench-scale-{name}-", dir=parent))
        say(f"scale {name:<7} {cfg.num_for(name):,} keys in {cfg.steps} steps, database in {path}")
        try:
            rec = _in_child(cfg, name, path, say) if cfg.isolate else measure_engine(cfg, name, path, say)
        finally:
            if not cfg.keep:
                shutil.rmtree(path, ignore_errors=True)
        results.append(rec)
        say(f"scale {name:<7} {rec['status']}" + (f": {rec['note']}" if rec.get("note") else "")
            + (f" ({rec['wall_seconds']:.0f} s)" if rec.get("wall_seconds") else ""))
    return {
        "mode": "scale",
        "config": cfg.to_json(),
        "machine": machine_info(),
        "packages": package_versions(),
        "engines": {name: {"version": versions.get(name), "num": cfg.num_for(name),
                           "doc": (_engine_class(name).__doc__ or "").strip()} for name in cfg.engines},
        "total_seconds": time.monotonic() - started,
        "results": results,
    }


def _child_main(argv: list[str]) -> int:
    """``python -m lsm_bench.scale measure JOB`` / ``kill-writer JOB`` (JSON)."""
    if len(argv) != 2 or argv[0] not in ("measure", "kill-writer"):
        print("usage: python -m lsm_bench.scale {measure,kill-writer} JOB_JSON", file=sys.stderr)
        return 2
    job = json.loads(argv[1])
    if argv[0] == "kill-writer":
        kill_writer(job)
        return 0
    cfg = ScaleConfig.from_json(job["config"])
    rec = measure_engine(cfg, job["engine"], Path(job["path"]),
                         lambda msg: print(msg, file=sys.stderr, flush=True))
    Path(job["result"]).write_text(json.dumps(rec, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
