"""The report of ``lsm-bench scale``: ``results.md`` and ``results.json``.

``results.json`` holds every figure of every step of every engine (see
:mod:`lsm_bench.scale`); ``results.md`` is derived from it and never holds a
figure the JSON lacks. :func:`targets` checks lsm's figures against the
goals a storage engine is judged by at scale (flat reads, steady writes,
bounded memory, instant opens); a target the run cannot judge reads ``-``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from lsm_bench.report import fmt_rate, fmt_us, md_table

Report = dict[str, Any]
GiB = 2**30
MiB = 2**20

# (name, limit, comparison) of the targets judged by :func:`targets`
READ_P99_RATIO = 2.0  # readrandom p99, last step / first step, at most
READ_RATE_RATIO = 0.5  # readrandom throughput, last step / first step, at least
PUT_RATE_RATIO = 0.7  # put throughput, last step / first step, at least
MAX_STALL_SECONDS = 1.0  # the slowest put, at most
RSS_LIMIT = 1.5 * GiB  # resident heap at the end of the load, at most
ACCOUNTED_WITHIN = 0.2  # stats()["memory"] vs the heap's growth since before the open
REOPEN_SECONDS = 1.0  # open after a clean close, at most
SPACE_AMP = 1.2  # bytes on disk / key + value bytes after settling, at most


def _ok(rec: dict[str, Any] | None) -> bool:
    return bool(rec) and rec.get("status") in ("ok", "failed") and bool(rec.get("steps"))


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MiB:,.0f}" if n >= 100 * MiB else f"{n / MiB:,.1f}"


def _sec(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}" if x < 100 else f"{x:,.0f}"


def _open_text(o: dict[str, Any]) -> str:
    """``1.26 s (CPU 0.41 s)``: an open's wall and opening-thread CPU time."""
    cpu = o.get("cpu_seconds")
    return f"{_sec(o.get('seconds'))} s" + ("" if cpu is None else f" (CPU {_sec(cpu)} s)")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def levels_text(levels: list[dict[str, int]] | None) -> str:
    """``L0 4/58M L1 8/110M``: files / MiB of each non-empty level.

    >>> levels_text([{"level": 0, "files": 4, "bytes": 60817408}, {"level": 1, "files": 0, "bytes": 0}])
    'L0 4/58M'
    """
    parts = [f"L{lv['level']} {lv['files']}/{lv['bytes'] / MiB:.0f}M" for lv in levels or [] if lv.get("files")]
    return " ".join(parts) or "-"


def accounted_bytes(step: dict[str, Any], memtable_bound: int | None) -> int | None:
    """lsm's account of its heap at ``step`` with the memtables at their bound
    (the heap keeps the pages of memtables freed by flushes: it settles at
    the memtables' peak, not at their current size; doc/design.md#memory)."""
    mem = step.get("engine_memory") or {}
    if mem.get("total") is None:
        return None
    if memtable_bound is None or "memtables" not in mem:
        return int(mem["total"])
    return int(mem["total"] - mem["memtables"] - mem.get("immutable_memtables", 0) + memtable_bound)


def accounted_error(step: dict[str, Any], before: dict[str, Any], memtable_bound: int | None = None) -> float | None:
    """:func:`accounted_bytes` / (``RssAnon`` now - ``RssAnon`` before the
    open) - 1: how far lsm's account of its heap is from the heap's growth."""
    total = accounted_bytes(step, memtable_bound)
    now = (step.get("memory") or {}).get("rss_anon")
    base = (before or {}).get("rss_anon")
    if total is None or now is None or base is None or now <= base:
        return None
    return total / (now - base) - 1


