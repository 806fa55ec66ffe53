"""Tests for lsm.cli (``lsm-dump``): golden text layouts, ``--json`` before or
after every sub-command, exit codes, one-line errors (never a traceback),
LOCK conflicts, and that read commands leave the directory untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lsm
from lsm import cli, dump

Model = dict[bytes, bytes]
REPO = Path(__file__).resolve().parent.parent


def build_golden(path: Path) -> Model:
    """A small database whose every byte is deterministic (no compression, no
    background compaction, flushes only where asked): two tables and a log
    holding a batch, a TTL put and a key that looks like hex."""
    db = lsm.open(path, sync_mode="never", compression="none", disable_auto_compactions=True,
                  block_bytes=256)
    for i in range(12):
        db.put(b"a%02d" % i, b"value-%d" % i)
    db.flush()
    db.put(b"a01", b"new")
    db.delete(b"a02")
    db.put(b"b\x00\x01", b"\x00\xff" * 4)
    db.flush()
    with db.write_batch() as b:
        b.put(b"c1", b"x" * 100)
        b.delete(b"a03")
    db.put(b"ttl-key", b"soon", ttl=3600)
    db.put(b"0xlooks-like-hex", b"text\\with\\backslashes\n")
    db.close()
    model = {b"a%02d" % i: b"value-%d" % i for i in range(12)}
    model.update({b"a01": b"new", b"b\x00\x01": b"\x00\xff" * 4, b"c1": b"x" * 100,
                  b"ttl-key": b"soon", b"0xlooks-like-hex": b"text\\with\\backslashes\n"})
    del model[b"a02"], model[b"a03"]
    return model


@pytest.fixture
def golden(tmp_path: Path) -> tuple[Path, Model]:
    path = tmp_path / "db"
    return path, build_golden(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def normalise(text: str, path: Path) -> str:
    return text.replace(str(path), "<DB>")


# -- golden layouts -----------------------------------------------------------------------

MANIFEST_GOLDEN = """\
manifest        <DB>/MANIFEST-000003
manifest bytes  156
edits           4
log number      7
next file       9
last sequence   19
tables          2 (1019 bytes, 15 entries)

level  files  bytes  entries
L0         2   1019       15

level  file    bytes  entries  range dels  seq    smallest  largest
L0     000008    400        3           0  13-15  a01       0x620001
L0     000006    619       12           0  1-12   a00       a11

offset  edit
     0  format 2; log 2; next 5; last seq 0
    33  log 5; next 7; last seq 12; +L0 000006 [a00 .. a11] seq 1-12, 12 entries, 619 bytes
    80  log 7; next 9; last seq 15; +L0 000008 [a01 .. 0x620001] seq 13-15, 3 entries, 400 bytes
   127  next 9; last seq 19
"""

WAL_GOLDEN = """\
  offset       seq  op         vbytes  key  value
      24        16  PUT           100  c1  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...
      24        17  DELETE          0  a03
     162        18  PUT_TTL         4  ttl-key  soon
     212        19  PUT            22  0x30786c6f6f6b732d6c696b652d686578  text\\\\with\\\\backslashes\\x0a
