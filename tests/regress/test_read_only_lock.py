"""Regression: read_only=True opens and every lsm-dump read command failed on
a read-only file system, or in a directory the user cannot write, because
LOCK was opened read-write (and created) even for a shared lock. A shared
flock works on a read-only descriptor: LOCK is now opened O_RDONLY for it,
and a read-only open never creates LOCK (without one it locks the
directory itself, which every writer locks too)."""

import errno
import os
import stat

import pytest

import lsm
from lsm import cli, dump

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@pytest.fixture
def db_dir(tmp_path):
    path = tmp_path / "db"
    with lsm.open(path, sync_mode="never") as db:
        db.put(b"table", b"1")
        db.flush()
        db.put(b"log", b"2")
    return path


@pytest.fixture
def read_only_fs(monkeypatch, db_dir):
    """Every open of a file under ``db_dir`` for writing fails with EROFS, as
    on a read-only mount (simulated: tests may run as root, whom chmod does
    not stop). Reads go through: that is what a read-only open must need."""
    real_open = os.open
    prefix = str(db_dir)

    def ro_open(path, flags, *args, **kwargs):
        if str(path).startswith(prefix) and flags & _WRITE_FLAGS:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", ro_open)
    return db_dir


def _reads(path):
    with lsm.open(path, read_only=True) as db:
        return db.get(b"table"), db.get(b"log")


def test_read_only_open_on_a_read_only_file_system(read_only_fs):
    assert _reads(read_only_fs) == (b"1", b"2")


def test_dump_read_commands_on_a_read_only_file_system(read_only_fs, capsys):
    path = str(read_only_fs)
    assert dump.describe_manifest(path).files
    assert not [f for f in dump.verify(path) if f.severity == "error"]
    for argv in (["scan", path], ["get", path, "log"], ["stats", path], ["manifest", path], ["verify", path]):
        assert cli.main(argv) == 0, argv
    capsys.readouterr()


def test_the_shared_lock_is_taken_read_only_and_still_excludes_a_writer(db_dir, monkeypatch):
    real_open = os.open
    lock_flags = []

    def recording_open(path, flags, *args, **kwargs):
        if str(path).endswith("LOCK"):
            lock_flags.append(flags)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    reader = lsm.open(db_dir, read_only=True)
    assert lock_flags and not lock_flags[0] & _WRITE_FLAGS
    with pytest.raises(lsm.LockError):
        lsm.open(db_dir)
    reader.close()


def test_without_lock_a_reader_locks_the_directory(db_dir):
    os.remove(db_dir / "LOCK")
    reader = lsm.open(db_dir, read_only=True)
    assert not (db_dir / "LOCK").exists()  # a read-only open creates nothing
    with pytest.raises(lsm.LockError):
        lsm.open(db_dir)  # the writer creates LOCK, then meets the reader on the directory
    reader2 = lsm.open(db_dir, read_only=True)  # readers share
    reader2.close()
    reader.close()
    with lsm.open(db_dir) as db:  # and with the readers gone the writer opens
        assert db.get(b"log") == b"2"
        with pytest.raises(lsm.LockError):
            lsm.open(db_dir, read_only=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0555; the EROFS tests cover this path")
def test_read_only_open_of_a_directory_the_user_cannot_write(db_dir):
    mode = stat.S_IMODE(os.stat(db_dir).st_mode)
    os.chmod(db_dir / "LOCK", 0o444)
    os.chmod(db_dir, 0o555)
    try:
        assert _reads(db_dir) == (b"1", b"2")
    finally:
        os.chmod(db_dir, mode)
