"""The db_bench workloads (names and semantics of LevelDB ``benchmarks/db_bench.cc``).

Each function gets a :class:`~lsm_bench.context.Context` for one engine and returns
result records. Every workload starts from a fresh database; anything it needs
first (a loaded database) is written untimed, in random order with batches of
``batch_size``, followed by ``quiesce()`` (memtable flushed, compactions done).

Where we differ from db_bench, on purpose:

- "random order" is a seeded permutation, not draws with replacement, so every
  key is written exactly once and every read can be checked;
- read phases read ``reads`` keys as whole shuffled passes over the key space,
  so with ``reads == num`` (the default) every key written is read back;
- every read is checked against the exact value written, and a wrong or
  missing value marks the result ``failed``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lsm_bench.context import Context, Result
from lsm_bench.data import KeySpace, chunks, cycle_permutation, permutation
from lsm_bench.engines import DELETE_RANGE, ITERATE, SEEK, Pair

Workload = Callable[[Context], list[Result]]


@dataclass(frozen=True)
class WorkloadSpec:
    """A registered workload: the function, what it needs, and its one-line doc."""

    name: str
    run: Workload
    needs: frozenset[str] = field(default_factory=frozenset)
    summary: str = ""

    @property
    def doc(self) -> str:
        """What the workload measures: its function's docstring, else the summary."""
        return (self.run.__doc__ or self.summary).strip()


def _entry_bytes(ctx: Context) -> int:
    return ctx.cfg.key_size + ctx.cfg.value_size


def _write_all(ctx: Context, name: str, order: list[int], *, gen: int = 0) -> list[Result]:
    """Timed: one ``put`` per index in ``order`` on a fresh database; then check all."""
    db = ctx.open()
    put, key, value = db.put, ctx.keys.key, ctx.values.value
    n = len(order)

    def op(i: int) -> None:
        k = order[i]
        put(key(k), value(k, gen))

    m = ctx.measure(
        db, name, n, unit="put", user_bytes=n * _entry_bytes(ctx), live_entries=n, compaction=True
    )
    with m as phase:
        phase.loop(n, op)
    if ctx.cfg.verify_writes:
        m.add_verify(ctx.check_present(db, range(n), gen))
    return [m.result]


def fillseq(ctx: Context) -> list[Result]:
    """fillseq: write ``num`` values in sequential key order, async (not fsynced).

    Measures the append-friendly best case: memtable inserts, WAL appends, and
    flushes of non-overlapping tables that compaction can move without merging.
    """
    return _write_all(ctx, "fillseq", list(range(ctx.cfg.num)))


def fillrandom(ctx: Context) -> list[Result]:
    """fillrandom: write ``num`` values in random key order, async.

    Measures steady write throughput with real compaction work: every flushed
    table overlaps the level below it.
    """
    return _write_all(ctx, "fillrandom", permutation(ctx.cfg.num, ctx.cfg.seed))


def overwrite(ctx: Context) -> list[Result]:
    """overwrite: rewrite every one of ``num`` existing keys in random order, async.

    Loads ``num`` keys untimed first. Measures writes that obsolete older versions,
    which compaction must merge away (write and space amplification).
    """
    n = ctx.cfg.num
    db = ctx.open()
    ctx.load(db, n)
    order = permutation(n, ctx.cfg.seed)
    put, key, value = db.put, ctx.keys.key, ctx.values.value

    def op(i: int) -> None:
        k = order[i]
        put(key(k), value(k, 1))

    m = ctx.measure(
        db, "overwrite", n, unit="put", user_bytes=n * _entry_bytes(ctx), live_entries=n,
        compaction=True,
    )
    with m as phase:
        phase.loop(n, op)
    if ctx.cfg.verify_writes:
        m.add_verify(ctx.check_present(db, range(n), 1))
    return [m.result]


