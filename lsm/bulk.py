"""Building a database on a distributed engine: sort rows by key range on a
cluster, write external tables on the workers, ingest them in one call
(doc/bulkload.md).

* :func:`write_partition` is the engine-neutral piece: given the rows of one
  key range (any order), it sorts them and writes external tables with
  :class:`lsm.TableFileWriter`. Call it from any engine's map-partitions
  step (Dask, Spark, Ray, multiprocessing).
* :func:`dask_build` is the Dask front end (``pip install 'lsm-tree[dask]'``):
  sampled key quantiles, a range partitioning (partitions never overlap),
  ``write_partition`` on the workers, then ``DB.ingest`` on the client.

Dask is imported inside the functions that use it, so ``import lsm.bulk``
works without it; calling :func:`dask_build` without it raises ImportError
naming the extra.
"""

from __future__ import annotations

import heapq
import os
import random
import shutil
import struct
import uuid
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from functools import partial
from itertools import accumulate, islice
from operator import eq, itemgetter
from typing import Any

from .db import DB, open as open_db
from .errors import DiskError
from .external import TableFileInfo, TableFileWriter
from .fs import OsFileSystem
from .keys import DELETE, MAX_KEY_BYTES, MAX_VALUE_BYTES, PUT, check_key, check_value
from .sstable import TableReader

__all__ = ["Columns", "DEFAULT_TARGET_FILE_BYTES", "dask_build", "range_bounds", "write_partition"]

DEFAULT_TARGET_FILE_BYTES = 64 << 20  # external files of about this size (as Options.target_file_bytes' scale)
DEFAULT_MEMORY_ROWS = 4_000_000  # rows sorted in memory at once; more are sorted in runs and merged
_KEY = itemgetter(0)
_VALUE = itemgetter(1)


def _columns(rows) -> tuple[list[bytes], list]:
    """``rows`` (``(key, value)`` pairs; Spark hands over Rows and
    bytearrays) as a list of keys and a list of values (bytes, or None for a
    delete), checked with column-wide C calls rather than per row."""
    if isinstance(rows, Columns):
        keys, values = rows.keys, rows.values
        if len(keys) != len(values):
            raise ValueError(f"Columns has {len(keys)} keys and {len(values)} values")
    else:
        rows = rows if type(rows) is list else list(rows)
        if rows and set(map(len, rows)) != {2}:
            raise TypeError("rows must be (key, value) pairs")
        keys = list(map(_KEY, rows))
        values = list(map(_VALUE, rows))
    if not set(map(type, keys)) <= _BYTES or max(map(len, keys), default=0) > MAX_KEY_BYTES:
        keys = [check_key(k) for k in keys]
    types = set(map(type, values))
    if not types <= _BYTES_OR_NONE or max(map(len, filter(None, values)), default=0) > MAX_VALUE_BYTES:
        values = [None if v is None else check_value(v) for v in values]
    return keys, values


_BYTES = {bytes}
_BYTES_OR_NONE = {bytes, type(None)}


