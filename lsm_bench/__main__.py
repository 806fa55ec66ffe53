"""Command line: ``python -m bench`` / ``lsm-bench``.

Examples::

    python -m bench --quick                       # < 1 min, temporary databases
    python -m bench --num 100000 --out bench-out  # the RESULTS.md run
    python -m bench --workloads fillrandom,readrandom --engines lsm,sqlite3 \\
        --opt memtable_bytes=1048576 --opt sqlite3:synchronous=OFF

The ``compare`` sub-command (first argument) runs the same-process
comparison of :mod:`lsm_bench.compare`: lsm against plyvel, sqlite3 (and
any other peer named) in interleaved rounds, timed by the calling thread's
CPU time, with lsm / peer ratios per round::

    python -m bench compare --quick               # < 1 min
    python -m bench compare --num 1000000 --rounds 5 --engines lsm,plyvel,sqlite3 \\
        --workloads reads --out bench-out/compare-reads    # a few minutes
    python -m bench compare --num 1000000 --workloads writes  # ~10 minutes

The ``scale`` sub-command loads one large database per engine in ten steps
and records how throughput, latency, memory and open times change as it
grows (:mod:`lsm_bench.scale`)::

    python -m bench scale --quick                 # about a minute
    python -m bench scale --num 5000000 --out bench-out/scale-5m
    python -m bench scale                         # 50M keys: hours (bench/RESULTS.md)

Exit status: 0 when every result is ``ok`` or ``skipped``; 1 when any read
came back wrong (``failed``) or an engine raised (``error``); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsm_bench import compare, comparereport, scale, scalereport
from lsm_bench.config import (
    DEFAULT_BATCH,
    DEFAULT_KEY_SIZE,
    DEFAULT_NUM,
    DEFAULT_SEED,
    DEFAULT_SYNC_THREADS,
    DEFAULT_VALUE_SIZE,
    QUICK_NUM,
    QUICK_SYNC_OPS,
    BenchConfig,
    parse_opts,
)
from lsm_bench.plots import matplotlib_available, write_plots
from lsm_bench.report import failures, render_markdown, write_report
from lsm_bench.runner import (
    ALL_WORKLOADS,
    ALWAYS_ENGINES,
    ENGINES,
    default_engines,
    expand_workloads,
    run,
    workload_doc,
)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and ``--help``)."""
    p = argparse.ArgumentParser(
        prog="lsm-bench",
        description="db_bench and YCSB workloads on lsm and peer stores, side by side.",
        epilog="Workloads: " + ", ".join(ALL_WORKLOADS) + " (groups: ycsb, all). "
        "Engines: " + ", ".join(ENGINES) + ". See bench/RESULTS.md. "
        "Sub-command: 'lsm-bench compare ...' (first argument) compares lsm with its peers "
        "in one process, in interleaved rounds timed by thread CPU; see "
        "'lsm-bench compare --help'. Sub-command: 'lsm-bench scale ...' loads one large database "
        "per engine in steps (memory, stalls, read latency, open times as it grows); see "
        "'lsm-bench scale --help'.",
    )
    p.add_argument("--num", type=int, default=None,
                   help=f"entries per database (default {DEFAULT_NUM:,}; --quick {QUICK_NUM:,})")
    p.add_argument("--reads", type=int, default=None,
                   help="operations in read/seek/YCSB/cache phases (default: num)")
    p.add_argument("--value-size", type=int, default=DEFAULT_VALUE_SIZE,
                   help="bytes per value (default %(default)s)")
    p.add_argument("--key-size", type=int, default=DEFAULT_KEY_SIZE,
                   help="bytes per key, zero-padded decimal (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 301)")
    p.add_argument("--engines", type=_csv, default=None,
                   help="comma-separated engines, or 'all' (default: lsm, sqlite3 and every "
                   "installed peer)")
    p.add_argument("--workloads", type=_csv, default=["all"],
                   help="comma-separated workloads or groups (default: all)")
    p.add_argument("--out", type=Path, default=Path("bench-out"),
                   help="directory for results.md, results.json, plots/ (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help=f"a short smoke run: num={QUICK_NUM:,}, {QUICK_SYNC_OPS} fsynced puts per "
                   "fillsync variant (explicit --num/--sync-ops still win)")
    p.add_argument("--opt", action="append", default=[], metavar="[ENGINE:]KEY=VALUE",
                   help="engine option pass-through, repeatable; without ENGINE: it goes to lsm "
                   "(e.g. --opt memtable_bytes=1048576, --opt sqlite3:txn_ops=1000)")
    p.add_argument("--bulk-num", type=int, default=None,
                   help="keys the bulkload workload loads (default 10,000,000; --quick: num)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help="entries per batch in fillbatch and load phases (default %(default)s)")
    p.add_argument("--sync-threads", type=lambda s: tuple(int(x) for x in _csv(s)),
                   default=DEFAULT_SYNC_THREADS,
                   help="writer threads for fillsync variants (default 1,4,16)")
    p.add_argument("--sync-ops", type=int, default=None,
                   help="fsynced puts per fillsync variant (default max(num/100, 256))")
    p.add_argument("--no-verify-writes", action="store_true",
                   help="skip the untimed read-back after write workloads")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on long phases (auto: when stderr is a terminal)")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    p.add_argument("--tmpdir", type=Path, default=None,
                   help="parent directory for the temporary databases")
    p.add_argument("--list", action="store_true", help="list workloads and engines, then exit")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Turn parsed arguments into a :class:`BenchConfig`.

    :raises ValueError: an unknown engine or workload, or an invalid value.
    """
    engines = default_engines() if args.engines is None else tuple(args.engines)
    if engines == ("all",):
        engines = tuple(ENGINES)
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    num = args.num if args.num is not None else (QUICK_NUM if args.quick else DEFAULT_NUM)
    sync_ops = args.sync_ops if args.sync_ops is not None else (
        QUICK_SYNC_OPS if args.quick else None)
    return BenchConfig(
        num=num,
        reads=args.reads,
        value_size=args.value_size,
        key_size=args.key_size,
        seed=args.seed,
        engines=engines,
        workloads=expand_workloads(args.workloads),
        out=args.out,
        engine_options=parse_opts(args.opt),
        batch_size=args.batch_size,
        sync_threads=tuple(args.sync_threads),
        sync_ops=sync_ops,
        verify_writes=not args.no_verify_writes,
        progress=args.progress,
        plots=not args.no_plots,
        tmpdir=args.tmpdir,
        quick=args.quick,
        bulk_num=args.bulk_num,
    )


def _ops(text: str) -> tuple[str, int]:
    """``NAME=COUNT`` for ``compare --ops``."""
    name, sep, count = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=COUNT, got {text!r}")
    try:
        return name.strip(), int(count.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"COUNT must be an integer, got {count!r}") from None


def build_compare_parser() -> argparse.ArgumentParser:
    """The parser of ``lsm-bench compare`` (exposed for tests and ``--help``)."""
    reads = ", ".join(f"{n} ({compare.WORKLOADS[n].ops:,})" for n in compare.READS)
    p = argparse.ArgumentParser(
        prog="lsm-bench compare",
        description="lsm against LevelDB (plyvel), sqlite3 and other peers in one process. "
        "Every round runs each workload once on every engine, in an engine order shuffled per "
        "round, on a new random key order; the figure is the calling thread's CPU time "
        "(time.thread_time), with wall time beside it, and lsm/peer is taken per round "
        "(median and min-max over rounds). Every read is checked.",
        epilog=f"Read workloads (per round): {reads}, on databases loaded once and settled. "
        f"Write workloads: {', '.join(compare.WRITES)} (num keys into a fresh database "
        "per engine and round). Groups: reads, writes, all. With --num 1000000: reads take a "
        "few minutes, writes about ten. See lsm_bench/compare.py.",
    )
    p.add_argument("--num", type=int, default=None,
                   help=f"keys per database and per write load (default {compare.DEFAULT_NUM:,}; "
                   f"--quick {compare.QUICK_NUM:,})")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"interleaved rounds (default {compare.DEFAULT_ROUNDS}; --quick "
                   f"{compare.QUICK_ROUNDS})")
    p.add_argument("--engines", type=_csv, default=None,
                   help="comma-separated engines, lsm first as the baseline, or 'all' (default: "
                   "lsm, plyvel when installed, sqlite3)")
    p.add_argument("--workloads", type=_csv, default=["all"],
                   help="comma-separated workloads or groups: reads, writes, all (default: all)")
    p.add_argument("--ops", type=_ops, action="append", default=[], metavar="NAME=COUNT",
                   help="operations per round of a read workload, or 'warm' gets before round "
                   "1, repeatable (defaults above, capped for small --num)")
    p.add_argument("--value-size", type=int, default=DEFAULT_VALUE_SIZE,
                   help="bytes per value (default %(default)s)")
    p.add_argument("--key-size", type=int, default=DEFAULT_KEY_SIZE,
                   help="bytes per key, zero-padded decimal (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 301)")
    p.add_argument("--opt", action="append", default=[], metavar="[ENGINE:]KEY=VALUE",
                   help="engine option pass-through, repeatable, as in the main run (compare "
                   "adds sqlite3:synchronous=OFF)")
    p.add_argument("--bulk-num", type=int, default=None,
                   help="keys the bulkload workload loads (default 10,000,000; --quick: num)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help="entries per batch when loading the read databases (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("bench-out/compare"),
                   help="directory for results.md, results.json, plots/ (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help=f"a short smoke run: num={compare.QUICK_NUM:,}, "
                   f"{compare.QUICK_ROUNDS} rounds (explicit --num/--rounds still win)")
    p.add_argument("--no-verify-writes", action="store_true",
                   help="skip reopening and scanning every write database")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on long phases (auto: when stderr is a terminal)")
    p.add_argument("--no-plots", action="store_true", help="do not write the PNG plot")
    p.add_argument("--tmpdir", type=Path, default=None,
                   help="parent directory for the temporary databases")
    p.add_argument("--list", action="store_true", help="list workloads and engines, then exit")
    return p


def compare_config_from_args(args: argparse.Namespace) -> compare.CompareConfig:
    """Turn parsed ``compare`` arguments into a :class:`~lsm_bench.compare.CompareConfig`.

    :raises ValueError: an unknown engine or workload, or an invalid value.
    """
    if args.engines is None:
        engines = tuple(n for n in compare.DEFAULT_ENGINES
                        if n in ALWAYS_ENGINES or ENGINES[n].unavailable_reason() is None)
    elif tuple(args.engines) == ("all",):
        engines = tuple(ENGINES)
    else:
        engines = tuple(args.engines)
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    num = args.num if args.num is not None else (
        compare.QUICK_NUM if args.quick else compare.DEFAULT_NUM)
    rounds = args.rounds if args.rounds is not None else (
        compare.QUICK_ROUNDS if args.quick else compare.DEFAULT_ROUNDS)
    return compare.CompareConfig(
        num=num,
        rounds=rounds,
        engines=engines,
        workloads=compare.expand_workloads(args.workloads),
        ops=dict(args.ops),
        seed=args.seed,
        key_size=args.key_size,
        value_size=args.value_size,
        load_batch=args.batch_size,
        engine_options=parse_opts(args.opt),
        verify_writes=not args.no_verify_writes,
        out=args.out,
        progress=args.progress,
        plots=not args.no_plots,
        tmpdir=args.tmpdir,
        quick=args.quick,
    )


def _compare_list() -> str:
    lines = ["compare workloads:"]
    for name, spec in compare.WORKLOADS.items():
        lines.append(f"  {name:<20} {spec.kind:<6} {spec.doc}")
    lines.append("groups: reads, writes, all")
    lines.append("engines:")
    for name, cls in ENGINES.items():
        reason = cls.unavailable_reason()
        lines.append(f"  {name:<20} {'available' if reason is None else reason}")
    return "\n".join(lines)


def compare_main(argv: list[str]) -> int:
    """``lsm-bench compare``; returns the exit status (see module doc)."""
    parser = build_compare_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(_compare_list())
        return 0
    try:
        cfg = compare_config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    report = compare.run_compare(cfg)
    assert cfg.out is not None
    return _finish(report, cfg.out, cfg.plots, comparereport.write_report, comparereport.render_markdown,
                   comparereport.failures)


def build_scale_parser() -> argparse.ArgumentParser:
    """The parser of ``lsm-bench scale`` (exposed for tests and ``--help``)."""
    p = argparse.ArgumentParser(
        prog="lsm-bench scale",
        description="Load NUM keys in STEPS steps into one database per engine (each engine in "
        "a child process of its own) and record after each step: put throughput and latency, stalls, "
        "resident memory, bytes on disk and per level, write amplification, and a sample of random "
        "and missing-key reads; at the end readrandom, readmissing, scanprefix, readseq, close and "
        "open times, memory after the open, and the open after a SIGKILL.",
        epilog=f"The full run (--num {scale.DEFAULT_NUM:,}) takes hours on a 2-core machine; "
        "see bench/RESULTS.md for the figures and the time it took. Every read is checked.",
    )
    p.add_argument("--num", type=int, default=None,
                   help=f"keys to load (default {scale.DEFAULT_NUM:,}; --quick {scale.QUICK_NUM:,})")
    p.add_argument("--peer-num", type=int, default=None,
                   help="keys for the peers (default: --num), to run them at a smaller size")
    p.add_argument("--steps", type=int, default=scale.DEFAULT_STEPS,
                   help="steps of the load (default %(default)s)")
    p.add_argument("--first-step", type=int, default=None,
                   help=f"keys in the first step (default: NUM / STEPS, at most {scale.FIRST_STEP_MAX:,}); "
                   "the other steps split the rest equally")
    p.add_argument("--reads", type=int, default=scale.DEFAULT_READS,
                   help="gets per step in each read sample (default %(default)s)")
    p.add_argument("--final-reads", type=int, default=scale.DEFAULT_FINAL_READS,
                   help="gets in the final readrandom and readmissing (default %(default)s)")
    p.add_argument("--scans", type=int, default=scale.DEFAULT_SCANS,
                   help="prefix scans of 100 keys at the end (default %(default)s)")
    p.add_argument("--seq", type=int, default=scale.DEFAULT_SEQ,
                   help="readseq entries at the end (default %(default)s)")
    p.add_argument("--engines", type=_csv, default=None,
                   help="comma-separated engines (default: lsm, and plyvel when installed)")
    p.add_argument("--value-size", type=int, default=DEFAULT_VALUE_SIZE,
                   help="bytes per value (default %(default)s)")
    p.add_argument("--key-size", type=int, default=DEFAULT_KEY_SIZE,
                   help="bytes per key, zero-padded decimal (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 301)")
    p.add_argument("--opt", action="append", default=[], metavar="[ENGINE:]KEY=VALUE",
                   help="engine option pass-through, repeatable, as in the main run")
    p.add_argument("--no-kill", action="store_true",
                   help="skip the open after a SIGKILL of a writer process")
    p.add_argument("--kill-puts", type=int, default=None,
                   help="puts the killed writer makes (default: 90%% of a memtable)")
    p.add_argument("--in-process", action="store_true",
                   help="measure every engine in this process (RSS then includes earlier engines)")
    p.add_argument("--keep", action="store_true", help="keep the databases (paths in the report)")
    p.add_argument("--out", type=Path, default=Path("bench-out/scale"),
                   help="directory for results.md, results.json, plots/ (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help=f"a short smoke run: num={scale.QUICK_NUM:,} (an explicit --num still wins)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar during each step (auto: when stderr is a terminal)")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    p.add_argument("--tmpdir", type=Path, default=None,
                   help="parent directory for the databases (they need about 1.5x the data's size)")
    return p


def scale_config_from_args(args: argparse.Namespace) -> scale.ScaleConfig:
    """Turn parsed ``scale`` arguments into a :class:`~lsm_bench.scale.ScaleConfig`.

    :raises ValueError: an unknown engine, or an invalid value.
    """
    if args.engines is None:
        engines = tuple(n for n in scale.DEFAULT_ENGINES
                        if n in ALWAYS_ENGINES or ENGINES[n].unavailable_reason() is None)
    else:
        engines = tuple(args.engines)
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    num = args.num if args.num is not None else (scale.QUICK_NUM if args.quick else scale.DEFAULT_NUM)
    return scale.ScaleConfig(
        num=num, peer_num=args.peer_num, steps=args.steps, first_step=args.first_step, reads=args.reads,
        final_reads=args.final_reads, scans=args.scans, seq=args.seq, engines=engines,
        key_size=args.key_size, value_size=args.value_size, seed=args.seed,
        engine_options=parse_opts(args.opt), kill=not args.no_kill, kill_puts=args.kill_puts,
        isolate=not args.in_process, keep=args.keep, out=args.out, progress=args.progress,
        plots=not args.no_plots, tmpdir=args.tmpdir, quick=args.quick,
    )


def scale_main(argv: list[str]) -> int:
    """``lsm-bench scale``; returns the exit status (see module doc)."""
    parser = build_scale_parser()
    args = parser.parse_args(argv)
    try:
        cfg = scale_config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    report = scale.run_scale(cfg)
    assert cfg.out is not None
    return _finish(report, cfg.out, cfg.plots, scalereport.write_report, scalereport.render_markdown,
                   scalereport.failures)


def _list() -> str:
    lines = ["workloads:"]
    for name in ALL_WORKLOADS:
        doc = workload_doc(name).splitlines()[0] if workload_doc(name) else ""
        lines.append(f"  {name:<18} {doc}")
    lines.append("engines:")
    for name, cls in ENGINES.items():
        reason = cls.unavailable_reason()
        lines.append(f"  {name:<18} {'available' if reason is None else reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the harness; returns the exit status (see module doc)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "compare":
        return compare_main(argv[1:])
    if argv and argv[0] == "scale":
        return scale_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(_list())
        return 0
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    report = run(cfg)
    assert cfg.out is not None
    return _finish(report, cfg.out, cfg.plots, write_report, render_markdown, failures)


def _finish(report: Any, out: Path, want_plots: bool, write: Callable[[Any, Path], dict],
            render: Callable[[Any], str], failures_of: Callable[[Any], list]) -> int:
    """Every mode's end: write the report and its plots, print it, list what
    failed; the exit status (1 if anything failed or raised)."""
    paths = write(report, out)
    plots: list[Path] = []
    if want_plots:
        if matplotlib_available():
            plots = write_plots(report, out / "plots")
        else:
            print("note: matplotlib is not installed; no plots (pip install lsm-tree[bench])",
                  file=sys.stderr)
    print(render(report))
    print(f"wrote {paths['markdown']}, {paths['json']}"
          + (f" and {len(plots)} plots in {out / 'plots'}" if plots else ""), file=sys.stderr)
    bad = failures_of(report)
    if bad:
        print(f"ERROR: {len(bad)} result(s) failed or raised:", file=sys.stderr)
        for rec in bad:
            print(f"  {rec.get('workload', 'scale')} / {rec['engine']}: {rec['status']}: {rec.get('note')}",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
