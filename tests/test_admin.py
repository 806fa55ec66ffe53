"""lsm.destroy and lsm.repair: whole-directory operations with no DB open."""

from __future__ import annotations

import os

import pytest

import lsm

SMALL = dict(memtable_bytes=4096, block_bytes=512, target_file_bytes=8192, sync_mode="never")


def _make(path, n=300):
    with lsm.open(path, **SMALL) as db:
        for i in range(n):
            db.put(b"k%04d" % i, b"v" * 50)
        db.flush()
    return path


def test_destroy_removes_the_database_and_its_directory(tmp_path):
    path = _make(tmp_path / "db")
    assert any(n.endswith(".sst") for n in os.listdir(path))
    assert lsm.destroy(path) is None
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_destroy_leaves_foreign_files_and_the_directory(tmp_path):
    path = _make(tmp_path / "db")
    (path / "notes.txt").write_text("mine")
    (path / "sub").mkdir()
    lsm.destroy(str(path))
    assert sorted(os.listdir(path)) == ["notes.txt", "sub"]


def test_destroy_removes_what_repair_set_aside(tmp_path):
    path = _make(tmp_path / "db")
    os.remove(path / "CURRENT")
    report = lsm.repair(path)
    assert report.manifest and (path / "lost").is_dir()  # repair moved the old manifest aside
    lsm.destroy(path)
    assert not path.exists()


def test_destroy_finishes_an_interrupted_destroy(tmp_path):
    path = _make(tmp_path / "db")
    for name in os.listdir(path):  # tables and manifests gone, CURRENT still there
        if name.endswith(".sst") or name.startswith("MANIFEST"):
            os.remove(path / name)
    with pytest.raises(lsm.CorruptionError):
        lsm.open(path).close()
    lsm.destroy(path)
    assert not path.exists()


def test_destroy_refuses_an_open_database(tmp_path):
    path = _make(tmp_path / "db")
    for ro in (False, True):
        db = lsm.open(path, read_only=ro)
        with pytest.raises(lsm.LockError):
            lsm.destroy(path)
        assert db.get(b"k0001") == b"v" * 50  # nothing was deleted
        db.close()
    lsm.destroy(path)


def test_destroy_refuses_what_is_not_a_database(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "000001.log").write_bytes(b"x")  # a name a database uses, but no CURRENT
    with pytest.raises(lsm.Error, match="plain: not a database .no CURRENT"):
        lsm.destroy(tmp_path / "plain")
    assert os.listdir(tmp_path / "plain") == ["000001.log"]
    with pytest.raises(lsm.Error, match="missing: no such database directory"):
        lsm.destroy(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(lsm.Error, match="not a database"):
        lsm.destroy(tmp_path / "file")


@pytest.mark.parametrize("fn, name", [(lsm.destroy, "path"), (lsm.repair, "dbpath")])
@pytest.mark.parametrize("bad, exc", [(None, TypeError), (3, TypeError), (b"/x", TypeError), ("", ValueError)])
def test_bad_paths(fn, name, bad, exc):
    with pytest.raises(exc, match=name):
        fn(bad)


def test_repair_is_the_public_function(tmp_path):
    path = _make(tmp_path / "db")
    report = lsm.repair(path)
    assert report.dbpath == str(path) and report.files
    with lsm.open(path) as db:
        assert db.get(b"k0299") == b"v" * 50
    with pytest.raises(TypeError, match="options"):
        lsm.repair(path, options={"sync_mode": "never"})
    with pytest.raises(lsm.Error, match="no such database directory"):
        lsm.repair(tmp_path / "missing")
    with lsm.open(path):
        with pytest.raises(lsm.LockError):
            lsm.repair(path)
