"""The report of ``lsm-bench compare``: ``results.md`` and ``results.json``.

``results.json`` holds every round of every workload on every engine
(``runs``: thread CPU and wall seconds, checks, and for writes the quiesce
time, process and child-process CPU, bytes on disk), the per-(workload,
engine) medians (``results``), the per-round ratios (``ratios``), the read
databases' load and settle figures (``databases``), the machine, package
versions and configuration. ``results.md`` is derived from it and never holds
a figure the JSON lacks.

Ratios are ``lsm / peer`` of throughput, taken within each round: above 1,
lsm is faster. A cell reads ``median (min-max)`` over the rounds.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from lsm_bench.compare import BASELINE, DERIVED, READS, WARM, WORKLOADS
from lsm_bench.context import verify_failures
from lsm_bench.measure import shape_point
from lsm_bench.report import fmt_rate, fmt_us, md_table

Report = dict[str, Any]


def fmt_x(x: float | None) -> str:
    """A ratio with three significant figures (about).

    >>> fmt_x(0.14149), fmt_x(1.853), fmt_x(12.34), fmt_x(None)
    ('0.141', '1.85', '12.3', '-')
    """
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_spread(s: dict[str, Any] | None) -> str:
    """``median (min-max)`` of a ratio over rounds.

    >>> fmt_spread({"median": 0.142, "min": 0.141, "max": 0.145, "n": 5})
    '0.142 (0.141-0.145)'
    """
    if not s:
        return "-"
    if s.get("n", 0) == 1:
        return fmt_x(s["median"])
    return f"{fmt_x(s['median'])} ({fmt_x(s['min'])}-{fmt_x(s['max'])})"


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}"


def _sec(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def engines_of(report: Report) -> list[str]:
    """Engine names in column order (the baseline first when selected)."""
    names = list(report.get("engines", {}))
    return sorted(names, key=lambda n: n != BASELINE)


def summaries(report: Report) -> dict[tuple[str, str], dict[str, Any]]:
    """``(workload, engine) -> summary record``."""
    return {(r["workload"], r["engine"]): r for r in report["results"]}


def _mark(rec: dict[str, Any] | None, text: str) -> str:
    if rec is None:
        return ""
    status = rec.get("status")
    if status == "failed":
        return f"{text} FAILED"
    if status in ("skipped", "error"):
        return str(status)
    return text


def _engine_cell(rec: dict[str, Any] | None, clock: str) -> str:
    """``ops/s (us/op)`` by the given clock's medians."""
    if rec is None or rec.get("status") in ("skipped", "error"):
        return _mark(rec, "")
    rate, us = rec.get(f"median_ops_per_sec_{clock}"), rec.get(f"median_us_per_op_{clock}")
    return _mark(rec, f"{fmt_rate(rate)} ({fmt_us(us)} us)")


def _header_lines(report: Report) -> list[str]:
    m, cfg = report.get("machine", {}), report.get("config", {})
    mem = m.get("memory_bytes")
    mem_text = f", {mem / 2**30:.1f} GiB RAM" if mem else ""
    versions = ", ".join(
        f"{name} {info.get('version') or '?'}" for name, info in report.get("engines", {}).items()
        if not info.get("unavailable"))
    argv = m.get("argv") or []
    command = "python -m bench " + shlex.join(argv[1:]) if argv else "?"
    commit = (m.get("git_commit") or "unknown")[:7]
    code = m.get("lsm_code_commit")
    per_round = cfg.get("ops_per_round") or {}
    reads = [w for w in cfg.get("workloads", []) if w in READS]
    counts = ", ".join(f"{w} {per_round.get(w, 0):,}" for w in reads)
    writes = [w for w in cfg.get("workloads", []) if w in WORKLOADS and w not in READS]
    lines = [
        f"- Date: {m.get('date_utc', '?')}; commit {commit}"
        + (f" (lsm/ last changed in {code})" if code else "")
        + ("; **uncommitted changes**" if m.get("git_dirty") else ""),
        f"- Machine: {m.get('cpu_count', '?')} CPUs ({m.get('cpu_model') or '?'}){mem_text}; "
        f"{m.get('platform', '?')}",
        f"- Python {m.get('python', '?')}; SQLite {m.get('sqlite', '?')}",
        f"- Command: `{command}`",
        f"- Data: {cfg.get('num', 0):,} keys of {cfg.get('key_size')} B, values of "
        f"{cfg.get('value_size')} B (half-compressible), seed {cfg.get('seed')}; "
        f"{cfg.get('rounds')} rounds" + (", **quick mode**" if cfg.get("quick") else ""),
    ]
    if reads:
        lines.append(f"- Reads per round: {counts}; before round 1, {per_round.get(WARM, 0):,} "
                     "warm-up gets per engine")
    if writes:
        lines.append(f"- Writes per round: {cfg.get('num', 0):,} keys per load, a fresh database "
                     "per engine, workload and round")
    lines += [
        f"- Engines: {versions or 'none'}",
        f"- Engine options (over each adapter's defaults): "
        f"`{json.dumps(cfg.get('effective_options') or {})}`",
        f"- Wall time of the whole run: {report.get('total_seconds', 0):.1f} s",
    ]
    return lines


