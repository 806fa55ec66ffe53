"""What a workload function gets: fresh engines, untimed loading and checking,
and :class:`Measurement`, which turns a timed phase into one result record.

A result record is a plain JSON-serialisable dict (the report's raw figures)::

    workload, engine, status ("ok" | "failed" | "skipped" | "error"), note, unit,
    ops, seconds, ops_per_sec, latency{p50_us, p99_us, ...}, timeline, shape,
    user_bytes_written, io{wchar, ...}, write_amp_syscall, disk_bytes, live_bytes,
    space_amp, entries_returned, read_amp_syscall, verify{checked, missing, wrong,
    unexpected}, extra, engine_settings, engine_stats

``status`` is ``"failed"`` when any read returned a wrong value, missed a key
that was written, or found a key that must be absent.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Sized
from pathlib import Path
from typing import Any

from lsm_bench.config import BenchConfig
from lsm_bench.data import KeySpace, ValueGen, chunks, permutation
from lsm_bench.engines import Engine
from lsm_bench.machine import dir_bytes, io_counters, io_delta
from lsm_bench.measure import Phase, shape_point
from lsm_bench.progress import Progress, make_progress

PROGRESS_EVERY = 1000  # untimed read-back: progress update stride

Result = dict[str, Any]
GenOf = Callable[[int], int]


def empty_verify() -> dict[str, int]:
    """A verification tally with nothing checked yet."""
    return {"checked": 0, "missing": 0, "wrong": 0, "unexpected": 0}


def verify_failures(verify: dict[str, int] | None) -> int:
    """Reads that went wrong: missing + wrong + unexpected."""
    if not verify:
        return 0
    return verify.get("missing", 0) + verify.get("wrong", 0) + verify.get("unexpected", 0)


def base_result(workload: str, engine: str, status: str, note: str = "") -> Result:
    """A result record without figures (skipped or errored runs)."""
    return {"workload": workload, "engine": engine, "status": status, "note": note}


class Context:
    """One workload on one engine class: opens engines in fresh temp directories.

    Ownership: every engine opened here is closed, and its directory removed,
    by :meth:`cleanup` (the runner calls it, also after an exception).

    :param cfg: the run's configuration.
    :param engine_cls: the adapter class to open.
    :param keys: shared key space. :param values: shared value generator.
    :param workload: the workload's name, for progress labels.
    """

    def __init__(
        self, cfg: BenchConfig, engine_cls: type[Engine], keys: KeySpace, values: ValueGen,
        workload: str = "",
    ) -> None:
        self.cfg = cfg
        self.engine_cls = engine_cls
        self.engine_name = engine_cls.name
        self.keys = keys
        self.values = values
        self.label = f"{workload} [{engine_cls.name}]"
        self._open: list[tuple[Engine, Path]] = []

    # -- engines -----------------------------------------------------------

    def open(self, *, sync: bool = False) -> Engine:
        """A new engine in a new empty temporary directory."""
        parent = str(self.cfg.tmpdir) if self.cfg.tmpdir is not None else None
        path = Path(tempfile.mkdtemp(prefix=f"lsm-bench-{self.engine_name}-", dir=parent))
        try:
            engine = self.engine_cls(
                path, sync=sync, options=self.cfg.options_for(self.engine_name)
            )
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        self._open.append((engine, path))
        return engine

    def cleanup(self) -> None:
        """Close every engine opened here and delete its directory."""
        while self._open:
            engine, path = self._open.pop()
            try:
                engine.close()
            finally:
                shutil.rmtree(path, ignore_errors=True)

    # -- untimed helpers ---------------------------------------------------

    def load(self, engine: Engine, n: int, *, gen: int = 0, ordered: bool = False) -> None:
        """Untimed: write keys ``0..n-1`` (random order unless ``ordered``) in
        batches of ``batch_size``, then :meth:`Engine.quiesce`."""
        order = list(range(n)) if ordered else permutation(n, self.cfg.seed + 1)
        key, value = self.keys.key, self.values.value
        bar = make_progress(self.cfg.progress, f"{self.label} load", n)
        done = 0
        for part in chunks(order, self.cfg.batch_size):
            engine.write_batch([(key(i), value(i, gen)) for i in part])
            done += len(part)
            bar.update(done)
        bar.close()
        engine.quiesce()

    def check_present(
        self, engine: Engine, indexes: Iterable[int], gen: int | GenOf = 0
    ) -> dict[str, int]:
        """Untimed: read each key back and compare with the value of its generation."""
        tally = empty_verify()
        key, value, get = self.keys.key, self.values.value, engine.get
        fixed = 0 if callable(gen) else gen

        def same_gen(_index: int) -> int:
            return fixed

        gen_of: GenOf = gen if callable(gen) else same_gen
        bar = self._check_progress(indexes)
        for i in indexes:
            got = get(key(i))
            tally["checked"] += 1
            if got is None:
                tally["missing"] += 1
            elif got != value(i, gen_of(i)):
                tally["wrong"] += 1
            if not tally["checked"] % PROGRESS_EVERY:
                bar.update(tally["checked"])
        bar.close()
        return tally

    def _check_progress(self, indexes: Iterable[int]) -> Progress:
        total = len(indexes) if isinstance(indexes, Sized) else 0
        return make_progress(self.cfg.progress, f"{self.label} verify", total)

    def check_absent(self, engine: Engine, indexes: Iterable[int]) -> dict[str, int]:
        """Untimed: each key must read as absent."""
        tally = empty_verify()
        key, get = self.keys.key, engine.get
        bar = self._check_progress(indexes)
        for i in indexes:
            tally["checked"] += 1
            if get(key(i)) is not None:
                tally["unexpected"] += 1
            if not tally["checked"] % PROGRESS_EVERY:
                bar.update(tally["checked"])
        bar.close()
        return tally

    # -- timing ------------------------------------------------------------

    def measure(
        self,
        engine: Engine,
        workload: str,
        total: int,
        *,
        unit: str,
        user_bytes: int = 0,
        live_entries: int | None = None,
        compaction: bool = False,
    ) -> Measurement:
        """A :class:`Measurement` for one timed phase of ``workload`` on ``engine``.

        :param total: operations the phase counts (drives sampling and progress).
        :param unit: what one operation is, for the report.
        :param user_bytes: key + value bytes the phase writes (write amplification).
        :param live_entries: entries live afterwards (space amplification).
        :param compaction: probe the LSM shape during the phase (``lsm`` only).
        """
        probe = None
        if compaction and self.engine_name == "lsm":
            probe = lambda: shape_point(engine.stats())  # noqa: E731
        phase = Phase(
            f"{workload} [{self.engine_name}]", total, progress=self.cfg.progress, shape=probe
        )
        entry_bytes = self.cfg.key_size + self.cfg.value_size
        live = None if live_entries is None else live_entries * entry_bytes
        return Measurement(self, engine, workload, phase, unit, user_bytes, live)


class Measurement:
    """Wraps a :class:`~lsm_bench.measure.Phase`; on exit builds :attr:`result`.

    After the timed block (untimed): ``engine.quiesce()`` for write phases, so
    that flushes and compactions caused by the phase count in its write
    amplification; then I/O counters, disk usage and the engine's own stats.

    A read phase sets :attr:`entries_returned` inside the block: read
    amplification is the bytes this process read through ``read(2)``-family
    calls (``rchar``) per key + value byte returned. Reads served from memory
    maps (lmdb) or the engine's own cache do not show up in ``rchar``.
    """

    def __init__(
        self,
        ctx: Context,
        engine: Engine,
        workload: str,
        phase: Phase,
        unit: str,
        user_bytes: int,
        live_bytes: int | None,
    ) -> None:
        self.ctx = ctx
        self.engine = engine
        self.workload = workload
        self.phase = phase
        self.unit = unit
        self.user_bytes = user_bytes
        self.live_bytes = live_bytes
        self.verify = empty_verify()
        self.extra: dict[str, Any] = {}
        self.batch_entries: int | None = None  # fillbatch: entries counted instead of batches
        self.entries_returned = 0  # key/value pairs the phase read back (read amplification)
        self.result: Result = base_result(workload, ctx.engine_name, "error", "incomplete")
        self._io_before: dict[str, int] | None = None

    def __enter__(self) -> Phase:
        self._io_before = io_counters()
        return self.phase.__enter__()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.phase.__exit__(exc_type, exc, tb)
        if exc_type is not None:
            return
        if self.user_bytes:
            self.engine.quiesce()
        io = io_delta(self._io_before, io_counters())
        res = base_result(self.workload, self.ctx.engine_name, "ok")
        res.update(self.phase.result())
        res["unit"] = self.unit
        if self.batch_entries is not None:
            # Loop steps were batches of batch_size; throughput counts entries.
            steps, entries = max(1, res["ops"]), self.batch_entries
            res["ops"] = entries
            res["ops_per_sec"] = entries / res["seconds"] if res["seconds"] else None
            res["timeline"] = [[t, min(entries, n * entries // steps)] for t, n in res["timeline"]]
        res["user_bytes_written"] = self.user_bytes
        res["io"] = io
        wchar = io.get("wchar") if io else None
        res["write_amp_syscall"] = (wchar / self.user_bytes) if wchar and self.user_bytes else None
        rchar = io.get("rchar") if io else None
        returned = self.entries_returned * (self.ctx.cfg.key_size + self.ctx.cfg.value_size)
        res["entries_returned"] = self.entries_returned
        res["read_amp_syscall"] = (rchar / returned) if rchar and returned else None
        res["disk_bytes"] = dir_bytes(self.engine.path)
        res["live_bytes"] = self.live_bytes
        res["space_amp"] = (
            res["disk_bytes"] / self.live_bytes if self.live_bytes else None
        )
        res["engine_settings"] = self.engine.describe()
        try:
            res["engine_stats"] = self.engine.stats()
        except Exception as exc:  # stats are informative only
            res["engine_stats"] = {"error": repr(exc)}
        res["verify"] = self.verify
        res["extra"] = self.extra
        self.result = res
        self.add_verify(None)

    def add_verify(self, tally: dict[str, int] | None) -> Result:
        """Fold ``tally`` into the verification counts and refresh ``status``."""
        if tally:
            for name, count in tally.items():
                self.verify[name] = self.verify.get(name, 0) + count
        if self.result.get("status") in ("ok", "failed"):
            bad = verify_failures(self.verify)
            self.result["verify"] = self.verify
            self.result["status"] = "failed" if bad else "ok"
            self.result["note"] = f"{bad} reads returned a wrong result" if bad else ""
        return self.result
