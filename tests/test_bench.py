"""The benchmark harness (``bench/``): every workload at a tiny size on lsm and
sqlite3 with every read checked, the quick mode end to end, the report files,
and graceful degradation without the optional packages.

The harness itself is never collected by pytest (``testpaths = ["tests"]`` and
no ``test_*.py`` under ``bench/``); this file is how it is tested.
"""

from __future__ import annotations

import doctest
import importlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lsm_bench import cachebench, compare, comparereport, plots, progress
from lsm_bench.__main__ import (
    build_compare_parser,
    build_parser,
    compare_config_from_args,
    config_from_args,
    main,
)
from lsm_bench.config import BenchConfig, parse_opt, parse_opts, parse_value
from lsm_bench.context import verify_failures
from lsm_bench.data import KeySpace, ValueGen, cycle_permutation
from lsm_bench.engines import LsmEngine, SqliteEngine
from lsm_bench.measure import Phase, sample_every, shape_point, summarize_latency
from lsm_bench.report import ratios, render_markdown, write_report
from lsm_bench.runner import ALL_WORKLOADS, ENGINES, WORKLOADS, expand_workloads, run, run_one
from lsm_bench.ycsb import INSERT, READ, SCAN, Operations, ScrambledZipfian

REPO = Path(__file__).resolve().parent.parent
LSM_READY = LsmEngine.unavailable_reason() is None
needs_lsm = pytest.mark.skipif(not LSM_READY, reason=f"lsm engine: {LsmEngine.unavailable_reason()}")
CORE_ENGINES = ["sqlite3", pytest.param("lsm", marks=needs_lsm)]
TINY = 200
SYNC_OPS = 48
BENCH_MODULES = [
    "lsm_bench", "lsm_bench.config", "lsm_bench.data", "lsm_bench.engines", "lsm_bench.peers", "lsm_bench.measure",
    "lsm_bench.progress", "lsm_bench.context", "lsm_bench.workloads", "lsm_bench.ycsb", "lsm_bench.cachebench",
    "lsm_bench.runner", "lsm_bench.machine", "lsm_bench.report", "lsm_bench.plots", "lsm_bench.__main__",
    "lsm_bench.compare", "lsm_bench.comparereport", "lsm_bench.scale", "lsm_bench.scalereport",
]


def tiny_config(tmp_path: Path, **overrides: Any) -> BenchConfig:
    settings: dict[str, Any] = dict(
        num=TINY, engines=("sqlite3",), workloads=("fillseq",), out=tmp_path / "out",
        tmpdir=tmp_path, progress="off", plots=False, sync_ops=SYNC_OPS,
    )
    settings.update(overrides)
    return BenchConfig(**settings)


def leftover_databases(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("lsm-bench-*"))


# -- every workload on lsm and sqlite3, every read checked ----------------------

EXPECTED_CHECKS = {  # workload -> reads checked at num=200 (every key written is read back)
    "fillseq": TINY, "fillrandom": TINY, "overwrite": TINY, "fillbatch": TINY,
    "readrandom": TINY, "readmissing": TINY, "readseq": TINY, "seekrandom": TINY,
    "deleterandom": TINY, "readwhilewriting": TINY, "scanprefix": TINY // 100,
}