def targets(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """lsm's figures against the scale targets: ``{name, value, limit, met}``
    (``met`` None when the run has no figure for it)."""
    if not _ok(rec):
        return []
    steps = rec["steps"]
    first, last = steps[0], steps[-1]
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, at_most: bool, text: str) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        out.append({"name": name, "value": value, "limit": limit, "at_most": at_most, "met": met,
                    "text": text})

    rr0, rr1 = first["readrandom"], last["readrandom"]
    add("readrandom p99, last step / first step",
        _ratio(rr1["latency"].get("p99_us"), rr0["latency"].get("p99_us")), READ_P99_RATIO, True,
        f"{fmt_us(rr1['latency'].get('p99_us'))} us at {last['keys']:,} keys vs "
        f"{fmt_us(rr0['latency'].get('p99_us'))} us at {first['keys']:,}")
    add("readrandom ops/s, last step / first step", _ratio(rr1["ops_per_sec"], rr0["ops_per_sec"]),
        READ_RATE_RATIO, False, f"{fmt_rate(rr1['ops_per_sec'])} vs {fmt_rate(rr0['ops_per_sec'])}")
    p0, p1 = first["puts"], last["puts"]
    add("put ops/s, last step / first step", _ratio(p1["ops_per_sec"], p0["ops_per_sec"]), PUT_RATE_RATIO,
        False, f"{fmt_rate(p1['ops_per_sec'])} vs {fmt_rate(p0['ops_per_sec'])}")
    worst = max(s["puts"]["max_put_ms"] for s in steps) / 1000.0
    add("slowest put (longest stall), seconds", worst, MAX_STALL_SECONDS, True,
        f"{worst:.3f} s; puts >= 100 ms: {sum(s['puts']['slow_puts'].get('>=100ms', 0) for s in steps):,}")
    mem = last.get("memory") or {}
    add("resident heap (RssAnon) after the load, GiB", (mem.get("rss_anon") or 0) / GiB or None,
        RSS_LIMIT / GiB, True, f"{_mib(mem.get('rss_anon'))} MiB heap; VmRSS {_mib(mem.get('rss'))} MiB "
        f"with {_mib(mem.get('rss_file'))} MiB of mapped table pages; workers "
        f"{_mib((mem.get('children') or {}).get('rss'))} MiB")
    bound = rec.get("memtable_bound")
    err = accounted_error(last, rec.get("memory_before_open") or {}, bound)
    add("stats()[\"memory\"] vs heap growth since before the open, abs. error", None if err is None else abs(err),
        ACCOUNTED_WITHIN, True, "-" if err is None else
        f"{_mib(accounted_bytes(last, bound))} MiB accounted (memtables at their bound, "
        f"{_mib(bound)} MiB) vs "
        f"{_mib((mem.get('rss_anon') or 0) - ((rec.get('memory_before_open') or {}).get('rss_anon') or 0))} "
        f"MiB grown ({err:+.0%})")
    after_load = rec.get("open_after_load") or {}
    if after_load:
        add("open after a clean close right after the load, seconds", after_load.get("seconds"), REOPEN_SECONDS,
            True, f"{_open_text(after_load)}; replayed "
            f"{((after_load.get('recovery') or {}).get('entries_replayed') or 0):,} log entries; the close took "
            f"{_sec(rec.get('close_after_load_seconds'))} s")
    reopen = rec.get("reopen") or {}
    add("open after a clean close, settled, seconds", reopen.get("seconds"), REOPEN_SECONDS, True,
        f"{_open_text(reopen)}; replayed {((reopen.get('recovery') or {}).get('entries_replayed') or 0):,}"
        " log entries")
    logged = rec.get("reopen_with_log") or {}
    if logged:
        add("open after a clean close, a memtable in the log, seconds", logged.get("seconds"), REOPEN_SECONDS, True,
            f"{_open_text(logged)}; replayed "
            f"{((logged.get('recovery') or {}).get('entries_replayed') or 0):,} log entries")
    kill = rec.get("kill") or {}
    if kill:
        rcv = kill.get("recovery") or {}
        out.append({"name": "open after SIGKILL, seconds", "value": kill.get("seconds"), "limit": None,
                    "at_most": True, "met": None,
                    "text": f"{_open_text(kill)} for {(rcv.get('entries_replayed') or 0):,} log entries "
                            f"replayed ({kill.get('puts', 0):,} puts before the kill)"})
    fin = rec.get("final") or {}
    add("space amplification after settling", fin.get("space_amp"), SPACE_AMP, True,
        f"{_mib(fin.get('disk_bytes'))} MiB on disk for {rec['num']:,} keys")
    return out


