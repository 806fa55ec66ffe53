"""The cache workloads: ``lsm.PersistentCache`` vs diskcache vs an in-memory LRU.

A read-through cache in front of a slow source: ``reads`` requests for keys
drawn from YCSB's scrambled zipfian over ``num`` keys. Every cache gets the
same byte budget, ``CACHE_FRACTION`` of the key space's ``key + value`` bytes.

Each request is a read-through ``get``: a hit must return the exact value, a
miss is filled with a ``put``.

- ``cache``: the read-mostly mix of a read-through cache ("zipfian gets with
  misses filled by puts, 90/10"). Keys follow YCSB's ``ZipfianGenerator`` over the ``num``
  keys (rank r has weight 1/r^0.99; ranks are placed on keys by a hash), and
  an untimed warm-up pass of ``reads`` requests runs first, so the timed phase
  sees a cache in steady state: at 100k keys about 86% of requests hit and
  14% are a miss and a put.
- ``cache-cold``: the write-heavy end. Keys follow YCSB's
  ``ScrambledZipfian`` (popularity over 10^10 items hashed onto the keys,
  much flatter), and the cache starts empty: with ``reads == num`` about
  half of the requests miss and ``put``, so the log write of every put
  dominates.

Contenders (each in its own fresh temporary directory):

- ``lsm``: ``lsm.PersistentCache(path, max_bytes=budget, sync_mode="never")``;
  skipped with a note while ``lsm.PersistentCache`` does not exist.
- ``diskcache``: ``diskcache.Cache(path, size_limit=budget,
  eviction_policy="least-recently-used")`` when installed. Its ``size_limit``
  bounds the SQLite file size including page overhead, so at the same budget
  it holds fewer entries; the hit ratio in the report shows the effect.
- ``lru``: a ``collections.OrderedDict`` LRU bounded by the same bytes - the
  in-process floor that any persistent cache pays for.

The timed requests run in ``ROUNDS`` slices with the contenders taking
turns, so that they share the machine's conditions (see :func:`run_cache`).

Reported per contender: ops/s, p50/p99 latency per request, hit ratio.
"""

from __future__ import annotations

import importlib
import random
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lsm_bench.config import BenchConfig
from lsm_bench.context import Result, base_result, empty_verify, verify_failures
from lsm_bench.data import KeySpace, ValueGen
from lsm_bench.engines import dist_version
from lsm_bench.machine import dir_bytes
from lsm_bench.measure import Phase
from lsm_bench.ycsb import ScrambledZipfian, Zipfian, fnv1a64

CACHE_FRACTION = 0.25  # budget = a quarter of the key space: hit ratio well below 1


@dataclass(frozen=True)
class CacheMix:
    """One cache workload: how request keys are drawn and whether the cache is warmed."""

    name: str
    scrambled: bool  # ScrambledZipfian (flat, YCSB's default) rather than Zipfian over num keys
    warm: bool  # an untimed pass of the same distribution before the timed phase


MIXES: dict[str, CacheMix] = {
    "cache": CacheMix("cache", scrambled=False, warm=True),
    "cache-cold": CacheMix("cache-cold", scrambled=True, warm=False),
}


class _HashedZipfian:
    """Zipfian ranks over ``items`` keys, rank r placed on key ``fnv1a64(r) % items``."""

    def __init__(self, items: int, rng: random.Random) -> None:
        self.items = items
        self._zipf = Zipfian(items, rng)

    def next(self) -> int:
        return fnv1a64(self._zipf.next()) % self.items


class CacheLike(Protocol):
    """The subset of the cache API the workload uses."""

    def get(self, key: bytes, default: Any = None) -> Any:
        """Value or ``default``."""

    def close(self) -> None:
        """Release resources."""


