"""YCSB core workloads A-F and YCSB's key choosers (Cooper et al., SoCC 2010).

=====  ===============================================  ===================
name   operations                                       request distribution
=====  ===============================================  ===================
A      50% read, 50% update                             zipfian
B      95% read, 5% update                              zipfian
C      100% read                                        zipfian
D      95% read, 5% insert                              latest
E      95% scan (1-100 entries, uniform), 5% insert     zipfian
F      50% read, 50% read-modify-write                  zipfian
=====  ===============================================  ===================

"zipfian" is YCSB's ``ScrambledZipfianGenerator`` (constant 0.99, spread over
the key space by FNV-1a hashing so hot keys are not neighbours); "latest" is
its ``SkewedLatestGenerator``, a zipfian over insertion recency, which is what
YCSB's workload D file specifies. Load phase: ``num`` records, untimed.
Operations: ``reads`` (YCSB ``operationcount``), values of ``value_size`` bytes
(YCSB uses 10 x 100-byte fields; one value keeps engines comparable). The whole
operation sequence is drawn before the timed phase from the seed, so every
engine runs the identical sequence. Reads and scans are checked against the
last value written to each key.
"""

from __future__ import annotations

import random
from typing import Any

from lsm_bench.context import Context, Result
from lsm_bench.engines import SEEK
from lsm_bench.measure import summarize_latency
from lsm_bench.workloads import WorkloadSpec

ZIPFIAN_CONSTANT = 0.99  # YCSB ZipfianGenerator.ZIPFIAN_CONSTANT
SCRAMBLED_ITEMS = 10_000_000_000  # YCSB ScrambledZipfianGenerator.ITEM_COUNT
SCRAMBLED_ZETAN = 26.46902820178302  # YCSB: zeta(ITEM_COUNT, 0.99), precomputed there too
MAX_SCAN_LENGTH = 100  # YCSB workloade maxscanlength
FNV_OFFSET_64 = 0xCBF29CE484222325
FNV_PRIME_64 = 1099511628211
MASK_64 = (1 << 64) - 1

READ, UPDATE, INSERT, SCAN, RMW = range(5)
OP_NAMES = ("read", "update", "insert", "scan", "read-modify-write")

# name -> (proportions by op code, distribution)
MIXES: dict[str, tuple[dict[int, float], str]] = {
    "a": ({READ: 0.5, UPDATE: 0.5}, "zipfian"),
    "b": ({READ: 0.95, UPDATE: 0.05}, "zipfian"),
    "c": ({READ: 1.0}, "zipfian"),
    "d": ({READ: 0.95, INSERT: 0.05}, "latest"),
    "e": ({SCAN: 0.95, INSERT: 0.05}, "zipfian"),
    "f": ({READ: 0.5, RMW: 0.5}, "zipfian"),
}


def zeta(n: int, theta: float, start: int = 0, initial: float = 0.0) -> float:
    """``initial + sum(1 / (i + 1) ** theta for i in range(start, n))``."""
    total = initial
    for i in range(start, n):
        total += 1.0 / (i + 1) ** theta
    return total


def fnv1a64(value: int) -> int:
    """YCSB ``Utils.fnvhash64``: FNV-1a over the 8 little-endian bytes, made non-negative.

    >>> fnv1a64(0) == fnv1a64(0), fnv1a64(1) != fnv1a64(2)
    (True, True)
    """
    h = FNV_OFFSET_64
    for _ in range(8):
        h ^= value & 0xFF
        value >>= 8
        h = (h * FNV_PRIME_64) & MASK_64
    if h >= 1 << 63:  # Java's Math.abs of the signed 64-bit value
        h = (1 << 64) - h
    return h & MASK_64