def _sort_columns(keys: list[bytes], values: list) -> tuple[list[bytes], list]:
    """Both columns in key order (one sort of indexes by key)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return list(map(keys.__getitem__, order)), list(map(values.__getitem__, order))


def _duplicate(keys: list[bytes]) -> bytes | None:
    """The first key that appears twice in sorted ``keys``, or None."""
    if not any(map(eq, keys, islice(keys, 1, None))):
        return None
    return next(a for a, b in zip(keys, keys[1:]) if a == b)


def write_partition(rows: Iterable[Any], directory: str | os.PathLike, *,
                    target_file_bytes: int | None = DEFAULT_TARGET_FILE_BYTES, prefix: str | None = None,
                    block_bytes: int = 4 << 10, bloom_bits_per_key: int = 10, compression: str = "none",
                    memory_rows: int = DEFAULT_MEMORY_ROWS, as_dicts: bool = False) -> list[Any]:
    """Sort ``rows`` (``(key, value)`` pairs of one key range, in any order;
    a value of None writes a delete) and write them as external tables into
    ``directory``; return one :class:`lsm.TableFileInfo` per file (plain
    dicts with ``as_dicts``, for engines that ship rows, e.g. Spark).

    Up to ``memory_rows`` rows are sorted in memory; beyond that, sorted
    runs are spilled to temporary tables in ``directory`` and merged.
    Raises: ValueError for a key that appears twice (naming it), and what
    :class:`lsm.TableFileWriter` raises; files already written are removed.
    """
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    prefix = prefix if prefix is not None else uuid.uuid4().hex[:12]
    opts: dict[str, Any] = dict(block_bytes=block_bytes, bloom_bits_per_key=bloom_bits_per_key, compression=compression)
    if isinstance(rows, Columns):  # e.g. a range from dask_build's shuffle
        keys, values = _sort_columns(*_columns(rows))
        return _write_columns(keys, values, directory, prefix, target_file_bytes, opts, as_dicts)
    spill_dir = os.path.join(directory, f".spill-{prefix}-{uuid.uuid4().hex[:6]}")
    runs: list[str] = []
    it = iter(rows)
    try:
        chunk = list(islice(it, memory_rows))
        while True:
            more = list(islice(it, memory_rows)) if len(chunk) == memory_rows else []
            keys, values = _sort_columns(*_columns(chunk))
            del chunk
            if not more and not runs:
                return _write_columns(keys, values, directory, prefix, target_file_bytes, opts, as_dicts)
            # a sorted run, spilled as a temporary table (deletes as tombstones)
            dup = _duplicate(keys)
            if dup is not None:
                raise ValueError(f"key {dup.hex()} ({dup!r}) appears twice in the partition's rows")
            os.makedirs(spill_dir, exist_ok=True)
            run = TableFileWriter(os.path.join(spill_dir, f"run-{len(runs):05d}.sst"), **opts)
            run._add_sorted(keys, [DELETE if v is None else PUT for v in values],
                            [b"" if v is None else v for v in values])
            runs += [i.path for i in run.finish()]
            if not more:
                break
            chunk = more
        return _merge_runs(runs, directory, prefix, target_file_bytes, opts, as_dicts)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


def _write_columns(keys: list[bytes], values: list, directory: str, prefix: str, target: int | None, opts: dict,
                   as_dicts: bool) -> list[Any]:
    """Write sorted ``keys`` with their ``values`` (None: a delete)."""
    dup = _duplicate(keys)
    if dup is not None:
        raise ValueError(f"key {dup.hex()} ({dup!r}) appears twice in the partition's rows")
    if None in values:
        kinds = [PUT if v is not None else DELETE for v in values]
        values = [b"" if v is None else v for v in values]
    else:
        kinds = [PUT] * len(values)
    with TableFileWriter(directory, target_file_bytes=target, prefix=prefix, **opts) as w:
        w._add_sorted(keys, kinds, values)
    infos = w.finish()
    return [i.as_dict() for i in infos] if as_dicts else infos


def _merge_runs(runs: list[str], directory: str, prefix: str, target: int | None, opts: dict,
                as_dicts: bool) -> list[Any]:
    fs = OsFileSystem()
    readers = [TableReader(fs.open_readable(p), 0, None, True) for p in runs]
    try:
        merged = heapq.merge(*(r.iter_entries() for r in readers), key=_KEY)
        with TableFileWriter(directory, target_file_bytes=target, prefix=prefix, **opts) as w:
            last = None
            for key, _, kind, value in merged:
                if key == last:
                    raise ValueError(f"key {key.hex()} ({key!r}) appears twice in the partition's rows")
                last = key
                w._add(key, kind, value)
        infos = w.finish()
    finally:
        for r in readers:
            r.close()
    return [i.as_dict() for i in infos] if as_dicts else infos


def range_bounds(sample: Iterable[bytes], npartitions: int) -> list[bytes]:
    """``npartitions - 1`` split keys cutting a sample of keys into ranges of
    about equal counts (fewer when the sample has fewer distinct keys).
    Partition ``i`` holds keys ``bounds[i-1] <= key < bounds[i]``."""
    keys = sorted(set(sample))
    if npartitions <= 1 or not keys:
        return []
    bounds = [keys[len(keys) * i // npartitions] for i in range(1, npartitions)]
    return sorted(set(bounds) - {keys[0]})


def _sample_keys(rows, k: int, seed: int) -> list:
    keys = rows.keys if isinstance(rows, Columns) else [r[0] for r in rows]
    keys = [k if type(k) is bytes else check_key(k) for k in keys] if not set(map(type, keys)) <= _BYTES else keys
    return _Rows(random.Random(seed).sample(keys, min(k, len(keys))))


class _Rows(list):
    """A list that Dask moves between workers as one pickle (``distributed``
    serializes a plain list element by element)."""

    __slots__ = ()


class Columns:
    """Rows as two columns: ``keys`` (bytes) and ``values`` (bytes, or None
    for a delete), in any order. Iterates as ``(key, value)`` pairs, so a
    Dask partition, or what :func:`write_partition` is given, may be one
    instead of a list of pairs, and is cheaper all the way: no tuple per
    row to build or for the garbage collector to walk, and it moves between
    workers as a few byte strings (pickling a million tuples costs seconds,
    a memo entry per object; joining the bytes and cutting them apart again,
    one ``struct`` call per 4096 entries of uniform width, costs tenths).
    """

    __slots__ = ("keys", "values")

    def __init__(self, keys: list[bytes], values: list) -> None:
        self.keys = keys if type(keys) is list else list(keys)
        self.values = values if type(values) is list else list(values)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self):
        return zip(self.keys, self.values)

    def __reduce__(self):
        values = self.values
        deletes = None
        if None in values:
            deletes = bytes(v is None for v in values)
            values = [b"" if v is None else v for v in values]
        return _unpack_cols, (len(values), _pack(self.keys), _pack(values), deletes)


def _pack(items: list[bytes]) -> tuple[bytes, int, bytes]:
    """``(blob, width, lengths)``: width >= 0 when every item has that
    length (lengths empty), else -1 and the lengths as u32s."""
    widths = set(map(len, items))
    if len(widths) <= 1:
        return b"".join(items), widths.pop() if widths else 0, b""
    return b"".join(items), -1, array("I", map(len, items)).tobytes()


def _unpack(blob: bytes, width: int, lens: bytes, n: int) -> list[bytes]:
    if width == 0:
        return [b""] * n
    if width > 0:
        out: list[bytes] = []
        step = 4096
        cut = struct.Struct(f"{width}s" * step).unpack_from
        whole = n - n % step
        for off in range(0, whole * width, step * width):
            out += cut(blob, off)
        if whole < n:
            out += struct.Struct(f"{width}s" * (n - whole)).unpack_from(blob, whole * width)
        return out
    offs = list(accumulate(array("I", lens), initial=0))
    return [blob[a:b] for a, b in zip(offs, offs[1:])]


def _unpack_cols(n: int, keys: tuple[bytes, int, bytes], values: tuple[bytes, int, bytes],
                 deletes: bytes | None) -> Columns:
    ks = _unpack(*keys, n)
    vs = _unpack(*values, n)
    if deletes is not None:
        return Columns(ks, [None if d else v for v, d in zip(vs, deletes)])
    return Columns(ks, vs)


def _split(rows, bounds: list[bytes]) -> list[Columns]:
    """The rows of one input partition cut into one run (as columns) per
    range of ``bounds``, in no particular order within a run (the range's
    writer sorts once): a bucket number per key by bisection, then one sort
    of indexes by bucket number."""
    keys, values = _columns(rows)
    if not bounds:
        return _Rows([Columns(keys, values)])
    bucket = array("H", map(partial(bisect_right, bounds), keys))
    order = sorted(range(len(keys)), key=bucket.__getitem__)
    keys = list(map(keys.__getitem__, order))
    values = list(map(values.__getitem__, order))
    counts = [0] * (len(bounds) + 1)
    for b, n in Counter(bucket).items():
        counts[b] = n
    cuts = list(accumulate(counts, initial=0))
    return _Rows(Columns(keys[a:b], values[a:b]) for a, b in zip(cuts, cuts[1:]))


def _gather(*runs: Columns) -> Columns:
    """One range's rows from every input partition, as one run (unsorted)."""
    if len(runs) == 1:
        return runs[0]
    keys: list = []
    values: list = []
    for r in runs:
        keys += r.keys
        values += r.values
    return Columns(keys, values)


