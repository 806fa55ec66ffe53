"""The properties block: what a table holds, readable without scanning it
(doc/format.md#properties-block).

    props := (name:lp value:lp)*          lp := len:varint bytes

Names are ASCII. Integer properties are varint-encoded inside their value;
``smallest`` and ``largest`` are raw user keys. Readers ignore names they do
not know, so adding a property does not need a format version bump.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from ..coding import DecodeError, decode_varint, encode_varint, get_length_prefixed, put_length_prefixed
from ..errors import CorruptionError

__all__ = ["BYTES_PROPS", "EXTERNAL_PROP", "FLAG_PROPS", "INT_PROPS", "OPTIONAL_INT_PROPS", "TableProps",
           "decode_props", "encode_props"]

INT_PROPS = ("entries", "deletions", "ttl_entries", "data_blocks", "raw_key_bytes",
             "raw_value_bytes", "data_bytes", "min_seq", "max_seq", "bloom_bits_per_key",
             "compression", "unique_keys")
BYTES_PROPS = ("smallest", "largest")
# 1 in a table written by lsm.TableFileWriter for DB.ingest (an *external*
# table): every entry has sequence 0, and one version per key; the database
# gives the whole file one sequence number when it ingests it (the manifest's
# GLOBAL_SEQ). Readers that do not know the name skip it.
EXTERNAL_PROP = "external"
# Written by newer writers, read with a default when absent (older tables).
OPTIONAL_INT_PROPS = {"range_deletions": 0}
# Integer properties written only by some tables and read only when present
# (``props.get(name, 0)``).
FLAG_PROPS = (EXTERNAL_PROP,)


@dataclass(frozen=True)
class TableProps:
    """What ``TableWriter.finish`` reports about the table it wrote: the
    properties block's values (``INT_PROPS``, ``BYTES_PROPS``,
    ``range_deletions`` and the ``extra`` names the writer was asked to
    record, e.g. ``EXTERNAL_PROP``), plus two things the block does not
    hold: the table's ``range_dels`` (for the manifest; the range-deletion
    block holds them) and its ``file_size``.

    ``lsm.manifest.FileMeta.from_props`` turns one into the manifest's record.
    """

    entries: int
    deletions: int
    ttl_entries: int
    data_blocks: int
    raw_key_bytes: int
    raw_value_bytes: int
    data_bytes: int
    min_seq: int
    max_seq: int
    bloom_bits_per_key: int
    compression: int
    unique_keys: int
    smallest: bytes
    largest: bytes
    range_deletions: int = 0
    extra: tuple[tuple[str, int], ...] = ()  # further integer properties, (name, value), as written
    range_dels: tuple[tuple[bytes, bytes, int], ...] = ()  # (start, end, seq), sorted
    file_size: int = 0

    def block_props(self) -> dict[str, int | bytes]:
        """The values of the properties block, as ``encode_props`` takes and
        ``decode_props`` returns them (``extra`` names override the others)."""
        d: dict[str, int | bytes] = {name: getattr(self, name) for name in (*INT_PROPS, *BYTES_PROPS)}
        d["range_deletions"] = self.range_deletions
        d.update(self.extra)
        return d

    def with_file_size(self, file_size: int) -> TableProps:
        return replace(self, file_size=file_size)

    @classmethod
    def from_block(cls, props: Mapping[str, int | bytes], file_size: int = 0,
                   range_dels: tuple[tuple[bytes, bytes, int], ...] = ()) -> TableProps:
        """From a decoded properties block (``decode_props``, ``TableReader.props``):
        names that are not fields go to ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra", "range_dels", "file_size"}
        known = {k: v for k, v in props.items() if k in names}
        extra = tuple((k, int(v)) for k, v in props.items() if k not in names)
        return cls(**known, extra=extra, range_dels=range_dels, file_size=file_size)  # type: ignore[arg-type]


def encode_props(props: Mapping[str, int | bytes]) -> bytes:
    out = bytearray()
    for name in INT_PROPS:
        put_length_prefixed(out, name.encode())
        put_length_prefixed(out, encode_varint(int(props[name])))
    for name in BYTES_PROPS:
        put_length_prefixed(out, name.encode())
        put_length_prefixed(out, bytes(props[name]))
    for name in (*OPTIONAL_INT_PROPS, *FLAG_PROPS):
        if name in props:
            put_length_prefixed(out, name.encode())
            put_length_prefixed(out, encode_varint(int(props[name])))
    return bytes(out)


def decode_props(payload: bytes, path: str, offset: int) -> dict[str, int | bytes]:
    """Raises: CorruptionError if malformed or a required property is missing."""
    props: dict[str, int | bytes] = {}
    pos = 0
    try:
        while pos < len(payload):
            name, pos = get_length_prefixed(payload, pos)
            value, pos = get_length_prefixed(payload, pos)
            key = name.decode("ascii")
            if key in BYTES_PROPS:
                props[key] = value
            elif key in INT_PROPS or key in OPTIONAL_INT_PROPS or key in FLAG_PROPS:
                n, end = decode_varint(value, 0)
                if end != len(value):
                    raise DecodeError(f"property {key!r} has trailing bytes")
                props[key] = n
    except (DecodeError, UnicodeDecodeError) as e:
        raise CorruptionError(path, offset, f"malformed properties block: {e}") from None
    missing = [n for n in INT_PROPS + BYTES_PROPS if n not in props]
    if missing:
        raise CorruptionError(path, offset, f"properties block lacks {', '.join(missing)}")
    for prop, default in OPTIONAL_INT_PROPS.items():
        props.setdefault(prop, default)
    return props