class BytesLRU:
    """An ``OrderedDict`` LRU holding at most ``max_bytes`` of key + value bytes.

    >>> c = BytesLRU(10)
    >>> c.put(b"a", b"1234"); c.put(b"b", b"1234"); c.get(b"a") is not None
    True
    >>> c.put(b"c", b"1234"); c.get(b"b") is None   # b was least recently used
    True
    """

    def __init__(self, max_bytes: int) -> None:
        """:param max_bytes: budget for ``len(key) + len(value)`` summed."""
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[bytes, bytes] = OrderedDict()

    def get(self, key: bytes, default: Any = None) -> Any:
        """The value (now most recently used) or ``default``."""
        value = self._data.get(key)
        if value is None:
            return default
        self._data.move_to_end(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        """Insert or replace, evicting least recently used entries over budget."""
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old)
        self._data[key] = value
        self.bytes += len(key) + len(value)
        while self.bytes > self.max_bytes and self._data:
            k, v = self._data.popitem(last=False)
            self.bytes -= len(k) + len(v)

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        """Drop everything."""
        self._data.clear()


def _open_lsm(path: Path, budget: int) -> tuple[Any, Any] | str:
    try:
        lsm = importlib.import_module("lsm")
    except ImportError as exc:
        return f"cannot import lsm: {exc}"
    cls = getattr(lsm, "PersistentCache", None)
    if cls is None:
        return "lsm.PersistentCache does not exist yet"
    cache = cls(str(path), max_bytes=budget, sync_mode="never")
    return cache, cache.put


def _open_diskcache(path: Path, budget: int) -> tuple[Any, Any] | str:
    try:
        diskcache = importlib.import_module("diskcache")
    except ImportError:
        return "diskcache is not installed"
    cache = diskcache.Cache(
        str(path), size_limit=budget, eviction_policy="least-recently-used", statistics=0
    )
    return cache, cache.set


def _open_lru(path: Path, budget: int) -> tuple[Any, Any] | str:
    cache = BytesLRU(budget)
    return cache, cache.put


CONTENDERS = {"lsm": _open_lsm, "diskcache": _open_diskcache, "lru": _open_lru}
DESCRIPTIONS = {
    "lsm": "lsm.PersistentCache(max_bytes=budget, sync_mode='never')",
    "diskcache": "diskcache.Cache(size_limit=budget, eviction_policy='least-recently-used')",
    "lru": "collections.OrderedDict LRU bounded by key+value bytes",
}


def contenders_for(engines: tuple[str, ...]) -> list[str]:
    """``lsm`` and ``diskcache`` if selected as engines, plus ``lru`` always."""
    return [name for name in ("lsm", "diskcache") if name in engines] + ["lru"]


def run_cache(cfg: BenchConfig, keys: KeySpace, values: ValueGen,
              workload: str = "cache") -> list[Result]:
    """Run cache workload ``workload`` (a key of :data:`MIXES`) for each contender;
    a missing one gives a skipped record.

    Every contender is opened and warmed first; then the timed requests run in
    :data:`ROUNDS` slices, the contenders taking turns on each slice (in the
    reverse order every other round), each timing only its own turns. So all
    of them meet the same machine: on a shared, noisy host a contender run
    alone for a third of a second can land in a slow spell that the next one
    misses, which moved the lsm/LRU ratio by +-30% between runs.
    """
    mix = MIXES[workload]
    budget = int(cfg.num * (cfg.key_size + cfg.value_size) * CACHE_FRACTION)
    rng = random.Random(cfg.seed + 99)
    chooser = ScrambledZipfian(cfg.num, rng) if mix.scrambled else _HashedZipfian(cfg.num, rng)
    warmup = [chooser.next() for _ in range(cfg.n_reads)] if mix.warm else []
    requests = [chooser.next() for _ in range(cfg.n_reads)]
    names = contenders_for(cfg.engines)
    results: dict[str, Result] = {}
    racing: list[_Contender] = []
    try:
        for name in names:
            parent = str(cfg.tmpdir) if cfg.tmpdir is not None else None
            path = Path(tempfile.mkdtemp(prefix=f"lsm-bench-cache-{name}-", dir=parent))
            try:
                opened = CONTENDERS[name](path, budget)
                if isinstance(opened, str):
                    results[name] = base_result(mix.name, name, "skipped", opened)
                    shutil.rmtree(path, ignore_errors=True)
                    continue
                c = _Contender(cfg, mix, name, opened[0], opened[1], requests, keys, values, path)
                racing.append(c)
                for k in warmup:
                    if c.cache.get(keys.key(k), None) is None:
                        c.put(keys.key(k), values.value(k))
            except Exception as exc:  # one contender failing must not hide the others
                results[name] = base_result(mix.name, name, "error", f"{type(exc).__name__}: {exc}")
                if racing and racing[-1].name == name:
                    racing.pop().close()
                else:
                    shutil.rmtree(path, ignore_errors=True)
        _race(racing, len(requests), results, mix)
        for c in racing:
            if c.name not in results:
                results[c.name] = c.result(budget)
    finally:
        for c in racing:
            c.close()
    return [results[name] for name in names if name in results]