-- 3 records, 4 operations, 0 damaged regions (0 bytes)
"""


def test_manifest_golden(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    code, out, err = run(capsys, "manifest", str(path), "--history")
    assert (code, err) == (0, "")
    assert normalise(out, path) == MANIFEST_GOLDEN


def test_wal_golden(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    code, out, err = run(capsys, "wal", str(path / "000007.log"), "--values")
    assert (code, err) == (0, "")
    assert out == WAL_GOLDEN


def test_wal_damage_is_reported_and_skipped(golden: tuple[Path, Model],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    log = path / "000007.log"
    ttl_put, last = [op.offset for op in dump.iter_wal(str(log)) if isinstance(op, dump.WalOp)][2:]
    data = bytearray(log.read_bytes())
    data[last - 3] ^= 1  # inside the TTL put's record
    log.write_bytes(bytes(data))
    code, out, _ = run(capsys, "wal", str(log))
    assert code == 1  # the last put still checks out inside the region: not a torn last write
    lines = out.splitlines()
    assert lines[3].split()[:3] == [str(ttl_put), "-", "DAMAGED:"]
    # the reader goes on at the next 32 KiB block: the rest of this one-block log is the region
    assert lines[-1] == f"-- 1 record, 2 operations, 1 damaged region ({len(data) - ttl_put} bytes)"
    os.truncate(log, ttl_put + 5)  # now a torn tail only: not an error
    code, out, _ = run(capsys, "wal", str(log))
    assert code == 0 and "torn tail" in out


# -- every command, text and JSON -----------------------------------------------------------


def test_sst_text(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    code, out, _ = run(capsys, "sst", str(path / "000008.sst"), "--entries", "--blocks")
    assert code == 0
    fields = {line[:18].strip(): line[18:] for line in out.split("\n\n")[0].splitlines()}
    assert fields["number"] == "8"
    assert fields["entries"].startswith("3 (1 deletions, 0 with ttl, 3 unique keys)")
    assert fields["sequence range"] == "13-15"
    assert fields["compression"].startswith("none, ratio 1.00")
    assert "measured" in fields["bloom filter"] and "absent keys" in fields["bloom filter"]
    assert "block  offset  bytes" in out
    entries = [line.split() for line in out.splitlines() if line.strip().startswith(("13 ", "14 ", "15 "))]
    assert [e[:2] for e in entries] == [["13", "PUT"], ["14", "DELETE"], ["15", "PUT"]]


def test_sst_json(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    code, out, _ = run(capsys, "sst", str(path / "000006.sst"), "--entries", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["table"]["props"]["entries"] == 12 and len(doc["entries"]) == 12
    assert doc["table"]["props"]["smallest"] == b"a00".hex()
    assert doc["entries"][0] == {"key": b"a00".hex(), "seq": 1, "kind": "PUT",
                                 "value": b"value-0".hex(), "expires_at": None}
    assert 0 <= doc["table"]["bloom"]["measured_fp_rate"] < 0.1
    assert len(doc["table"]["blocks"]) >= 1


def test_get(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    code, out, _ = run(capsys, "get", str(path), "a01")
    assert code == 0 and "value        new" in out and "version      13" in out
    code, out, _ = run(capsys, "get", str(path), "0x620001")
    assert code == 0 and "0x00ff00ff00ff00ff" in out
    code, out, _ = run(capsys, "get", "--key-hex", str(path), "620001")
    assert code == 0 and "0x00ff00ff00ff00ff" in out
    code, out, _ = run(capsys, "get", str(path), "--key-text", "0xlooks-like-hex")
    assert code == 0 and "text\\\\with" in out
    code, out, _ = run(capsys, "get", str(path), "ttl-key")
    assert code == 0 and "expires      20" in out
    code, out, err = run(capsys, "get", str(path), "a02")
    assert (code, out) == (1, "") and err == "lsm-dump: key not found: a02\n"
    code, out, _ = run(capsys, "--json", "get", str(path), "a02")
    assert code == 1 and json.loads(out)["found"] is False


def test_get_raw(golden: tuple[Path, Model], capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path, _ = golden
    assert cli.main(["get", str(path), "0x620001", "--raw"]) == 0
    assert capsysbinary.readouterr().out == b"\x00\xff" * 4


def test_scan(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, model = golden
    code, out, _ = run(capsys, "scan", str(path), "--keys-only")
    assert code == 0 and out.split() == [cli.format_bytes(k) for k in sorted(model)]
    code, out, _ = run(capsys, "scan", str(path), "--prefix", "a", "--start", "a05", "--stop", "a09",
                       "--reverse", "--limit", "3")
    assert [line.split() for line in out.splitlines()] == [
        ["a08", "value-8"], ["a07", "value-7"], ["a06", "value-6"]]
    code, out, _ = run(capsys, "scan", str(path), "--json")
    assert {bytes.fromhex(r["key"]): bytes.fromhex(r["value"]) for r in json.loads(out)} == model
    code, out, _ = run(capsys, "--json", "scan", str(path), "--limit", "0")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "scan", str(path), "--prefix", "c", "--full")
    assert out.split() == ["c1", "x" * 100]
    code, out, _ = run(capsys, "scan", str(path), "--prefix", "a0", "--keys-only", "--json", "--limit", "2")
    assert json.loads(out) == [{"key": b"a00".hex()}, {"key": b"a01".hex()}]


def test_wal_recovery_option_reads_past_a_damaged_log(golden: tuple[Path, Model],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path, model = golden
    log = path / "000007.log"
    data = bytearray(log.read_bytes())
    data[30] ^= 1  # the first record (the batch)
    log.write_bytes(bytes(data))
    code, out, err = run(capsys, "scan", str(path), "--wal-recovery", "absolute")
    assert (code, out) == (1, "") and "CorruptionError" in err and "at offset 24" in err
    code, out, _ = run(capsys, "scan", str(path), "--keys-only", "--wal-recovery", "skip_corrupt")
    assert code == 0 and "c1" not in out.split() and "a00" in out.split()
    assert run(capsys, "get", str(path), "a03", "--wal-recovery", "skip_corrupt")[0] == 0  # delete lost
    assert run(capsys, "stats", str(path), "--wal-recovery", "point_in_time")[0] == 0


def test_stats(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    code, out, _ = run(capsys, "stats", str(path))
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["L0", "2", "1019", "15"]
    assert ["recovery.records_replayed", "3"] in [line.split() for line in out.splitlines()]
    code, out, _ = run(capsys, "stats", str(path), "--json")
    doc = json.loads(out)
    assert doc["recovery"]["entries_replayed"] == 4 and len(doc["levels"][0]["files"]) == 2


def test_verify_clean_and_damaged(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    code, out, _ = run(capsys, "verify", str(path))
    assert code == 0 and out.splitlines()[-1] == "verify: 0 errors, 0 warnings, 4 files ok"
    table = path / "000006.sst"
    block = dump.describe_sst(str(table), fp_probes=0).blocks[0]
    data = bytearray(table.read_bytes())
    data[block.offset + 10] ^= 0x10
    table.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", str(path), "--quiet")
    assert code == 1
    assert out.splitlines()[0].startswith(f"ERROR    {table} at offset {block.offset}: block checksum")
    code, out, _ = run(capsys, "verify", str(path), "--json")
    doc = json.loads(out)
    assert doc["ok"] is False and doc["errors"] == 1
    (err,) = [f for f in doc["findings"] if f["severity"] == "error"]
    assert (err["path"], err["offset"]) == (str(table), block.offset)


@pytest.mark.parametrize("target", ["wal", "manifest"])
def test_verify_names_file_and_offset(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str],
                                      target: str) -> None:
    path, _ = golden
    if target == "wal":
        victim = path / "000007.log"
        offset = [op.offset for op in dump.iter_wal(str(victim)) if isinstance(op, dump.WalOp)][2]
    else:
        info = dump.describe_manifest(str(path), history=True)
        victim, offset = Path(info.manifest), info.edits[1].offset
    data = bytearray(victim.read_bytes())
    data[offset + 20] ^= 0x01  # in the payload: the header still checks out
    victim.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", str(path), "--quiet")
    assert code == 1
    assert out.splitlines()[0].startswith(f"ERROR    {victim} at offset {offset}: "
                                          + ("torn or damaged" if target == "wal" else "record checksum"))


def test_repair_restores_every_key(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, model = golden
    (path / "CURRENT").unlink()
    (path / "MANIFEST-000003").unlink()
    code, _, err = run(capsys, "get", str(path), "a00")
    assert code == 1 and "not a database" in err and "repair" in err
    code, out, _ = run(capsys, "repair", str(path))
    assert code == 0 and "logs converted   000007" in out and "set aside:" in out
    code, out, _ = run(capsys, "scan", str(path), "--json")
    assert {bytes.fromhex(r["key"]): bytes.fromhex(r["value"]) for r in json.loads(out)} == model
    code, out, _ = run(capsys, "verify", str(path))
    assert code == 0
    code, out, _ = run(capsys, "repair", str(path), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["manifest"].startswith(str(path)) and doc["files"]


@pytest.mark.parametrize("argv", [
    ["manifest", "{db}"], ["manifest", "{db}", "--history"], ["sst", "{db}/000006.sst"],
    ["wal", "{db}/000007.log"], ["get", "{db}", "a01"], ["scan", "{db}"], ["stats", "{db}"],
    ["verify", "{db}"], ["repair", "{db}"],
])
@pytest.mark.parametrize("position", ["before", "after"])
def test_json_before_or_after_the_command(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str],
                                          argv: list[str], position: str) -> None:
    path, _ = golden
    args = [a.format(db=path) for a in argv]
    args = ["--json"] + args if position == "before" else args + ["--json"]
    code, out, err = run(capsys, *args)
    assert (code, err) == (0, "")
    json.loads(out)


# -- errors: one line, right exit code, never a traceback ------------------------------------


DB_COMMANDS = [["manifest"], ["get", "k"], ["scan"], ["stats"], ["verify"], ["repair"]]


@pytest.mark.parametrize("cmd", DB_COMMANDS)
def test_lock_held_by_a_writer(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str],
                               cmd: list[str]) -> None:
    path, _ = golden
    argv = [cmd[0], str(path)] + cmd[1:]
    with lsm.open(path, sync_mode="never"):  # flock conflicts apply within one process too
        code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("lsm-dump: database is in use: ") and err.count("\n") == 1
    assert str(path) in err


def test_read_commands_share_the_lock_with_readers(golden: tuple[Path, Model],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden
    with lsm.DB(path, lsm.Options(read_only=True)):
        assert run(capsys, "scan", str(path))[0] == 0
        assert run(capsys, "verify", str(path))[0] == 0
        assert run(capsys, "repair", str(path))[0] == 2  # exclusive


def test_lock_error_in_a_subprocess(golden: tuple[Path, Model]) -> None:
    path, _ = golden
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with lsm.open(path, sync_mode="never"):
        proc = subprocess.run([sys.executable, "-m", "lsm.cli", "scan", str(path)], env=env,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("lsm-dump: database is in use:") and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "lsm.cli", "--json", "get", str(path), "a01"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["value"] == b"new".hex()


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "lsm-dump"
    if not script.exists():
        pytest.skip("package not installed with its console scripts")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "shared LOCK" in proc.stdout and "exclusive LOCK" in proc.stdout


@pytest.mark.parametrize("argv, code, message", [
    (["manifest", "{tmp}/missing"], 1, "No such file or directory"),
    (["get", "{tmp}", "k"], 1, "not a database"),
    (["verify", "{tmp}/missing"], 1, "no such database directory"),
    (["sst", "{tmp}/junk.sst"], 1, "CorruptionError"),
    (["wal", "{tmp}/missing.log"], 1, "DiskError"),
    (["get", "{db}", "0xzz"], 2, "not valid hex"),
    (["get", "{db}", "--key-hex", "abc"], 2, "not valid hex"),
    (["scan", "{db}", "--limit", "-1"], 2, "--limit"),
])
def test_errors_are_one_line(golden: tuple[Path, Model], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             argv: list[str], code: int, message: str) -> None:
    path, _ = golden
    (tmp_path / "junk.sst").write_bytes(b"not a table" * 10)
    args = [a.format(db=path, tmp=tmp_path) for a in argv]
    got, out, err = run(capsys, *args) if code == 1 else (None, "", "")
    if code == 2:
        with pytest.raises(SystemExit) as exc:
            cli.main(args)
        out, err = capsys.readouterr()
        got = exc.value.code
    assert (got, out) == (code, "")
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["scan"])
    assert exc.value.code == 2


def test_read_commands_modify_nothing(golden: tuple[Path, Model], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = golden

    def snapshot() -> dict[str, tuple[bytes, int]]:
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}

    before = snapshot()
    for argv in (["manifest", str(path), "--history"], ["sst", str(path / "000006.sst"), "--entries"],
                 ["wal", str(path / "000007.log")], ["get", str(path), "a01"], ["scan", str(path)],
                 ["stats", str(path)], ["verify", str(path)]):
        assert run(capsys, *argv)[0] == 0, argv
    assert snapshot() == before


def test_format_bytes_is_unambiguous() -> None:
    for key in (b"plain", b"0x12", b"a\\b", b"\x00\x01", b"", b"caf\xc3\xa9"):
        shown = cli.format_bytes(key)
        if shown.startswith("0x"):
            assert cli.parse_key(shown) == key
    assert cli.format_bytes(b"x" * 100, 10) == "xxxxxxx..."
