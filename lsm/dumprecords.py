"""The plain records :mod:`lsm.dump`, :mod:`lsm.repair` and :mod:`lsm.cli`
pass around: frozen dataclasses describing a database's files, their entries
and their damage (keys and values as ``bytes``). No I/O here; :mod:`lsm.dump`
re-exports every public name, which is where users find them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .keys import PUT_TTL, TTL_PREFIX_BYTES, Kind, split_ttl

if TYPE_CHECKING:
    from .manifest import FileMeta

__all__ = ["BlockInfo", "BloomInfo", "Damage", "EditInfo", "Finding", "ManifestInfo", "RepairReport",
           "TableEntry", "TableFile", "TableInfo", "WalOp", "kind_name"]


@dataclass(frozen=True)
class TableFile:
    """One SSTable as the manifest records it (keys are user keys)."""

    level: int
    number: int
    size: int
    entries: int
    smallest: bytes
    largest: bytes
    min_seq: int
    max_seq: int
    global_seq: int = 0  # an ingested external table: every entry is read at this sequence
    range_deletions: int = 0

    @classmethod
    def of(cls, level: int, m: FileMeta) -> TableFile:
        return cls(level, m.number, m.size, m.entries, m.smallest, m.largest, m.min_seq, m.max_seq, m.global_seq,
                   len(m.range_dels))


@dataclass(frozen=True)
class EditInfo:
    """One version edit of a manifest, at byte ``offset``; ``None`` = unchanged."""

    offset: int
    format_version: int | None
    log_number: int | None
    next_file: int | None
    last_sequence: int | None
    compact_pointers: tuple[tuple[int, bytes], ...]
    deleted: tuple[tuple[int, int], ...]  # (level, number)
    added: tuple[TableFile, ...]


@dataclass(frozen=True)
class ManifestInfo:
    """The state a manifest describes after replaying every edit."""

    manifest: str
    manifest_bytes: int
    log_number: int
    next_file: int
    last_sequence: int
    files: tuple[TableFile, ...]  # level by level, in the Version's order
    compact_pointers: tuple[tuple[int, bytes], ...]
    edit_count: int
    edits: tuple[EditInfo, ...]  # empty unless history was asked for


@dataclass(frozen=True)
class BlockInfo:
    """One data block: ``size`` on disk (without its 5-byte trailer), ``raw_size`` decoded."""

    index: int
    offset: int
    size: int
    raw_size: int
    compression: str
    entries: int
    last_key: bytes


@dataclass(frozen=True)
class BloomInfo:
    """A table's filter and how well it works: the textbook false-positive
    rate ``(1 - e^(-k n / m))^k`` next to a measured one on random absent keys."""

    bits: int
    probes: int
    bits_per_key: float
    expected_fp_rate: float
    keys_tested: int
    false_positives: int
    measured_fp_rate: float
    kind: str = "blocked"  # "blocked" (format 2: one 64-bit word per key) or "classic" (format 1)


@dataclass(frozen=True)
class TableInfo:
    """Everything about one SSTable except its entries (see :func:`iter_sst`)."""

    path: str
    number: int
    file_size: int
    props: dict[str, int | bytes]
    blocks: tuple[BlockInfo, ...]
    data_bytes: int  # on disk, trailers excluded
    raw_data_bytes: int
    compression_ratio: float  # raw / on disk
    index_bytes: int
    filter_bytes: int
    props_bytes: int
    bloom: BloomInfo | None  # None when the table has no filter
    format_version: int = 2
    range_deletions: int = 0
    range_dels: tuple[tuple[bytes, bytes, int], ...] = ()  # (start, end, seq) in table order


@dataclass(frozen=True)
class TableEntry:
    """One stored version: ``value`` is the user value (TTL prefix removed)."""

    key: bytes
    seq: int
    kind: str
    value: bytes
    expires_at: float | None


@dataclass(frozen=True)
class WalOp:
    """One operation of a write-batch record that starts at byte ``offset``."""

    offset: int
    seq: int
    kind: str
    key: bytes
    value: bytes
    expires_at: float | None
    batch_index: int
    batch_size: int


@dataclass(frozen=True)
class Damage:
    """A damaged region of a log-structured file (WAL or manifest), skipped.

    ``torn`` means a record cut short at the end of the file: what a crash in
    the middle of an append leaves, dropped by recovery under ``tolerate_tail``.
    """

    path: str
    offset: int
    nbytes: int
    reason: str
    torn: bool


@dataclass(frozen=True)
class Finding:
    """One result of :func:`verify`: ``severity`` is ``"ok"``, ``"warning"`` or
    ``"error"``; ``offset`` is None when the finding is about a whole file."""

    severity: str
    path: str
    offset: int | None
    message: str


@dataclass
class RepairReport:
    """What :func:`repair` did. ``moved`` lists ``(source, destination, why)``."""

    dbpath: str
    manifest: str = ""
    log_number: int = 0
    next_file: int = 0
    last_sequence: int = 0
    files: list[TableFile] = field(default_factory=list)
    tables_checked: int = 0
    tables_obsolete: list[int] = field(default_factory=list)
    tables_salvaged: list[int] = field(default_factory=list)
    tables_merged: list[int] = field(default_factory=list)
    logs_converted: list[int] = field(default_factory=list)
    wal_entries_recovered: int = 0
    moved: list[tuple[str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def kind_name(kind: int) -> str:
    """``"PUT"``, ``"DELETE"``, ``"PUT_TTL"``, or ``"KIND<n>"`` for an unknown value.

    >>> kind_name(0), kind_name(2), kind_name(9)
    ('DELETE', 'PUT_TTL', 'KIND9')
    """
    try:
        return Kind(kind).name
    except ValueError:
        return f"KIND{kind}"


def _user_value(kind: int, stored: bytes) -> tuple[bytes, float | None]:
    if kind == PUT_TTL and len(stored) >= TTL_PREFIX_BYTES:
        expires_at, value = split_ttl(stored)
        return value, expires_at
    return stored, None
