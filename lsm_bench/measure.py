"""Timed loops: throughput, sampled latency, a throughput timeline, LSM shape.

How figures are taken (every report cites this):

- **Throughput** = operations / wall time of the timed phase
  (``time.perf_counter_ns``), minus the time spent inside ``db.stats()`` shape
  probes. Set-up phases (loading before ``readrandom`` ...) are never timed.
- **Latency**: each sampled operation is timed with two ``perf_counter_ns``
  calls. Every operation is sampled while a phase has at most
  :data:`MAX_LATENCY_SAMPLES` operations; a longer phase samples every k-th
  operation, ``k = ceil(ops / MAX_LATENCY_SAMPLES)``, so percentiles always rest
  on up to 100,000 exact values (no binning). p50/p99 are nearest-rank.
- **Timeline**: ``(seconds, operations done)`` after every chunk of
  ``ops / TIMELINE_POINTS`` operations (every 50 ms for threaded phases).
- **LSM shape**: for ``lsm`` in the compaction workloads, ``db.stats()`` at
  those same checkpoints (at most every :data:`SHAPE_MIN_INTERVAL_NS`).
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from lsm_bench.progress import make_progress

MAX_LATENCY_SAMPLES = 100_000  # exact samples kept per phase
TIMELINE_POINTS = 100  # checkpoints per single-threaded phase
SHAPE_MIN_INTERVAL_NS = 20_000_000  # at most 50 db.stats() probes per second
THREAD_POLL_SECONDS = 0.05  # timeline resolution of threaded phases

ShapeProbe = Callable[[], "dict[str, Any] | None"]


def sample_every(ops: int) -> int:
    """The latency sampling stride for a phase of ``ops`` operations.

    >>> sample_every(1000), sample_every(100_000), sample_every(250_000)
    (1, 1, 3)
    """
    return max(1, math.ceil(ops / MAX_LATENCY_SAMPLES))


def summarize_latency(samples: Sequence[int], every: int) -> dict[str, Any]:
    """Percentiles (microseconds) and a log2 histogram of ``samples`` (nanoseconds).

    >>> s = summarize_latency([1000] * 98 + [5000, 9000], 1)
    >>> s["p50_us"], s["p99_us"], s["max_us"], s["samples"]
    (1.0, 5.0, 9.0, 100)
    """
    if not samples:
        return {"samples": 0, "sample_every": every}
    ordered = sorted(samples)
    n = len(ordered)

    def pct(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000.0

    buckets: dict[int, int] = {}
    for value in ordered:
        exp = max(0, value).bit_length()  # bucket b holds [2**(b-1), 2**b) ns
        buckets[exp] = buckets.get(exp, 0) + 1
    return {
        "samples": n,
        "sample_every": every,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": ordered[-1] / 1000.0,
        "mean_us": sum(ordered) / n / 1000.0,
        "histogram_log2_ns": {"upper_ns": [1 << b for b in sorted(buckets)],
                              "count": [buckets[b] for b in sorted(buckets)]},
    }


def _level_files(level: dict[str, Any]) -> int:
    files = level.get("files")
    if isinstance(files, list):
        return len(files)
    if isinstance(files, (int, float)):
        return int(files)
    return 0


def shape_point(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The LSM shape in ``lsm``'s ``db.stats()`` (``DB.stats``), read defensively.

    Any field the engine does not report yet comes back as ``None`` (or an
    empty list), never an exception.

    >>> shape_point({"levels": [{"bytes": 10, "files": [{}, {}]}, {"bytes": 99}],
    ...              "compaction": {"stall_seconds": 0.5}})["l0_files"]
    2
    """
    if not isinstance(stats, dict):
        return None
    levels = stats.get("levels")
    levels = [lv for lv in levels if isinstance(lv, dict)] if isinstance(levels, list) else []
    comp = stats.get("compaction")
    comp = comp if isinstance(comp, dict) else {}
    disk = stats.get("disk")
    disk = disk if isinstance(disk, dict) else {}
    mem = stats.get("memtable")
    mem = mem if isinstance(mem, dict) else {}
    return {
        "memtable_bytes": mem.get("bytes"),
        "immutable_bytes": mem.get("immutable_bytes"),
        "level_bytes": [int(lv.get("bytes") or 0) for lv in levels],
        "level_files": [_level_files(lv) for lv in levels],
        "l0_files": _level_files(levels[0]) if levels else None,
        "stall_seconds": comp.get("stall_seconds"),
        "write_amplification": comp.get("write_amplification"),
        "compactions": comp.get("count"),
        "space_amplification": disk.get("space_amplification"),
    }


