"""Database options: one frozen object, documented field by field,
validated together in ``__post_init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Options"]

SYNC_MODES = ("always", "periodic", "never")
COMPRESSIONS = ("zstd", "none")
WAL_RECOVERY_MODES = ("tolerate_tail", "absolute", "point_in_time", "skip_corrupt")
# what __post_init__ accepts for each annotation (fields are annotated as strings)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "str": str}
MAX_SYNC_INTERVAL = 3600.0  # seconds: a longer "periodic" window is "never" in all but name


@dataclass(frozen=True)
class Options:
    """Tuning and behaviour of one open database. Immutable; validated on creation.

    Raises: ``ValueError`` naming the field(s) when a value or a combination is
    invalid, ``TypeError`` when a field has the wrong type.

    >>> Options(memtable_bytes=1 << 20).memtable_bytes
    1048576
    >>> Options(sync_mode="sometimes")
    Traceback (most recent call last):
    ...
    ValueError: sync_mode must be one of 'always', 'periodic', 'never'; got 'sometimes'
    """

    sync_mode: str = "always"
    """When a write is fsynced. ``"always"``: before it is acknowledged
    (concurrent writers share one fsync: group commit). ``"periodic"``: every
    ``sync_interval`` seconds in the background; a power cut may lose that
    window. ``"never"``: left to the OS. In every mode an acknowledged write has
    reached the OS, so it survives a crash of the process."""

    sync_interval: float = 0.05
    """Seconds between background fsyncs in ``"periodic"`` mode, > 0 and at
    most :data:`MAX_SYNC_INTERVAL` (an hour). Lower: less lost on power cut,
    more fsyncs."""

    memtable_bytes: int = 8 << 20
    """Bytes (keys + values + ~40 bytes per entry) buffered in memory before the
    memtable is switched and flushed to an L0 table. Larger: fewer L0 files and
    less write amplification; more memory and a slower reopen (WAL replay)."""

    max_immutable_memtables: int = 2
    """Switched memtables waiting for flush before writers stall. Bounds the
    memtables' memory at ``(1 + this) * memtable_bytes`` as charged, which is
    about 2.3x that on the heap at 16-byte keys and 100-byte values
    (doc/design.md#memory)."""

    block_bytes: int = 4 << 10
    """Target uncompressed size of an SSTable data block. Smaller: less to
    search (or decompress) per point read; larger: smaller indexes (about
    2.5 bytes of memory per key of an open table at 4 KiB with 116-byte
    entries; doc/design.md#memory) and better compression. 4 KiB measured fastest for point reads and scans from
    uncompressed tables (bench/RESULTS.md)."""

    bloom_bits_per_key: int = 10
    """Bloom filter bits per key in each SSTable (10 gives about 2% false
    positives with the register-blocked filter of format 2 tables, 1.8%
    measured); 0 disables filters, making every missing-key read touch a block."""

    compression: str = "none"
    """Data block compression, ``"none"`` or ``"zstd"``. Uncompressed tables
    are searched in place in a memory map (the OS page cache is their
    cache); zstd tables are decompressed into the block cache on a miss, which
    roughly halves read throughput and saves 30-50% of disk for compressible
    values. With ``"none"`` the disk use stays within 1.5x LevelDB's
    (snappy) for the benchmark's half-compressible values
    (bench/RESULTS.md)."""

    l0_compaction_trigger: int = 4
    """Number of L0 files that makes L0 the compaction candidate."""

    l0_slowdown_trigger: int = 12
    """Number of L0 files at which each write is delayed ~1 ms, letting
    compaction catch up."""

    l0_stop_trigger: int = 20
    """Number of L0 files at which writes wait for compaction."""

    level_base_bytes: int = 64 << 20
    """Target size of L1; level n targets ``level_base_bytes * level_multiplier**(n-1)``."""

    level_multiplier: int = 10
    """Size ratio between adjacent levels. Larger: fewer levels, more write
    amplification per level."""

    target_file_bytes: int = 16 << 20
    """Compaction output files are split at about this many bytes."""

    block_cache_bytes: int = 64 << 20
    """Bytes of decoded data blocks kept in the LRU block cache (charged by
    what each holds: its payload plus ~120 bytes); 0 disables it. Only
    blocks that must be decoded use it: zstd blocks, blocks of tables in the
    older format, and every block on a filesystem that cannot map files.
    Uncompressed tables are read in place from the OS page cache."""

    max_open_files: int = 1000
    """Open SSTable readers kept in the table cache. Each holds one file
    descriptor (its memory map's) and keeps its index and filter in memory
    (about 3.8 bytes per key at the defaults, doc/design.md#memory). Clipped
    at open to the process's soft ``RLIMIT_NOFILE`` less an eighth of it (at
    least 32), so reads never fail with EMFILE (``stats()["memory"]
    ["open_tables_limit"]``)."""

    wal_recovery: str = "tolerate_tail"
    """What reopening does with a damaged write-ahead log (RocksDB's four
    modes). ``"tolerate_tail"``: drop a torn or corrupt record at the end of the
    log; corruption before the end raises ``CorruptionError``. ``"absolute"``:
    any damage raises. ``"point_in_time"``: stop replay at the first damage,
    discarding everything after it (later logs too). ``"skip_corrupt"``: skip
    damaged records and keep replaying."""

    paranoid_checks: bool = True
    """Verify the checksum of every block read from an SSTable (not only at
    compaction). Off: faster cold reads, corruption may go unnoticed until
    compaction or ``lsm-dump verify``."""

    create_if_missing: bool = True
    """Create the database when the directory holds none."""

    error_if_exists: bool = False
    """Raise ``lsm.Error`` when a database (a ``CURRENT`` file) already exists.
    An empty directory is fine."""

    read_only: bool = False
    """Open for reading only: shares the ``LOCK`` with other read-only opens,
    writes nothing to the directory, and raises ``ReadOnlyError`` on writes."""

    metrics: bool = True
    """Record per-operation throughput (sliding window) and latency percentiles
    for ``stats()["qps"]`` and ``stats()["latency"]``. Every 16th call of each
    operation is timed and counts for 16, so the cost is one counter step per
    call plus one timing per 16 (see bench/RESULTS.md for the measured cost);
    off: no per-call work at all, and those two sections are empty."""

    compaction_process: bool = True
    """Run compaction merges of 1 MiB or more, and flushes of memtables of
    1 MiB or more, in two helper processes (``lsm.worker``: one for merges,
    one for flushes), so they use other cores instead of competing with reads
    and writes for this process's GIL. The parent still picks the inputs and
    installs the result, and reruns a job in-process if its worker fails.
    Off: merges run in the compaction thread and flushes in the flush thread.
    Ignored (in-process) when a custom filesystem is passed to ``DB``."""

    disable_auto_compactions: bool = False
    """Do not schedule background compactions (``compact_range`` still works).
    For bulk loads and benchmarks. The L0 slowdown/stop triggers do not apply
    then (nothing else would ever shrink L0): reads slow down as L0 grows
    until you call ``compact_range``."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            want = _FIELD_TYPES[str(f.type)]
            # bool is an int subclass, but True is not a count or a duration
            if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
                raise TypeError(f"{f.name} must be {f.type}, not {type(value).__name__}")
        _choice("sync_mode", self.sync_mode, SYNC_MODES)
        _choice("compression", self.compression, COMPRESSIONS)
        _choice("wal_recovery", self.wal_recovery, WAL_RECOVERY_MODES)
        # Bounded: the syncer sleeps sync_interval at a time, and a sleep past
        # threading.TIMEOUT_MAX (or inf) raises OverflowError in that thread.
        if not 0 < self.sync_interval <= MAX_SYNC_INTERVAL:  # also refuses nan
            raise ValueError(f"sync_interval must be > 0 and <= {MAX_SYNC_INTERVAL:g} seconds; "
                             f"got {self.sync_interval}")
        _at_least("memtable_bytes", self.memtable_bytes, 1024)
        _at_least("max_immutable_memtables", self.max_immutable_memtables, 1)
        _at_least("block_bytes", self.block_bytes, 256)
        _at_least("bloom_bits_per_key", self.bloom_bits_per_key, 0)
        _at_least("l0_compaction_trigger", self.l0_compaction_trigger, 1)
        _at_least("level_base_bytes", self.level_base_bytes, 1024)
        _at_least("level_multiplier", self.level_multiplier, 2)
        _at_least("target_file_bytes", self.target_file_bytes, 1024)
        _at_least("block_cache_bytes", self.block_cache_bytes, 0)
        _at_least("max_open_files", self.max_open_files, 10)
        if not (self.l0_compaction_trigger <= self.l0_slowdown_trigger <= self.l0_stop_trigger):
            raise ValueError(
                "l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger must hold; got "
                f"{self.l0_compaction_trigger}, {self.l0_slowdown_trigger}, {self.l0_stop_trigger}")
        if self.read_only and self.error_if_exists:
            raise ValueError("read_only and error_if_exists cannot both be set")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}")
