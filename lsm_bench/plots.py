"""PNG plots from a report (optional: needs matplotlib; otherwise nothing is drawn).

- ``throughput.png``: one panel per workload, ops/s over time, one line per
  engine (the rate between consecutive timeline checkpoints).
- ``lsm-shape.png``: one row per compaction workload on ``lsm``: bytes per
  level, L0 file count, cumulative stall seconds and write amplification, from
  ``db.stats()`` samples taken during the phase.
- ``summary.png``: ops/s per workload and engine (log scale).
- ``compare.png`` (``lsm-bench compare``): lsm / peer per workload, one dot
  per round (thread CPU filled, wall hollow), the median as a bar.
- ``scale.png`` (``lsm-bench scale``): against keys loaded, one line per
  engine: put and readrandom throughput, put and readrandom p99 latency,
  resident heap and mapped pages (with lsm's own account of its heap);
  ``scale-levels.png``: bytes per level after each step, per engine.

Three figures rather than one per workload: each ``savefig`` costs about a
third of a second, and ``--quick`` must stay well under a minute.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lsm_bench.runner import CACHE_WORKLOADS

Report = dict[str, Any]


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def rates(timeline: list[list[float]], buckets: int = 40) -> tuple[list[float], list[float]]:
    """``(mid-interval times, ops/s)`` from ``[[t, done], ...]``, merging checkpoints
    so that each interval spans at least ``1/buckets`` of the phase (less noise).

    >>> rates([[0, 0], [1, 100], [3, 300]])
    ([0.5, 2.0], [100.0, 100.0])
    >>> rates([[0, 0], [1, 100], [3, 300]], buckets=1)
    ([1.5], [100.0])
    """
    if len(timeline) < 2:
        return [], []
    min_dt = (timeline[-1][0] - timeline[0][0]) / max(1, buckets)
    xs: list[float] = []
    ys: list[float] = []
    t0, n0 = timeline[0]
    for t1, n1 in timeline[1:]:
        if t1 - t0 >= min_dt and t1 > t0:
            xs.append((t0 + t1) / 2)
            ys.append((n1 - n0) / (t1 - t0))
            t0, n0 = t1, n1
    return xs, ys


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_plots(report: Report, out: Path) -> list[Path]:
    """Draw every plot into ``out`` (created if needed); ``[]`` without matplotlib."""
    if not matplotlib_available():
        return []
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    if report.get("mode") == "compare":
        path = _compare_plot(plt, report, out)
        return [path] if path is not None else []
    if report.get("mode") == "scale":
        return [p for p in (_scale_plot(plt, report, out), _scale_levels_plot(plt, report, out)) if p is not None]
    written = [
        _throughput_plot(plt, report, out),
        _shape_plot(plt, report, out),
        _summary_plot(plt, report, out),
    ]
    return [path for path in written if path is not None]


def _grid(plt: Any, count: int, cols: int, cell: tuple[float, float]) -> tuple[Any, list[Any]]:
    rows = max(1, -(-count // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat


def _engine_colours(plt: Any, report: Report) -> dict[str, Any]:
    """One fixed colour per engine (and cache contender) across every panel."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names: list[str] = []
    for rec in report["results"]:
        if rec["engine"] not in names:
            names.append(rec["engine"])
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _save(plt: Any, fig: Any, path: Path, *, tight: bool = False) -> Path:
    if tight:
        fig.tight_layout()
    else:  # tight_layout costs ~1.5 s on a grid of 20 panels; fixed spacing is enough
        fig.subplots_adjust(left=0.05, right=0.98, bottom=0.06, top=0.92, hspace=0.45, wspace=0.25)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _throughput_plot(plt: Any, report: Report, out: Path) -> Path | None:
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for rec in report["results"]:
        if rec.get("timeline"):
            by_workload.setdefault(rec["workload"], []).append(rec)
    if not by_workload:
        return None
    colours = _engine_colours(plt, report)
    fig, axes = _grid(plt, len(by_workload), 4, (4.2, 2.8))
    legend_for: set[str] = set()
    for ax, (workload, recs) in zip(axes, by_workload.items()):
        names = {rec["engine"] for rec in recs}
        for rec in recs:
            xs, ys = rates(rec["timeline"])
            if xs:
                ax.plot(xs, ys, label=rec["engine"], linewidth=1, color=colours[rec["engine"]])
        if not names <= legend_for:  # a legend wherever a new engine first appears
            ax.legend(fontsize="x-small")
            legend_for |= names
        ax.set_title(workload, fontsize="medium")
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
    fig.suptitle("throughput over time (ops/s vs seconds into the timed phase)")
    return _save(plt, fig, out / "throughput.png")


SHAPE_PANELS = (
    ("level_bytes", "memtable and level bytes (MiB)"),
    ("l0_files", "L0 files"),
    ("stall_seconds", "stall seconds (cumulative)"),
    ("write_amplification", "write amplification (cumulative)"),
)