class Phase:
    """Times one phase of one workload on one engine.

    Use as a context manager around :meth:`loop` (single thread) or
    :meth:`run_threads`; afterwards :meth:`result` gives the figures.

    Thread safety: ``loop`` must run on the thread that entered the phase;
    ``run_threads`` starts its own workers.

    :param desc: progress label.
    :param total: operations the phase will count.
    :param progress: ``"auto"``, ``"on"`` or ``"off"`` (see ``lsm_bench.progress``).
    :param shape: optional probe returning an LSM shape point (time excluded).
    """

    def __init__(
        self, desc: str, total: int, *, progress: str = "off", shape: ShapeProbe | None = None
    ) -> None:
        self.total = max(1, total)
        self.every = sample_every(self.total)
        self.tick = max(1, self.total // TIMELINE_POINTS)
        self.samples: array[int] = array("q")
        self.timeline: list[tuple[float, int]] = []
        self.shape: list[dict[str, Any]] = []
        self.done = 0
        self._desc = desc
        self._progress_mode = progress
        self._progress = make_progress("off", desc, total)
        self._probe = shape
        self._excluded = 0
        self._paused_at = 0  # perf_counter_ns() at pause(), 0 when running
        self._last_probe = 0
        self._start = 0
        self._end = 0

    def __enter__(self) -> Phase:
        self._progress = make_progress(self._progress_mode, self._desc, self.total)
        self._start = time.perf_counter_ns()
        self.timeline.append((0.0, 0))
        self._probe_shape(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = time.perf_counter_ns()
        self._progress.close()
        if self.timeline[-1][1] != self.done:
            self.timeline.append((self.seconds, self.done))
        if self._probe is not None and exc[0] is None:  # the shape at the end, untimed
            point = self._probe()
            if point is not None:
                self.shape.append({"t": self.seconds, "ops": self.done, **point})

    @property
    def seconds(self) -> float:
        """Timed wall seconds so far (probe time excluded)."""
        end = self._end or time.perf_counter_ns()
        return max(0, end - self._start - self._excluded) / 1e9

    def _probe_shape(self, force: bool = False) -> None:
        if self._probe is None:
            return
        t0 = time.perf_counter_ns()
        if not force and t0 - self._last_probe < SHAPE_MIN_INTERVAL_NS:
            return
        point = self._probe()
        t1 = time.perf_counter_ns()
        self._last_probe = t1
        if point is not None:
            point = {"t": max(0, t0 - self._start - self._excluded) / 1e9, "ops": self.done, **point}
            self.shape.append(point)
        self._excluded += t1 - t0

    def checkpoint(self, done: int) -> None:
        """Record ``done`` operations finished: timeline, progress, shape probe."""
        self.done = done
        now = time.perf_counter_ns()
        self.timeline.append((max(0, now - self._start - self._excluded) / 1e9, done))
        self._progress.update(done)
        self._probe_shape()

    def loop(self, n: int, op: Callable[[int], object], *, first: int = 0) -> None:
        """Run ``op(i)`` for ``i in range(first, first + n)``, sampling latency
        and checkpointing.

        The counted operations continue from :attr:`done`, so a phase may call
        ``loop`` more than once (with :meth:`pause`/:meth:`resume` between
        calls, when other work runs in the gaps).
        """
        pc = time.perf_counter_ns
        every = self.every
        add = self.samples.append
        base = self.done
        tick = self.tick
        i = 0
        while i < n:
            end = min(n, i + tick)
            for j in range(first + i, first + end):
                if j % every:
                    op(j)
                else:
                    t0 = pc()
                    op(j)
                    add(pc() - t0)
            i = end
            self.checkpoint(base + i)

    def pause(self) -> None:
        """Stop the phase's clock until :meth:`resume` (another contender's turn)."""
        self._paused_at = time.perf_counter_ns()

    def resume(self) -> None:
        """Restart the clock stopped by :meth:`pause`; the gap is not timed."""
        if self._paused_at:
            self._excluded += time.perf_counter_ns() - self._paused_at
            self._paused_at = 0

    def run_threads(self, counts: Sequence[int], op: Callable[[int, int], object]) -> None:
        """Run ``op(thread, i)`` for ``i in range(counts[thread])`` on one thread each.

        Threads start together (a barrier); the calling thread polls progress
        every :data:`THREAD_POLL_SECONDS`. A worker's exception is re-raised here.

        Requires: called inside ``with phase:``.
        """
        every = self.every
        done = [0] * len(counts)
        per_thread: list[array[int]] = [array("q") for _ in counts]
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(counts) + 1)

        def work(t: int) -> None:
            pc = time.perf_counter_ns
            add = per_thread[t].append
            try:
                barrier.wait()
                for i in range(counts[t]):
                    if i % every:
                        op(t, i)
                    else:
                        t0 = pc()
                        op(t, i)
                        add(pc() - t0)
                    done[t] = i + 1
            except BaseException as exc:  # surfaced in the calling thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(len(counts))]
        for thread in threads:
            thread.start()
        self._start = time.perf_counter_ns()  # restart the clock: thread start-up is not timed
        barrier.wait()
        while True:
            alive = [thread for thread in threads if thread.is_alive()]
            if not alive:
                break
            alive[0].join(THREAD_POLL_SECONDS)  # waits: never a busy loop holding the GIL
            self.checkpoint(sum(done))
        for thread in threads:
            thread.join()
        self.checkpoint(sum(done))
        for samples in per_thread:
            self.samples.extend(samples)
        if errors:
            raise errors[0]

    def result(self) -> dict[str, Any]:
        """The phase's figures: ops, seconds, ops/s, latency, timeline, shape."""
        seconds = self.seconds
        return {
            "ops": self.done,
            "seconds": seconds,
            "ops_per_sec": self.done / seconds if seconds > 0 else None,
            "latency": summarize_latency(self.samples, self.every),
            "timeline": [[round(t, 6), n] for t, n in self.timeline],
            "shape": self.shape,
        }