class Zipfian:
    """YCSB ``ZipfianGenerator``: integers ``0..items-1``, item 0 the most popular.

    Uses Gray et al.'s "Quickly generating billion-record synthetic databases";
    ``next(items)`` may grow the item count, updating zeta incrementally.

    >>> z = Zipfian(1000, random.Random(1))
    >>> draws = [z.next() for _ in range(10000)]
    >>> draws.count(0) > draws.count(500) * 20
    True
    """

    def __init__(
        self, items: int, rng: random.Random, theta: float = ZIPFIAN_CONSTANT,
        zetan: float | None = None,
    ) -> None:
        """:param items: how many distinct values. :param rng: the random source.
        :param theta: skew. :param zetan: precomputed ``zeta(items, theta)``.
        """
        self.rng = rng
        self.theta = theta
        self.alpha = 1.0 / (1.0 - theta)
        self.zeta2 = zeta(2, theta)
        self.items = items
        self.zetan = zetan if zetan is not None else zeta(items, theta)
        self.eta = self._eta()

    def _eta(self) -> float:
        ratio: float = (2.0 / self.items) ** (1 - self.theta)
        return (1 - ratio) / (1 - self.zeta2 / self.zetan)

    def next(self, items: int | None = None) -> int:
        """One draw; ``items`` (if given) becomes the new item count first."""
        if items is not None and items != self.items:
            if items > self.items:
                self.zetan = zeta(items, self.theta, self.items, self.zetan)
            else:
                self.zetan = zeta(items, self.theta)
            self.items = items
            self.eta = self._eta()
        u = self.rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < 1.0 + 0.5**self.theta:
            return 1
        return min(self.items - 1, int(self.items * (self.eta * u - self.eta + 1) ** self.alpha))


class ScrambledZipfian:
    """YCSB ``ScrambledZipfianGenerator``: zipfian popularity, hashed over ``0..items-1``."""

    def __init__(self, items: int, rng: random.Random) -> None:
        """:param items: key-space size. :param rng: the random source."""
        self.items = items
        self._zipf = Zipfian(SCRAMBLED_ITEMS, rng, zetan=SCRAMBLED_ZETAN)

    def next(self) -> int:
        """One key index."""
        return fnv1a64(self._zipf.next()) % self.items


class Operations:
    """A pre-drawn YCSB operation sequence (op code, key index, scan details)."""

    def __init__(self, mix: str, records: int, count: int, seed: int) -> None:
        """:param mix: ``"a"`` .. ``"f"``. :param records: keys loaded.
        :param count: operations. :param seed: random seed.
        """
        proportions, dist = MIXES[mix]
        rng = random.Random(seed)
        codes = list(proportions)
        cum: list[float] = []
        acc = 0.0
        for code in codes:
            acc += proportions[code]
            cum.append(acc)
        expected_inserts = int(count * proportions.get(INSERT, 0.0) * 2)
        scrambled = ScrambledZipfian(records + expected_inserts, rng)
        latest = Zipfian(records, rng) if dist == "latest" else None
        inserted = records
        self.kinds = bytearray(count)
        self.keys = [0] * count
        self.scan_len = [0] * count  # requested entries, scans only
        self.scan_expect = [0] * count  # entries that exist at that moment
        for i in range(count):
            u = rng.random()
            code = next((c for c, edge in zip(codes, cum) if u < edge), codes[-1])
            self.kinds[i] = code
            if code == INSERT:
                self.keys[i] = inserted
                inserted += 1
                continue
            if latest is not None:
                k = (inserted - 1) - latest.next(inserted)
            else:
                k = scrambled.next()
                while k >= inserted:  # YCSB: never pick a key not inserted yet
                    k = scrambled.next()
            self.keys[i] = k
            if code == SCAN:
                length = rng.randint(1, MAX_SCAN_LENGTH)
                self.scan_len[i] = length
                self.scan_expect[i] = min(length, inserted - k)
        self.total_keys = inserted

    def counts(self) -> dict[str, int]:
        """Operations per kind."""
        return {OP_NAMES[c]: self.kinds.count(c) for c in sorted(set(self.kinds))}


