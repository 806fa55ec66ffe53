"""External table files: SSTables built outside a database, to be handed to
one with :meth:`lsm.DB.ingest` (RocksDB's ``SstFileWriter``; doc/bulkload.md).

An external table is an ordinary SSTable of the current format
(doc/format.md#sstable) with two differences: every entry has sequence
number 0 and each key appears once (a put, a put with a TTL, or a delete),
and its properties carry ``external = 1`` (``props.EXTERNAL_PROP``). The
database gives the whole file one sequence number when it ingests it.

    with lsm.TableFileWriter("/shared/part-7/") as w:
        for key, value in sorted_rows:
            w.put(key, value)
    files = w.finish()          # [TableFileInfo(path=..., smallest=..., ...)]; the
                                # with block already finished it: the same list
    db.ingest([f.path for f in files])

Files are written under temporary names (``.<name>.tmp``), fsynced, and
renamed to their final names (then the directory fsynced) only by
:meth:`TableFileWriter.finish`, so a final name always holds a whole table.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from .batch import encode_ttl_value
from .errors import DiskError, Error
from .fs import FileSystem, OsFileSystem
from .keys import DELETE, PUT, PUT_TTL, check_key, check_value
from .sstable import TableWriter
from .sstable.props import EXTERNAL_PROP

__all__ = ["TableFileInfo", "TableFileWriter"]

_CHUNK = 1024  # entries buffered before they go to the table writer as columns


@dataclass(frozen=True)
class TableFileInfo:
    """One finished external table file: what :meth:`TableFileWriter.finish`
    returns, and what a distributed build gathers before ``DB.ingest``.

    ``path`` is absolute; ``smallest``/``largest`` are its first and last
    keys; ``entries`` counts puts and deletes (``deletions`` the latter);
    ``bytes`` is the file's size. ``as_dict()``/``from_dict()`` convert to
    and from plain JSON-friendly values (keys as hex).
    """

    path: str
    smallest: bytes
    largest: bytes
    entries: int
    bytes: int
    deletions: int = 0

    def as_dict(self) -> dict:
        """The fields as JSON-friendly values (``smallest``/``largest`` in hex)."""
        d = asdict(self)
        d["smallest"] = self.smallest.hex()
        d["largest"] = self.largest.hex()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TableFileInfo:
        """The inverse of :meth:`as_dict`."""
        return cls(d["path"], bytes.fromhex(d["smallest"]), bytes.fromhex(d["largest"]), int(d["entries"]),
                   int(d["bytes"]), int(d.get("deletions", 0)))


class TableFileWriter:
    """Writes external table files from keys in strictly increasing order.

    :param directory_or_path: an existing directory (or a path ending in a
        separator, created if missing), where files are named
        ``<prefix>-NNNNN.sst``; or the path of the (first) file, further
        files of a split being ``<stem>-NNNNN<ext>`` beside it.
    :param target_file_bytes: start a new file once one reaches about this
        many bytes (None: one file).
    :param prefix: file name prefix in a directory (default: a random token,
        so writers sharing a directory never collide).
    :param block_bytes, bloom_bits_per_key, compression: as in
        :class:`lsm.Options` (the database reads any of them).

    ``put``/``delete`` raise ``ValueError`` naming both keys and the
    position when a key is not greater than the one before (the entry is
    not written; the writer stays usable). Leaving a ``with`` block with an
    exception, or :meth:`abort`, removes every file written.

    Thread safety: none; one writer per thread.
    """

    def __init__(self, directory_or_path: str | os.PathLike, *, target_file_bytes: int | None = None,
                 block_bytes: int = 4 << 10, bloom_bits_per_key: int = 10, compression: str = "none",
                 prefix: str | None = None, fs: FileSystem | None = None) -> None:
        if compression not in ("none", "zstd"):
            raise ValueError(f"compression must be 'none' or 'zstd', not {compression!r}")
        for name, v, low in (("block_bytes", block_bytes, 256), ("bloom_bits_per_key", bloom_bits_per_key, 0)):
            # the checks lsm.Options makes of the same settings
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be int, not {type(v).__name__}")
            if v < low:
                raise ValueError(f"{name} must be >= {low}; got {v}")
        if target_file_bytes is not None and (isinstance(target_file_bytes, bool)
                                              or not isinstance(target_file_bytes, int) or target_file_bytes < 1):
            raise ValueError(f"target_file_bytes must be a positive int or None, not {target_file_bytes!r}")
        self._fs: FileSystem = fs if fs is not None else OsFileSystem()
        raw = os.fspath(directory_or_path)
        path = os.path.abspath(raw)
        if raw.endswith(os.sep) or os.path.isdir(path):
            self._fs.makedirs(path)
            self._dir = path
            stem = os.path.join(path, prefix if prefix is not None else uuid.uuid4().hex[:12])
            self._stem, self._ext, self._first = stem, ".sst", None
        else:
            self._dir = os.path.dirname(path)
            self._stem, self._ext = os.path.splitext(path)
            self._ext = self._ext or ".sst"
            self._first = path
        self.target_file_bytes = target_file_bytes
        # entries handed to the table writer at a time: a file is split only
        # between two such chunks (finer for small targets)
        self._chunk = _CHUNK if target_file_bytes is None or target_file_bytes >= (4 << 20) else 64
        self._opts: dict[str, Any] = dict(block_bytes=block_bytes, bloom_bits_per_key=bloom_bits_per_key,
                                          compression=compression)
        self._writer: TableWriter | None = None
        self._temps: list[str] = []  # every file started, under its temporary name
        self._finals: list[str] = []  # ... and the final name it gets at finish()
        self._infos: list[TableFileInfo] = []
        self._keys: list[bytes] = []
        self._tags: list[int] = []
        self._values: list[bytes] = []
        self._last: bytes | None = None
        self._count = 0  # puts and deletes accepted or refused so far: the position of the next
        self._accepted = 0
        self._state = "open"  # "open" -> "finished" | "aborted"

    # -- entries ------------------------------------------------------------------

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        """Add ``key = value`` (expiring ``ttl`` seconds from now, if given).

        Raises: ValueError if ``key`` is not greater than the previous key;
        TypeError/ValueError for a bad key, value or ttl; Error when finished.
        """
        key = check_key(key)
        value = check_value(value)
        kind = PUT
        if ttl is not None:
            value = encode_ttl_value(ttl, value)
            kind = PUT_TTL
        self._add(key, kind, value)

    def delete(self, key: bytes) -> None:
        """Add a tombstone for ``key``: once ingested, it hides older versions."""
        self._add(check_key(key), DELETE, b"")

    def _add(self, key: bytes, kind: int, value: bytes) -> None:
        if self._state != "open":
            raise Error(f"TableFileWriter is {self._state}")
        pos = self._count
        self._count = pos + 1
        last = self._last
        if last is not None and key <= last:
            raise ValueError(_order_message(pos, last, key))
        self._last = key
        self._accepted += 1
        self._keys.append(key)
        self._tags.append(kind)  # sequence 0: the tag is the kind
        self._values.append(value)
        if len(self._keys) >= self._chunk:
            self._drain_or_abort()

    def _add_sorted(self, keys: list[bytes], kinds: list[int], values: list[bytes]) -> None:
        """Add many entries at once (lsm.bulk): ``keys`` already checked to be
        bytes, strictly increasing, and greater than every key added before."""
        if self._state != "open":
            raise Error(f"TableFileWriter is {self._state}")
        if not keys:
            return
        if self._last is not None and keys[0] <= self._last:
            raise ValueError(_order_message(self._count, self._last, keys[0]))
        self._drain_or_abort()
        step = self._chunk
        for a in range(0, len(keys), step):
            self._keys, self._tags, self._values = keys[a:a + step], kinds[a:a + step], values[a:a + step]
            self._drain_or_abort()
        self._count += len(keys)
        self._accepted += len(keys)
        self._last = keys[-1]

    def _drain_or_abort(self) -> None:
        """:meth:`_drain`; on a failure (a full disk, an I/O error) remove
        everything written, so no half-written file is left, and re-raise."""
        try:
            self._drain()
        except BaseException:
            self.abort()
            raise

    def _drain(self) -> None:
        """Hand the buffered entries to the current table (starting one, or
        finishing a full one first)."""
        keys = self._keys
        if not keys:
            return
        w = self._writer
        if w is not None and self.target_file_bytes is not None and w.estimated_size >= self.target_file_bytes:
            self._finish_table()
            w = None
        if w is None:
            w = self._start_table()
        w.add_many(keys, self._tags, self._values)
        self._keys, self._tags, self._values = [], [], []

    def _start_table(self) -> TableWriter:
        i = len(self._temps)
        final = self._first if (i == 0 and self._first is not None) else f"{self._stem}-{i:05d}{self._ext}"
        temp = os.path.join(os.path.dirname(final), "." + os.path.basename(final) + ".tmp")
        self._temps.append(temp)
        self._finals.append(final)
        self._writer = TableWriter(self._fs.open_writable(temp), extra_props={EXTERNAL_PROP: 1}, **self._opts)
        return self._writer

    def _finish_table(self) -> None:
        w, self._writer = self._writer, None
        if w is None:
            return
        props = w.finish()  # fsyncs and closes
        self._infos.append(TableFileInfo(self._finals[len(self._infos)], props.smallest, props.largest,
                                         props.entries, props.file_size, props.deletions))

    # -- the end ----------------------------------------------------------------

    def finish(self) -> list[TableFileInfo]:
        """Write out the last file, fsync it, and give every file its final
        name (renames, then a directory fsync). Returns one
        :class:`TableFileInfo` per file, in key order (none if nothing was
        added); called again, the same list. On failure everything written
        is removed.
        """
        if self._state == "finished":
            return list(self._infos)
        if self._state != "open":
            raise Error(f"TableFileWriter is {self._state}")
        try:
            self._drain()
            self._finish_table()
            for temp, final in zip(self._temps, self._finals):
                self._fs.rename(temp, final)
            if self._temps:
                self._fs.fsync_dir(self._dir)
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        return list(self._infos)

    def abort(self) -> None:
        """Stop and remove every file this writer wrote (temporary or final)."""
        if self._state == "aborted":
            return
        self._state = "aborted"
        if self._writer is not None:
            self._writer.abandon()
            self._writer = None
        for path in self._temps + self._finals:
            try:
                if self._fs.exists(path):
                    self._fs.remove(path)
            except DiskError:
                pass

    @property
    def entries(self) -> int:
        """Puts and deletes accepted so far."""
        return self._accepted

    def __enter__(self) -> TableFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.finish()


def _order_message(pos: int, prev: bytes, key: bytes) -> str:
    what = "repeats" if key == prev else "is below"
    return (f"keys must be strictly increasing: entry {pos} has key {key.hex()} ({key!r}), which {what} "
            f"the previous key {prev.hex()} ({prev!r})")