def _shape_plot(plt: Any, report: Report, out: Path) -> Path | None:
    recs = [r for r in report["results"]
            if r.get("engine") == "lsm" and len(r.get("shape") or []) >= 2]
    if not recs:
        return None
    fig, axes = _grid(plt, len(recs) * len(SHAPE_PANELS), len(SHAPE_PANELS), (3.6, 2.6))
    for row, rec in enumerate(recs):
        shape = rec["shape"]
        ts = [p["t"] for p in shape]
        for col, (field, title) in enumerate(SHAPE_PANELS):
            ax = axes[row * len(SHAPE_PANELS) + col]
            ax.set_title(f"{rec['workload']}: {title}", fontsize="small")
            ax.tick_params(labelsize="x-small")
            ax.grid(alpha=0.3)
            if field == "level_bytes":
                _level_lines(ax, ts, shape)
                continue
            pts = [(t, p.get(field)) for t, p in zip(ts, shape)
                   if isinstance(p.get(field), (int, float))]
            if pts:
                ax.plot([t for t, _ in pts], [v for _, v in pts], linewidth=1)
            else:
                ax.text(0.5, 0.5, "not reported by db.stats()", ha="center", va="center",
                        transform=ax.transAxes, color="grey", fontsize="small")
    fig.suptitle("lsm shape during the compaction workloads (x: seconds into the phase)")
    return _save(plt, fig, out / "lsm-shape.png")


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def _level_lines(ax: Any, ts: list[float], shape: list[dict[str, Any]]) -> None:
    depth = max((len(p.get("level_bytes") or []) for p in shape), default=0)
    drawn = False
    mem = [_num(p.get("memtable_bytes")) + _num(p.get("immutable_bytes")) for p in shape]
    if any(mem):
        ax.plot(ts, [m / 2**20 for m in mem], label="memtables", linewidth=1, linestyle=":")
        drawn = True
    for level in range(depth):
        ys = [((p.get("level_bytes") or [])[level:level + 1] or [0])[0] / 2**20 for p in shape]
        if any(ys):
            ax.plot(ts, ys, label=f"L{level}", linewidth=1)
            drawn = True
    if drawn:
        ax.legend(fontsize="xx-small")
    else:
        ax.text(0.5, 0.5, "no level bytes reported", ha="center", va="center",
                transform=ax.transAxes, color="grey", fontsize="small")


def _summary_plot(plt: Any, report: Report, out: Path) -> Path | None:
    recs = [r for r in report["results"]
            if r.get("ops_per_sec") and r["workload"] not in CACHE_WORKLOADS]
    if not recs:
        return None
    workloads: list[str] = []
    engines: list[str] = []
    for rec in recs:
        if rec["workload"] not in workloads:
            workloads.append(rec["workload"])
        if rec["engine"] not in engines:
            engines.append(rec["engine"])
    table = {(r["workload"], r["engine"]): r["ops_per_sec"] for r in recs}
    width = 0.8 / len(engines)
    fig, ax = plt.subplots(figsize=(max(8, len(workloads) * 0.7), 5))
    colours = _engine_colours(plt, report)
    for j, engine in enumerate(engines):
        xs = [i + j * width for i, wl in enumerate(workloads) if (wl, engine) in table]
        ys = [table[(wl, engine)] for wl in workloads if (wl, engine) in table]
        ax.bar(xs, ys, width=width, label=engine, color=colours[engine])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(workloads))])
    ax.set_xticklabels(workloads, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("operations / s (log)")
    ax.set_title("throughput by workload")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    return _save(plt, fig, out / "summary.png", tight=True)


def _compare_plot(plt: Any, report: Report, out: Path) -> Path | None:
    """lsm / peer per workload: a dot per round (CPU filled, wall hollow), median bars."""
    ratios = report.get("ratios") or {}
    workloads = [w for w in report.get("config", {}).get("workloads", []) if w in ratios]
    peers: list[str] = []
    for wl in workloads:
        for peer in ratios[wl]:
            if peer not in peers:
                peers.append(peer)
    if not workloads or not peers:
        return None
    from matplotlib import ticker

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = _grid(plt, len(peers), len(peers), (max(5.0, 0.9 * len(workloads)), 4.0))
    for ax, peer in zip(axes, peers):
        labelled: set[str] = set()
        for x, wl in enumerate(workloads):
            r = ratios[wl].get(peer)
            if not r:
                continue
            for dx, clock, colour, face in ((-0.12, "cpu", cycle[0], cycle[0]),
                                            (0.12, "wall", cycle[1], "none")):
                ys = [p[clock] for p in r["per_round"] if p.get(clock)]
                if ys:
                    ax.scatter([x + dx] * len(ys), ys, s=16, edgecolors=colour, facecolors=face,
                               label=None if clock in labelled else clock, zorder=3)
                    labelled.add(clock)
                    ax.hlines((r.get(clock) or {}).get("median"), x + dx - 0.1, x + dx + 0.1,
                              colors=colour, linewidth=2, zorder=2)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        plain = ticker.FuncFormatter(lambda y, _pos: f"{y:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize="x-small")
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads, rotation=30, ha="right", fontsize="small")
        ax.set_title(f"lsm / {peer} (above 1: lsm faster)", fontsize="medium")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="x-small")
    fig.suptitle("lsm-bench compare: per-round ratios (dots) and their medians (bars)")
    return _save(plt, fig, out / "compare.png", tight=True)