def fillbatch(ctx: Context) -> list[Result]:
    """fillbatch: write ``num`` values in sequential order, ``batch_size`` per atomic batch.

    Throughput counts entries; latency is per batch. Measures the per-write
    overhead that batching amortises (one WAL record / transaction per batch).
    """
    n, size = ctx.cfg.num, ctx.cfg.batch_size
    db = ctx.open()
    batches = list(chunks(list(range(n)), size))
    key, value, write = ctx.keys.key, ctx.values.value, db.write_batch

    def op(b: int) -> None:
        write([(key(i), value(i)) for i in batches[b]])

    m = ctx.measure(
        db, "fillbatch", len(batches), unit=f"put (latency per {size}-entry batch)",
        user_bytes=n * _entry_bytes(ctx), live_entries=n, compaction=True,
    )
    m.batch_entries = n
    m.extra["batch_size"] = size
    m.extra["batches"] = len(batches)
    with m as phase:
        phase.loop(len(batches), op)
    if ctx.cfg.verify_writes:
        m.add_verify(ctx.check_present(db, range(n)))
    return [m.result]


def fillsync(ctx: Context) -> list[Result]:
    """fillsync: write ``sync_ops`` values in random order, each fsynced, on 1/4/16 threads.

    One result per thread count (``fillsync-4t`` ...). Measures the cost of a
    durable write and how well concurrent writers share fsyncs (group commit).
    db_bench writes num/1000 here and db_bench_sqlite3 num/100; we default to
    ``max(num // 100, 16 * max(threads))``.
    """
    results: list[Result] = []
    total = ctx.cfg.n_sync_ops
    for threads in ctx.cfg.sync_threads:
        name = f"fillsync-{threads}t"
        db = ctx.open(sync=True)
        order = permutation(total, ctx.cfg.seed + threads)
        parts = [order[t::threads] for t in range(threads)]
        put, key, value = db.put, ctx.keys.key, ctx.values.value

        def op(t: int, i: int, parts: list[list[int]] = parts, put=put, key=key, value=value) -> None:
            k = parts[t][i]
            put(key(k), value(k))

        m = ctx.measure(
            db, name, total, unit="put (fsynced)", user_bytes=total * _entry_bytes(ctx),
            live_entries=total,
        )
        m.extra["threads"] = threads
        with m as phase:
            phase.run_threads([len(p) for p in parts], op)
        if ctx.cfg.verify_writes:
            m.add_verify(ctx.check_present(db, range(total)))
        results.append(m.result)
    return results


def readrandom(ctx: Context) -> list[Result]:
    """readrandom: ``reads`` point lookups of existing keys in random order.

    Loads ``num`` keys untimed. Measures the read path: memtable, bloom filters,
    index and data blocks, block cache. Every value is checked.
    """
    db = ctx.open()
    ctx.load(db, ctx.cfg.num)
    order = cycle_permutation(ctx.cfg.num, ctx.cfg.n_reads, ctx.cfg.seed + 2)
    get, key, value = db.get, ctx.keys.key, ctx.values.value
    bad = {"missing": 0, "wrong": 0}

    def op(i: int) -> None:
        k = order[i]
        got = get(key(k))
        if got != value(k):
            bad["missing" if got is None else "wrong"] += 1

    m = ctx.measure(db, "readrandom", len(order), unit="get", live_entries=ctx.cfg.num)
    with m as phase:
        phase.loop(len(order), op)
        m.entries_returned = len(order) - bad["missing"]
    m.add_verify({"checked": len(order), **bad})
    return [m.result]


def readmissing(ctx: Context) -> list[Result]:
    """readmissing: ``reads`` lookups of keys that were never written (``key + "."``).

    Measures the miss path; bloom filters should answer most misses without
    reading a data block. Any value found marks the result failed.
    """
    db = ctx.open()
    ctx.load(db, ctx.cfg.num)
    order = cycle_permutation(ctx.cfg.num, ctx.cfg.n_reads, ctx.cfg.seed + 3)
    get, missing = db.get, ctx.keys.missing
    bad = {"unexpected": 0}

    def op(i: int) -> None:
        if get(missing(order[i])) is not None:
            bad["unexpected"] += 1

    m = ctx.measure(db, "readmissing", len(order), unit="get (miss)", live_entries=ctx.cfg.num)
    with m as phase:
        phase.loop(len(order), op)
    m.add_verify({"checked": len(order), **bad})
    return [m.result]