def _header(report: Report) -> list[str]:
    m, cfg = report.get("machine", {}), report.get("config", {})
    mem = m.get("memory_bytes")
    argv = m.get("argv") or []
    command = "python -m bench " + shlex.join(argv[1:]) if argv else "?"
    commit = (m.get("git_commit") or "unknown")[:7]
    sizes = ", ".join(f"{name} {info.get('num', 0):,} keys" for name, info in report.get("engines", {}).items())
    versions = ", ".join(f"{name} {info.get('version') or '?'}" for name, info in report.get("engines", {}).items())
    lines = [
        f"- Date: {m.get('date_utc', '?')}; commit {commit}"
        + (f" (lsm/ last changed in {m['lsm_code_commit']})" if m.get("lsm_code_commit") else "")
        + ("; **uncommitted changes**" if m.get("git_dirty") else ""),
        f"- Machine: {m.get('cpu_count', '?')} CPUs ({m.get('cpu_model') or '?'})"
        + (f", {mem / GiB:.1f} GiB RAM" if mem else "") + f"; {m.get('platform', '?')}; Python {m.get('python', '?')}",
        f"- Command: `{command}`",
        f"- Load: {sizes}; {cfg.get('steps')} steps; keys of {cfg.get('key_size')} B in a "
        f"pseudo-random order, values of {cfg.get('value_size')} B, single puts, no fsync"
        + (", **quick mode**" if cfg.get("quick") else ""),
        f"- Reads: {cfg.get('reads', 0):,} gets per step in each sample; at the end {cfg.get('final_reads', 0):,} "
        f"gets each, {cfg.get('scans', 0):,} prefix scans, readseq of {cfg.get('seq', 0):,} entries",
        f"- Engines: {versions}; options `{json.dumps(cfg.get('engine_options') or {})}`",
        f"- Wall time of the whole run: {report.get('total_seconds', 0):,.0f} s",
    ]
    if cfg.get("peer_num") and cfg.get("peer_num") != cfg.get("num"):
        lines.append(f"- Peers ran at {cfg['peer_num']:,} keys (lsm at {cfg['num']:,}) to bound the run's time.")
    return lines


def _step_table(rec: dict[str, Any]) -> list[str]:
    rows = []
    for s in rec["steps"]:
        p, rr, rm = s["puts"], s["readrandom"], s["readmissing"]
        lat = p["latency"]
        mem = s.get("memory") or {}
        acc = (s.get("engine_memory") or {}).get("total")
        stall = s.get("stall_seconds")
        load = s.get("loadavg")
        rows.append([
            f"{s['keys']:,}", fmt_rate(p["ops_per_sec"]), f"{p.get('thread_cpu_us_per_op', 0):.1f}",
            f"{fmt_us(lat.get('p50_us'))} / {fmt_us(lat.get('p99_us'))} / {fmt_us(lat.get('p999_us'))}",
            f"{p['max_put_ms']:,.0f}", f"{p['slow_puts'].get('>=100ms', 0):,}", _sec(stall),
            f"{fmt_rate(rr['ops_per_sec'])}: {fmt_us(rr['latency'].get('p50_us'))} / "
            f"{fmt_us(rr['latency'].get('p99_us'))}",
            f"{fmt_rate(rm['ops_per_sec'])}: {fmt_us(rm['latency'].get('p99_us'))}",
            f"{_mib(mem.get('rss_anon'))} / {_mib(mem.get('rss_file'))}",
            _mib((mem.get("children") or {}).get("rss")), _mib(acc), _mib(s.get("disk_bytes")),
            "-" if s.get("write_amplification") is None else f"{s['write_amplification']:.2f}",
            "-" if s.get("write_amp_syscall") is None else f"{s['write_amp_syscall']:.2f}",
            "-" if load is None else f"{load:.1f}", levels_text(s.get("levels")),
        ])
    return md_table(["keys", "puts/s", "put CPU us", "put p50 / p99 / p99.9 us", "max put ms", "puts >= 100 ms",
                     "stall s", "readrandom ops/s: p50 / p99 us", "readmissing ops/s: p99 us",
                     "RSS MiB heap / mapped", "workers MiB", "accounted MiB", "disk MiB", "WA (own)",
                     "WA (write(2))", "load avg", "files / MiB per level"], rows, right_from=0, right_to=16)


