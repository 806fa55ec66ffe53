"""Benchmark configuration: one frozen :class:`BenchConfig` per run.

The defaults follow LevelDB's ``db_bench``: 16-byte keys (zero-padded decimal),
100-byte half-compressible values, ``reads == num``, seed 301. ``num`` defaults
to 100,000 rather than db_bench's 1,000,000 because ``lsm`` is pure Python and a
full run covers about twenty workloads on up to six engines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DEFAULT_NUM = 100_000
DEFAULT_VALUE_SIZE = 100  # db_bench FLAGS_value_size
DEFAULT_KEY_SIZE = 16  # db_bench kKeySize
DEFAULT_SEED = 301  # db_bench Random(301)
DEFAULT_BATCH = 1000  # db_bench fillbatch entries_per_batch
DEFAULT_SYNC_THREADS = (1, 4, 16)

QUICK_NUM = 2_000  # keeps `--quick` well under a minute with every peer installed
QUICK_SYNC_OPS = 200  # fsyncs per fillsync variant in quick mode

OptionValue = int | float | bool | str
ProgressMode = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class BenchConfig:
    """Everything one run needs; built by ``lsm_bench.__main__`` from the command line.

    :param num: entries loaded into each database (db_bench ``--num``).
    :param reads: operations in read/seek/YCSB phases; ``None`` means ``num``.
    :param value_size: bytes per value; values are half-compressible.
    :param key_size: bytes per key (zero-padded decimal, so at least as many
        digits as the largest key index needs).
    :param seed: seeds every random choice, so all engines see the same keys.
    :param engines: engine names in column order (see ``lsm_bench.engines.ENGINES``).
    :param workloads: workload names in run order (see ``lsm_bench.runner``).
    :param out: directory for ``results.md``, ``results.json`` and ``plots/``.
    :param engine_options: per engine, options passed through to its open call
        (``--opt k=v`` goes to ``lsm``; ``--opt sqlite3:k=v`` to sqlite3 ...).
    :param batch_size: entries per write batch in ``fillbatch`` and in
        untimed load phases.
    :param sync_threads: writer-thread counts for ``fillsync``.
    :param sync_ops: puts per ``fillsync`` variant; ``None`` means
        ``max(num // 100, 16 * max(sync_threads))`` (db_bench_sqlite3 uses num/100).
    :param verify_writes: after write workloads, read every key back (untimed).
    :param progress: ``auto`` shows a progress bar when stderr is a terminal.
    :param plots: write PNG plots when matplotlib is installed.
    :param tmpdir: parent of the temporary databases (default: the system's).
    :param quick: the run was made with ``--quick`` (recorded in the report).
    :param bulk_num: keys the ``bulkload`` workload loads (None: 10M, or
        ``num`` with ``quick``).
    """

    num: int = DEFAULT_NUM
    reads: int | None = None
    value_size: int = DEFAULT_VALUE_SIZE
    key_size: int = DEFAULT_KEY_SIZE
    seed: int = DEFAULT_SEED
    engines: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    out: Path | None = None
    engine_options: dict[str, dict[str, OptionValue]] = field(default_factory=dict)
    batch_size: int = DEFAULT_BATCH
    sync_threads: tuple[int, ...] = DEFAULT_SYNC_THREADS
    sync_ops: int | None = None
    verify_writes: bool = True
    progress: ProgressMode = "auto"
    plots: bool = True
    tmpdir: Path | None = None
    quick: bool = False
    bulk_num: int | None = None

    def __post_init__(self) -> None:
        for name in ("num", "value_size", "key_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reads is not None and self.reads < 1:
            raise ValueError(f"reads must be >= 1, got {self.reads}")
        if self.sync_ops is not None and self.sync_ops < 1:
            raise ValueError(f"sync_ops must be >= 1, got {self.sync_ops}")
        if not self.sync_threads or min(self.sync_threads) < 1:
            raise ValueError(f"sync_threads must be positive, got {self.sync_threads}")
        # YCSB D/E insert up to `n_reads` new keys past `num`; all keys need digits.
        largest = self.num + self.n_reads
        if len(str(largest)) > self.key_size:
            raise ValueError(
                f"key_size {self.key_size} is too small for key index {largest} "
                f"(needs {len(str(largest))} digits)"
            )

    @property
    def n_reads(self) -> int:
        """Operations in read phases (db_bench ``FLAGS_reads``; default ``num``)."""
        return self.num if self.reads is None else self.reads

    @property
    def n_sync_ops(self) -> int:
        """Puts per ``fillsync`` variant, split evenly between the writer threads."""
        if self.sync_ops is not None:
            return self.sync_ops
        return max(self.num // 100, 16 * max(self.sync_threads))

    def options_for(self, engine: str) -> dict[str, OptionValue]:
        """The pass-through options for ``engine`` (a copy; empty if none)."""
        return dict(self.engine_options.get(engine, {}))

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable copy, for the report."""
        data = dataclasses.asdict(self)
        data["out"] = str(self.out) if self.out is not None else None
        data["tmpdir"] = str(self.tmpdir) if self.tmpdir is not None else None
        data["n_reads"] = self.n_reads
        data["n_sync_ops"] = self.n_sync_ops
        return data


def parse_value(text: str) -> OptionValue:
    """Parse an ``--opt`` value: int, then float, then ``true``/``false``, else the string.

    Only the words true and false become booleans, so ``OFF`` or ``NORMAL`` (sqlite3
    ``PRAGMA synchronous`` levels) pass through as strings.

    >>> parse_value("8_388_608"), parse_value("0x100"), parse_value("0.5")
    (8388608, 256, 0.5)
    >>> parse_value("false"), parse_value("zstd")
    (False, 'zstd')
    """
    for parse in (int, lambda s: int(s, 0), float):
        try:
            return parse(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return text


def parse_opt(spec: str, default_engine: str = "lsm") -> tuple[str, str, OptionValue]:
    """Split ``[engine:]key=value`` into ``(engine, key, value)``.

    >>> parse_opt("memtable_bytes=65536")
    ('lsm', 'memtable_bytes', 65536)
    >>> parse_opt("sqlite3:synchronous=OFF")
    ('sqlite3', 'synchronous', 'OFF')

    :raises ValueError: no ``=``, or an empty key.
    """
    if "=" not in spec:
        raise ValueError(f"--opt expects [engine:]key=value, got {spec!r}")
    name, _, raw = spec.partition("=")
    engine, sep, key = name.partition(":")
    if not sep:
        engine, key = default_engine, name
    key = key.strip()
    if not key or not engine:
        raise ValueError(f"--opt expects [engine:]key=value, got {spec!r}")
    return engine.strip(), key, parse_value(raw.strip())


def parse_opts(specs: list[str]) -> dict[str, dict[str, OptionValue]]:
    """Group several ``--opt`` specs by engine; later specs win."""
    grouped: dict[str, dict[str, OptionValue]] = {}
    for spec in specs:
        engine, key, value = parse_opt(spec)
        grouped.setdefault(engine, {})[key] = value
    return grouped