def dask_build(db_or_path: DB | str | os.PathLike, data: Any, *, shared_dir: str | os.PathLike,
               npartitions: int | None = None, target_file_bytes: int | None = DEFAULT_TARGET_FILE_BYTES,
               key: str = "key", value: str = "value", move: bool = True, progress: bool = True,
               persist: bool = True, samples_per_partition: int = 1000, block_bytes: int = 4 << 10,
               bloom_bits_per_key: int = 10, compression: str = "none", **open_options: Any) -> list[TableFileInfo]:
    """Build tables from a Dask collection on the cluster and ingest them.

    :param db_or_path: an open :class:`lsm.DB`, or the path of one (opened
        with ``open_options`` and closed again).
    :param data: a ``dask.bag.Bag`` of ``(key, value)`` pairs, or a
        ``dask.dataframe.DataFrame`` with columns ``key`` and ``value``
        (bytes; a value of None writes a delete). Keys must be unique.
    :param shared_dir: a directory every worker and this process can reach
        (the tables are written there, then ingested; with ``move`` they are
        hard-linked into the database when on its filesystem).
    :param npartitions: key ranges to build in parallel (default: the
        input's partition count).
    :param progress: show Dask's progress bar (``distributed.progress``
        under a distributed client, ``dask.diagnostics.ProgressBar``
        otherwise).
    :param persist: keep the input in the workers' memory across the two
        passes (the key sample, then the build) instead of computing it
        twice.

    Steps: sample keys from every partition; cut the key space at the
    sample's quantiles; each input partition cuts its rows into those
    ranges (one run per range, as columns); each range gathers its runs
    from every partition into one partition of a new bag, and
    ``map_partitions`` runs :func:`write_partition` on it (one sort, then
    the tables) on a worker; the client ingests every file in one
    :meth:`DB.ingest`. Returns the files ingested.
    Raises: ImportError without dask; ValueError for a repeated key; what
    ``DB.ingest`` raises. Files written by a failed build are removed.
    """
    try:
        import dask  # noqa: PLC0415 - optional dependency
        import dask.bag as dbag  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("lsm.bulk.dask_build needs dask: pip install 'lsm-tree[dask]'") from e
    if not isinstance(data, dbag.Bag):
        cols = getattr(data, "columns", None)
        if cols is None or key not in cols or value not in cols:
            raise TypeError(f"data must be a dask Bag of (key, value) pairs or a dask DataFrame with columns "
                            f"{key!r} and {value!r}, not {type(data).__name__}")
        for col in (key, value):
            # Dask turns object columns into strings by default (the
            # "dataframe.convert-string" setting), decoding bytes as UTF-8.
            if str(data[col].dtype).startswith("str"):
                raise TypeError(f"column {col!r} holds strings ({data[col].dtype}), not bytes: build the "
                                f"DataFrame under dask.config.set({{'dataframe.convert-string': False}}) "
                                f"so binary columns stay bytes")
        data = data[[key, value]].to_bag(format="tuple")
    client = _client()
    if persist and client is not None:
        data = data.persist()
    nout = npartitions or data.npartitions
    shared = os.path.abspath(os.fspath(shared_dir))
    os.makedirs(shared, exist_ok=True)
    token = "lsm-" + uuid.uuid4().hex[:10]
    sample = data.map_partitions(_sample_keys, samples_per_partition, 0)
    bounds = range_bounds(_compute(sample, client, progress, dask), nout)
    nout = len(bounds) + 1
    delayed = dask.delayed
    # each input partition cut into one run per range...
    splits = [delayed(_split, pure=True)(p, bounds) for p in data.to_delayed()]
    # ... and each range gathers its run from every partition: a bag of ranges
    ranges = dbag.from_delayed([delayed(_gather, pure=True)(*[delayed(_run_of, pure=True)(s, j) for s in splits])
                                for j in range(nout)])
    opts = dict(target_file_bytes=target_file_bytes, block_bytes=block_bytes,
                bloom_bits_per_key=bloom_bits_per_key, compression=compression)
    written = ranges.map_partitions(_write_range, shared, token, opts)
    try:
        infos: list[TableFileInfo] = list(_compute(written, client, progress, dask))
        if infos:
            if isinstance(db_or_path, DB):
                db_or_path.ingest([i.path for i in infos], move=move)
            else:
                with open_db(db_or_path, **open_options) as db:
                    db.ingest([i.path for i in infos], move=move)
    except BaseException:
        fs = OsFileSystem()
        for name in os.listdir(shared):
            if name.startswith(token) or name.startswith("." + token):
                try:
                    fs.remove(os.path.join(shared, name))
                except DiskError:
                    pass
        raise
    return infos


def _run_of(runs: list, j: int) -> list:
    return runs[j]


def _write_range(rows, directory: str, token: str, opts: dict) -> list[TableFileInfo]:
    """One range's map_partitions step: :func:`write_partition` under the
    build's file name prefix (so a failed build can find its files)."""
    return write_partition(rows, directory, prefix=f"{token}-{uuid.uuid4().hex[:8]}", **opts)


def _client():
    """The active dask.distributed client, or None."""
    try:
        from distributed import get_client  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


def _compute(collection, client, progress: bool, dask):
    if client is not None:
        future = client.compute(collection)
        if progress:
            from distributed import progress as show  # noqa: PLC0415
            show(future)
        return future.result()
    if progress:
        from dask.diagnostics import ProgressBar  # noqa: PLC0415
        with ProgressBar():
            return collection.compute()
    return collection.compute()
