"""The report: ``results.md`` (tables, engines as columns) and ``results.json``.

``results.json`` holds every figure the run took - each result record with its
latency percentiles and histogram, timeline, LSM shape samples, I/O counters,
engine settings and stats - plus the machine, package versions, configuration
and the lsm-to-peer ratios. ``results.md`` is derived from it and never holds
a figure the JSON lacks.

Ratios are ``lsm / peer`` per workload: throughput above 1 means lsm is faster;
p50/p99 latency below 1 means lsm is quicker per operation.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

from lsm_bench.runner import CACHE_WORKLOADS

Report = dict[str, Any]
BASELINE = "lsm"


def _ok(rec: dict[str, Any]) -> bool:
    return rec.get("status") in ("ok", "failed") and bool(rec.get("ops_per_sec"))


def workload_order(report: Report) -> list[str]:
    """Workload names (fillsync expanded per thread count) in run order."""
    seen: list[str] = []
    for rec in report["results"]:
        if rec["workload"] not in seen:
            seen.append(rec["workload"])
    return seen


def engine_order(report: Report, *, cache: bool = False) -> list[str]:
    """Engine (or cache contender) names in column order."""
    seen: list[str] = []
    for rec in report["results"]:
        if (rec["workload"] in CACHE_WORKLOADS) == cache and rec["engine"] not in seen:
            seen.append(rec["engine"])
    return seen


def lookup(report: Report) -> dict[tuple[str, str], dict[str, Any]]:
    """``(workload, engine) -> record``."""
    return {(rec["workload"], rec["engine"]): rec for rec in report["results"]}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def ratios(report: Report) -> dict[str, dict[str, dict[str, float | None]]]:
    """``ratios[workload][peer] = {throughput, p50, p99}``, each ``lsm / peer``."""
    table = lookup(report)
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for wl in workload_order(report):
        base = table.get((wl, BASELINE))
        if base is None or not _ok(base):
            continue
        for eng in engine_order(report, cache=wl in CACHE_WORKLOADS):
            peer = table.get((wl, eng))
            if eng == BASELINE or peer is None or not _ok(peer):
                continue
            bl, pl = base.get("latency", {}), peer.get("latency", {})
            out.setdefault(wl, {})[eng] = {
                "throughput": _ratio(base["ops_per_sec"], peer["ops_per_sec"]),
                "p50": _ratio(bl.get("p50_us"), pl.get("p50_us")),
                "p99": _ratio(bl.get("p99_us"), pl.get("p99_us")),
            }
    return out


# -- formatting --------------------------------------------------------------


def fmt_rate(x: float | None) -> str:
    """``12,345``; ``-`` for none."""
    return "-" if x is None else f"{x:,.0f}"


def fmt_us(x: float | None) -> str:
    """Microseconds with sensible precision.

    >>> fmt_us(3.14159), fmt_us(123.4), fmt_us(12345.6), fmt_us(None)
    ('3.14', '123', '12,346', '-')
    """
    if x is None:
        return "-"
    if x < 10:
        return f"{x:.2f}"
    return f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    """``1.23x``; ``-`` for none."""
    return "-" if x is None else f"{x:.2f}x"


def _cell(rec: dict[str, Any] | None, text: str) -> str:
    if rec is None:
        return ""
    status = str(rec.get("status"))
    if status == "failed":
        return f"{text} FAILED"
    if status in ("skipped", "error"):
        return status
    return text


def md_table(
    header: list[str], rows: list[list[str]], right_from: int = 1, right_to: int | None = None
) -> list[str]:
    """A Markdown table; columns ``right_from <= i < right_to`` are right-aligned (numbers)."""
    stop = len(header) if right_to is None else right_to
    align = ["---:" if right_from <= i < stop else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _machine_lines(report: Report) -> list[str]:
    m, cfg = report.get("machine", {}), report.get("config", {})
    mem = m.get("memory_bytes")
    mem_text = f", {mem / 2**30:.1f} GiB RAM" if mem else ""
    versions = ", ".join(
        f"{name} {info.get('version') or '?'}" for name, info in report.get("engines", {}).items()
        if not info.get("unavailable")
    )
    argv = m.get("argv") or []
    command = "python -m bench " + shlex.join(argv[1:]) if argv else "?"
    return [
        f"- Date: {m.get('date_utc', '?')}; commit {m.get('git_commit') or 'unknown'}",
        f"- Machine: {m.get('cpu_count', '?')} CPUs ({m.get('cpu_model') or '?'}){mem_text}; "
        f"{m.get('platform', '?')}",
        f"- Python {m.get('python', '?')}; SQLite {m.get('sqlite', '?')}",
        f"- Command: `{command}`",
        f"- Data: num={cfg.get('num')}, reads={cfg.get('n_reads')}, key {cfg.get('key_size')} B, "
        f"value {cfg.get('value_size')} B (half-compressible), seed {cfg.get('seed')}"
        + (", **quick mode**" if cfg.get("quick") else ""),
        f"- Engines: {versions or 'none'}",
        f"- Engine options: `{json.dumps(cfg.get('engine_options') or {})}`",
        f"- Wall time of the whole run: {report.get('total_seconds', 0):.1f} s",
    ]


def render_markdown(report: Report) -> str:
    """The human-readable report (see module doc)."""
    table = lookup(report)
    engines = engine_order(report)
    workloads = [w for w in workload_order(report) if w not in CACHE_WORKLOADS]
    out = ["# lsm-bench results", ""]
    out += _machine_lines(report)

    out += ["", "## Throughput (operations/s, higher is better)", ""]
    rows = []
    for wl in workloads:
        unit = next((table[(wl, e)].get("unit") for e in engines
                     if (wl, e) in table and table[(wl, e)].get("unit")), "")
        rows.append([wl, unit or ""] + [
            _cell(table.get((wl, e)), fmt_rate(table.get((wl, e), {}).get("ops_per_sec")))
            for e in engines
        ])
    out += md_table(["workload", "one op is"] + engines, rows, right_from=2)

    out += ["", "## Latency p50 / p99 (microseconds per op, lower is better)", ""]
    rows = []
    for wl in workloads:
        cells = []
        for e in engines:
            rec = table.get((wl, e))
            lat = (rec or {}).get("latency", {})
            cells.append(_cell(rec, f"{fmt_us(lat.get('p50_us'))} / {fmt_us(lat.get('p99_us'))}"))
        rows.append([wl] + cells)
    out += md_table(["workload"] + engines, rows)

    rat = report.get("ratios") or ratios(report)
    peers = [e for e in engines if e != BASELINE]
    if rat and peers:
        out += ["", "## lsm relative to each peer (lsm / peer)", "",
                "Throughput above 1x: lsm is faster. p99 below 1x: lsm's tail latency is lower.", ""]
        rows = []
        for wl in workloads:
            row = [wl]
            for p in peers:
                r = rat.get(wl, {}).get(p)
                row.append("" if r is None else
                           f"{fmt_ratio(r['throughput'])} ops/s, {fmt_ratio(r['p99'])} p99")
            rows.append(row)
        out += md_table(["workload"] + [f"vs {p}" for p in peers], rows)

    out += ["", "## Amplification", "",
            "Write: bytes the process passed to write(2) during the phase and its "
            "quiesce, / user key+value bytes (`lsm` also reports its own "
            "`compaction.write_amplification`). Space: bytes on disk / live key+value bytes.", ""]
    rows = []
    for wl in workloads:
        if not any(table.get((wl, e), {}).get("user_bytes_written") for e in engines):
            continue
        cells = []
        for e in engines:
            rec = table.get((wl, e)) or {}
            if not _ok(rec):
                cells.append(_cell(rec or None, "-"))
                continue
            cells.append(f"{fmt_ratio(rec.get('write_amp_syscall'))} / "
                         f"{fmt_ratio(rec.get('space_amp'))}")
        rows.append([wl] + cells)
    out += md_table(["workload (write / space)"] + engines, rows)

    rows = []
    for wl in workloads:
        if not any(table.get((wl, e), {}).get("entries_returned") for e in engines):
            continue
        cells = []
        for e in engines:
            rec = table.get((wl, e)) or {}
            cells.append(fmt_ratio(rec.get("read_amp_syscall")) if _ok(rec)
                         else _cell(rec or None, "-"))
        rows.append([wl] + cells)
    if rows:
        out += ["", "Read: bytes the process read through read(2)-family calls during the phase "
                "/ key+value bytes returned. Near 0: served from the engine's cache or through "
                "a memory map (lmdb; LevelDB maps its tables), which read(2) does not see.", ""]
        out += md_table(["workload (read)"] + engines, rows)

    out += _cache_section(report, table)
    out += _problems(report)
    out += ["", "## How these figures were taken", "",
            "- Each workload runs on a fresh database in a fresh temporary directory per "
            "engine; loading before read phases is untimed.",
            "- Throughput = operations / wall time of the timed phase. Latency is timed per "
            "operation with `perf_counter_ns` (every op up to 100,000 per phase, else every "
            "k-th); p50/p99 are nearest-rank over those samples.",
            "- Every read is checked against the value written; `FAILED` marks a cell "
            "where any read was wrong, missing or unexpected.",
            "- Engine settings (sync and batching) are in `results.json` under each "
            "record's `engine_settings`; see `bench/RESULTS.md`.", ""]
    return "\n".join(out)


def _cache_section(report: Report, table: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    contenders = engine_order(report, cache=True)
    if not contenders:
        return []
    out = ["", "## Cache (read-through, zipfian requests, same byte budget)", "",
           "Every request is a get, and a miss is filled with a put. `cache`: warm cache, "
           "zipfian keys (read-mostly). `cache-cold`: empty cache, YCSB's flatter scrambled "
           "zipfian keys (write-heavy).", ""]
    rows = []
    for wl in [w for w in workload_order(report) if w in CACHE_WORKLOADS]:
        for name in contenders:
            rec = table.get((wl, name)) or {}
            if not _ok(rec):
                rows.append([wl, name, _cell(rec or None, "-"), "", "", "", rec.get("note", "")])
                continue
            lat, extra = rec.get("latency", {}), rec.get("extra", {})
            hit = extra.get("hit_ratio")
            puts = extra.get("puts")
            ops = rec.get("ops")
            rows.append([
                wl, name, _cell(rec, fmt_rate(rec.get("ops_per_sec"))),
                f"{fmt_us(lat.get('p50_us'))} / {fmt_us(lat.get('p99_us'))}",
                "-" if hit is None else f"{hit:.1%}",
                "-" if puts is None or not ops else f"{puts / ops:.1%}",
                extra.get("implementation", ""),
            ])
    out += md_table(["workload", "cache", "ops/s", "p50 / p99 us", "hit ratio", "puts / request",
                   "implementation"], rows, right_from=2, right_to=6)
    return out


def _problems(report: Report) -> list[str]:
    bad = [r for r in report["results"] if r.get("status") != "ok"]
    if not bad:
        return []
    out = ["", "## Not run, failed or errored", ""]
    for rec in bad:
        out.append(f"- {rec['workload']} / {rec['engine']}: {rec['status']}: {rec.get('note', '')}")
    return out


def failures(report: Report) -> list[dict[str, Any]]:
    """Records whose reads were wrong (``failed``) or that raised (``error``)."""
    return [r for r in report["results"] if r.get("status") in ("failed", "error")]


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Write ``results.json`` and ``results.md`` into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    report["ratios"] = ratios(report)
    json_path = out / "results.json"
    md_path = out / "results.md"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return {"json": json_path, "markdown": md_path}