ROUNDS = 10  # slices of the timed requests; the contenders take turns on each


def _race(racing: list[_Contender], n: int, results: dict[str, Result], mix: CacheMix) -> None:
    """Run requests ``0..n`` on every contender, slice by slice, turn by turn."""
    live = list(racing)
    for c in live:
        c.phase.__enter__()
        c.phase.pause()
    bounds = [n * r // ROUNDS for r in range(ROUNDS + 1)]
    for r in range(ROUNDS):
        lo, hi = bounds[r], bounds[r + 1]
        for c in (live if r % 2 == 0 else live[::-1]):
            c.phase.resume()
            try:
                c.phase.loop(hi - lo, c.op, first=lo)
            except Exception as exc:  # this contender is out; the others go on
                results[c.name] = base_result(mix.name, c.name, "error", f"{type(exc).__name__}: {exc}")
                live = [x for x in live if x is not c]
            finally:
                c.phase.pause()
    for c in racing:
        c.phase.resume()
        c.phase.__exit__(None, None, None)


class _Contender:
    """One cache in the race: its request function, tally and phase."""

    def __init__(
        self, cfg: BenchConfig, mix: CacheMix, name: str, cache: CacheLike, put: Any, requests: list[int],
        keys: KeySpace, values: ValueGen, path: Path,
    ) -> None:
        self.mix, self.name, self.cache, self.put, self.path = mix, name, cache, put, path
        self.tally = tally = {"hits": 0, "misses": 0, "wrong": 0}
        self.phase = Phase(f"{mix.name} [{name}]", len(requests), progress=cfg.progress)
        get, key, value = cache.get, keys.key, values.value

        def op(i: int) -> None:
            k = requests[i]
            kb = key(k)
            got = get(kb, None)
            if got is None:
                tally["misses"] += 1
                put(kb, value(k))
            else:
                tally["hits"] += 1
                if got != value(k):
                    tally["wrong"] += 1

        self.op = op

    def result(self, budget: int) -> Result:
        mix, name, tally = self.mix, self.name, self.tally
        ops = self.phase.done
        res = base_result(mix.name, name, "ok")
        res.update(self.phase.result())
        res["unit"] = "get, put on miss"
        verify = empty_verify()
        verify.update(checked=tally["hits"], wrong=tally["wrong"])
        res["verify"] = verify
        res["disk_bytes"] = dir_bytes(self.path)
        res["extra"] = {
            "hit_ratio": tally["hits"] / ops if ops else None,
            "hits": tally["hits"],
            "puts": tally["misses"],
            "warm": mix.warm,
            "keys": "ScrambledZipfian" if mix.scrambled else "Zipfian",
            "budget_bytes": budget,
            "entries_at_end": _safe_len(self.cache),
            "rounds": ROUNDS,
            "implementation": DESCRIPTIONS[name],
            "version": dist_version("lsm-tree") if name == "lsm" else dist_version(name),
        }
        if verify_failures(verify):
            res["status"] = "failed"
            res["note"] = f"{tally['wrong']} hits returned a wrong value"
        return res

    def close(self) -> None:
        try:
            self.cache.close()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)


def _safe_len(cache: object) -> int | None:
    try:
        return len(cache)  # type: ignore[arg-type]
    except Exception:  # len() is informative only
        return None