def _final_table(recs: list[dict[str, Any]]) -> list[str]:
    names = [r["engine"] for r in recs]

    def row(label: str, fn: Any) -> list[str]:
        cells = []
        for r in recs:
            try:
                cells.append(fn(r))
            except (KeyError, TypeError, AttributeError):
                cells.append("-")
        return [label] + cells

    def rate(name: str) -> Any:
        return lambda r: (f"{fmt_rate(r['final'][name]['ops_per_sec'])} "
                          f"({fmt_us(r['final'][name]['latency'].get('p50_us'))} / "
                          f"{fmt_us(r['final'][name]['latency'].get('p99_us'))} us)")

    rows = [
        row("keys", lambda r: f"{r['num']:,}"),
        row("close right after the load, s", lambda r: _sec(r["close_after_load_seconds"])),
        row("open after it (log entries replayed)", lambda r: f"{_open_text(r['open_after_load'])} "
            f"({(r['open_after_load']['recovery'] or {}).get('entries_replayed', 0):,})"),
        row("settle, s", lambda r: _sec(r["final"]["settle_seconds"])),
        row("readrandom ops/s (p50 / p99)", rate("readrandom")),
        row("readmissing ops/s (p50 / p99)", rate("readmissing")),
        row("scanprefix scans/s (p50 / p99)", rate("scanprefix")),
        row("readseq entries/s", lambda r: fmt_rate(r["final"]["readseq"]["ops_per_sec"])),
        row("thread CPU per get, us", lambda r: f"{r['final']['readrandom']['thread_cpu_us_per_op']:.1f}"),
        row("files / MiB per level", lambda r: levels_text(r["final"]["levels"])),
        row("disk MiB; space amplification", lambda r: f"{_mib(r['final']['disk_bytes'])}; "
            f"{r['final']['space_amp']:.2f}"),
        row("write amplification (write(2) / user bytes)", lambda r: f"{r['final']['write_amp_syscall']:.2f}"),
        row("close, settled, s", lambda r: _sec(r["close_seconds"])),
        row("open after it", lambda r: _open_text(r["reopen"])),
        row("RSS right after open, MiB (heap / mapped)", lambda r: f"{_mib(r['reopen']['memory']['rss_anon'])} / "
            f"{_mib(r['reopen']['memory']['rss_file'])}"),
        row("readrandom after open (p50 / p99 us)", lambda r: f"{fmt_rate(r['reopen']['readrandom']['ops_per_sec'])} "
            f"({fmt_us(r['reopen']['readrandom']['latency'].get('p50_us'))} / "
            f"{fmt_us(r['reopen']['readrandom']['latency'].get('p99_us'))})"),
        row("open after close with a memtable in the log (puts)",
            lambda r: f"{_open_text(r['reopen_with_log'])} ({r['reopen_with_log']['puts']:,})"),
        row("open after SIGKILL (puts in the log)", lambda r: f"{_open_text(r['kill'])} ({r['kill']['puts']:,})"),
        row("load CPU, s (process / workers)", lambda r: f"{r['load_process_cpu_seconds']:,.0f} / "
            f"{r['load_children_cpu_seconds']:,.0f}"),
        row("wall time of the measurement, s", lambda r: f"{r['wall_seconds']:,.0f}"),
    ]
    return md_table([""] + names, rows)