def render_markdown(report: Report) -> str:
    """The human-readable report (see module doc)."""
    engines = engines_of(report)
    peers = [e for e in engines if e != BASELINE] if BASELINE in engines else []
    table = summaries(report)
    workloads = [w for w in report.get("config", {}).get("workloads", []) if w in WORKLOADS]
    rat = report.get("ratios") or {}
    rounds = report.get("config", {}).get("rounds")
    out = ["# lsm-bench compare: lsm and its peers in one process, interleaved rounds", ""]
    out += _header_lines(report)

    out += ["", f"## Results (median of {rounds} rounds; lsm / peer per round: median (min-max))",
            ""]
    header = ["workload", "one op"] + [f"{e} ops/s (us/op)" for e in engines]
    for p in peers:
        header += [f"lsm/{p} cpu", f"lsm/{p} wall"]
    rows = []
    for wl in workloads:
        spec = WORKLOADS[wl]
        row = [wl, spec.unit] + [_engine_cell(table.get((wl, e)), spec.clock) for e in engines]
        for p in peers:
            r = rat.get(wl, {}).get(p) or {}
            row += [fmt_spread(r.get("cpu")), fmt_spread(r.get("wall"))]
        rows.append(row)
    out += md_table(header, rows, right_from=2)
    out += [
        "",
        "Engine columns: the calling thread's CPU time (`time.thread_time`), except "
        f"`{DERIVED}`: the wall time of the put load plus its quiesce. Ratios above 1: lsm is "
        "faster. `cpu` ratios compare thread CPU time per op, `wall` ratios `perf_counter` "
        f"time per op; for `{DERIVED}`, `cpu` is the CPU of the whole process and its child "
        "processes (lsm's compaction worker) over load + quiesce.",
    ]

    wall_rows = [[wl] + [_engine_cell(table.get((wl, e)), "wall") for e in engines]
                 for wl in workloads if WORKLOADS[wl].clock == "cpu"]
    if wall_rows:
        out += ["", "## Wall clock (`perf_counter`), medians: ops/s (us/op)", "",
                "Time the thread spent descheduled counts here (the machine is shared), and so "
                "does background work that holds the GIL (lsm's flush thread).", ""]
        out += md_table(["workload"] + engines, wall_rows)

    out += _write_section(report, engines, table)
    out += _database_section(report, engines)
    out += _per_round_section(report, engines, peers, workloads)
    out += _problems(report)
    out += ["", "## How these figures were taken", "",
            "- One process; every engine's reads and foreground writes run in the calling "
            "thread. Each round runs every workload once on every engine, the engine order "
            "shuffled per round (seeded), on a new random key order per round; ratios are "
            "taken within a round.",
            "- Reads: one database per engine, loaded once untimed (random order, batches of "
            "1000; sqlite3 one transaction) and settled (lsm `flush()` + "
            "`wait_for_compactions()`, LevelDB `compact_range()` (a memtable flush in plyvel) "
            "and a wait for its background compactions, sqlite3 `wal_checkpoint(TRUNCATE)`), "
            "then warmed with random gets.",
            "- Timed loops run over keys prepared untimed, through each store's own bound "
            "methods and iterators (the adapters' direct paths); reads keep what they "
            "return, and every value and every scanned entry is checked after the clock stops.",
            "- Writes: a fresh database per engine, workload and round; sync off everywhere. "
            "`quiesce`: lsm `flush()` + `wait_for_compactions()`, plyvel `close()`, sqlite3 "
            "`wal_checkpoint(TRUNCATE)`. Each write database is then reopened and scanned in "
            "full (unless `--no-verify-writes`).",
            "- Raw figures of every round: `results.json` (`runs`); see `lsm_bench/compare.py`.",
            ""]
    return "\n".join(out)