@pytest.mark.parametrize("engine", CORE_ENGINES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_runs_and_reads_back_everything(tmp_path: Path, engine: str, workload: str) -> None:
    cfg = tiny_config(tmp_path)
    records = run_one(WORKLOADS[workload], ENGINES[engine], cfg, KeySpace(16), ValueGen(100))
    assert records, "a workload returns at least one record"
    for rec in records:
        assert rec["status"] == "ok", rec.get("traceback") or rec
        assert rec["engine"] == engine
        assert rec["ops_per_sec"] > 0 and rec["seconds"] > 0
        lat = rec["latency"]
        assert 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
        assert lat["samples"] >= 1
        assert rec["timeline"][0] == [0.0, 0] and rec["timeline"][-1][1] == rec["ops"]
        assert verify_failures(rec["verify"]) == 0
        json.dumps(rec)  # every figure is JSON-serialisable
    if workload == "fillsync":
        assert [r["workload"] for r in records] == ["fillsync-1t", "fillsync-4t", "fillsync-16t"]
        for rec in records:
            assert rec["ops"] == SYNC_OPS and rec["verify"]["checked"] == SYNC_OPS
            assert rec["engine_settings"]["sync"] is True
    elif workload == "rangedel":
        assert [r["workload"] for r in records] == ["rangedel-write", "rangedel-get", "rangedel-scan",
                                                    "rangedel-get-settled"]
        assert records[0]["ops"] == TINY // 100  # one range deletion per group of 100 keys
        for rec in records[1:]:
            assert rec["verify"]["checked"] == (TINY // 100 if rec["workload"] == "rangedel-scan" else TINY)
        assert records[2]["extra"]["entries_read"] == TINY - 10 * (TINY // 100)  # 90 of each 100
    elif workload.startswith("ycsb-"):
        (rec,) = records
        assert rec["ops"] == TINY
        assert rec["verify"]["checked"] > 0
        assert sum(rec["extra"]["operations"].values()) == TINY
    else:
        (rec,) = records
        assert rec["verify"]["checked"] == EXPECTED_CHECKS[workload]
        assert rec["ops"] == (TINY // 100 if workload == "scanprefix" else TINY)
        assert rec["engine_settings"]["sync"] is False
    if workload == "scanprefix":
        assert records[0]["extra"]["entries_read"] == TINY  # both groups, every key once
    assert leftover_databases(tmp_path) == [], "temporary databases are removed"


@needs_lsm
def test_lsm_compaction_workload_samples_shape(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, engines=("lsm",), engine_options={"lsm": {"memtable_bytes": 4096}})
    (rec,) = run_one(WORKLOADS["fillrandom"], ENGINES["lsm"], cfg, KeySpace(16), ValueGen(100))
    assert rec["status"] == "ok"
    assert rec["engine_settings"]["open_options"]["memtable_bytes"] == 4096
    assert rec["engine_settings"]["open_options"]["sync_mode"] == "never"
    assert len(rec["shape"]) >= 2
    assert all("level_bytes" in p and "t" in p for p in rec["shape"])
    assert isinstance(rec["engine_stats"], dict)


class CorruptingSqlite(SqliteEngine):
    """Returns a wrong value for every 10th key: the harness must notice."""

    name = "sqlite3"

    def get(self, key: bytes) -> bytes | None:
        value = super().get(key)
        if value is not None and key.endswith(b"0"):
            return value[::-1]
        return value


def test_wrong_reads_fail_loudly(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    (rec,) = run_one(WORKLOADS["readrandom"], CorruptingSqlite, cfg, KeySpace(16), ValueGen(100))
    assert rec["status"] == "failed"
    assert rec["verify"]["wrong"] == TINY // 10
    assert "wrong" in rec["note"]


def test_failed_run_exits_nonzero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "sqlite3", CorruptingSqlite)
    out = tmp_path / "out"
    code = main(["--num", "200", "--engines", "sqlite3", "--workloads", "readrandom",
                 "--out", str(out), "--tmpdir", str(tmp_path), "--progress", "off", "--no-plots"])
    assert code == 1
    assert "FAILED" in (out / "results.md").read_text()


def test_engine_error_is_recorded_not_raised(tmp_path: Path) -> None:
    class Exploding(SqliteEngine):
        def get(self, key: bytes) -> bytes | None:
            raise RuntimeError("boom")

    (rec,) = run_one(WORKLOADS["readrandom"], Exploding, tiny_config(tmp_path), KeySpace(16),
                     ValueGen(100))
    assert rec["status"] == "error" and "boom" in rec["note"]
    assert leftover_databases(tmp_path) == []


def test_missing_primitive_is_skipped(tmp_path: Path) -> None:
    class NoSeek(SqliteEngine):
        features = frozenset({"iterate"})

    (rec,) = run_one(WORKLOADS["seekrandom"], NoSeek, tiny_config(tmp_path), KeySpace(16),
                     ValueGen(100))
    assert rec["status"] == "skipped" and "seek" in rec["note"]


# -- quick mode end to end ------------------------------------------------------------


def _quick(tmp_path: Path, engines: str, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "out"
    code = main(["--quick", "--engines", engines, "--out", str(out), "--tmpdir", str(tmp_path),
                 "--progress", "off", *extra])
    return code, out


def _check_report(out: Path, engines: list[str]) -> dict[str, Any]:
    md = (out / "results.md").read_text()
    data = json.loads((out / "results.json").read_text())
    for name in engines:
        assert name in md.splitlines()[md.splitlines().index("## Throughput (operations/s, "
                                                             "higher is better)") + 2]
    machine = data["machine"]
    for field in ("cpu_count", "platform", "python", "date_utc"):
        assert machine[field]
    assert "sqlite3" in data["engines"] and data["packages"]
    assert data["config"]["quick"] is True
    ok = [r for r in data["results"] if r["status"] == "ok"]
    assert {r["workload"] for r in ok} >= {"fillseq", "readrandom", "ycsb-a", "fillsync-16t"}
    assert not [r for r in data["results"] if r["status"] in ("failed", "error")]
    assert isinstance(data, dict)
    return data


def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    engines = ["lsm", "sqlite3"] if LSM_READY else ["sqlite3"]
    code, out = _quick(tmp_path, ",".join(engines))
    assert code == 0
    data = _check_report(out, engines)
    assert data["config"]["num"] == 2000
    if LSM_READY:
        assert data["ratios"]["readrandom"]["sqlite3"]["throughput"] > 0
        assert "## lsm relative to each peer" in (out / "results.md").read_text()
    if plots.matplotlib_available():
        assert (out / "plots" / "throughput.png").stat().st_size > 0
        assert (out / "plots" / "summary.png").exists()
    assert leftover_databases(tmp_path) == []


@pytest.mark.slow
def test_quick_mode_all_installed_engines(tmp_path: Path) -> None:
    code, out = _quick(tmp_path, "all")
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert not [r for r in data["results"] if r["status"] in ("failed", "error")]


def test_quick_mode_without_optional_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plots, "matplotlib_available", lambda: False)
    monkeypatch.setattr("lsm_bench.__main__.matplotlib_available", lambda: False)
    monkeypatch.setattr(progress, "tqdm_available", lambda: False)
    code, out = _quick(tmp_path, "sqlite3", "--workloads", "fillseq,readrandom,cache")
    assert code == 0
    assert not (out / "plots").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert plots.write_plots({"results": []}, out / "plots") == []


# -- pieces -----------------------------------------------------------------------------


def test_cache_workload_skips_without_persistent_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lsm = importlib.import_module("lsm")
    monkeypatch.delattr(lsm, "PersistentCache", raising=False)
    cfg = tiny_config(tmp_path, engines=("lsm", "sqlite3"), workloads=("cache",))
    recs = {r["engine"]: r for r in cachebench.run_cache(cfg, KeySpace(16), ValueGen(100))}
    assert recs["lsm"]["status"] == "skipped"
    assert "PersistentCache" in recs["lsm"]["note"]
    assert recs["lru"]["status"] == "ok"
    assert 0 < recs["lru"]["extra"]["hit_ratio"] < 1


def test_cache_workload_uses_persistent_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeCache(cachebench.BytesLRU):
        def __init__(self, path: str, *, max_bytes: int, sync_mode: str) -> None:
            super().__init__(max_bytes)
            seen.update(path=path, max_bytes=max_bytes, sync_mode=sync_mode)

    lsm = importlib.import_module("lsm")
    monkeypatch.setattr(lsm, "PersistentCache", FakeCache, raising=False)
    cfg = tiny_config(tmp_path, engines=("lsm",), workloads=("cache",))
    recs = {r["engine"]: r for r in cachebench.run_cache(cfg, KeySpace(16), ValueGen(100))}
    assert recs["lsm"]["status"] == "ok"
    assert recs["lsm"]["extra"]["hit_ratio"] == recs["lru"]["extra"]["hit_ratio"]
    assert seen["sync_mode"] == "never" and seen["max_bytes"] == int(TINY * 116 * 0.25)


def test_cache_mixes_warm_and_cold(tmp_path: Path) -> None:
    # cache: warm-up first, zipfian over the key space -> read-mostly;
    # cache-cold: empty cache, flatter scrambled zipfian -> about half the requests put.
    cfg = tiny_config(tmp_path, engines=("sqlite3",), workloads=("cache", "cache-cold"))
    warm = cachebench.run_cache(cfg, KeySpace(16), ValueGen(100), "cache")
    cold = cachebench.run_cache(cfg, KeySpace(16), ValueGen(100), "cache-cold")
    assert [r["workload"] for r in warm] == ["cache"] and [r["workload"] for r in cold] == ["cache-cold"]
    w, c = warm[0]["extra"], cold[0]["extra"]
    assert w["warm"] and not c["warm"]
    assert w["hit_ratio"] > c["hit_ratio"]
    for rec in warm + cold:
        ex = rec["extra"]
        assert ex["hits"] + ex["puts"] == rec["ops"] and rec["verify"]["wrong"] == 0


def test_cache_contenders_take_turns_on_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Timed requests are run slice by slice, the contenders alternating, so
    # a slow spell of the machine hits all of them alike.
    calls: list[str] = []

    class LoggedLsm(cachebench.BytesLRU):
        def __init__(self, path: str, *, max_bytes: int, sync_mode: str) -> None:
            super().__init__(max_bytes)

        def get(self, key: bytes, default: Any = None) -> Any:
            calls.append("lsm")
            return super().get(key, default)

    class LoggedLru(cachebench.BytesLRU):
        def get(self, key: bytes, default: Any = None) -> Any:
            calls.append("lru")
            return super().get(key, default)

    monkeypatch.setattr(importlib.import_module("lsm"), "PersistentCache", LoggedLsm, raising=False)
    monkeypatch.setattr(cachebench, "BytesLRU", LoggedLru)
    cfg = tiny_config(tmp_path, engines=("lsm",), workloads=("cache",))
    recs = {r["engine"]: r for r in cachebench.run_cache(cfg, KeySpace(16), ValueGen(100))}
    timed = calls[2 * cfg.n_reads:]  # after both warm-ups
    switches = sum(1 for a, b in zip(timed, timed[1:]) if a != b)
    # lsm lru | lru lsm | lsm lru ...: one switch inside each round, none between
    assert len(timed) == 2 * cfg.n_reads and switches == cachebench.ROUNDS
    for rec in recs.values():
        assert rec["status"] == "ok" and rec["ops"] == cfg.n_reads and rec["extra"]["rounds"] == cachebench.ROUNDS
    assert recs["lsm"]["extra"]["hit_ratio"] == recs["lru"]["extra"]["hit_ratio"]
    assert not leftover_databases(tmp_path)


def test_cache_contender_failing_mid_race_is_reported_and_the_others_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Breaks(cachebench.BytesLRU):
        def __init__(self, path: str, *, max_bytes: int, sync_mode: str) -> None:
            super().__init__(max_bytes)
            self.gets = 0

        def get(self, key: bytes, default: Any = None) -> Any:
            self.gets += 1
            if self.gets > TINY + 10:  # after the warm-up, in the first slice
                raise OSError("disk on fire")
            return super().get(key, default)

    monkeypatch.setattr(importlib.import_module("lsm"), "PersistentCache", Breaks, raising=False)
    cfg = tiny_config(tmp_path, engines=("lsm",), workloads=("cache",))
    recs = {r["engine"]: r for r in cachebench.run_cache(cfg, KeySpace(16), ValueGen(100))}
    assert recs["lsm"]["status"] == "error" and "disk on fire" in recs["lsm"]["note"]
    assert recs["lru"]["status"] == "ok" and recs["lru"]["ops"] == cfg.n_reads
    assert not leftover_databases(tmp_path)


def test_phase_pause_does_not_time_the_gap() -> None:
    phase = Phase("x", 10)
    with phase:
        phase.loop(5, lambda i: None)
        phase.pause()
        time.sleep(0.05)
        phase.resume()
        phase.loop(5, lambda i: None, first=5)
    assert phase.done == 10 and phase.seconds < 0.04


def test_bytes_lru_evicts_by_bytes() -> None:
    c = cachebench.BytesLRU(30)
    for i in range(10):
        c.put(b"k%d" % i, b"v" * 8)
    assert c.bytes <= 30 and len(c) == 3
    assert c.get(b"k9") is not None and c.get(b"k0") is None


def test_parse_options() -> None:
    assert parse_value("65536") == 65536 and parse_value("1e3") == 1000.0
    assert parse_value("0x10") == 16 and parse_value("zstd") == "zstd"
    assert parse_value("true") is True and parse_value("OFF") == "OFF"
    assert parse_opt("memtable_bytes=1_048_576") == ("lsm", "memtable_bytes", 1 << 20)
    assert parse_opt("rocksdict:max_background_jobs=2") == ("rocksdict", "max_background_jobs", 2)
    assert parse_opts(["a=1", "sqlite3:b=x", "a=2"]) == {"lsm": {"a": 2}, "sqlite3": {"b": "x"}}
    with pytest.raises(ValueError):
        parse_opt("novalue")


def test_cli_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--quick", "--workloads", "ycsb,fillseq", "--engines", "sqlite3",
         "--opt", "sqlite3:synchronous=OFF", "--sync-threads", "1,2"]
    )
    cfg = config_from_args(args)
    assert cfg.num == 2000 and cfg.quick
    assert cfg.workloads == tuple(f"ycsb-{m}" for m in "abcdef") + ("fillseq",)
    assert cfg.engine_options == {"sqlite3": {"synchronous": "OFF"}}
    assert cfg.sync_threads == (1, 2)
    assert expand_workloads(["all"]) == tuple(w for w in ALL_WORKLOADS if w != "bulkload")  # opt-in
    with pytest.raises(ValueError):
        expand_workloads(["nosuch"])
    with pytest.raises(SystemExit):
        main(["--engines", "nosuch", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="key_size"):
        BenchConfig(num=10**6, key_size=4)


def test_option_passthrough_reaches_sqlite(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, engine_options={"sqlite3": {"synchronous": "OFF", "txn_ops": 50}})
    (rec,) = run_one(WORKLOADS["fillrandom"], ENGINES["sqlite3"], cfg, KeySpace(16), ValueGen(100))
    assert rec["status"] == "ok"
    assert rec["engine_settings"]["pragmas"]["synchronous"] == "OFF"
    assert rec["engine_settings"]["txn_ops"] == 50


def test_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    text = capsys.readouterr().out
    for name in ("fillseq", "ycsb-e", "cache", "sqlite3", "lsm"):
        assert name in text


def test_keys_and_values() -> None:
    ks = KeySpace(16)
    assert ks.key(7) == b"0000000000000007" and len(ks.key(10**15)) == 16
    assert ks.key(1) < ks.missing(1) < ks.key(2)
    assert all(k.startswith(ks.prefix_of_group(3)) for k in map(ks.key, range(300, 400)))
    vg = ValueGen(100)
    assert len({vg.value(i) for i in range(1000)}) == 1000
    assert sorted(cycle_permutation(50, 120, 1)[:50]) == list(range(50))


def test_latency_summary_and_sampling() -> None:
    assert sample_every(100_000) == 1 and sample_every(1_000_000) == 10
    s = summarize_latency(list(range(1000, 101000, 1000)), 1)
    assert s["p50_us"] == 50.0 and s["p99_us"] == 99.0 and s["max_us"] == 100.0
    assert sum(s["histogram_log2_ns"]["count"]) == 100
    phase = Phase("x", 1000)
    with phase:
        phase.loop(1000, lambda i: None)
    res = phase.result()
    assert res["ops"] == 1000 and res["latency"]["samples"] == 1000
    assert len(res["timeline"]) == 101


def test_shape_point_is_defensive() -> None:
    assert shape_point(None) is None
    empty = shape_point({})
    assert empty is not None and empty["l0_files"] is None
    point = shape_point({"levels": [{"bytes": 5, "files": 3}, "junk", {"files": [{}]}],
                         "compaction": {"write_amplification": 2.5}})
    assert point is not None
    assert point["level_bytes"] == [5, 0] and point["l0_files"] == 3
    assert point["write_amplification"] == 2.5 and point["stall_seconds"] is None


def test_ycsb_generators() -> None:
    import random

    z = ScrambledZipfian(1000, random.Random(5))
    draws = [z.next() for _ in range(20000)]
    assert min(draws) >= 0 and max(draws) < 1000
    top = max(draws.count(k) for k in set(draws))
    assert top > 20000 / 1000 * 10, "zipfian: the hottest key is far above uniform"
    ops = Operations("e", 1000, 2000, seed=3)
    counts = ops.counts()
    assert set(counts) == {"scan", "insert"} and 40 < counts["insert"] < 200
    assert ops.total_keys == 1000 + counts["insert"]
    d = Operations("d", 1000, 2000, seed=3)
    reads = [k for c, k in zip(d.kinds, d.keys) if c == READ]
    assert sum(k >= 900 for k in reads) > len(reads) / 2, "latest: reads favour recent keys"
    assert all(c in (READ, INSERT, SCAN) for c in d.kinds)


def test_report_renders_missing_and_skipped_cells() -> None:
    report = {
        "config": {"num": 1}, "machine": {}, "engines": {}, "total_seconds": 0.0,
        "results": [
            {"workload": "fillseq", "engine": "lsm", "status": "ok", "ops_per_sec": 10.0,
             "latency": {"p50_us": 1.0, "p99_us": 2.0}, "unit": "put"},
            {"workload": "fillseq", "engine": "sqlite3", "status": "ok", "ops_per_sec": 5.0,
             "latency": {"p50_us": 2.0, "p99_us": 8.0}, "unit": "put"},
            {"workload": "seekrandom", "engine": "sqlite3", "status": "skipped", "note": "why"},
        ],
    }
    r = ratios(report)
    assert r["fillseq"]["sqlite3"] == {"throughput": 2.0, "p50": 0.5, "p99": 0.25}
    md = render_markdown(report)
    assert "| fillseq | put | 10 | 5 |" in md
    assert "seekrandom / sqlite3: skipped: why" in md


def test_write_report_files(tmp_path: Path) -> None:
    report = run(tiny_config(tmp_path, workloads=("fillseq", "readrandom")), log=lambda _m: None)
    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert [r["workload"] for r in data["results"]] == ["fillseq", "readrandom"]
    assert data["machine"]["cpu_count"] and data["machine"]["python"]
    assert "ratios" in data and paths["markdown"].read_text().startswith("# lsm-bench results")


def test_line_progress_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "tqdm_available", lambda: False)
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)
    monkeypatch.setattr(progress, "REFRESH_SECONDS", 0.0)
    assert isinstance(progress.make_progress("off", "x", 10), progress.NullProgress)
    assert isinstance(progress.make_progress("on", "x", 10), progress.LineProgress)
    stream = io.StringIO()
    bar = progress.LineProgress("fillseq [lsm]", 10, stream)
    bar.update(5)
    bar.close()
    assert "fillseq [lsm]  5/10" in stream.getvalue() and stream.getvalue().endswith("\n")


@pytest.mark.parametrize("module", BENCH_MODULES)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_bench_is_never_collected_by_pytest() -> None:
    bench_dir = REPO / "bench"
    stray = [p.name for d in (bench_dir, REPO / "lsm_bench") for p in d.rglob("*.py")
             if p.name.startswith("test_") or p.name.endswith("_test.py")]
    assert stray == []
    assert (bench_dir / "RESULTS.md").exists()
    assert "python -m bench" in (bench_dir / "RESULTS.md").read_text()


@pytest.mark.parametrize("module", ["bench", "lsm_bench"])
def test_python_m_bench_entry_point(module: str) -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "--quick" in out.stdout and "--opt" in out.stdout


def test_the_wheel_installs_no_top_level_bench_package() -> None:
    """``bench`` is a common name: the installed harness is ``lsm_bench``, and
    ``bench/`` (results and the ``python -m bench`` shim) stays in the checkout."""
    text = (REPO / "pyproject.toml").read_text()
    assert '"lsm_bench"' in text and '"bench"' not in text
    assert 'lsm-bench = "lsm_bench.__main__:main"' in text



# -- lsm-bench compare: same process, interleaved rounds ---------------------------------

COMPARE_OPS = ["--ops", "get=300", "--ops", "miss=300", "--ops", "scan100=10", "--ops",
               "readseq=300", "--ops", "seek10=100", "--ops", "mget100=300", "--ops", "warm=100"]


def tiny_compare(tmp_path: Path, engines: tuple[str, ...] = ("lsm", "sqlite3"),
                 **overrides: Any) -> compare.CompareConfig:
    settings: dict[str, Any] = dict(
        num=2000, rounds=2, engines=engines, workloads=compare.expand_workloads(["all"]),
        ops={"get": 300, "miss": 300, "scan100": 10, "readseq": 300, "seek10": 100, "mget100": 300,
             "warm": 100},
        out=tmp_path / "out", tmpdir=tmp_path, progress="off", plots=False,
        collect_garbage=False,  # a full collection of pytest's heap costs ~0.1 s per loop
    )
    settings.update(overrides)
    return compare.CompareConfig(**settings)


@needs_lsm
def test_multi_getter_is_the_store_s_own_or_a_loop(tmp_path: Path) -> None:
    """lsm's adapter hands out ``DB.multi_get``; a store without one gets a loop of
    its get, answering in the keys' order with None for absent keys."""
    (tmp_path / "l").mkdir()
    (tmp_path / "s").mkdir()
    lsm_db = LsmEngine(tmp_path / "l", sync=False, options={})
    sql = SqliteEngine(tmp_path / "s", sync=False, options={})
    try:
        for db in (lsm_db, sql):
            db.put(b"a", b"1")
            db.put(b"c", b"3")
            assert db.multi_getter()([b"c", b"b", b"a", b"c"]) == [b"3", None, b"1", b"3"]
        assert lsm_db.multi_getter() == lsm_db.db.multi_get
    finally:
        lsm_db.close()
        sql.close()


@needs_lsm
def test_compare_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["compare", "--num", "2000", "--rounds", "2", "--engines", "lsm,sqlite3",
                 *COMPARE_OPS, "--out", str(out), "--tmpdir", str(tmp_path), "--progress", "off"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["mode"] == "compare" and data["config"]["rounds"] == 2
    assert data["machine"]["cpu_count"] and data["machine"]["lsm_code_commit"] is not None
    assert data["config"]["effective_options"]["sqlite3"]["synchronous"] == "OFF"
    workloads = list(compare.WORKLOADS)
    assert data["config"]["workloads"] == workloads
    # every workload ran once per round on each engine, and every read was checked
    for wl in workloads:
        for eng in ("lsm", "sqlite3"):
            runs = [r for r in data["runs"] if r["workload"] == wl and r["engine"] == eng]
            assert sorted(r["round"] for r in runs) == [0, 1], (wl, eng)
            for r in runs:
                assert r["status"] == "ok", r
                assert r["cpu_seconds"] > 0 and r["wall_seconds"] > 0
                assert r["verify"]["checked"] > 0 and verify_failures(r["verify"]) == 0
    summary = {(r["workload"], r["engine"]): r for r in data["results"]}
    assert summary[("get", "lsm")]["verify"]["checked"] == 2 * 300
    assert summary[("scan100", "sqlite3")]["verify"]["checked"] == 2 * 10 * 100
    assert summary[("seek10", "lsm")]["verify"]["checked"] == 2 * 100 * 10
    assert summary[("mget100", "lsm")]["verify"]["checked"] == 2 * 300  # the get keys, 3 calls each
    assert {r["calls"] for r in data["runs"] if r["workload"] == "mget100"} == {3}
    assert summary[("put", "lsm")]["verify"]["checked"] == 2 * 2000  # reopened and scanned
    put = next(r for r in data["runs"] if r["workload"] == "put" and r["engine"] == "lsm")
    assert put["quiesce_seconds"] >= 0 and put["process_cpu_seconds"] > 0 and put["disk_bytes"] > 0
    fill = next(r for r in data["runs"] if r["workload"] == "fillrandom+quiesce"
                and r["engine"] == "lsm" and r["round"] == put["round"])
    assert fill["wall_seconds"] == pytest.approx(put["wall_seconds"] + put["quiesce_seconds"])
    for eng in ("lsm", "sqlite3"):
        db = data["databases"][eng]
        assert db["entries"] == 2000 and db["disk_bytes"] > 0 and db["load_seconds"] > 0
        assert db["warm"]["gets"] == 100 and verify_failures(db["warm"]["verify"]) == 0
    # ratios are lsm / peer within each round: the peer's time per op over lsm's
    for wl in workloads:
        r = data["ratios"][wl]["sqlite3"]
        assert [p["round"] for p in r["per_round"]] == [0, 1]
        for p in r["per_round"]:
            mine = next(x for x in data["runs"] if x["workload"] == wl and x["engine"] == "lsm"
                        and x["round"] == p["round"])
            theirs = next(x for x in data["runs"] if x["workload"] == wl
                          and x["engine"] == "sqlite3" and x["round"] == p["round"])
            assert p["cpu"] == pytest.approx(theirs["us_per_op_cpu"] / mine["us_per_op_cpu"])
            assert p["wall"] == pytest.approx(theirs["us_per_op_wall"] / mine["us_per_op_wall"])
        cpus = [p["cpu"] for p in r["per_round"]]
        assert r["cpu"]["min"] == min(cpus) and r["cpu"]["max"] == max(cpus)
    md = (out / "results.md").read_text()
    assert md.startswith("# lsm-bench compare") and md.strip() in capsys.readouterr().out
    header = "| workload | one op | lsm ops/s (us/op) | sqlite3 ops/s (us/op) | lsm/sqlite3 cpu |"
    assert header in md
    for wl in workloads:
        assert f"| {wl} |" in md
    assert "FAILED" not in md and "## Every round" in md and "## Read databases" in md
    if plots.matplotlib_available():
        assert (out / "plots" / "compare.png").stat().st_size > 0
    assert leftover_databases(tmp_path) == []


def test_compare_engine_order_shuffled_per_round(tmp_path: Path) -> None:
    cfg = tiny_compare(tmp_path, engines=("sqlite3", "sqlite3-b", "sqlite3-c"), rounds=4,
                       workloads=("get", "put"), num=400)

    class B(SqliteEngine):
        name = "sqlite3-b"

    class C(SqliteEngine):
        name = "sqlite3-c"

    classes = {"sqlite3": SqliteEngine, "sqlite3-b": B, "sqlite3-c": C}
    report = compare.run_compare(cfg, log=lambda _m: None, classes=classes)
    for wl in ("get", "put"):
        orders = []
        for rnd in range(4):
            runs = sorted((r for r in report["runs"] if r["workload"] == wl and r["round"] == rnd),
                          key=lambda r: r["order"])
            orders.append(tuple(r["engine"] for r in runs))
        assert all(sorted(o) == sorted(classes) for o in orders)
        assert len(set(orders)) > 1, "the engine order changes between rounds"
        for pos in range(3):  # the first three rounds put every engine in every position
            assert sorted(o[pos] for o in orders[:3]) == sorted(classes)
    again = compare.run_compare(cfg, log=lambda _m: None, classes=classes)
    assert [(r["workload"], r["round"], r["order"], r["engine"]) for r in again["runs"]] == [
        (r["workload"], r["round"], r["order"], r["engine"]) for r in report["runs"]], "seeded"
    assert report["ratios"] == {}  # no lsm: no baseline
    assert leftover_databases(tmp_path) == []


class WrongSqlite(SqliteEngine):
    """Reads return a wrong value for every 10th key; batches lose their last pair."""

    name = "sqlite3"

    def getter(self) -> Any:
        get = super().getter()

        def wrong(key: bytes) -> bytes | None:
            value = get(key)
            return value[::-1] if value is not None and key.endswith(b"0") else value

        return wrong

    def put_batch(self, pairs: Any) -> None:
        super().put_batch(pairs[:-1])


def test_compare_wrong_values_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_compare(tmp_path, engines=("sqlite3",), rounds=2, num=1000,
                       workloads=("get", "miss", "scan100", "put", "batch100"))
    report = compare.run_compare(cfg, log=lambda _m: None, classes={"sqlite3": WrongSqlite})
    summary = {r["workload"]: r for r in report["results"]}
    assert summary["get"]["status"] == "failed" and "wrong" in summary["get"]["note"]
    assert 0 < summary["get"]["verify"]["wrong"] < summary["get"]["verify"]["checked"]
    assert summary["miss"]["status"] == "ok" and summary["scan100"]["status"] == "ok"
    assert summary["put"]["status"] == "ok"
    assert summary["batch100"]["status"] == "failed"
    assert summary["batch100"]["verify"]["missing"] > 0
    assert all(r["status"] == "failed" for r in report["runs"] if r["workload"] == "get")
    bad = comparereport.failures(report)
    assert {(r["workload"], r["status"]) for r in bad} >= {("get", "failed"), ("batch100", "failed"),
                                                           ("warm-up", "failed")}
    md = comparereport.render_markdown(report)
    assert "FAILED" in md and "get / sqlite3: failed" in md
    # through the command line: exit status 1
    monkeypatch.setitem(ENGINES, "sqlite3", WrongSqlite)
    out = tmp_path / "cli"
    code = main(["compare", "--num", "500", "--rounds", "1", "--engines", "sqlite3",
                 "--workloads", "get", *COMPARE_OPS, "--out", str(out), "--tmpdir", str(tmp_path),
                 "--progress", "off", "--no-plots"])
    assert code == 1 and "FAILED" in (out / "results.md").read_text()
    assert leftover_databases(tmp_path) == []


def test_compare_engine_error_and_missing_primitive(tmp_path: Path) -> None:
    class SeekBreaks(SqliteEngine):
        def seek_next(self, key: bytes, n: int) -> list[tuple[bytes, bytes]]:
            raise RuntimeError("boom")

    class NoSeek(SqliteEngine):
        name = "noseek"
        features = frozenset({"iterate"})

    cfg = tiny_compare(tmp_path, engines=("sqlite3", "noseek"), num=500,
                       workloads=("get", "scan100", "seek10"))
    report = compare.run_compare(cfg, log=lambda _m: None,
                                 classes={"sqlite3": SeekBreaks, "noseek": NoSeek})
    summary = {(r["workload"], r["engine"]): r for r in report["results"]}
    assert summary[("seek10", "sqlite3")]["status"] == "error"
    assert "boom" in summary[("seek10", "sqlite3")]["note"]
    assert len([r for r in report["runs"] if r["workload"] == "seek10"
                and r["engine"] == "sqlite3"]) == 1, "an engine that raised leaves the workload"
    assert summary[("get", "sqlite3")]["status"] == "ok"
    assert summary[("scan100", "noseek")]["status"] == "skipped"
    assert "seek" in summary[("scan100", "noseek")]["note"]
    assert summary[("get", "noseek")]["status"] == "ok"
    assert leftover_databases(tmp_path) == []


@pytest.mark.skipif(importlib.util.find_spec("plyvel") is None,
                    reason="plyvel is not installed (pip install plyvel)")
@needs_lsm
def test_compare_with_plyvel(tmp_path: Path) -> None:
    cfg = tiny_compare(tmp_path, engines=("lsm", "plyvel"), num=1000)
    report = compare.run_compare(cfg, log=lambda _m: None)
    assert all(r["status"] == "ok" for r in report["results"]), report["results"]
    assert set(report["ratios"]) == set(compare.WORKLOADS)
    assert report["databases"]["plyvel"]["disk_bytes"] > 0
    assert leftover_databases(tmp_path) == []


def test_compare_ratios_and_summaries_per_round() -> None:
    def run(wl: str, eng: str, rnd: int, us: float) -> dict[str, Any]:
        return compare.run_record(wl, eng, rnd, 1000, us * 1000 / 1e6, 2 * us * 1000 / 1e6,
                                  {"checked": 1000, "missing": 0, "wrong": 0, "unexpected": 0})

    runs = [run("get", "lsm", 0, 10.0), run("get", "peer", 0, 5.0),
            run("get", "lsm", 1, 8.0), run("get", "peer", 1, 6.0),
            run("get", "lsm", 2, 12.0), run("get", "peer", 2, 3.0),
            run("get", "peer", 3, 1.0)]  # no lsm in round 3: no ratio
    r = compare.ratios(runs, ["lsm", "peer"], ("get",))["get"]["peer"]
    assert [p["round"] for p in r["per_round"]] == [0, 1, 2]
    assert [p["cpu"] for p in r["per_round"]] == pytest.approx([0.5, 0.75, 0.25])
    assert r["cpu"] == pytest.approx({"median": 0.5, "min": 0.25, "max": 0.75, "n": 3})
    assert r["wall"]["median"] == pytest.approx(0.5)
    (lsm, peer) = compare.summarize(runs, ["lsm", "peer"], ("get",), {})
    assert lsm["median_us_per_op_cpu"] == pytest.approx(10.0) and lsm["rounds"] == 3
    assert peer["median_us_per_op_cpu"] == pytest.approx(4.0) and peer["rounds"] == 4
    assert comparereport.fmt_spread(r["cpu"]) == "0.500 (0.250-0.750)"


def test_compare_cli_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_compare_parser().parse_args(
        ["--num", "1000000", "--rounds", "5", "--engines", "lsm,plyvel,sqlite3",
         "--workloads", "reads,fillrandom+quiesce", "--ops", "get=1_000", "--opt",
         "sqlite3:cache_size=-2000", "--no-verify-writes"])
    cfg = compare_config_from_args(args)
    assert cfg.num == 1_000_000 and cfg.rounds == 5
    assert cfg.engines == ("lsm", "plyvel", "sqlite3")
    assert cfg.workloads == compare.READS + ("put", "fillrandom+quiesce")
    assert cfg.ops_per_round("get") == 1000 and cfg.ops_per_round("miss") == 80_000
    assert cfg.options_for("sqlite3") == {"synchronous": "OFF", "cache_size": -2000}
    assert not cfg.verify_writes
    quick = compare_config_from_args(build_compare_parser().parse_args(["--quick"]))
    assert (quick.num, quick.rounds, quick.quick) == (compare.QUICK_NUM, compare.QUICK_ROUNDS, True)
    assert quick.engines[0] == "lsm" and "sqlite3" in quick.engines
    assert compare.expand_workloads(["writes", "get"])[0] == "get"
    for bad in (["--workloads", "nosuch"], ["--engines", "nosuch"], ["--ops", "put=5"],
                ["--ops", "get"], ["--num", "10"]):
        with pytest.raises(SystemExit):
            main(["compare", *bad, "--out", str(tmp_path)])
    assert main(["compare", "--list"]) == 0
    assert "fillrandom+quiesce" in capsys.readouterr().out
    assert "compare" in build_parser().format_help()


def test_bulkload_workload_at_a_tiny_size(tmp_path: Path) -> None:
    """bulkload loads the same keys by put and by Dask + ingest and reads
    both back (every value checked); without dask it is skipped with the
    reason. Not part of the "all" group (it starts a cluster)."""
    from lsm_bench import bulkload
    assert "bulkload" in ALL_WORKLOADS and "bulkload" not in expand_workloads(["all"])
    cfg = BenchConfig(num=2000, reads=3000, engines=("lsm",), workloads=("bulkload",), quick=True,
                      bulk_num=3000, tmpdir=tmp_path, progress="off")
    recs = bulkload.run_bulkload(cfg, KeySpace(16), ValueGen(100))
    if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
        assert [r["status"] for r in recs] == ["skipped"] and "lsm-tree[dask]" in recs[0]["note"]
        return
    by = {(r["workload"], r["engine"]): r for r in recs}
    assert all(r["status"] == "ok" for r in recs), [(r["workload"], r["engine"], r.get("note")) for r in recs]
    put, dask = by[("bulkload", "lsm:put")], by[("bulkload", "lsm:dask")]
    assert put["ops"] == dask["ops"] == 3000
    assert 1.0 < dask["extra"]["write_amp"] < 1.2 and put["extra"]["write_amp"] > dask["extra"]["write_amp"]
    assert dask["extra"]["levels"] == [[6, dask["extra"]["files"]]]
    for engine in ("lsm:put", "lsm:put+compact_range", "lsm:dask"):
        assert by[("bulkload-readrandom", engine)]["verify"] == {"checked": 3000, "wrong": 0}
        assert by[("bulkload-scanprefix", engine)]["verify"]["wrong"] == 0