def _memory_table(rec: dict[str, Any]) -> list[str]:
    mem = (rec["steps"][-1].get("engine_memory") or {})
    if "memtables" not in mem:
        return []
    rows = [[k, _mib(mem[k])] for k in mem if k not in ("open_tables", "open_tables_limit")]
    return (["", f"### lsm's account of its memory after the load (`stats()[\"memory\"]`, MiB; "
             f"{mem.get('open_tables', 0)} open tables; `mapped` is page cache, not in `total`)", ""]
            + md_table(["kind", "MiB"], rows))


def render_markdown(report: Report) -> str:
    """The human-readable report (see module doc)."""
    recs = report.get("results", [])
    out = ["# lsm-bench scale", ""] + _header(report)
    lsm = next((r for r in recs if r.get("engine") == "lsm"), None)
    if _ok(lsm):
        out += ["", "## lsm against the scale targets", ""]
        rows = []
        for t in targets(lsm):  # type: ignore[arg-type]
            value = "-" if t["value"] is None else f"{t['value']:.2f}"
            limit = "" if t["limit"] is None else ("<= " if t["at_most"] else ">= ") + f"{t['limit']:g}"
            met = {True: "met", False: "**missed**", None: "-"}[t["met"]]
            rows.append([t["name"], value, limit, met, t["text"]])
        out += md_table(["target", "value", "limit", "", "figures"], rows, right_from=1, right_to=3)
    for rec in recs:
        if not _ok(rec):
            continue
        out += ["", f"## {rec['engine']}: after each step ({rec['num']:,} keys in all)", ""]
        out += _step_table(rec)
        if rec["engine"] == "lsm":
            out += _memory_table(rec)
    done = [r for r in recs if _ok(r) and r.get("final")]
    if done:
        out += ["", "## At the end", ""] + _final_table(done)
    bad = [r for r in recs if r.get("status") != "ok"]
    if bad:
        out += ["", "## Not run, failed or errored", ""]
        out += [f"- {r['engine']}: {r['status']}: {r.get('note', '')}" for r in bad]
    out += ["", "## How these figures were taken", "",
            "- Each engine loads its database in a child process of its own, in a fresh directory; "
            "RSS is that process's (`/proc/self/status`): heap is `RssAnon`, mapped is `RssFile` "
            "(resident pages of memory-mapped tables, which is page cache); workers is the RSS of its "
            "child processes (lsm's flush and compaction workers).",
            "- Put throughput is puts / wall time of the step; `put CPU` is the loading thread's CPU per "
            "put (it does not count time waiting for a core); every put is timed, percentiles rest on "
            "at most 100,000 of them per step, `max put` and `puts >= 100 ms` on all of them. `load avg` "
            "is the machine's 1-minute load average after the step: above the core count, other "
            "processes were competing for the CPU.",
            "- Read samples run after each step while background compactions go on; the final reads "
            "run after the engine settled. Every value read is checked.",
            "- `accounted` is lsm's `stats()[\"memory\"][\"total\"]` at that moment. The heap does not "
            "shrink when a flushed memtable is freed (the next memtable's objects share its pages), so the "
            "target compares the heap's growth since before the open with the account taken with the "
            "memtables at their bound, `(1 + max_immutable_memtables) x memtable_bytes` as held, plus "
            "one flush's export of a memtable (doc/design.md#memory).", ""]
    return "\n".join(out)


def failures(report: Report) -> list[dict[str, Any]]:
    """Records whose reads were wrong (``failed``) or that raised (``error``)."""
    return [r for r in report.get("results", []) if r.get("status") in ("failed", "error")]


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Write ``results.json`` and ``results.md`` into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    lsm = next((r for r in report.get("results", []) if r.get("engine") == "lsm"), None)
    report["targets"] = targets(lsm) if lsm else []
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return {"json": json_path, "markdown": md_path}