def run_ycsb(ctx: Context, mix: str) -> list[Result]:
    """Load ``num`` records, then run the pre-drawn operations of workload ``mix``."""
    name = f"ycsb-{mix}"
    n = ctx.cfg.num
    ops = Operations(mix, n, ctx.cfg.n_reads, ctx.cfg.seed + ord(mix))
    db = ctx.open()
    ctx.load(db, n)
    gens = [0] * ops.total_keys
    get, put, scan = db.get, db.put, db.scan
    key, value = ctx.keys.key, ctx.values.value
    kinds, keys, scan_len, scan_expect = ops.kinds, ops.keys, ops.scan_len, ops.scan_expect
    bad = {"missing": 0, "wrong": 0}
    entries = [0]

    def check(k: int, got: bytes | None) -> None:
        if got is None:
            bad["missing"] += 1
        elif got != value(k, gens[k]):
            bad["wrong"] += 1

    def op(i: int) -> None:
        code, k = kinds[i], keys[i]
        if code == READ:
            check(k, get(key(k)))
        elif code == UPDATE:
            g = gens[k] + 1
            put(key(k), value(k, g))
            gens[k] = g
        elif code == INSERT:
            put(key(k), value(k, 0))
        elif code == SCAN:
            got = 0
            for kk, vv in scan(key(k), None, scan_len[i]):
                j = k + got
                if kk != key(j) or vv != value(j, gens[j]):
                    bad["wrong"] += 1
                got += 1
            entries[0] += got
            if got < scan_expect[i]:
                bad["missing"] += scan_expect[i] - got
        else:  # RMW
            check(k, get(key(k)))
            g = gens[k] + 1
            put(key(k), value(k, g))
            gens[k] = g

    writes = sum(1 for c in kinds if c in (UPDATE, INSERT, RMW))
    m = ctx.measure(
        db, name, len(kinds), unit="operation",
        user_bytes=writes * (ctx.cfg.key_size + ctx.cfg.value_size), live_entries=ops.total_keys,
    )
    with m as phase:
        phase.loop(len(kinds), op)
        reads = sum(1 for c in kinds if c in (READ, RMW))
        m.entries_returned = reads - bad["missing"] + entries[0]
    m.extra["operations"] = ops.counts()
    m.extra["distribution"] = MIXES[mix][1]
    if entries[0]:
        m.extra["scan_entries"] = entries[0]
    m.extra["latency_by_op"] = _latency_by_op(phase.samples, phase.every, kinds)
    checked = sum(1 for c in kinds if c in (READ, SCAN, RMW))
    m.add_verify({"checked": checked, **bad})
    return [m.result]


def _latency_by_op(samples: Any, every: int, kinds: bytearray) -> dict[str, Any]:
    """Split the phase's samples by op kind (sample j timed operation ``j * every``)."""
    split: dict[int, list[int]] = {}
    for j, ns in enumerate(samples):
        split.setdefault(kinds[j * every], []).append(ns)
    return {OP_NAMES[c]: summarize_latency(v, every) for c, v in sorted(split.items())}


def _spec(mix: str) -> WorkloadSpec:
    proportions, dist = MIXES[mix]
    summary = ", ".join(f"{p:.0%} {OP_NAMES[c]}" for c, p in proportions.items()) + f" ({dist})"

    def run(ctx: Context) -> list[Result]:
        return run_ycsb(ctx, mix)

    run.__doc__ = (
        f"ycsb-{mix}: YCSB workload {mix.upper()}, {summary}, over ``num`` loaded records; "
        "``reads`` operations, each checked against the last value written."
    )
    needs = frozenset({SEEK}) if SCAN in proportions else frozenset()
    return WorkloadSpec(f"ycsb-{mix}", run, needs, summary)


YCSB: tuple[WorkloadSpec, ...] = tuple(_spec(mix) for mix in "abcdef")