def readseq(ctx: Context) -> list[Result]:
    """readseq: one forward scan over ``min(reads, num)`` entries from the first key.

    Measures iterator throughput (merging levels, decoding blocks). Checks that
    entry ``i`` is exactly key ``i`` with its value.
    """
    db = ctx.open()
    n = ctx.cfg.num
    ctx.load(db, n)
    count = min(ctx.cfg.n_reads, n)
    key, value = ctx.keys.key, ctx.values.value
    bad = {"missing": 0, "wrong": 0}
    m = ctx.measure(db, "readseq", count, unit="next", live_entries=n)
    with m as phase:
        it: Iterator[Pair] = db.scan()
        step = it.__next__

        def op(i: int) -> None:
            try:
                k, v = step()
            except StopIteration:
                bad["missing"] += 1
                return
            if k != key(i) or v != value(i):
                bad["wrong"] += 1

        phase.loop(count, op)
        m.entries_returned = count - bad["missing"]
        close = getattr(it, "close", None)
        if close is not None:
            close()
    m.add_verify({"checked": count, **bad})
    return [m.result]


def seekrandom(ctx: Context) -> list[Result]:
    """seekrandom: ``reads`` seeks to random existing keys, reading the entry found.

    LevelDB's ``seekrandom`` (``Seek`` + ``Valid``; no ``Next``). Measures
    iterator creation plus one positioned read at every level, through the
    engine's ``seek_next(key, 1)`` (lsm: a cursor's ``seek``).
    """
    db = ctx.open()
    ctx.load(db, ctx.cfg.num)
    order = cycle_permutation(ctx.cfg.num, ctx.cfg.n_reads, ctx.cfg.seed + 4)
    seek, key, value = db.seek_next, ctx.keys.key, ctx.values.value
    bad = {"missing": 0, "wrong": 0}

    def op(i: int) -> None:
        k = order[i]
        target = key(k)
        found = seek(target, 1)
        if not found:
            bad["missing"] += 1
        elif found[0][0] != target or found[0][1] != value(k):
            bad["wrong"] += 1

    m = ctx.measure(db, "seekrandom", len(order), unit="seek", live_entries=ctx.cfg.num)
    with m as phase:
        phase.loop(len(order), op)
        m.entries_returned = len(order) - bad["missing"]
    m.add_verify({"checked": len(order), **bad})
    return [m.result]


