"""``lsm-bench compare``: lsm and its peers in one process, in interleaved rounds.

The default run (:mod:`lsm_bench.runner`) measures one engine after another.
On a shared, noisy 2-core VM an engine measured alone can land in a slow
spell that the next one misses, so this mode is built for ratios that hold
still:

- **Clock**: the calling thread's CPU time (``time.thread_time``), which does
  not count time the thread spends descheduled by other jobs. Every engine
  does its reads, and the foreground part of its writes, in the calling
  thread. Wall time (``time.perf_counter``) is recorded beside it.
- **Interleaved rounds**: each round runs every workload once on every
  engine, in an engine order shuffled per round (seeded RNG, balanced: see
  :func:`round_orders`), on a new random key order per round. lsm / peer is
  taken **per round**, both figures from the same minute of the machine, and
  reported as the median and the min-max over the rounds.
- **Tight loops** over keys prepared untimed, through the adapters' direct
  paths (:meth:`~lsm_bench.engines.Engine.getter` ...): every engine's op
  costs the same list-comprehension step on top of the store's own call, and
  no adapter frame. A ``gc.collect()`` before each timed loop (untimed) keeps
  one engine from paying for collecting another's garbage.

Read workloads run on one database per engine, loaded once, untimed (keys in
random order, batches of 1000, sqlite3 in one transaction), then settled:
lsm ``flush()`` + ``wait_for_compactions()``, LevelDB ``compact_range()``
(in plyvel a memtable flush) and a wait for its background compactions,
sqlite3 ``wal_checkpoint(TRUNCATE)``. Load and settle
times and bytes on disk are recorded. Before round 1 every engine does
``warm`` random gets (caches at steady state). Per round (default counts,
capped for small ``num``; ``--ops NAME=COUNT`` changes them):

=========== ============================================================
``get``     random present keys (40,000)
``miss``    keys never written, ``key + "."`` (80,000)
``scan100`` ``start=key(i), stop=key(i + 100)``, 100 entries each (1,000)
``readseq`` one forward scan from a random key, per entry (200,000)
``seek10``  seek to a random key and read 10 entries (20,000)
``mget100`` the ``get`` keys in calls of 100 to the store's multi-get, per
            key (40,000; a loop of ``get`` where the store has none)
=========== ============================================================

Write workloads load ``num`` keys, in the round's random order, into a fresh
database per engine; sync is off everywhere (lsm ``sync_mode="never"``,
plyvel ``sync=False``, sqlite3 WAL + ``synchronous=OFF``):

====================== ==========================================================
``put``                single puts: thread CPU per put, wall time of the load,
                       the time to quiesce after it (lsm ``flush()`` +
                       ``wait_for_compactions()``, plyvel ``close()``, sqlite3
                       ``wal_checkpoint(TRUNCATE)``), and the CPU of the
                       process (``time.process_time``) and of its children
``batch100``           the same keys in atomic batches of 100, per entry
``batch1000``          ... of 1000
``fillrandom+quiesce`` ``put``'s load + quiesce by the wall clock; its "cpu"
                       is the process's and its children's (lsm's compaction
                       worker) over the same span
====================== ==========================================================

Correctness: the timed loops keep what every read returned, and after the
clock stops every value is compared with the one written (a scan's entries
must be exactly the keys of its range, with their values). A write database
is closed after its load, reopened and scanned in full. Anything wrong,
missing or unexpected marks the result ``failed``; an engine that raises
gets an ``error`` record and leaves that workload's later rounds.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from lsm_bench.config import (
    DEFAULT_BATCH,
    DEFAULT_KEY_SIZE,
    DEFAULT_SEED,
    DEFAULT_VALUE_SIZE,
    OptionValue,
    ProgressMode,
)
from lsm_bench.context import base_result, empty_verify, verify_failures
from lsm_bench.data import KeySpace, ValueGen, permutation
from lsm_bench.engines import SEEK, Engine, Pair
from lsm_bench.machine import cpu_delta, descendant_cpu, dir_bytes, machine_info, package_versions
from lsm_bench.progress import Progress, make_progress

DEFAULT_NUM = 1_000_000  # the size the comparisons are quoted at
DEFAULT_ROUNDS = 5
QUICK_NUM = 20_000  # --quick: tables flushed, still well under a minute
QUICK_ROUNDS = 2
MIN_NUM = 200  # scan100 needs ranges of 100 keys, readseq half the keys
WARM = "warm"  # the --ops name of the warm-up gets before round 1
DEFAULT_WARM = 60_000
WRITE_CHUNK = 10_000  # progress stride of a timed write load (a multiple of every batch)
PROGRESS_EVERY = 10_000  # untimed loads and checks: progress update stride
BASELINE = "lsm"
DEFAULT_ENGINES = ("lsm", "plyvel", "sqlite3")  # plyvel when installed
COMPARE_OPTIONS: dict[str, dict[str, OptionValue]] = {
    "sqlite3": {"synchronous": "OFF"},  # sync off everywhere (lsm and plyvel: sync=False)
}

Run = dict[str, Any]
Log = Callable[[str], None]


@dataclass(frozen=True)
class CompareWorkload:
    """One workload of the comparison.

    :param kind: ``"read"`` (on the shared, settled databases) or ``"write"``.
    :param unit: what one operation is, for the report.
    :param ops: default operations per round (reads; writes load ``num``).
    :param clock: the figure the per-engine cells show: ``"cpu"`` (thread
        CPU) or ``"wall"``.
    """

    name: str
    kind: str
    unit: str
    ops: int
    doc: str
    clock: str = "cpu"
    needs: frozenset[str] = frozenset()


WORKLOADS: dict[str, CompareWorkload] = {w.name: w for w in (
    CompareWorkload("get", "read", "get, present key", 40_000,
                    "random gets of keys that exist; every value checked"),
    CompareWorkload("miss", "read", "get, absent key", 80_000,
                    "random gets of keys never written (key + '.'); all must be absent"),
    CompareWorkload("scan100", "read", "range scan, 100 entries", 1_000,
                    "scans start=key(i), stop=key(i + 100) from random i; exactly 100 entries",
                    needs=frozenset({SEEK})),
    CompareWorkload("readseq", "read", "entry of a forward scan", 200_000,
                    "one forward scan from a random key, timed per entry",
                    needs=frozenset({SEEK})),
    CompareWorkload("seek10", "read", "seek + 10 entries", 20_000,
                    "seek to a random present key, then read 10 entries",
                    needs=frozenset({SEEK})),
    CompareWorkload("mget100", "read", "get, 100 keys per multi-get", 40_000,
                    "the get workload's keys in multi-get calls of 100 (a loop of get where "
                    "the store has no multi-get); every value checked"),
    CompareWorkload("put", "write", "put", 0,
                    "single puts of num keys in random order into a fresh database"),
    CompareWorkload("batch100", "write", "put, in batches of 100", 0,
                    "the same keys in atomic write batches of 100, per entry"),
    CompareWorkload("batch1000", "write", "put, in batches of 1000", 0,
                    "the same keys in atomic write batches of 1000, per entry"),
    CompareWorkload("fillrandom+quiesce", "write", "put (load + quiesce)", 0,
                    "put's load plus the quiesce after it, by the wall clock", clock="wall"),
)}
READS = tuple(n for n, w in WORKLOADS.items() if w.kind == "read")
WRITES = tuple(n for n, w in WORKLOADS.items() if w.kind == "write")
GROUPS = {"reads": READS, "writes": WRITES, "all": READS + WRITES}
BATCH_SIZES = {"batch100": 100, "batch1000": 1000}
DERIVED = "fillrandom+quiesce"  # computed from the put loads, which it needs


def expand_workloads(names: Iterable[str]) -> tuple[str, ...]:
    """Expand groups (``reads``, ``writes``, ``all``); reads first, then writes,
    each in table order; ``fillrandom+quiesce`` brings ``put`` along.

    >>> expand_workloads(["writes"])[:2], expand_workloads(["fillrandom+quiesce", "get"])
    (('put', 'batch100'), ('get', 'put', 'fillrandom+quiesce'))

    :raises ValueError: an unknown name.
    """
    chosen: set[str] = set()
    for name in names:
        items = GROUPS.get(name, (name,))
        for item in items:
            if item not in WORKLOADS:
                raise ValueError(f"unknown compare workload {item!r}; choose from "
                                 f"{', '.join(WORKLOADS)}, reads, writes, all")
            chosen.add(item)
    if DERIVED in chosen:
        chosen.add("put")
    return tuple(n for n in WORKLOADS if n in chosen)


@dataclass(frozen=True)
class CompareConfig:
    """Everything one comparison needs (built by ``lsm-bench compare``).

    :param num: keys in each read database, and keys each write load writes.
    :param rounds: interleaved rounds (every workload on every engine each).
    :param engines: engine names; ``lsm`` is the baseline of the ratios.
    :param workloads: names from :data:`WORKLOADS` (see :func:`expand_workloads`).
    :param ops: per-round operation counts overriding the defaults, by workload
        name (reads) or ``warm`` (the gets before round 1).
    :param load_batch: entries per batch when loading the read databases.
    :param engine_options: pass-through options per engine, over
        :data:`COMPARE_OPTIONS`.
    :param verify_writes: reopen every write database and scan it in full.
    :param collect_garbage: ``gc.collect()`` (untimed) before each timed loop;
        tests turn it off, as it costs ~0.1 s in a process with a large heap.
    """

    num: int = DEFAULT_NUM
    rounds: int = DEFAULT_ROUNDS
    engines: tuple[str, ...] = DEFAULT_ENGINES
    workloads: tuple[str, ...] = READS + WRITES
    ops: dict[str, int] = field(default_factory=dict)
    seed: int = DEFAULT_SEED
    key_size: int = DEFAULT_KEY_SIZE
    value_size: int = DEFAULT_VALUE_SIZE
    load_batch: int = DEFAULT_BATCH
    engine_options: dict[str, dict[str, OptionValue]] = field(default_factory=dict)
    verify_writes: bool = True
    collect_garbage: bool = True
    out: Path | None = None
    progress: ProgressMode = "auto"
    plots: bool = True
    tmpdir: Path | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        if self.num < MIN_NUM:
            raise ValueError(f"num must be >= {MIN_NUM}, got {self.num}")
        for name in ("rounds", "value_size", "load_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(str(self.num)) > self.key_size:
            raise ValueError(f"key_size {self.key_size} is too small for {self.num} keys")
        for name, count in self.ops.items():
            if name != WARM and (name not in WORKLOADS or WORKLOADS[name].kind != "read"):
                raise ValueError(f"--ops takes read workloads or {WARM!r}, not {name!r}")
            if count < (0 if name == WARM else 1):
                raise ValueError(f"--ops {name} must be positive, got {count}")
        if self.ops.get("readseq", 0) > self.num - 1:
            raise ValueError(f"readseq reads at most num - 1 = {self.num - 1} entries")

    def ops_per_round(self, name: str) -> int:
        """Operations of read workload ``name`` (or ``warm``) per round.

        >>> c = CompareConfig(num=2000)
        >>> [c.ops_per_round(n) for n in ("get", "miss", "scan100", "readseq", "seek10", "warm")]
        [2000, 2000, 200, 1000, 2000, 2000]
        >>> CompareConfig().ops_per_round("readseq")
        200000
        """
        if name in self.ops:
            return self.ops[name]
        default = DEFAULT_WARM if name == WARM else WORKLOADS[name].ops
        cap = {"scan100": self.num // 10, "readseq": self.num // 2}.get(name, self.num)
        return min(default, cap)

    def options_for(self, engine: str) -> dict[str, OptionValue]:
        """:data:`COMPARE_OPTIONS` for ``engine`` updated by ``--opt`` (a copy)."""
        opts = dict(COMPARE_OPTIONS.get(engine, {}))
        opts.update(self.engine_options.get(engine, {}))
        return opts

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable copy, with the resolved per-round counts."""
        data = dataclasses.asdict(self)
        data["out"] = str(self.out) if self.out is not None else None
        data["tmpdir"] = str(self.tmpdir) if self.tmpdir is not None else None
        data["ops_per_round"] = {n: self.ops_per_round(n) for n in READS + (WARM,)}
        data["effective_options"] = {e: self.options_for(e) for e in self.engines}
        return data


