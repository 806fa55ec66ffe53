"""The ``bulkload`` workload: the same N keys loaded two ways, side by side.

* ``put``: one ``db.put`` per key in random order with ``sync_mode="never"``,
  then ``flush()`` and ``wait_for_compactions()`` (the time includes them);
* ``dask``: the rows are generated in the partitions of a ``dask.bag`` on a
  ``LocalCluster`` of 2 worker processes, and ``lsm.bulk.dask_build``
  range-partitions them, writes external tables on the workers and ingests
  them (``move=True``: hard links) in one ``DB.ingest``. The cluster is
  started before the clock (an existing cluster, as in production); its
  start-up time is reported apart.

Each load reports wall time, bytes written to disk and write amplification
(bytes written / key + value bytes); then ``readrandom`` and ``scanprefix``
run on each database, and on the put-loaded one again after a full
``compact_range()`` (reads after an ingest should match those: the ingested
files sit at the bottom level). Every value read is checked.

N is ``--bulk-num`` when given, else 10M (``--quick``: ``--num``'s quick
value). Skipped, with the reason, when dask is not installed.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lsm_bench.config import BenchConfig
from lsm_bench.context import Result, base_result
from lsm_bench.data import KeySpace, ValueGen, cycle_permutation, permutation

NAME = "bulkload"
FULL_NUM = 10_000_000
WORKERS = 2
_MULT = 2654435761  # Knuth's multiplicative hash constant (odd)
MAX_READS = 500_000  # point reads per read phase (scans: a hundredth), at most


def _num(cfg: BenchConfig) -> int:
    if cfg.bulk_num is not None:
        return cfg.bulk_num
    return cfg.num if cfg.quick else FULL_NUM


@functools.lru_cache(maxsize=4)
def _gens(key_size: int, value_size: int, seed: int) -> tuple[KeySpace, ValueGen]:
    """The key space and value generator, built once per worker process
    (a ValueGen draws a 1 MiB buffer)."""
    return KeySpace(key_size), ValueGen(value_size, seed)


def _rows(part: int, parts: int, n: int, key_size: int, value_size: int, seed: int) -> tuple[list, list]:
    """The rows of input partition ``part`` as columns: keys ``part, part +
    parts, ...`` below ``n``, in a random order (runs on a Dask worker)."""
    keys, values = _gens(key_size, value_size, seed)
    # a random-looking order without a per-row shuffle (the put load's
    # permutation is drawn before its clock starts): position j of the
    # global order holds key (j * mult) % n, a bijection for mult prime to n
    mult = _MULT
    while math.gcd(mult, n) != 1:
        mult += 2
    idx = list(map(n.__rmod__, map(mult.__mul__, range(part, n, parts))))
    return list(map(keys.key, idx)), list(map(values.value, idx))


def _gen_partition(parts_here: list[int], parts: int, n: int, key_size: int, value_size: int, seed: int):
    """A bag partition: ``lsm.bulk.Columns`` (keys and values as two lists,
    which Dask moves and the garbage collector walks far more cheaply than a
    list of pairs)."""
    from lsm.bulk import Columns  # noqa: PLC0415 - lsm is imported by the workload, not the harness
    keys: list = []
    values: list = []
    for p in parts_here:
        k, v = _rows(p, parts, n, key_size, value_size, seed)
        keys += k
        values += v
    return Columns(keys, values)


def _io_write_bytes() -> int:
    """This process's bytes written to storage (``/proc/self/io``), or 0."""
    try:
        with open("/proc/self/io", "rb") as f:
            for line in f:
                if line.startswith(b"write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _record(engine: str, workload: str, ops: int, seconds: float, unit: str, **extra: Any) -> Result:
    rec = base_result(workload, engine, "ok")
    rec.update({"ops": ops, "seconds": seconds, "ops_per_sec": ops / seconds if seconds else None,
                "unit": unit, "latency": {}, "verify": {"checked": 0}, "extra": extra})
    return rec


def _reads(db, engine: str, cfg: BenchConfig, n: int, keys: KeySpace, values: ValueGen) -> list[Result]:
    """readrandom and scanprefix on ``db`` (keys 0..n-1, generation 0)."""
    out = []
    count = min(n, cfg.n_reads, MAX_READS) if cfg.reads is not None else min(n, MAX_READS)
    order = cycle_permutation(n, count, cfg.seed + 2)
    get, key, value = db.get, keys.key, values.value
    bad = 0
    t = time.perf_counter()
    for k in order:
        if get(key(k)) != value(k):
            bad += 1
    sec = time.perf_counter() - t
    rec = _record(engine, f"{NAME}-readrandom", count, sec, "get")
    rec["verify"] = {"checked": count, "wrong": bad}
    if bad:
        rec["status"], rec["note"] = "failed", f"{bad} reads returned a wrong result"
    out.append(rec)
    groups = KeySpace.group_count(n)
    scans = cycle_permutation(groups, max(1, count // 100), cfg.seed + 5)
    bad = entries = 0
    t = time.perf_counter()
    for g in scans:
        first = g * 100
        got = 0
        for k, v in db.scan(keys.prefix_of_group(g)):
            if k != key(first + got) or v != value(first + got):
                bad += 1
            got += 1
        entries += got
        if got != KeySpace.group_size(g, n):
            bad += 1
    sec = time.perf_counter() - t
    rec = _record(engine, f"{NAME}-scanprefix", len(scans), sec, "prefix scan (<=100 entries)",
                  entries_read=entries)
    rec["verify"] = {"checked": len(scans), "wrong": bad}
    if bad:
        rec["status"], rec["note"] = "failed", f"{bad} scans returned a wrong result"
    out.append(rec)
    return out


def _shape(db) -> list[list[int]]:
    return [[lv["level"], len(lv["files"])] for lv in db.stats()["levels"] if lv["files"]]


def run_bulkload(cfg: BenchConfig, keys: KeySpace, values: ValueGen) -> list[Result]:
    """Run the workload (module docstring); one record per load and per read phase."""
    try:
        import dask.bag  # noqa: F401, PLC0415 - optional
        from distributed import Client, LocalCluster  # noqa: PLC0415
    except ImportError as exc:
        return [base_result(NAME, "lsm", "skipped", f"dask is not installed ({exc}): pip install 'lsm-tree[dask]'")]
    import lsm  # noqa: PLC0415
    import lsm.bulk  # noqa: PLC0415

    n = _num(cfg)
    user_bytes = n * (cfg.key_size + cfg.value_size)
    opts = {"sync_mode": "never", **cfg.options_for("lsm")}
    parent = str(cfg.tmpdir) if cfg.tmpdir is not None else None
    work = Path(tempfile.mkdtemp(prefix="lsm-bench-bulkload-", dir=parent))
    results: list[Result] = []
    try:
        # (a) put, then flush and wait for compactions
        path = str(work / "put")
        db = lsm.open(path, **opts)
        order = permutation(n, cfg.seed + 1)
        put, key, value = db.put, keys.key, values.value
        t = time.perf_counter()
        for k in order:
            put(key(k), value(k))
        db.flush()
        db.wait_for_compactions()
        sec = time.perf_counter() - t
        del order
        st = db.stats()
        written = st["compaction"]["write_amplification"] * user_bytes
        put_rec = _record("lsm:put", NAME, n, sec, "key", user_bytes=user_bytes, bytes_written=int(written),
                          write_amp=written / user_bytes, disk_bytes=_dir_bytes(path), levels=_shape(db),
                          how="db.put per key, sync_mode=never, then flush + wait_for_compactions")
        results.append(put_rec)
        results += _reads(db, "lsm:put", cfg, n, keys, values)
        t = time.perf_counter()
        db.compact_range()
        full = time.perf_counter() - t
        for rec in _reads(db, "lsm:put+compact_range", cfg, n, keys, values):
            rec["extra"]["compact_range_seconds"] = full
            rec["extra"]["levels"] = _shape(db)
            results.append(rec)
        db.close()
        shutil.rmtree(path, ignore_errors=True)

        # (b) Dask on a local cluster of worker processes, then one ingest
        t = time.perf_counter()
        cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None,
                               local_directory=str(work / "dask"))
        client = Client(cluster)
        startup = time.perf_counter() - t
        try:
            import dask.bag as dbag  # noqa: PLC0415
            parts = max(4, 2 * WORKERS, n // 1_250_000)
            bag = dbag.from_sequence(range(parts), npartitions=parts).map_partitions(
                _gen_partition, parts, n, cfg.key_size, cfg.value_size, cfg.seed)
            path = str(work / "dask-db")
            db = lsm.open(path, **opts)
            shared = str(work / "shared")
            io_before = sum(client.run(_io_write_bytes).values()) + _io_write_bytes()
            t = time.perf_counter()
            infos = lsm.bulk.dask_build(db, bag, shared_dir=shared, npartitions=parts, move=True,
                                        progress=cfg.progress == "on")
            sec = time.perf_counter() - t
            io_after = sum(client.run(_io_write_bytes).values()) + _io_write_bytes()
        finally:
            client.close()
            cluster.close()
        table_bytes = sum(i.bytes for i in infos)
        st = db.stats()
        db_bytes = st["wal"]["bytes_written"]  # the INGEST record; the manifest edit is tens of bytes
        written = table_bytes + db_bytes
        dask_rec = _record("lsm:dask", NAME, n, sec, "key", user_bytes=user_bytes, bytes_written=written,
                           write_amp=written / user_bytes, files=len(infos), disk_bytes=_dir_bytes(path),
                           levels=_shape(db), cluster_startup_seconds=startup, partitions=parts,
                           io_write_bytes=io_after - io_before,
                           how=f"dask.bag on LocalCluster({WORKERS} worker processes) -> lsm.bulk.dask_build "
                               "-> DB.ingest(move=True)")
        dask_rec["extra"]["speedup_vs_put"] = put_rec["seconds"] / sec if sec else None
        results.append(dask_rec)
        results += _reads(db, "lsm:dask", cfg, n, keys, values)
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results