def scanprefix(ctx: Context) -> list[Result]:
    """scanprefix: ``max(1, reads // 100)`` prefix scans, each returning one group of
    up to 100 keys (the key minus its last two digits).

    Not in db_bench (RocksDB's prefix seek is the analogue). Measures short
    range scans; engines without a prefix scan use ``start <= k < successor``.
    Checks every entry of every group.
    """
    db = ctx.open()
    n = ctx.cfg.num
    ctx.load(db, n)
    groups = KeySpace.group_count(n)
    order = cycle_permutation(groups, max(1, ctx.cfg.n_reads // 100), ctx.cfg.seed + 5)
    scan_prefix, keys, value = db.scan_prefix, ctx.keys, ctx.values.value
    bad = {"missing": 0, "wrong": 0, "entries": 0}

    def op(i: int) -> None:
        g = order[i]
        expect = KeySpace.group_size(g, n)
        first = g * 100
        got = 0
        for k, v in scan_prefix(keys.prefix_of_group(g)):
            if got >= expect or k != keys.key(first + got) or v != value(first + got):
                bad["wrong"] += 1
            got += 1
        bad["entries"] += got
        if got < expect:
            bad["missing"] += expect - got

    m = ctx.measure(db, "scanprefix", len(order), unit="prefix scan (<=100 entries)",
                    live_entries=n)
    with m as phase:
        phase.loop(len(order), op)
        m.entries_returned = bad["entries"]
    m.extra["entries_read"] = bad.pop("entries")
    m.add_verify({"checked": len(order), **bad})
    return [m.result]


def deleterandom(ctx: Context) -> list[Result]:
    """deleterandom: delete every one of ``num`` existing keys in random order, async.

    Loads ``num`` keys untimed. Measures tombstone writes; afterwards every key
    must read as absent (checked untimed).
    """
    n = ctx.cfg.num
    db = ctx.open()
    ctx.load(db, n)
    order = permutation(n, ctx.cfg.seed + 6)
    delete, key = db.delete, ctx.keys.key

    def op(i: int) -> None:
        delete(key(order[i]))

    m = ctx.measure(
        db, "deleterandom", n, unit="delete", user_bytes=n * ctx.cfg.key_size, live_entries=0,
        compaction=True,
    )
    with m as phase:
        phase.loop(n, op)
    if ctx.cfg.verify_writes:
        m.add_verify(ctx.check_absent(db, range(n)))
    return [m.result]


RANGEDEL_LO, RANGEDEL_HI = 10, 20  # each group of 100 keys loses keys 10..19 to one range deletion


def rangedel(ctx: Context) -> list[Result]:
    """rangedel: one range deletion per group of 100 keys (its keys 10..19:
    ``num / 100`` tombstones, a tenth of the keys), then reads across them.

    Not in db_bench. Loads ``num`` keys untimed; measures the range
    deletions (``rangedel-write``), ``reads`` random gets of every key while
    the tombstones are fresh (``rangedel-get``), prefix scans of the groups
    (``rangedel-scan``, each returning the group's 90 live keys), and the
    gets again once ``quiesce()`` has let compaction drop the deleted keys
    and tombstones (``rangedel-get-settled``). Compare with ``readrandom``
    and ``scanprefix`` of the same run: the cost of reading through range
    tombstones. Every read is checked (a deleted key must be absent).
    """
    db = ctx.open()
    n = ctx.cfg.num
    ctx.load(db, n)
    keys, value = ctx.keys, ctx.values.value
    groups = KeySpace.group_count(n)
    dels = [g for g in range(groups) if KeySpace.group_size(g, n) > RANGEDEL_LO]
    delete_range = db.delete_range
    results: list[Result] = []

    def write(i: int) -> None:
        g = dels[i]
        delete_range(keys.key(g * 100 + RANGEDEL_LO), keys.key(g * 100 + RANGEDEL_HI))

    m = ctx.measure(db, "rangedel-write", len(dels), unit="delete_range (10 keys)", live_entries=n,
                    user_bytes=2 * ctx.cfg.key_size * len(dels))
    with m as phase:
        phase.loop(len(dels), write)
    results.append(m.result)

    def deleted(k: int) -> bool:
        return RANGEDEL_LO <= k % 100 < RANGEDEL_HI

    live = n - sum(min(RANGEDEL_HI, KeySpace.group_size(g, n)) - RANGEDEL_LO for g in dels)

    def gets(name: str, seed: int) -> Result:
        order = cycle_permutation(n, ctx.cfg.n_reads, seed)
        get, key = db.get, keys.key
        bad = {"missing": 0, "wrong": 0, "unexpected": 0}

        def op(i: int) -> None:
            k = order[i]
            got = get(key(k))
            if deleted(k):
                if got is not None:
                    bad["unexpected"] += 1
            elif got != value(k):
                bad["missing" if got is None else "wrong"] += 1

        m = ctx.measure(db, name, len(order), unit="get", live_entries=live)
        with m as phase:
            phase.loop(len(order), op)
        m.add_verify({"checked": len(order), **bad})
        return m.result

    results.append(gets("rangedel-get", ctx.cfg.seed + 11))
    order = cycle_permutation(groups, max(1, ctx.cfg.n_reads // 100), ctx.cfg.seed + 12)
    scan_prefix = db.scan_prefix
    bad = {"missing": 0, "wrong": 0, "entries": 0}

    def scan(i: int) -> None:
        g = order[i]
        want = [g * 100 + j for j in range(KeySpace.group_size(g, n)) if not deleted(g * 100 + j)]
        got = 0
        for k, v in scan_prefix(keys.prefix_of_group(g)):
            if got >= len(want) or k != keys.key(want[got]) or v != value(want[got]):
                bad["wrong"] += 1
            got += 1
        bad["entries"] += got
        if got < len(want):
            bad["missing"] += len(want) - got

    m = ctx.measure(db, "rangedel-scan", len(order), unit="prefix scan (<=90 entries)", live_entries=live)
    with m as phase:
        phase.loop(len(order), scan)
        m.entries_returned = bad["entries"]
    m.extra["entries_read"] = bad.pop("entries")
    m.add_verify({"checked": len(order), **bad})
    results.append(m.result)
    db.quiesce()
    results.append(gets("rangedel-get-settled", ctx.cfg.seed + 13))
    return results


def readwhilewriting(ctx: Context) -> list[Result]:
    """readwhilewriting: ``reads`` random lookups while one thread overwrites random keys.

    db_bench runs N readers and one writer; under the GIL we run one of each.
    Throughput and latency are the reader's; the writer's rate is in ``extra``.
    Measures reads under flush/compaction pressure. A read must return either
    the loaded value or the writer's.
    """
    n = ctx.cfg.num
    db = ctx.open()
    ctx.load(db, n)
    order = cycle_permutation(n, ctx.cfg.n_reads, ctx.cfg.seed + 7)
    wr_order = permutation(n, ctx.cfg.seed + 8)
    get, put, key, value = db.get, db.put, ctx.keys.key, ctx.values.value
    stop = threading.Event()
    writes = [0]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                for k in wr_order:
                    if stop.is_set():
                        return
                    put(key(k), value(k, 1))
                    writes[0] += 1
        except BaseException as exc:  # reported after the phase
            errors.append(exc)

    bad = {"missing": 0, "wrong": 0}

    def op(i: int) -> None:
        k = order[i]
        got = get(key(k))
        if got is None:
            bad["missing"] += 1
        elif got != value(k) and got != value(k, 1):
            bad["wrong"] += 1

    m = ctx.measure(
        db, "readwhilewriting", len(order), unit="get (1 writer running)", live_entries=n,
        compaction=True,
    )
    thread = threading.Thread(target=writer, daemon=True)
    with m as phase:
        thread.start()
        phase.loop(len(order), op)
        stop.set()
        thread.join()
        m.entries_returned = len(order) - bad["missing"]
    if errors:
        raise errors[0]
    seconds = m.result.get("seconds") or 0.0
    m.extra["writer_ops"] = writes[0]
    m.extra["writer_ops_per_sec"] = writes[0] / seconds if seconds else None
    m.add_verify({"checked": len(order), **bad})
    return [m.result]


DB_BENCH: tuple[WorkloadSpec, ...] = (
    WorkloadSpec("fillseq", fillseq, summary="sequential puts, async"),
    WorkloadSpec("fillrandom", fillrandom, summary="random-order puts, async"),
    WorkloadSpec("overwrite", overwrite, summary="random overwrites of every key, async"),
    WorkloadSpec("readrandom", readrandom, summary="random gets of existing keys"),
    WorkloadSpec("readmissing", readmissing, summary="gets of absent keys"),
    WorkloadSpec("readseq", readseq, frozenset({ITERATE}), "one forward scan"),
    WorkloadSpec("scanprefix", scanprefix, frozenset({SEEK}), "100-key prefix scans"),
    WorkloadSpec("seekrandom", seekrandom, frozenset({SEEK}), "seek + read one entry"),
    WorkloadSpec("deleterandom", deleterandom, summary="random deletes of every key"),
    WorkloadSpec("rangedel", rangedel, frozenset({SEEK, DELETE_RANGE}),
                 "range deletions, then gets and scans across them"),
    WorkloadSpec("fillsync", fillsync, summary="fsynced puts on 1/4/16 threads"),
    WorkloadSpec("fillbatch", fillbatch, summary="sequential puts, 1000 per batch"),
    WorkloadSpec("readwhilewriting", readwhilewriting, summary="gets with a writer running"),
)
