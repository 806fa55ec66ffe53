"""Regression (found while testing the obsolete-file pass): after a flush's
manifest fsync failed, a compaction that was running meanwhile still
appended its own edit to that manifest and then ran the obsolete-file pass,
which deleted the flush's table: the DB thought the failed edit was never
applied, but its bytes were in the manifest, so the next open found the
manifest naming a missing table. After a background error the manifest's
state on disk is unknown: no further edit is appended and no file is
deleted until the database is reopened."""

import threading

import pytest

import lsm
from faultfs import FaultFS
from lsm import Options
from lsm.manifest import VersionEdit


class GatedCompactionFS(FaultFS):
    """Compaction outputs wait for ``gate`` (flushes go through)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def open_writable(self, path, *, preallocate=0):
        if path.endswith(".sst") and threading.current_thread().name.startswith("lsm-compact"):
            self.waiting.set()
            self.gate.wait(30)
        return super().open_writable(path, preallocate=preallocate)


def test_a_failed_manifest_fsync_stops_edits_and_deletions(tmp_path):
    fs = GatedCompactionFS()
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never", l0_compaction_trigger=2, memtable_bytes=4096),
                fs=fs)
    for round_ in range(2):
        for i in range(20):
            db.put(b"k%02d" % i, b"%d" % round_ * 50)
        db.flush()
    assert fs.waiting.wait(10)  # a compaction of the two L0 tables is under way
    for i in range(20):
        db.put(b"new%02d" % i, b"n" * 50)
    fs.fail("sync", path_contains="MANIFEST")
    with pytest.raises(lsm.BackgroundError):
        db.flush()  # its edit is in the manifest file, but not known durable
    fs.gate.set()
    with db._mu:
        while db._bg_active:
            db._bg_cv.wait(0.05)
    fs.process_crash()  # the manifest keeps what was written
    with lsm.open(tmp_path / "db") as db2:
        assert db2.get(b"k05") == b"1" * 50 and db2.get(b"new07") == b"n" * 50
    try:
        db.close()
    except lsm.Error:
        pass


def test_no_manifest_edit_after_a_failed_one(tmp_path):
    fs = FaultFS()
    db = lsm.DB(tmp_path / "db", Options(sync_mode="never", compaction_process=False), fs=fs)
    db.put(b"a", b"1")
    fs.fail("sync", path_contains="MANIFEST")
    with pytest.raises(lsm.BackgroundError):
        db.flush()
    manifest = db._versions._manifest
    size = manifest.size
    with pytest.raises(lsm.Error, match="failed manifest write"):
        db._versions.log_and_apply(VersionEdit())
    assert manifest.size == size  # nothing was appended
    db.close()