def _write_section(report: Report, engines: list[str],
                   table: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    modes = [w for w in report.get("config", {}).get("workloads", [])
             if w in WORKLOADS and WORKLOADS[w].kind == "write" and w != DERIVED]
    if not modes:
        return []
    rows = []
    for wl in modes:
        for e in engines:
            rec = table.get((wl, e))
            if rec is None or rec.get("status") in ("skipped", "error"):
                rows.append([wl, e, _mark(rec, "-")] + [""] * 5)
                continue
            rows.append([
                wl, e, _mark(rec, fmt_us(rec.get("median_us_per_op_cpu"))),
                fmt_us(rec.get("median_us_per_op_wall")), _sec(rec.get("median_quiesce_seconds")),
                fmt_us(rec.get("median_process_cpu_us_per_op")),
                fmt_us(rec.get("median_all_cpu_us_per_op")), _mb(rec.get("median_disk_bytes")),
            ])
    return ["", "## Write loads (medians per round)", "",
            "us per entry. Process CPU: `time.process_time` over load + quiesce (every thread of "
            "this process: lsm's flush thread, LevelDB's compaction thread); + children adds "
            "child processes (lsm's compaction worker). Disk: bytes on disk after the quiesce.",
            ""] + md_table(["workload", "engine", "thread CPU", "wall", "quiesce s",
                            "process CPU", "+ children", "disk MB"], rows, right_from=2)


def shape_text(name: str, stats: Any) -> str:
    """A one-line shape of a settled store from its own stats (lsm, LevelDB).

    >>> shape_text("lsm", {"levels": [{"files": 1, "bytes": 16_300_000}, {"files": 4, "bytes": 5}]})
    'L0 1 files 16.3 MB; L1 4 files 0.0 MB'
    >>> stats = "Level  Files Size(MB) Time(sec)\\n---\\n  0 0 0 0\\n  1 5 9 0\\n  2  44  86 1"
    >>> shape_text("plyvel", {"leveldb.stats": stats})
    'L1 5 files 9 MB; L2 44 files 86 MB'
    """
    if not isinstance(stats, dict):
        return ""
    if isinstance(stats.get("leveldb.stats"), str):
        parts = []
        for line in stats["leveldb.stats"].splitlines():
            f = line.split()
            if len(f) >= 3 and f[0].isdigit() and f[1].isdigit() and f[1] != "0":
                parts.append(f"L{f[0]} {f[1]} files {f[2]} MB")
        return "; ".join(parts)
    point = shape_point(stats)
    if not point or not point.get("level_files"):
        return ""
    return "; ".join(f"L{i} {files} files {size / 1e6:.1f} MB"
                     for i, (files, size) in enumerate(zip(point["level_files"],
                                                           point["level_bytes"]))
                     if files or size)


def _database_section(report: Report, engines: list[str]) -> list[str]:
    dbs = report.get("databases") or {}
    if not dbs:
        return []
    rows = []
    for e in engines:
        info = dbs.get(e)
        if not info:
            continue
        warm = info.get("warm") or {}
        gets = warm.get("gets") or 0
        warm_us = warm.get("cpu_seconds", 0) / gets * 1e6 if gets else None
        after = info.get("stats_after")
        rows.append([e, _sec(info.get("load_seconds")), _sec(info.get("settle_seconds")),
                     _mb(info.get("disk_bytes")), f"{gets:,}", fmt_us(warm_us),
                     shape_text(e, info.get("stats")), shape_text(e, after) if after else ""])
    return ["", "## Read databases (loaded once, untimed)", "",
            "Load: wall seconds to write every key; settle: wall seconds of the settling step; "
            "warm-up: random gets before round 1 (thread CPU us per get). Shape after the reads: "
            "the engines' own compactions (LevelDB's and lsm's seek compactions) may change it "
            "while the rounds run.", ""] + md_table(
        ["engine", "load s", "settle s", "disk MB", "warm-up gets", "us/get", "shape after settling",
         "shape after the reads"], rows, right_from=1, right_to=6)


def _per_round_section(report: Report, engines: list[str], peers: list[str],
                       workloads: list[str]) -> list[str]:
    rounds = report.get("config", {}).get("rounds") or 0
    runs = report.get("runs") or []
    by = {(r["workload"], r["engine"], r.get("round")): r for r in runs}
    out = ["", "## Every round", "",
           "Thread CPU us per op of each engine in each round (`fillrandom+quiesce`: wall), then "
           "lsm / peer of that round by the same clock. `*`: the engine ran first in that "
           "round's order.", ""]
    rows = []
    for wl in workloads:
        clock = WORKLOADS[wl].clock
        for e in engines:
            cells = []
            for rnd in range(rounds):
                rec = by.get((wl, e, rnd))
                if rec is None:
                    cells.append("")
                    continue
                text = fmt_us(rec.get(f"us_per_op_{clock}"))
                if rec.get("order") == 0:
                    text += "*"
                cells.append(_mark(rec, text))
            rows.append([wl, e] + cells)
        for p in peers:
            per = {x["round"]: x for x in (report.get("ratios", {}).get(wl, {}).get(p) or {})
                   .get("per_round", [])}
            key = "wall" if clock == "wall" else "cpu"
            rows.append([wl, f"lsm/{p}"] + [fmt_x(per[r][key]) if r in per else ""
                                           for r in range(rounds)])
    out += md_table(["workload", "engine"] + [f"round {r + 1}" for r in range(rounds)], rows,
                    right_from=2)
    return out


def warm_failures(report: Report) -> list[str]:
    """Engines whose warm-up gets returned a wrong, missing or unexpected value."""
    return [e for e, info in (report.get("databases") or {}).items()
            if verify_failures((info.get("warm") or {}).get("verify"))]


def _problems(report: Report) -> list[str]:
    bad = [r for r in report["results"] if r.get("status") != "ok"]
    errors = [r for r in report.get("runs", []) if r.get("status") == "error"]
    warm = warm_failures(report)
    if not bad and not warm:
        return []
    out = ["", "## Not run, failed or errored", ""]
    for rec in bad:
        out.append(f"- {rec['workload']} / {rec['engine']}: {rec['status']}: {rec.get('note', '')}")
    for e in warm:
        out.append(f"- warm-up / {e}: failed: {report['databases'][e]['warm']['verify']}")
    for rec in errors[:5]:
        if rec.get("traceback"):
            out += ["", f"{rec['workload']} / {rec['engine']}:", "", "```",
                    rec["traceback"].rstrip(), "```"]
    return out


def failures(report: Report) -> list[dict[str, Any]]:
    """Summaries whose reads were wrong (``failed``) or that raised (``error``), plus
    a ``failed`` entry per engine whose warm-up gets were wrong."""
    bad = [r for r in report["results"] if r.get("status") in ("failed", "error")]
    bad += [{"workload": "warm-up", "engine": e, "status": "failed",
             "note": str(report["databases"][e]["warm"]["verify"])} for e in warm_failures(report)]
    return bad


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Write ``results.json`` and ``results.md`` into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    md_path = out / "results.md"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return {"json": json_path, "markdown": md_path}
