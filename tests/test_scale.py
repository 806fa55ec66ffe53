"""``lsm-bench scale`` (lsm_bench/scale.py) at a tiny size: every step's
figures, the final phase, the opens after a clean close and after a SIGKILL,
the report and the plots, with every read checked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from lsm_bench import scale, scalereport
from lsm_bench.__main__ import build_scale_parser, main, scale_config_from_args
from lsm_bench.engines import SqliteEngine

TINY = ["--num", "3000", "--steps", "3", "--reads", "200", "--final-reads", "300", "--scans", "20",
        "--seq", "1000", "--progress", "off"]


def tiny(tmp_path: Path, **overrides: Any) -> scale.ScaleConfig:
    settings: dict[str, Any] = dict(num=3000, steps=3, reads=200, final_reads=300, scans=20, seq=1000,
                                    engines=("lsm",), engine_options={"lsm": {"memtable_bytes": 65536}},
                                    isolate=False, progress="off", plots=False, tmpdir=tmp_path,
                                    out=tmp_path / "out")
    settings.update(overrides)
    return scale.ScaleConfig(**settings)


def test_scale_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["scale", *TINY, "--engines", "lsm,sqlite3", "--opt", "memtable_bytes=65536",
                 "--out", str(out), "--tmpdir", str(tmp_path)])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["mode"] == "scale" and data["config"]["num"] == 3000
    recs = {r["engine"]: r for r in data["results"]}
    assert set(recs) == {"lsm", "sqlite3"}
    for rec in recs.values():
        assert rec["status"] == "ok", rec
        assert [s["keys"] for s in rec["steps"]] == [1000, 2000, 3000]
        for step in rec["steps"]:
            assert step["puts"]["ops"] == 1000 and step["puts"]["latency"]["samples"] == 1000
            assert step["readrandom"]["verify"] == {"checked": 200, "missing": 0, "wrong": 0, "unexpected": 0}
            assert step["readmissing"]["verify"]["checked"] == 200
            assert step["memory"]["rss"] > 0 and step["disk_bytes"] > 0
        fin = rec["final"]
        assert fin["readseq"]["verify"]["checked"] == 1000 and fin["scanprefix"]["entries"] > 0
        assert fin["space_amp"] > 0 and rec["close_seconds"] >= 0
        assert rec["reopen"]["seconds"] > 0 and rec["reopen"]["memory"]["rss"] > 0
        assert rec["reopen_with_log"]["verify"]["checked"] == rec["reopen_with_log"]["puts"]
        assert rec["kill"]["verify"]["checked"] == rec["kill"]["puts"] > 0
        assert rec["verify"]["missing"] == rec["verify"]["wrong"] == rec["verify"]["unexpected"] == 0
    lsm = recs["lsm"]
    assert lsm["steps"][-1]["engine_memory"]["total"] > 0
    assert sum(lv["files"] for lv in lsm["final"]["levels"]) > 0
    # 378 puts = 90% of a 64 KiB memtable: the log held them, the open replayed them
    assert lsm["reopen_with_log"]["recovery"]["entries_replayed"] == lsm["reopen_with_log"]["puts"] == 378
    assert lsm["kill"]["recovery"]["entries_replayed"] == 378
    names = [t["name"] for t in data["targets"]]
    assert any("readrandom p99" in n for n in names) and any("SIGKILL" in n for n in names)
    md = (out / "results.md").read_text()
    assert md.startswith("# lsm-bench scale") and "## lsm against the scale targets" in md
    assert "## sqlite3: after each step" in md and md.strip() in capsys.readouterr().out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "plots" / "scale.png").stat().st_size > 0
        assert (out / "plots" / "scale-levels.png").stat().st_size > 0
    assert not list(tmp_path.glob("lsm-bench-scale-*"))  # databases removed


def test_scatter_order_is_a_permutation() -> None:
    for n in (1, 2, 3, 10, 97, 1000, 4096):
        order = scale.ScatterOrder(n, 7)
        assert sorted(order(i) for i in range(n)) == list(range(n))
    order = scale.ScatterOrder(1000, 7)
    steps = [abs(order(i + 1) - order(i)) for i in range(100)]
    assert min(steps) > 100  # neighbours land far apart


class _WrongSqlite(SqliteEngine):
    name = "wrongsqlite"

    def getter(self):
        get = super().getter()
        return lambda key: (get(key) or b"")[:-1] or None


def test_scale_wrong_reads_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsm_bench import runner

    monkeypatch.setitem(runner.ENGINES, "wrongsqlite", _WrongSqlite)
    report = scale.run_scale(tiny(tmp_path, engines=("wrongsqlite",), kill=False), log=lambda _m: None)
    (rec,) = report["results"]
    assert rec["status"] == "failed" and rec["verify"]["wrong"] > 0
    assert scalereport.failures(report) == [rec]
    assert "failed" in scalereport.render_markdown(report)


def test_scale_engine_error_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsm_bench import runner

    class Broken(SqliteEngine):
        name = "broken"

        def putter(self):
            def put(key: bytes, value: bytes) -> None:
                raise OSError("disk on fire")
            return put

    monkeypatch.setitem(runner.ENGINES, "broken", Broken)
    report = scale.run_scale(tiny(tmp_path, engines=("broken", "sqlite3"), kill=False), log=lambda _m: None)
    broken, ok = report["results"]
    assert broken["status"] == "error" and "disk on fire" in broken["note"]
    assert ok["status"] == "ok"
    assert "broken: error" in scalereport.render_markdown(report)


@pytest.mark.skipif(importlib.util.find_spec("plyvel") is None, reason="plyvel is not installed")
def test_scale_with_plyvel_at_a_smaller_size(tmp_path: Path) -> None:
    report = scale.run_scale(tiny(tmp_path, engines=("lsm", "plyvel"), peer_num=1500), log=lambda _m: None)
    lsm, ply = report["results"]
    assert lsm["status"] == ply["status"] == "ok", report["results"]
    assert (lsm["num"], ply["num"]) == (3000, 1500)
    assert ply["final"]["levels"] and ply["kill"]["verify"]["checked"] == ply["kill"]["puts"]
    assert "Peers ran at 1,500 keys" in scalereport.render_markdown(report)


def test_targets_judge_the_figures() -> None:
    def step(keys: int, puts: float, p99: float, reads: float, anon: int, total: int) -> dict[str, Any]:
        lat = {"p50_us": 1.0, "p99_us": p99, "p999_us": p99}
        return {"keys": keys, "puts": {"ops_per_sec": puts, "latency": lat, "max_put_ms": 20.0,
                                       "slow_puts": {">=100ms": 0}},
                "readrandom": {"ops_per_sec": reads, "latency": lat},
                "memory": {"rss_anon": anon, "rss": anon, "rss_file": 0}, "engine_memory": {"total": total}}

    rec = {"engine": "lsm", "status": "ok", "num": 2000, "memory_before_open": {"rss_anon": 100},
           "steps": [step(1000, 100.0, 10.0, 50.0, 200, 100), step(2000, 60.0, 30.0, 20.0, 1100, 1100)],
           "reopen": {"seconds": 0.5}, "final": {"space_amp": 1.1, "disk_bytes": 1}}
    got = {t["name"]: t["met"] for t in scalereport.targets(rec)}
    assert got["readrandom p99, last step / first step"] is False  # 3x
    assert got["readrandom ops/s, last step / first step"] is False  # 0.4x
    assert got["put ops/s, last step / first step"] is False  # 0.6x
    assert got["slowest put (longest stall), seconds"] is True
    assert got['stats()["memory"] vs heap growth since before the open, abs. error'] is True  # 1100 / 1000
    assert got["open after a clean close, settled, seconds"] is True
    assert got["space amplification after settling"] is True


def test_scale_cli_parses(tmp_path: Path) -> None:
    cfg = scale_config_from_args(build_scale_parser().parse_args(
        ["--num", "5000000", "--peer-num", "1000000", "--engines", "lsm", "--no-kill", "--opt",
         "max_open_files=100", "--in-process"]))
    assert (cfg.num, cfg.peer_num, cfg.num_for("lsm"), cfg.num_for("plyvel")) == (5_000_000, 1_000_000,
                                                                                  5_000_000, 1_000_000)
    assert not cfg.kill and not cfg.isolate and cfg.options_for("lsm") == {"max_open_files": 100}
    assert scale_config_from_args(build_scale_parser().parse_args([])).num == scale.DEFAULT_NUM
    assert scale_config_from_args(build_scale_parser().parse_args(["--quick"])).num == scale.QUICK_NUM
    assert scale.ScaleConfig.from_json(cfg.to_json()) == cfg
    for bad in (["--steps", "0"], ["--engines", "nosuch"], ["--num", "5", "--steps", "10"]):
        with pytest.raises(SystemExit):
            main(["scale", *bad, "--out", str(tmp_path)])
