"""The crash-test driver: its checker rejects lost and partial writes, and a
short run of each mode passes (blackbox and whitebox kills, failing
directory listings, power cuts). (CI runs it for a minute; it can run for hours.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import lsm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import crashtest  # noqa: E402


def _log(path, lines):
    with open(path, "w") as f:
        for kind, tid, opid, ops in lines:
            f.write(f"S {tid} {opid} {json.dumps(ops)}\n" if kind == "S" else f"A {tid} {opid}\n")


def _db(path, data):
    with lsm.open(path, sync_mode="never") as db:
        for k, v in data.items():
            db.put(k.encode(), v.encode())


def test_checker_accepts_pending_either_way(tmp_path):
    _db(tmp_path / "db", {"a": "1", "b": "2"})
    _log(tmp_path / "log", [("S", 0, "1", [["a", "1"]]), ("A", 0, "1", None),
                            ("S", 0, "2", [["b", "2"], ["c", "3"]])])
    with pytest.raises(crashtest.Failure, match="partially applied"):
        crashtest.verify(str(tmp_path / "db"), str(tmp_path / "log"), {})
    _log(tmp_path / "log2", [("S", 0, "1", [["a", "1"]]), ("A", 0, "1", None),
                             ("S", 0, "2", [["b", "2"]])])
    state, acked, pending = crashtest.verify(str(tmp_path / "db"), str(tmp_path / "log2"), {})
    assert state == {"a": "1", "b": "2"} and acked == 1 and pending == 1


def test_checker_rejects_lost_acknowledged_write(tmp_path):
    _db(tmp_path / "db", {"a": "1"})
    _log(tmp_path / "log", [("S", 0, "1", [["a", "1"]]), ("A", 0, "1", None),
                            ("S", 1, "2", [["z", "9"]]), ("A", 1, "2", None)])
    with pytest.raises(crashtest.Failure, match="'z'"):
        crashtest.verify(str(tmp_path / "db"), str(tmp_path / "log"), {})


def test_checker_rejects_unexpected_key(tmp_path):
    _db(tmp_path / "db", {"a": "1", "ghost": "x"})
    _log(tmp_path / "log", [("S", 0, "1", [["a", "1"]]), ("A", 0, "1", None)])
    with pytest.raises(crashtest.Failure, match="ghost"):
        crashtest.verify(str(tmp_path / "db"), str(tmp_path / "log"), {})


@pytest.mark.parametrize("mode", ["blackbox", "whitebox", "faults", "powercut"])
def test_short_run(mode):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "crashtest.py"), "--duration", "4",
                        "--seed", "5", "--mode", mode], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "failures=0" in r.stdout