def round_orders(names: list[str], rounds: int, rng: random.Random) -> list[list[str]]:
    """The engine order of each round: random, and balanced by position.

    Every block of ``len(names)`` rounds is a random Latin square (a shuffled
    cyclic one, its columns shuffled too): each engine runs once in each
    position, so none is always first or always right after the same peer. A
    plain shuffle per round can put one engine last in all five rounds (seed
    301's write rounds did).

    >>> orders = round_orders(["a", "b", "c"], 6, random.Random(1))
    >>> all(sorted(o) == ["a", "b", "c"] for o in orders)
    True
    >>> [sorted(o[p] for o in orders[:3]) for p in range(3)]
    [['a', 'b', 'c'], ['a', 'b', 'c'], ['a', 'b', 'c']]
    """
    k = len(names)
    out: list[list[str]] = []
    while len(out) < rounds and k:
        base = list(names)
        rng.shuffle(base)
        shifts, cols = list(range(k)), list(range(k))
        rng.shuffle(shifts)
        rng.shuffle(cols)
        for shift in shifts:
            out.append([base[(shift + c) % k] for c in cols])
    return out[:rounds]


# -- timing and checking -------------------------------------------------------


class Stopwatch:
    """Thread CPU and wall seconds of a ``with`` block (the CPU interval inside the wall one)."""

    cpu = 0.0
    wall = 0.0

    def __enter__(self) -> Stopwatch:
        self._w0 = time.perf_counter()
        self._c0 = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.thread_time() - self._c0
        self.wall = time.perf_counter() - self._w0


