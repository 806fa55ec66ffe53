"""Tests for lsm.dump: the records behind lsm-dump, verify's detection of
every kind of damage, and repair (including crash safety under FaultFS).

Every test builds a real database with small memtables so that there are
several tables plus writes left in the write-ahead log.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import lsm
from faultfs import FaultFS as _FaultFS
from lsm import dump
from lsm.filenames import FileType, parse_name
from lsm.fs import OsFileSystem
from lsm.manifest import FileMeta
from lsm.sstable import TableWriter
from lsm.version import NUM_LEVELS

repair_mod = importlib.import_module("lsm.repair")  # the module: lsm.repair is the function

Model = dict[bytes, bytes]


class FaultFS(_FaultFS):
    """tests/faultfs.FaultFS with one fix (reported): renaming a never-synced
    file over an existing one (the temp file over CURRENT) makes FaultFS
    treat the *destination* as new, so a power cut deletes CURRENT instead of
    restoring its old contents. Here the source stays new; the destination
    keeps its synced existence."""

    def rename(self, src: str, dst: str) -> None:
        existed, was_new = self.base.exists(dst), src in self._new
        super().rename(src, dst)
        if existed and was_new:
            with self._mu:
                self._new.discard(dst)
                self._new.add(src)


def build_db(path: Path, *, seed: int = 0, n: int = 600, block_bytes: int = 1024,
             compression: str = "zstd") -> Model:
    """Write ``n`` random puts/deletes with several flushes; leave the last writes in the WAL.

    Returns the expected contents.
    """
    rng = random.Random(seed)
    model: Model = {}
    db = lsm.open(path, memtable_bytes=7 << 10, block_bytes=block_bytes, sync_mode="never",
                  compression=compression, disable_auto_compactions=True)
    try:
        for i in range(n):
            key = b"key%05d" % rng.randrange(n)
            if rng.random() < 0.1:
                db.delete(key)
                model.pop(key, None)
            else:
                value = (b"value-%d-" % i) * rng.randrange(1, 6)
                db.put(key, value)
                model[key] = value
            if i == n // 2:
                db.flush()
        db.flush()
        for i in range(20):  # stays in the write-ahead log
            key = b"wal%03d" % i
            db.put(key, b"in-the-log-%d" % i)
            model[key] = b"in-the-log-%d" % i
        db.delete(b"key00001")
        model.pop(b"key00001", None)
    finally:
        db.close()
    return model


def contents(path: Path) -> Model:
    with lsm.DB(path, lsm.Options(read_only=True)) as db:
        return dict(db.scan())


def point_reads(path: Path, keys: list[bytes]) -> Model:
    with lsm.DB(path, lsm.Options(read_only=True)) as db:
        return {k: v for k in keys if (v := db.get(k)) is not None}


def files_of(path: Path, ftype: FileType) -> list[Path]:
    out = []
    for name in sorted(os.listdir(path)):
        parsed = parse_name(name)
        if parsed is not None and parsed[0] is ftype:
            out.append(path / name)
    return out


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture
def db_path(tmp_path: Path) -> tuple[Path, Model]:
    path = tmp_path / "db"
    return path, build_db(path)


# -- manifest ---------------------------------------------------------------------------


def test_describe_manifest_matches_the_version(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    info = dump.describe_manifest(str(path), history=True)
    with lsm.DB(path, lsm.Options(read_only=True)) as db:
        stats = db.stats()
    listed = {(f.level, f.number) for f in info.files}
    assert listed == {(lv["level"], f["number"]) for lv in stats["levels"] for f in lv["files"]}
    assert len(info.files) >= 2
    assert info.edit_count == len(info.edits) >= 2
    assert info.edits[0].format_version == 2
    assert {f.number for e in info.edits for f in e.added} >= {f.number for f in info.files}
    logs = [int(p.name[:6]) for p in files_of(path, FileType.LOG)]
    assert info.log_number == max(logs)
    assert info.next_file > max(f.number for f in info.files)
    assert all(f.smallest <= f.largest and f.min_seq <= f.max_seq for f in info.files)
    # a manifest file may be named directly; without history, no edits are returned
    direct = dump.describe_manifest(info.manifest)
    assert direct.files == info.files and direct.edits == ()


# -- sstables ----------------------------------------------------------------------------


def test_describe_sst_blocks_props_and_bloom(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    table = files_of(path, FileType.TABLE)[0]
    info = dump.describe_sst(str(table), fp_probes=4000)
    assert info.file_size == table.stat().st_size
    assert len(info.blocks) == info.props["data_blocks"] and len(info.blocks) > 1
    assert sum(b.entries for b in info.blocks) == info.props["entries"]
    assert info.data_bytes == sum(b.size for b in info.blocks)
    assert info.raw_data_bytes == info.props["data_bytes"]
    assert info.compression_ratio > 1.0  # repetitive values compress under zstd
    assert [b.offset for b in info.blocks] == sorted(b.offset for b in info.blocks)
    assert info.blocks[-1].last_key == info.props["largest"]
    bloom = info.bloom
    assert bloom is not None and bloom.probes >= 1
    assert bloom.keys_tested == 4000
    assert 0.0 <= bloom.measured_fp_rate < 0.05
    assert 0.001 < bloom.expected_fp_rate < 0.05


def test_iter_sst_entries_in_table_order(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    table = files_of(path, FileType.TABLE)[-1]
    entries = list(dump.iter_sst(str(table)))
    info = dump.describe_sst(str(table), fp_probes=10)
    assert len(entries) == info.props["entries"]
    order = [(e.key, -e.seq) for e in entries]
    assert order == sorted(order)
    kinds = {e.kind for e in entries}
    assert kinds <= {"PUT", "DELETE", "PUT_TTL"} and "PUT" in kinds
    assert sum(e.kind == "DELETE" for e in entries) == info.props["deletions"]


def test_iter_sst_shows_ttl_expiry(tmp_path: Path) -> None:
    with lsm.open(tmp_path, sync_mode="never") as db:
        db.put(b"t", b"v", ttl=1000)
        db.flush()
    (entry,) = dump.iter_sst(str(files_of(tmp_path, FileType.TABLE)[0]))
    assert (entry.kind, entry.value) == ("PUT_TTL", b"v")
    assert entry.expires_at is not None and entry.expires_at > 1e9


def test_describe_sst_without_bloom_and_uncompressed(tmp_path: Path) -> None:
    with lsm.open(tmp_path, sync_mode="never", bloom_bits_per_key=0, compression="none") as db:
        for i in range(50):
            db.put(b"k%d" % i, b"v" * 30)
        db.flush()
    info = dump.describe_sst(str(files_of(tmp_path, FileType.TABLE)[0]))
    assert info.bloom is None
    assert {b.compression for b in info.blocks} == {"none"}
    assert info.compression_ratio == 1.0


def test_corrupt_sst_raises_with_file_and_offset(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    table = files_of(path, FileType.TABLE)[0]
    second = dump.describe_sst(str(table), fp_probes=0).blocks[1]
    flip(table, second.offset + 3)
    with pytest.raises(lsm.CorruptionError) as exc:
        dump.describe_sst(str(table))
    assert exc.value.path == str(table) and exc.value.offset == second.offset
    with pytest.raises(lsm.CorruptionError):
        list(dump.iter_sst(str(table)))


# -- write-ahead logs ---------------------------------------------------------------------


def test_iter_wal_lists_every_operation(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    log = files_of(path, FileType.LOG)[-1]
    ops = [o for o in dump.iter_wal(str(log)) if isinstance(o, dump.WalOp)]
    assert len(ops) == len(list(dump.iter_wal(str(log))))  # no damage
    assert [o.key for o in ops] == [b"wal%03d" % i for i in range(20)] + [b"key00001"]
    assert [o.kind for o in ops[-2:]] == ["PUT", "DELETE"]
    seqs = [o.seq for o in ops]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert ops[0].offset == 24 and ops[1].offset > 24  # after the file header and the START record
    assert ops[0].value == b"in-the-log-0"


def test_iter_wal_reports_damage_and_continues(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    log = files_of(path, FileType.LOG)[-1]
    ops = [o for o in dump.iter_wal(str(log)) if isinstance(o, dump.WalOp)]
    victim = ops[5]
    flip(log, victim.offset + 14)  # inside the batch payload: checksum mismatch
    out = list(dump.iter_wal(str(log)))
    damage = [o for o in out if isinstance(o, dump.Damage)]
    assert len(damage) == 1
    d = damage[0]
    # the reader goes on at the next 32 KiB block: the rest of this (one-block) log is in the region;
    # records that check out inside it show it is not a torn last write
    assert (d.path, d.offset, d.torn) == (str(log), victim.offset, False)
    assert d.nbytes == log.stat().st_size - victim.offset
    survivors = [o.seq for o in out if isinstance(o, dump.WalOp)]
    assert survivors == [o.seq for o in ops[:5]]
    assert out.index(d) == 5  # reported in file order


def test_iter_wal_torn_tail(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    log = files_of(path, FileType.LOG)[-1]
    size = log.stat().st_size
    os.truncate(log, size - 3)
    out = list(dump.iter_wal(str(log)))
    assert isinstance(out[-1], dump.Damage) and out[-1].torn
    assert sum(isinstance(o, dump.WalOp) for o in out) == 20


def test_iter_wal_zero_tail_is_not_damage(db_path: tuple[Path, Model]) -> None:
    """A preallocated log's unwritten space (zeros to the end) is neither an
    operation nor a damaged region, for the dump and for verify."""
    path, _ = db_path
    log = files_of(path, FileType.LOG)[-1]
    with open(log, "ab") as f:
        f.write(bytes(4096))
    out = list(dump.iter_wal(str(log)))
    assert all(isinstance(o, dump.WalOp) for o in out) and len(out) == 21
    assert severities(path)["warning"] == [] and severities(path)["error"] == []


def test_verify_zero_tail_of_an_older_log_is_not_damage(db_path: tuple[Path, Model]) -> None:
    """Zeros at the end of any log are its preallocated, unwritten end: a crash
    before a switch trimmed it. No write is lost there (a newer log's records
    must continue the sequence, which recovery checks)."""
    path, _ = db_path
    log = files_of(path, FileType.LOG)[-1]
    with open(log, "ab") as f:
        f.write(bytes(4096))
    assert severities(path)["error"] == []


def test_manifest_zero_tail_is_reported(db_path: tuple[Path, Model]) -> None:
    """Manifests are never preallocated: zeros at the end are damage the dump shows."""
    path, _ = db_path
    manifest = [p for p in files_of(path, FileType.MANIFEST)][-1]
    with open(manifest, "ab") as f:
        f.write(bytes(64))
    assert severities(path)["error"] != []


# -- get / scan / stats through a read-only open -------------------------------------------


def test_open_read_only_sees_tables_and_log(db_path: tuple[Path, Model]) -> None:
    path, model = db_path
    db = dump.open_read_only(str(path))
    try:
        assert dict(db.scan()) == model
        with pytest.raises(lsm.ReadOnlyError):
            db.put(b"x", b"y")
    finally:
        db.close()


def test_open_read_only_refuses_a_non_database(tmp_path: Path) -> None:
    with pytest.raises(lsm.Error, match="not a database"):
        dump.open_read_only(str(tmp_path))
    with pytest.raises(lsm.Error, match="no such database"):
        dump.open_read_only(str(tmp_path / "nope"))
    assert os.listdir(tmp_path) == []  # no LOCK file was created


# -- verify ------------------------------------------------------------------------------


def severities(path: Path) -> dict[str, list[dump.Finding]]:
    out: dict[str, list[dump.Finding]] = {"ok": [], "warning": [], "error": []}
    for f in dump.verify(str(path)):
        out[f.severity].append(f)
    return out


def test_verify_clean_database(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    found = severities(path)
    assert found["error"] == [] and found["warning"] == []
    checked = {Path(f.path).name for f in found["ok"]}
    tables = {p.name for p in files_of(path, FileType.TABLE)}
    assert tables <= checked
    assert any(n.startswith("MANIFEST-") for n in checked)
    assert files_of(path, FileType.LOG)[-1].name in checked


def test_verify_flipped_sst_data_block(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    table = files_of(path, FileType.TABLE)[0]
    block = dump.describe_sst(str(table), fp_probes=0).blocks[2]
    flip(table, block.offset + block.size // 2)
    (err,) = severities(path)["error"]
    assert (err.path, err.offset) == (str(table), block.offset)
    assert "checksum" in err.message


@pytest.mark.parametrize("where", ["footer", "index", "filter"])
def test_verify_flipped_table_metadata(db_path: tuple[Path, Model], where: str) -> None:
    path, _ = db_path
    table = files_of(path, FileType.TABLE)[0]
    info = dump.describe_sst(str(table), fp_probes=0)
    end_of_data = info.blocks[-1].offset + info.blocks[-1].size + 5
    offset = {"footer": info.file_size - 20, "index": info.file_size - 60,
              "filter": end_of_data + 2}[where]
    flip(table, offset)
    errors = severities(path)["error"]
    assert len(errors) == 1 and errors[0].path == str(table) and errors[0].offset is not None


def test_verify_flipped_wal_record(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    log = files_of(path, FileType.LOG)[-1]
    ops = [o for o in dump.iter_wal(str(log)) if isinstance(o, dump.WalOp)]
    flip(log, ops[3].offset + 12)
    (err,) = severities(path)["error"]
    assert (err.path, err.offset) == (str(log), ops[3].offset)


def test_verify_torn_wal_tail_is_a_warning(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    log = files_of(path, FileType.LOG)[-1]
    os.truncate(log, log.stat().st_size - 2)
    found = severities(path)
    assert found["error"] == []
    (warn,) = found["warning"]
    assert warn.path == str(log) and "torn" in warn.message


@pytest.mark.parametrize("record", ["first", "last"])
def test_verify_flipped_manifest(db_path: tuple[Path, Model], record: str) -> None:
    path, _ = db_path
    info = dump.describe_manifest(str(path), history=True)
    offset = info.edits[0 if record == "first" else -1].offset
    flip(Path(info.manifest), offset + 9)
    errors = severities(path)["error"]
    assert errors and (errors[0].path, errors[0].offset) == (info.manifest, offset)


def test_verify_missing_and_orphan_tables(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    tables = files_of(path, FileType.TABLE)
    tables[0].unlink()
    shutil.copy(tables[1], path / "000900.sst")
    found = severities(path)
    (err,) = found["error"]
    assert err.path == str(tables[0]) and "missing" in err.message
    (warn,) = found["warning"]
    assert warn.path == str(path / "000900.sst") and "orphan" in warn.message


def test_verify_table_that_disagrees_with_the_manifest(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    tables = files_of(path, FileType.TABLE)
    shutil.copy(tables[1], tables[0])  # intact, but not the table the manifest describes
    errors = severities(path)["error"]
    assert errors and all(e.path == str(tables[0]) and "manifest says" in e.message for e in errors)


def test_verify_bad_current(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    (path / "CURRENT").write_text("MANIFEST-999999\n")
    (err,) = severities(path)["error"]
    assert err.path == str(path / "CURRENT") and "does not exist" in err.message
    (path / "CURRENT").write_text("garbage")
    (err,) = severities(path)["error"]
    assert err.path == str(path / "CURRENT") and err.offset == 0


def test_read_commands_take_the_shared_lock(db_path: tuple[Path, Model]) -> None:
    path, _ = db_path
    with lsm.open(path, sync_mode="never"):
        with pytest.raises(lsm.LockError):
            dump.describe_manifest(str(path))
        with pytest.raises(lsm.LockError):
            list(dump.verify(str(path)))
        with pytest.raises(lsm.LockError):
            dump.open_read_only(str(path))
        with pytest.raises(lsm.LockError):
            repair_mod.repair(str(path))
    with lsm.DB(path, lsm.Options(read_only=True)):
        dump.describe_manifest(str(path))  # readers share
        assert not severities(path)["error"]
        with pytest.raises(lsm.LockError):
            repair_mod.repair(str(path))  # repair needs the database to itself


# -- repair ------------------------------------------------------------------------------


def remove_manifest(path: Path) -> None:
    (path / "CURRENT").unlink()
    for p in files_of(path, FileType.MANIFEST):
        p.unlink()


def test_repair_after_deleting_current_and_manifest(db_path: tuple[Path, Model]) -> None:
    path, model = db_path
    before = dump.describe_manifest(str(path))
    remove_manifest(path)
    rep = repair_mod.repair(str(path))
    assert rep.logs_converted and rep.wal_entries_recovered == 21
    assert rep.last_sequence == before.last_sequence  # close() recorded the last write's, in the log
    assert not severities(path)["error"]
    assert contents(path) == model
    assert point_reads(path, list(model) + [b"key00001", b"nope"]) == model
    with lsm.open(path, sync_mode="never") as db:  # a writable open keeps everything
        assert dict(db.scan()) == model
        seq = db.put(b"after", b"repair")
        assert seq > rep.last_sequence
    lost = sorted(os.listdir(path / "lost"))
    assert lost == [p.name for p in files_of(path / "lost", FileType.LOG)] and lost


def test_repair_keeps_the_old_manifest_and_current_aside(db_path: tuple[Path, Model]) -> None:
    path, model = db_path
    old_current = (path / "CURRENT").read_bytes()
    old_manifest = Path(dump.describe_manifest(str(path)).manifest)
    manifest_bytes = old_manifest.read_bytes()
    rep = repair_mod.repair(str(path))
    assert (path / "lost" / "CURRENT.bak").read_bytes() == old_current
    assert (path / "lost" / old_manifest.name).read_bytes() == manifest_bytes
    assert Path(rep.manifest).exists() and rep.manifest != str(old_manifest)
    assert contents(path) == model
    repair_mod.repair(str(path))  # again: idempotent, names in lost/ do not clash
    assert (path / "lost" / "CURRENT.bak.1").exists()
    assert contents(path) == model


def test_repair_places_disjoint_tables_in_one_level(tmp_path: Path) -> None:
    with lsm.open(tmp_path, sync_mode="never", disable_auto_compactions=True) as db:
        for part in range(4):
            for i in range(50):
                db.put(b"%d-%03d" % (part, i), b"v")
            db.flush()
    remove_manifest(tmp_path)
    rep = repair_mod.repair(str(tmp_path))
    assert {f.level for f in rep.files} == {1} and len(rep.files) == 4
    assert len(contents(tmp_path)) == 200


def test_repair_layers_overlapping_tables_newest_first(db_path: tuple[Path, Model]) -> None:
    path, model = db_path
    remove_manifest(path)
    rep = repair_mod.repair(str(path))
    assert len(rep.files) > NUM_LEVELS  # more overlapping layers than levels: newest share L0
    assert_read_order([f for f in rep.files])
    assert point_reads(path, list(model)) == model


def assert_read_order(files: list[dump.TableFile]) -> None:
    """``files`` level by level, in the Version's order: L0 newest first, L1+
    key-disjoint, and a table that a read meets first is newer than any later
    table it overlaps (so the first hit is the newest version)."""
    for a, b in zip(files, files[1:]):
        if a.level == b.level:
            assert (a.max_seq >= b.max_seq) if a.level == 0 else (a.largest < b.smallest)
        assert a.level <= b.level
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            if a.smallest <= b.largest and b.smallest <= a.largest:
                assert a.min_seq > b.max_seq, (a, b)


def test_repair_of_a_leveled_database(tmp_path: Path) -> None:
    """After real compactions (L1 and L2 files, often with interleaved sequence
    ranges), every read after repair is right."""
    rng = random.Random(7)
    model: Model = {}
    with lsm.open(tmp_path, memtable_bytes=4 << 10, sync_mode="never", l0_compaction_trigger=2,
                  level_base_bytes=8 << 10, target_file_bytes=2 << 10) as db:
        for i in range(2500):
            key, value = b"k%05d" % rng.randrange(1500), b"v%d" % i * rng.randrange(1, 4)
            db.put(key, value)
            model[key] = value
        db.wait_for_compactions()
    assert len({f.level for f in dump.describe_manifest(str(tmp_path)).files}) >= 2
    remove_manifest(tmp_path)
    rep = repair_mod.repair(str(tmp_path))
    assert len(rep.tables_merged) < rep.tables_checked // 2  # keys, not metadata, decide
    assert contents(tmp_path) == model and point_reads(tmp_path, list(model)) == model


def write_table(path: Path, number: int, entries: list[tuple[bytes, int]]) -> None:
    """A table of PUTs whose value names the key and sequence."""
    w = TableWriter(OsFileSystem().open_writable(str(path / f"{number:06d}.sst")), bloom_bits_per_key=10)
    for key, seq in sorted(entries, key=lambda e: (e[0], -e[1])):
        w.add(key, seq, 1, b"%s@%d" % (key, seq))
    w.finish()


def test_repair_merges_only_tables_whose_shared_keys_disagree(tmp_path: Path) -> None:
    """Each pair below overlaps in keys and interleaves in sequences, so the
    metadata cannot order them; the keys they share decide."""
    tables = {
        1: [(b"a", 100), (b"m", 5)],   # a..m, seq 5..100
        2: [(b"c", 50), (b"z", 200)],  # c..z, 50..200: shares no key with 1 -> no merge
        3: [(b"m", 60), (b"n", 300)],  # m..n, 60..300: read before 1, and its m is newer -> no merge
        4: [(b"a", 10), (b"q", 400)],  # a..q, 10..400: read before 1, but its a is older -> merge 1+4
    }
    for number, entries in tables.items():
        write_table(tmp_path, number, entries)
    rep = repair_mod.repair(str(tmp_path))
    assert rep.tables_merged[:2] == [1, 4]  # first round
    # second round: the output of 1+4 now holds m@5 with max_seq 400, so it is read
    # before 3 (m@60): a new conflict, merged too. 2 shares no key with anything.
    assert 3 in rep.tables_merged and 2 not in rep.tables_merged
    want = {b"a": b"a@100", b"c": b"c@50", b"m": b"m@60", b"n": b"n@300", b"q": b"q@400", b"z": b"z@200"}
    assert contents(tmp_path) == want and point_reads(tmp_path, list(want)) == want
    assert rep.last_sequence == 400


def test_repair_salvages_a_table_with_a_damaged_block(db_path: tuple[Path, Model]) -> None:
    path, model = db_path
    table = files_of(path, FileType.TABLE)[0]  # the oldest: nothing older can resurface
    blocks = dump.describe_sst(str(table), fp_probes=0).blocks
    bad = blocks[1]
    in_bad_block = {e.key for e in dump.iter_sst(str(table)) if blocks[0].last_key < e.key <= bad.last_key}
    flip(table, bad.offset + 7)
    rep = repair_mod.repair(str(path))
    assert rep.tables_salvaged == [int(table.name[:6])]
    assert (path / "lost" / table.name).exists() and not table.exists()
    assert any("damaged blocks" in p for p in rep.problems)
    assert not severities(path)["error"]
    after = contents(path)
    assert all(after.get(k) == v for k, v in model.items() if k not in in_bad_block)
    assert all(model.get(k) == v for k, v in after.items())  # nothing invented or resurrected
    assert any(k not in after for k in in_bad_block & set(model))  # the block's data is gone


def test_repair_sets_aside_an_unreadable_table(db_path: tuple[Path, Model]) -> None:
    path, model = db_path
    table = files_of(path, FileType.TABLE)[0]
    flip(table, table.stat().st_size - 1)  # footer magic
    rep = repair_mod.repair(str(path))
    assert any("unreadable" in p for p in rep.problems)
    assert (path / "lost" / table.name).exists()
    assert not severities(path)["error"]
    survivors = contents(path)
    assert survivors and all(model.get(k) == v for k, v in survivors.items())


def compact_leaving_inputs(path: Path) -> dict[str, bytes]:
    """Compact everything into one level, then put the compaction's input
    files back, as a crash before their deletion would leave them."""
    with lsm.open(path, sync_mode="never", disable_auto_compactions=True) as db:
        db.flush()
        inputs = {p.name: p.read_bytes() for p in files_of(path, FileType.TABLE)}
        db.compact_range()
    for name, data in inputs.items():
        (path / name).write_bytes(data)
    return inputs


def test_repair_merges_a_compaction_output_with_its_leftover_inputs(tmp_path: Path) -> None:
    path = tmp_path / "db"
    model = build_db(path)
    inputs = compact_leaving_inputs(path)
    remove_manifest(path)  # nothing says which tables are obsolete
    rep = repair_mod.repair(str(path))
    assert set(rep.tables_merged) >= {int(n[:6]) for n in inputs}
    assert contents(path) == model
    assert point_reads(path, list(model)) == model


def test_repair_sets_aside_tables_the_manifest_deleted(tmp_path: Path) -> None:
    path = tmp_path / "db"
    model = build_db(path)
    inputs = compact_leaving_inputs(path)
    rep = repair_mod.repair(str(path))
    assert rep.tables_obsolete == sorted(int(n[:6]) for n in inputs) and not rep.tables_merged
    assert all((path / "lost" / n).exists() for n in inputs)
    assert contents(path) == model


def test_repair_skips_logs_already_in_tables(tmp_path: Path) -> None:
    path, donor = tmp_path / "db", tmp_path / "donor"
    model = build_db(path)
    # an old log left behind by a crash before its deletion: all its sequences
    # are at or below the newest table's, so it is known to be flushed
    with lsm.open(donor, sync_mode="never") as db:
        db.put(b"key00002", b"ancient")
    old_log = path / "000001.log"
    shutil.copy(files_of(donor, FileType.LOG)[-1], old_log)
    remove_manifest(path)
    rep = repair_mod.repair(str(path))
    assert 1 not in rep.logs_converted and rep.logs_converted
    assert any(src == str(old_log) and "obsolete" in why for src, _, why in rep.moved)
    assert contents(path) == model


def test_repair_of_an_empty_directory(tmp_path: Path) -> None:
    rep = repair_mod.repair(str(tmp_path))
    assert rep.files == []
    assert contents(tmp_path) == {}


def test_repair_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(lsm.Error, match="no such database"):
        repair_mod.repair(str(tmp_path / "missing"))


@pytest.mark.parametrize("manifest", ["intact", "deleted"])
@pytest.mark.parametrize("op", ["sync", "fsync_dir", "rename", "write"])
def test_repair_is_crash_safe(tmp_path: Path, op: str, manifest: str) -> None:
    """Fail the nth ``op`` of a repair and cut the power, for every n: an intact
    database still opens with every key (old state before the CURRENT rename,
    new one after), and a second repair always finishes the job."""
    golden = tmp_path / "golden"
    model = build_db(golden, n=300)
    if manifest == "deleted":
        remove_manifest(golden)
    for nth in range(1, 60):
        path = tmp_path / f"run-{nth}"
        shutil.copytree(golden, path)
        fs = FaultFS()
        fs.fail(op, nth=nth)
        try:
            repair_mod.repair(str(path), fs=fs)
        except lsm.DiskError:
            fs.power_cut()
            if manifest == "intact" or (path / "CURRENT").exists():
                assert contents(path) == model, f"{op} #{nth}"
            repair_mod.repair(str(path))
            assert contents(path) == model, f"{op} #{nth}, repaired again"
            shutil.rmtree(path)
            continue
        assert nth > 1, "the failure was never hit"
        assert contents(path) == model
        break
    else:
        pytest.fail("repair never completed")


# -- placement ------------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[FileMeta]:
    """Tables as flushes and compactions would leave them: each table's
    sequence range is a distinct slice of time; key ranges are arbitrary."""
    n = draw(st.integers(1, 14))
    tables = []
    seq = 1
    for number in range(1, n + 1):
        width = draw(st.integers(1, 5))
        lo = draw(st.integers(0, 60))
        hi = lo + draw(st.integers(0, 30))
        tables.append(FileMeta(number, 100, 1, b"%03d" % lo, b"%03d" % hi, seq, seq + width - 1))
        seq += width
    return tables


@settings(max_examples=150, deadline=None)
@given(histories())
def test_place_tables_gives_a_valid_version(metas: list[FileMeta]) -> None:
    levels = repair_mod.place_tables(metas)
    assert len(levels) == NUM_LEVELS
    assert sorted(f.number for lvl in levels for f in lvl) == [m.number for m in metas]
    for level, lvl in enumerate(levels):
        if level:
            assert all(a.largest < b.smallest for a, b in zip(lvl, lvl[1:]))
        else:
            assert all(a.max_seq >= b.max_seq for a, b in zip(lvl, lvl[1:]))
    assert_read_order([dump.TableFile.of(lv, f) for lv in range(NUM_LEVELS) for f in levels[lv]])


@st.composite
def arbitrary_tables(draw: st.DrawFn) -> list[FileMeta]:
    out = []
    for number in range(1, draw(st.integers(1, 16)) + 1):
        lo, seq = draw(st.integers(0, 60)), draw(st.integers(1, 60))
        out.append(FileMeta(number, 1, 1, b"%03d" % lo, b"%03d" % (lo + draw(st.integers(0, 20))),
                            seq, seq + draw(st.integers(0, 20))))
    return out


def metas_conflict(a: FileMeta, b: FileMeta) -> bool:
    return (a.smallest <= b.largest and b.smallest <= a.largest
            and not (a.min_seq > b.max_seq or b.min_seq > a.max_seq))


@settings(max_examples=200, deadline=None)
@given(arbitrary_tables())
def test_conflict_groups_are_the_connected_conflicts(metas: list[FileMeta]) -> None:
    groups = repair_mod._conflict_groups(metas)
    where = {m.number: i for i, g in enumerate(groups) for m in g}
    assert len(where) == sum(len(g) for g in groups) and all(len(g) > 1 for g in groups)
    for i, a in enumerate(metas):
        for b in metas[i + 1:]:
            if metas_conflict(a, b):
                assert a.number in where and where[a.number] == where.get(b.number)
    for g in groups:  # each group is connected
        reached, todo = {g[0].number}, [g[0]]
        while todo:
            a = todo.pop()
            for b in g:
                if b.number not in reached and metas_conflict(a, b):
                    reached.add(b.number)
                    todo.append(b)
        assert reached == {m.number for m in g}
    rest = [m for m in metas if m.number not in where]  # what is left can be placed
    levels = repair_mod.place_tables(rest)
    assert_read_order([dump.TableFile.of(lv, f) for lv in range(NUM_LEVELS) for f in levels[lv]])


def test_conflicting_tables_are_grouped() -> None:
    a = FileMeta(1, 1, 1, b"a", b"m", 1, 10)
    b = FileMeta(2, 1, 1, b"k", b"z", 5, 20)  # overlaps a in keys and in sequences
    c = FileMeta(3, 1, 1, b"x", b"z", 30, 40)  # overlaps b's keys, newer: no conflict
    d = FileMeta(4, 1, 1, b"0", b"1", 1, 50)  # no key overlap
    assert [sorted(m.number for m in g) for g in repair_mod._conflict_groups([a, b, c, d])] == [[1, 2]]


# -- engine behaviour that repair relies on (found while writing lsm-dump; fixed) ------------


def test_engine_open_without_current_keeps_tables(db_path: tuple[Path, Model]) -> None:
    """Regression: lsm.open on a directory holding tables but no CURRENT used
    to create an empty database and delete every table as obsolete."""
    path, model = db_path
    remove_manifest(path)
    with pytest.raises(lsm.Error, match="repair"):
        lsm.open(path, sync_mode="never")
    repair_mod.repair(str(path))
    assert contents(path) == model


def test_engine_manifest_bit_flip_in_last_edit_is_not_silent(db_path: tuple[Path, Model]) -> None:
    """Regression: a complete last manifest edit with a bad checksum used to be
    dropped as if torn; the tables it added were then deleted as orphans."""
    path, model = db_path
    info = dump.describe_manifest(str(path), history=True)
    flip(Path(info.manifest), info.edits[-1].offset + 20)
    with pytest.raises(lsm.CorruptionError):
        lsm.open(path, sync_mode="never").close()
    assert contents_after_repair(path) == model


def contents_after_repair(path: Path) -> Model:
    repair_mod.repair(str(path))
    return contents(path)