def _scale_recs(report: Report) -> list[dict[str, Any]]:
    return [r for r in report.get("results", []) if r.get("steps")]


def _scale_plot(plt: Any, report: Report, out: Path) -> Path | None:
    """Throughput, p99 latency, resident memory and the slowest put against keys loaded."""
    recs = _scale_recs(report)
    if not recs:
        return None
    colours = _engine_colours(plt, report)
    fig, axes = _grid(plt, 5, 3, (5.0, 3.4))

    def lines(ax: Any, series: tuple[tuple[str, str, str, str], ...]) -> None:
        for rec in recs:
            xs = [s["keys"] / 1e6 for s in rec["steps"]]
            for part, fld, style, label in series:
                ys = [s[part].get(fld) if fld in s[part] else s[part]["latency"].get(fld) for s in rec["steps"]]
                ax.plot(xs, [y if isinstance(y, (int, float)) else float("nan") for y in ys], style,
                        marker=".", color=colours[rec["engine"]], label=f"{rec['engine']} {label}")

    lines(axes[0], (("puts", "ops_per_sec", "-", "put"),))
    axes[0].set_title("put throughput (ops/s)", fontsize="medium")
    axes[0].set_ylim(bottom=0)
    lines(axes[1], (("readrandom", "ops_per_sec", "-", "readrandom"),
                    ("readmissing", "ops_per_sec", "--", "readmissing")))
    axes[1].set_title("read sample throughput (ops/s, log)", fontsize="medium")
    axes[1].set_yscale("log")
    lines(axes[2], (("puts", "p99_us", "-", "put"), ("readrandom", "p99_us", "--", "readrandom")))
    axes[2].set_title("p99 latency (us, log)", fontsize="medium")
    axes[2].set_yscale("log")
    ax = axes[3]
    for rec in recs:
        xs = [s["keys"] / 1e6 for s in rec["steps"]]
        mem = [s.get("memory") or {} for s in rec["steps"]]
        c = colours[rec["engine"]]
        ax.plot(xs, [_num(m.get("rss_anon")) / 2**20 for m in mem], "-", marker=".", color=c,
                label=f"{rec['engine']} heap (RssAnon)")
        ax.plot(xs, [_num(m.get("rss_file")) / 2**20 for m in mem], ":", color=c,
                label=f"{rec['engine']} mapped (RssFile)")
        acc = [(s.get("engine_memory") or {}).get("total") for s in rec["steps"]]
        if any(isinstance(a, (int, float)) for a in acc):
            ax.plot(xs, [_num(a) / 2**20 for a in acc], "--", color=c, label=f"{rec['engine']} own account")
    ax.set_title("resident memory (MiB)", fontsize="medium")
    ax.set_ylim(bottom=0)
    lines(axes[4], (("puts", "max_put_ms", "-", "slowest put"),))
    axes[4].set_title("slowest put per step (ms, log)", fontsize="medium")
    axes[4].set_yscale("log")
    for ax in axes[:5]:
        ax.set_xlabel("keys loaded (millions)", fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="xx-small")
    fig.suptitle("lsm-bench scale: as the database grows")
    return _save(plt, fig, out / "scale.png", tight=True)


def _scale_levels_plot(plt: Any, report: Report, out: Path) -> Path | None:
    """Bytes per level after each step, one panel per engine (stacked bars)."""
    recs = [r for r in _scale_recs(report) if any(s.get("levels") for s in r["steps"])]
    if not recs:
        return None
    fig, axes = _grid(plt, len(recs), len(recs), (6.0, 3.6))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, rec in zip(axes, recs):
        steps = rec["steps"]
        depth = max(len(s.get("levels") or []) for s in steps)
        xs = list(range(len(steps)))
        bottom = [0.0] * len(steps)
        for lv in range(depth):
            ys = [((s.get("levels") or [])[lv:lv + 1] or [{"bytes": 0}])[0]["bytes"] / 2**20 for s in steps]
            if any(ys):
                ax.bar(xs, ys, bottom=bottom, label=f"L{lv}", color=cycle[lv % len(cycle)])
                bottom = [b + y for b, y in zip(bottom, ys)]
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{s['keys'] / 1e6:g}M" for s in steps], rotation=45, fontsize="x-small")
        ax.set_title(f"{rec['engine']}: MiB per level after each step", fontsize="medium")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="xx-small")
    return _save(plt, fig, out / "scale-levels.png", tight=True)