def add_tally(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Add the counts of ``more`` into ``total`` (returned)."""
    for name, count in more.items():
        total[name] = total.get(name, 0) + count
    return total


def check_run(pairs: Iterable[Pair], first: int, count: int, keys: KeySpace, values: ValueGen,
              *, exact: bool = True) -> dict[str, int]:
    """Compare ``pairs`` with keys ``first .. first + count - 1`` and their values.

    With ``exact``, any pair after those is ``unexpected`` (a range that
    returned too much). ``checked`` counts the ``count`` entries expected.

    >>> ks, vs = KeySpace(16), ValueGen(100)
    >>> good = [(ks.key(i), vs.value(i)) for i in (5, 6, 7)]
    >>> check_run(good, 5, 3, ks, vs)
    {'checked': 3, 'missing': 0, 'wrong': 0, 'unexpected': 0}
    >>> check_run(good[:2] + [(ks.key(7), b"x")] + good, 5, 3, ks, vs)
    {'checked': 3, 'missing': 0, 'wrong': 1, 'unexpected': 3}
    >>> check_run(good[1:], 5, 3, ks, vs)["wrong"], check_run(good[:1], 5, 3, ks, vs)["missing"]
    (2, 2)
    """
    tally = empty_verify()
    tally["checked"] = count
    key, value = keys.key, values.value
    it = iter(pairs)
    for i in range(first, first + count):
        pair = next(it, None)
        if pair is None:
            tally["missing"] += first + count - i
            break
        if pair[0] != key(i) or pair[1] != value(i):
            tally["wrong"] += 1
    if exact:
        tally["unexpected"] += sum(1 for _ in it)
    return tally


def check_values(got: list[bytes | None], indexes: list[int], values: ValueGen) -> dict[str, int]:
    """Gets of present keys: ``got[j]`` must be the value of ``indexes[j]``."""
    tally = empty_verify()
    tally["checked"] = len(indexes)
    value = values.value
    for i, v in zip(indexes, got):
        if v is None:
            tally["missing"] += 1
        elif v != value(i):
            tally["wrong"] += 1
    tally["missing"] += max(0, len(indexes) - len(got))
    return tally


def run_record(workload: str, engine: str, rnd: int, ops: int, cpu: float | None, wall: float,
               verify: dict[str, int], **extra: Any) -> Run:
    """One workload on one engine in one round: seconds, rates, checks."""
    rec: Run = base_result(workload, engine, "ok")
    rec.update(
        round=rnd, ops=ops, cpu_seconds=cpu, wall_seconds=wall,
        ops_per_sec_cpu=ops / cpu if cpu else None,
        ops_per_sec_wall=ops / wall if wall else None,
        us_per_op_cpu=cpu / ops * 1e6 if cpu is not None and ops else None,
        us_per_op_wall=wall / ops * 1e6 if ops else None,
        verify=verify,
    )
    rec.update(extra)
    bad = verify_failures(verify)
    if bad:
        rec["status"] = "failed"
        rec["note"] = (f"{bad} of {verify.get('checked', 0)} reads wrong "
                       f"(missing {verify.get('missing', 0)}, wrong {verify.get('wrong', 0)}, "
                       f"unexpected {verify.get('unexpected', 0)})")
    return rec


def error_record(workload: str, engine: str, rnd: int | None, exc: BaseException) -> Run:
    """An engine raised: the record says what, with a short traceback."""
    rec = base_result(workload, engine, "error", f"{type(exc).__name__}: {exc}")
    rec["round"] = rnd
    rec["traceback"] = traceback.format_exc(limit=6)
    return rec


# -- engines in temporary directories --------------------------------------------


class Opened:
    """An engine in a fresh temporary directory; :meth:`close` removes both."""

    def __init__(self, cls: type[Engine], cfg: CompareConfig) -> None:
        parent = str(cfg.tmpdir) if cfg.tmpdir is not None else None
        self.path = Path(tempfile.mkdtemp(prefix=f"lsm-bench-compare-{cls.name}-", dir=parent))
        self.cls = cls
        self.options = cfg.options_for(cls.name)
        try:
            self.db = cls(self.path, sync=False, options=self.options)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise

    def reopen(self) -> Engine:
        """A second adapter on the same directory (the first one closed)."""
        return self.cls(self.path, sync=False, options=self.options)

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)


def _counted(pairs: Iterable[Pair], bar: Progress) -> Iterator[Pair]:
    """Yield ``pairs``, moving ``bar`` every :data:`PROGRESS_EVERY`."""
    n = 0
    for pair in pairs:
        yield pair
        n += 1
        if not n % PROGRESS_EVERY:
            bar.update(n)
    bar.update(n)


# -- reads ------------------------------------------------------------------------


@dataclass
class ReadInputs:
    """One round's keys for the read workloads, drawn untimed (indexes and keys)."""

    get_idx: list[int]
    get_keys: list[bytes]
    miss_keys: list[bytes]
    scan_idx: list[int]
    scan_bounds: list[tuple[bytes, bytes]]
    seq_start: int
    seq_count: int
    seek_idx: list[int]
    seek_keys: list[bytes]

    @classmethod
    def draw(cls, cfg: CompareConfig, keys: KeySpace, rng: random.Random) -> ReadInputs:
        """Random keys (with replacement) for every read workload."""
        n, key = cfg.num, keys.key
        get_idx = [rng.randrange(n) for _ in range(cfg.ops_per_round("get"))]
        miss_idx = [rng.randrange(n) for _ in range(cfg.ops_per_round("miss"))]
        scan_idx = [rng.randrange(n - 100 + 1) for _ in range(cfg.ops_per_round("scan100"))]
        seq_count = cfg.ops_per_round("readseq")
        seek_idx = [rng.randrange(n - 10 + 1) for _ in range(cfg.ops_per_round("seek10"))]
        return cls(
            get_idx=get_idx, get_keys=[key(i) for i in get_idx],
            miss_keys=[keys.missing(i) for i in miss_idx],
            scan_idx=scan_idx, scan_bounds=[(key(i), key(i + 100)) for i in scan_idx],
            seq_start=rng.randrange(n - seq_count + 1), seq_count=seq_count,
            seek_idx=seek_idx, seek_keys=[key(i) for i in seek_idx],
        )


Timed = tuple[int, Stopwatch, dict[str, int], dict[str, Any]]  # ops, clock, verify, extra


def time_get(db: Engine, inp: ReadInputs, keys: KeySpace, values: ValueGen) -> Timed:
    """``get``: every key of the round once, values kept and checked afterwards."""
    get, ks = db.getter(), inp.get_keys
    with Stopwatch() as sw:
        got = [get(k) for k in ks]
    return len(ks), sw, check_values(got, inp.get_idx, values), {}


def time_miss(db: Engine, inp: ReadInputs, keys: KeySpace, values: ValueGen) -> Timed:
    """``miss``: every absent key once; any value found is unexpected."""
    get, ks = db.getter(), inp.miss_keys
    with Stopwatch() as sw:
        got = [get(k) for k in ks]
    tally = empty_verify()
    tally.update(checked=len(ks), unexpected=sum(v is not None for v in got))
    return len(ks), sw, tally, {}


def time_scan100(db: Engine, inp: ReadInputs, keys: KeySpace, values: ValueGen) -> Timed:
    """``scan100``: each range drained into a list (in C), then checked entry by entry."""
    rng, bounds = db.range_iter, inp.scan_bounds
    with Stopwatch() as sw:
        runs = [list(rng(a, b)) for a, b in bounds]
    tally = empty_verify()
    for first, run in zip(inp.scan_idx, runs):
        add_tally(tally, check_run(run, first, 100, keys, values))
    return len(bounds), sw, tally, {"entries": sum(map(len, runs))}


def time_readseq(db: Engine, inp: ReadInputs, keys: KeySpace, values: ValueGen) -> Timed:
    """``readseq``: ``seq_count`` entries of one scan (iterator made untimed)."""
    it = db.range_iter(keys.key(inp.seq_start), None)
    try:
        with Stopwatch() as sw:
            rows = list(islice(it, inp.seq_count))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    tally = check_run(rows, inp.seq_start, inp.seq_count, keys, values, exact=False)
    return inp.seq_count, sw, tally, {"start": inp.seq_start}


def time_seek10(db: Engine, inp: ReadInputs, keys: KeySpace, values: ValueGen) -> Timed:
    """``seek10``: ``seek_next(key, 10)`` per key; each must be the 10 keys from it."""
    seek, ks = db.seek_next, inp.seek_keys
    with Stopwatch() as sw:
        runs = [seek(k, 10) for k in ks]
    tally = empty_verify()
    for first, run in zip(inp.seek_idx, runs):
        add_tally(tally, check_run(run, first, 10, keys, values))
    return len(ks), sw, tally, {"entries": sum(map(len, runs))}


def time_mget100(db: Engine, inp: ReadInputs, keys: KeySpace, values: ValueGen) -> Timed:
    """``mget100``: the ``get`` keys cut (untimed) into calls of 100 to the
    store's multi-get; every value checked afterwards."""
    mget, ks = db.multi_getter(), inp.get_keys
    calls = [ks[i:i + 100] for i in range(0, len(ks), 100)]
    with Stopwatch() as sw:
        got = [mget(c) for c in calls]
    flat = [v for part in got for v in part]
    return len(ks), sw, check_values(flat, inp.get_idx, values), {"calls": len(calls)}


READ_TIMERS: dict[str, Callable[[Engine, ReadInputs, KeySpace, ValueGen], Timed]] = {
    "get": time_get, "miss": time_miss, "scan100": time_scan100,
    "readseq": time_readseq, "seek10": time_seek10, "mget100": time_mget100,
}


class Session:
    """Shared state of one comparison: config, data, engine classes, records."""

    def __init__(self, cfg: CompareConfig, classes: Mapping[str, type[Engine]], say: Log) -> None:
        self.cfg = cfg
        self.classes = classes
        self.say = say
        self.keys = KeySpace(cfg.key_size)
        self.values = ValueGen(cfg.value_size, cfg.seed)
        self.runs: list[Run] = []
        self.databases: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, Any] = {}

    def names(self) -> list[str]:
        """Selected engines that can run here."""
        return [n for n in self.cfg.engines if self.classes[n].unavailable_reason() is None]

    def bar(self, desc: str, total: int) -> Progress:
        return make_progress(self.cfg.progress, desc, total)

    def collect(self) -> None:
        """Untimed, before a timed loop: no engine pays for collecting another's garbage."""
        if self.cfg.collect_garbage:
            gc.collect()

    def round_line(self, kind: str, rnd: int, order: list[str], workloads: tuple[str, ...]) -> None:
        """One stderr line per round: each workload's ops/s (thread CPU) per engine."""
        names = self.names()
        parts = []
        for wl in workloads:
            cells = []
            for name in names:
                rec = next((r for r in self.runs if r["workload"] == wl and r["engine"] == name
                            and r.get("round") == rnd), None)
                rate = rec.get("ops_per_sec_cpu") if rec else None
                cells.append("-" if rate is None else f"{rate:,.0f}")
            parts.append(f"{wl} {'/'.join(cells)}")
        self.say(f"{kind} round {rnd + 1}/{self.cfg.rounds} (order {', '.join(order)}; "
                 f"ops/s cpu {'/'.join(names)}): " + "  ".join(parts))

    # -- reads ----------------------------------------------------------------

    def load_read_db(self, name: str) -> Opened:
        """Open, load and settle one engine's read database (untimed; figures recorded)."""
        cfg = self.cfg
        opened = Opened(self.classes[name], cfg)
        try:
            db = opened.db
            self.settings[name] = db.describe()
            key, value = self.keys.key, self.values.value
            order = permutation(cfg.num, cfg.seed + 1)
            bar = self.bar(f"compare load [{name}]", cfg.num)
            with Stopwatch() as load:
                db.bulk_load(_counted(((key(i), value(i)) for i in order), bar), cfg.load_batch)
            bar.close()
            with Stopwatch() as settle:
                db.settle()
            info: dict[str, Any] = {
                "entries": cfg.num, "load_seconds": load.wall, "load_cpu_seconds": load.cpu,
                "settle_seconds": settle.wall, "disk_bytes": dir_bytes(opened.path),
            }
            try:
                info["stats"] = db.stats()
            except Exception as exc:  # stats are informative only
                info["stats"] = {"error": repr(exc)}
            self.databases[name] = info
        except BaseException:
            opened.close()
            raise
        return opened

    def warm(self, name: str, db: Engine) -> None:
        """Random gets before round 1, checked like the timed ones (a wrong
        value is reported as a failure of the run, see ``comparereport.failures``)."""
        n = self.cfg.ops_per_round(WARM)
        rng = random.Random(self.cfg.seed + 7)
        idx = [rng.randrange(self.cfg.num) for _ in range(n)]
        get, key = db.getter(), self.keys.key
        with Stopwatch() as sw:
            got = [get(key(i)) for i in idx]
        self.databases[name]["warm"] = {"gets": n, "cpu_seconds": sw.cpu, "wall_seconds": sw.wall,
                                        "verify": check_values(got, idx, self.values)}

    def run_reads(self, workloads: tuple[str, ...]) -> None:
        """Load every engine, warm it, then the interleaved read rounds."""
        cfg = self.cfg
        opened: dict[str, Opened] = {}
        broken: set[tuple[str, str]] = set()
        for name in self.names():
            for wl in workloads:
                missing = WORKLOADS[wl].needs - self.classes[name].features
                if missing:
                    note = f"{name} has no {'/'.join(sorted(missing))} primitive"
                    self.runs.append({**base_result(wl, name, "skipped", note), "round": None})
                    broken.add((wl, name))
        try:
            for name in self.names():
                try:
                    opened[name] = self.load_read_db(name)
                    self.say(f"loaded {name}: {self.databases[name]['load_seconds']:.1f} s, settled "
                             f"in {self.databases[name]['settle_seconds']:.1f} s, "
                             f"{self.databases[name]['disk_bytes'] / 1e6:.1f} MB on disk")
                    self.warm(name, opened[name].db)
                except Exception as exc:
                    for wl in workloads:
                        self.runs.append(error_record(wl, name, None, exc))
                        broken.add((wl, name))
            rng = random.Random(cfg.seed + 11)
            orders = round_orders(list(opened), cfg.rounds, random.Random(cfg.seed + 12))
            for rnd in range(cfg.rounds):
                inp = ReadInputs.draw(cfg, self.keys, rng)
                order = orders[rnd] if orders else []
                for wl in workloads:
                    for name in order:
                        if (wl, name) in broken:
                            continue
                        try:
                            self.collect()
                            ops, sw, verify, extra = READ_TIMERS[wl](
                                opened[name].db, inp, self.keys, self.values)
                            self.runs.append(run_record(wl, name, rnd, ops, sw.cpu, sw.wall,
                                                        verify, order=order.index(name), **extra))
                        except Exception as exc:
                            self.runs.append(error_record(wl, name, rnd, exc))
                            broken.add((wl, name))
                self.round_line("reads", rnd, order, workloads)
            for name, o in opened.items():
                try:
                    self.databases[name]["stats_after"] = o.db.stats()
                except Exception as exc:  # stats are informative only
                    self.databases[name]["stats_after"] = {"error": repr(exc)}
        finally:
            for o in opened.values():
                o.close()

    # -- writes ----------------------------------------------------------------

    def run_writes(self, workloads: tuple[str, ...]) -> None:
        """The interleaved write rounds: a fresh database per engine, mode and round."""
        cfg = self.cfg
        modes = [w for w in workloads if w != DERIVED]
        broken: set[tuple[str, str]] = set()
        orders = round_orders(self.names(), cfg.rounds, random.Random(cfg.seed + 13))
        key, value = self.keys.key, self.values.value
        for rnd in range(cfg.rounds):
            order_keys = permutation(cfg.num, cfg.seed + 1000 + rnd)  # a new key order per round
            items = [(key(i), value(i)) for i in order_keys]
            order = orders[rnd] if orders else []
            for mode in modes:
                for name in order:
                    if (mode, name) in broken:
                        continue
                    try:
                        self.runs.append(self.write_once(mode, name, rnd, items, order.index(name)))
                    except Exception as exc:
                        self.runs.append(error_record(mode, name, rnd, exc))
                        broken.add((mode, name))
            del items
            self.round_line("writes", rnd, order, tuple(modes))
        if DERIVED in workloads:
            self.runs.extend(derive_fill_quiesce(self.runs))

    def write_once(self, mode: str, name: str, rnd: int, items: list[Pair], position: int) -> Run:
        """One timed load of ``items`` (``put`` or ``batchN``), its quiesce, its check."""
        n = len(items)
        opened = Opened(self.classes[name], self.cfg)
        try:
            db = opened.db
            self.settings.setdefault(name, db.describe())
            bar = self.bar(f"{mode} [{name}] round {rnd + 1}", n)
            self.collect()
            proc0, kids0 = time.process_time(), descendant_cpu()
            if mode == "put":
                put = db.putter()
                with Stopwatch() as load:
                    for s in range(0, n, WRITE_CHUNK):
                        for k, v in items[s:s + WRITE_CHUNK]:
                            put(k, v)
                        bar.update(min(n, s + WRITE_CHUNK))
            else:
                size = BATCH_SIZES[mode]
                chunk = size * max(1, WRITE_CHUNK // size)
                write = db.put_batch
                with Stopwatch() as load:
                    for s in range(0, n, chunk):
                        for b in range(s, min(n, s + chunk), size):
                            write(items[b:b + size])
                        bar.update(min(n, s + chunk))
            bar.close()
            q0 = time.perf_counter()
            db.finish_load()
            quiesce = time.perf_counter() - q0
            proc = time.process_time() - proc0
            kids = cpu_delta(kids0, descendant_cpu())
            disk = dir_bytes(opened.path)
            db.close()
            verify = self.verify_write(opened, n) if self.cfg.verify_writes else empty_verify()
        finally:
            opened.close()
        return run_record(
            mode, name, rnd, n, load.cpu, load.wall, verify, order=position,
            quiesce_seconds=quiesce, process_cpu_seconds=proc, child_cpu_seconds=kids,
            process_cpu_us_per_op=proc / n * 1e6, all_cpu_us_per_op=(proc + kids) / n * 1e6,
            disk_bytes=disk, batch=BATCH_SIZES.get(mode, 1),
        )

    def verify_write(self, opened: Opened, n: int) -> dict[str, int]:
        """Untimed: reopen the store and scan it; exactly keys ``0..n-1`` with their values."""
        db = opened.reopen()
        try:
            bar = self.bar(f"verify [{opened.cls.name}]", n)
            it = db.range_iter(None, None)
            try:
                tally = check_run(_counted(it, bar), 0, n, self.keys, self.values)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            bar.close()
        finally:
            db.close()
        return tally


def derive_fill_quiesce(runs: list[Run]) -> list[Run]:
    """``fillrandom+quiesce`` records from the ``put`` loads: wall = load +
    quiesce; "cpu" = CPU of the process and its children over that span."""
    out: list[Run] = []
    for rec in runs:
        if rec["workload"] != "put":
            continue
        if rec["status"] not in ("ok", "failed"):
            out.append({**rec, "workload": DERIVED})
            continue
        derived = run_record(
            DERIVED, rec["engine"], rec["round"], rec["ops"],
            rec["process_cpu_seconds"] + rec["child_cpu_seconds"],
            rec["wall_seconds"] + rec["quiesce_seconds"], rec["verify"],
            order=rec.get("order"), load_wall_seconds=rec["wall_seconds"],
            quiesce_seconds=rec["quiesce_seconds"],
        )
        out.append(derived)
    return out


# -- summaries and ratios -------------------------------------------------------------


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _usable(rec: Run) -> bool:
    return rec.get("status") in ("ok", "failed")


def summarize(runs: list[Run], engines: list[str], workloads: tuple[str, ...],
              unavailable: Mapping[str, str]) -> list[Run]:
    """One record per (workload, engine): medians over rounds, worst status, checks."""
    out: list[Run] = []
    for wl in workloads:
        spec = WORKLOADS[wl]
        for name in engines:
            if name in unavailable:
                out.append(base_result(wl, name, "skipped", unavailable[name]))
                continue
            recs = [r for r in runs if r["workload"] == wl and r["engine"] == name]
            good = [r for r in recs if _usable(r)]
            errors = [r for r in recs if r.get("status") == "error"]
            failed = [r for r in good if r["status"] == "failed"]
            skipped = [r for r in recs if r.get("status") == "skipped"]
            status = "error" if errors else "failed" if failed else "ok" if good else "skipped"
            note = (errors[0]["note"] if errors else failed[0]["note"] if failed else
                    "" if good else skipped[0]["note"] if skipped else "no rounds ran")
            summary = base_result(wl, name, status, note)
            summary.update(unit=spec.unit, clock=spec.clock, rounds=len(good),
                           ops_per_round=good[0]["ops"] if good else None)
            verify = empty_verify()
            for r in good:
                add_tally(verify, r.get("verify") or {})
            summary["verify"] = verify
            for fig in ("ops_per_sec_cpu", "us_per_op_cpu", "ops_per_sec_wall", "us_per_op_wall",
                        "quiesce_seconds", "process_cpu_us_per_op", "all_cpu_us_per_op",
                        "disk_bytes"):
                vals = [r[fig] for r in good if r.get(fig) is not None]
                if vals:
                    summary[f"median_{fig}"] = _median(vals)
            out.append(summary)
    return out


def _spread(xs: list[float]) -> dict[str, Any] | None:
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def ratios(runs: list[Run], engines: list[str], workloads: tuple[str, ...]) -> dict[str, Any]:
    """``ratios[workload][peer] = {"cpu": spread, "wall": spread, "per_round": [...]}``.

    Each round gives ``lsm / peer`` of throughput (the peer's time per op over
    lsm's): above 1, lsm is faster. ``spread`` is median, min, max and n over
    the rounds where both ran.
    """
    out: dict[str, Any] = {}
    if BASELINE not in engines:
        return out
    for wl in workloads:
        by = {(r["engine"], r["round"]): r for r in runs
              if r["workload"] == wl and _usable(r) and r.get("round") is not None}
        base_rounds = sorted(rnd for eng, rnd in by if eng == BASELINE)
        for peer in engines:
            if peer == BASELINE:
                continue
            per_round = []
            for rnd in base_rounds:
                mine, theirs = by.get((BASELINE, rnd)), by.get((peer, rnd))
                if mine is None or theirs is None:
                    continue
                per_round.append({
                    "round": rnd,
                    "cpu": _ratio(theirs.get("us_per_op_cpu"), mine.get("us_per_op_cpu")),
                    "wall": _ratio(theirs.get("us_per_op_wall"), mine.get("us_per_op_wall")),
                })
            if per_round:
                out.setdefault(wl, {})[peer] = {
                    "cpu": _spread([p["cpu"] for p in per_round if p["cpu"] is not None]),
                    "wall": _spread([p["wall"] for p in per_round if p["wall"] is not None]),
                    "per_round": per_round,
                }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# -- the whole run ------------------------------------------------------------------------


def run_compare(cfg: CompareConfig, log: Log | None = None,
                classes: Mapping[str, type[Engine]] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the report data (see :mod:`lsm_bench.comparereport`).

    :param classes: engine name -> adapter class (default: every engine the
        harness knows, :data:`lsm_bench.runner.ENGINES`).
    :raises ValueError: an engine name that ``classes`` lacks.
    """
    if classes is None:
        from lsm_bench.runner import ENGINES  # late: keeps a test's monkeypatched registry

        classes = ENGINES
    unknown = [e for e in cfg.engines if e not in classes]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(classes)}")
    say = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    session = Session(cfg, classes, say)
    unavailable = {n: r for n in cfg.engines
                   if (r := classes[n].unavailable_reason()) is not None}
    reads = tuple(w for w in cfg.workloads if WORKLOADS[w].kind == "read")
    writes = tuple(w for w in cfg.workloads if WORKLOADS[w].kind == "write")
    if reads:
        session.run_reads(reads)
    if writes:
        session.run_writes(writes)
    engines = list(cfg.engines)
    return {
        "mode": "compare",
        "config": cfg.to_json(),
        "machine": machine_info(),
        "packages": package_versions(),
        "engines": {
            name: {
                "version": _version(classes[name]),
                "unavailable": unavailable.get(name),
                "doc": (classes[name].__doc__ or "").strip(),
                "settings": session.settings.get(name),
            }
            for name in engines
        },
        "workloads": {name: dataclasses.asdict(WORKLOADS[name]) for name in cfg.workloads},
        "databases": session.databases,
        "total_seconds": time.monotonic() - started,
        "runs": session.runs,
        "results": summarize(session.runs, engines, cfg.workloads, unavailable),
        "ratios": ratios(session.runs, engines, cfg.workloads),
    }


def _version(cls: type[Engine]) -> str | None:
    try:
        return cls.version()
    except Exception:  # a version string is informative only
        return None
