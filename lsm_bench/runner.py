"""Runs workloads x engines in one process and collects the result records.

Order: for each workload, every engine in turn (so engines measured side by
side see the same machine state), each in its own fresh temporary directory
that is deleted afterwards. An engine that is not installed, or lacks a
primitive the workload needs, yields a ``skipped`` record with the reason; an
engine that raises yields an ``error`` record, and the run goes on.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from lsm_bench import bulkload, cachebench
from lsm_bench.cachebench import run_cache
from lsm_bench.config import BenchConfig
from lsm_bench.context import Context, Result, base_result
from lsm_bench.data import KeySpace, ValueGen
from lsm_bench.engines import Engine, LsmEngine, SqliteEngine
from lsm_bench.machine import machine_info, package_versions
from lsm_bench.peers import DiskcacheEngine, LmdbEngine, PlyvelEngine, RocksdictEngine
from lsm_bench.workloads import DB_BENCH, WorkloadSpec
from lsm_bench.ycsb import YCSB

ENGINES: dict[str, type[Engine]] = {
    cls.name: cls
    for cls in (
        LsmEngine,
        SqliteEngine,
        PlyvelEngine,
        RocksdictEngine,
        LmdbEngine,
        DiskcacheEngine,
    )
}
ALWAYS_ENGINES = ("lsm", "sqlite3")  # in every default run, even before lsm.open exists

WORKLOADS: dict[str, WorkloadSpec] = {spec.name: spec for spec in DB_BENCH + YCSB}
CACHE_WORKLOADS: tuple[str, ...] = tuple(cachebench.MIXES)
ALL_WORKLOADS: tuple[str, ...] = tuple(WORKLOADS) + CACHE_WORKLOADS + (bulkload.NAME,)
# "all" leaves out bulkload: it starts a Dask cluster and loads 10M keys by
# default (ask for it by name: --workloads bulkload)
WORKLOAD_GROUPS = {"ycsb": tuple(spec.name for spec in YCSB),
                   "all": tuple(w for w in ALL_WORKLOADS if w != bulkload.NAME)}
COMPACTION_WORKLOADS = frozenset(
    {"fillseq", "fillrandom", "overwrite", "fillbatch", "deleterandom", "readwhilewriting"}
)

Log = Callable[[str], None]


def default_engines() -> tuple[str, ...]:
    """``lsm`` and ``sqlite3``, plus every peer that is installed."""
    peers = [n for n, cls in ENGINES.items() if n not in ALWAYS_ENGINES]
    return ALWAYS_ENGINES + tuple(n for n in peers if ENGINES[n].unavailable_reason() is None)


def expand_workloads(names: list[str]) -> tuple[str, ...]:
    """Expand groups (``ycsb``, ``all``), keep order, drop duplicates.

    :raises ValueError: an unknown workload name.
    """
    out: list[str] = []
    for name in names:
        for item in WORKLOAD_GROUPS.get(name, (name,)):
            if item not in ALL_WORKLOADS:
                raise ValueError(
                    f"unknown workload {item!r}; choose from {', '.join(ALL_WORKLOADS)}, ycsb, all"
                )
            if item not in out:
                out.append(item)
    return tuple(out)


def engine_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Each selected engine's version (``None`` when not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        cls = ENGINES.get(name)
        try:
            versions[name] = cls.version() if cls is not None else None
        except Exception:  # a version string is informative only
            versions[name] = None
    return versions


def workload_doc(name: str) -> str:
    """What ``name`` measures (the workload function's docstring)."""
    if name in CACHE_WORKLOADS:
        return (cachebench.__doc__ or "").strip()
    if name == bulkload.NAME:
        return (bulkload.__doc__ or "").strip()
    return WORKLOADS[name].doc


def run_one(
    spec: WorkloadSpec, cls: type[Engine], cfg: BenchConfig, keys: KeySpace, values: ValueGen
) -> list[Result]:
    """``spec`` on engine ``cls``, as result records (never raises ``Exception``)."""
    reason = cls.unavailable_reason()
    if reason is not None:
        return [base_result(spec.name, cls.name, "skipped", reason)]
    missing = spec.needs - cls.features
    if missing:
        note = f"{cls.name} has no {'/'.join(sorted(missing))} primitive"
        return [base_result(spec.name, cls.name, "skipped", note)]
    ctx = Context(cfg, cls, keys, values, spec.name)
    try:
        return spec.run(ctx)
    except Exception as exc:
        tb = traceback.format_exc(limit=6)
        rec = base_result(spec.name, cls.name, "error", f"{type(exc).__name__}: {exc}")
        rec["traceback"] = tb
        return [rec]
    finally:
        try:
            ctx.cleanup()
        except Exception:  # closing a broken engine must not mask the result
            pass


def run(cfg: BenchConfig, log: Log | None = None) -> dict[str, Any]:
    """Run every selected workload on every selected engine.

    :returns: the report data: ``config``, ``machine``, ``packages``,
        ``engines`` (version, availability), ``results`` (a list of records).
    """
    say = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
    keys = KeySpace(cfg.key_size)
    values = ValueGen(cfg.value_size, cfg.seed)
    started = time.monotonic()
    results: list[Result] = []
    for wname in cfg.workloads:
        if wname in CACHE_WORKLOADS:
            batch = run_cache(cfg, keys, values, wname)
        elif wname == bulkload.NAME:
            batch = bulkload.run_bulkload(cfg, keys, values)
        else:
            batch = []
            for ename in cfg.engines:
                batch.extend(run_one(WORKLOADS[wname], ENGINES[ename], cfg, keys, values))
        for rec in batch:
            say(_one_line(rec))
        results.extend(batch)
    return {
        "config": cfg.to_json(),
        "machine": machine_info(),
        "packages": package_versions(),
        "engines": {
            name: {
                "version": version,
                "unavailable": ENGINES[name].unavailable_reason() if name in ENGINES else None,
                "doc": (ENGINES[name].__doc__ or "").strip() if name in ENGINES else "",
            }
            for name, version in engine_versions(cfg.engines).items()
        },
        "workloads": {name: workload_doc(name) for name in cfg.workloads},
        "compaction_workloads": sorted(COMPACTION_WORKLOADS & set(cfg.workloads)),
        "total_seconds": time.monotonic() - started,
        "results": results,
    }


def _one_line(rec: Result) -> str:
    """A progress line per finished record, e.g. ``fillseq   lsm  12,345 op/s ...``."""
    head = f"{rec['workload']:<18} {rec['engine']:<10}"
    if rec.get("status") in ("ok", "failed") and rec.get("ops_per_sec"):
        lat = rec.get("latency", {})
        line = (
            f"{head} {rec['ops_per_sec']:>12,.0f} op/s  p50 {lat.get('p50_us', 0):8.1f} us"
            f"  p99 {lat.get('p99_us', 0):8.1f} us"
        )
        return line + ("" if rec["status"] == "ok" else f"  FAILED: {rec.get('note')}")
    return f"{head} {rec.get('status')}: {rec.get('note', '')}"
