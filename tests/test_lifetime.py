"""Iterator lifetime: scans (short ones read whole at the call, long ones
read in windows) and cursors, from a DB or a snapshot, closed explicitly,
by ``with``, by their snapshot's close or by the DB's: every later use
raises ClosedError, and nothing is returned after a close."""

from __future__ import annotations

import pytest

import lsm

N = 200


@pytest.fixture
def db(tmp_path):
    d = lsm.open(tmp_path, sync_mode="never", block_bytes=256, memtable_bytes=4096)
    for i in range(N):
        d.put(b"k%04d" % i, b"v%04d" % i)
    d.flush()
    yield d
    d.close()


def short_scan(src):
    it = src.scan(start=b"k0010", stop=b"k0020")
    assert it._chunks.release is None and src is not None  # read whole at the call: no view held
    return it


def long_scan(src):
    it = src.scan()
    assert it._chunks.gen is not None
    return it


SCANS = [short_scan, long_scan]


@pytest.mark.parametrize("make", SCANS)
def test_scan_after_db_close(db, make):
    it = make(db)
    assert next(it)[0] in (b"k0000", b"k0010")
    db.close()
    with pytest.raises(lsm.ClosedError):
        next(it)
    with pytest.raises(lsm.ClosedError):
        next(it)  # and stays closed
    with pytest.raises(lsm.ClosedError):
        db.scan()


@pytest.mark.parametrize("make", SCANS)
def test_scan_closed_and_with(db, make):
    it = make(db)
    next(it)
    it.close()
    it.close()  # idempotent
    with pytest.raises(lsm.ClosedError):
        next(it)
    with make(db) as it2:
        next(it2)
    with pytest.raises(lsm.ClosedError):
        next(it2)


@pytest.mark.parametrize("make", SCANS)
def test_snapshot_scan_after_snapshot_close(db, make):
    snap = db.snapshot()
    it = make(snap)
    next(it)
    snap.close()
    with pytest.raises(lsm.ClosedError):
        next(it)
    with pytest.raises(lsm.ClosedError):
        snap.scan()
    assert list(db.scan(start=b"k0010", stop=b"k0012", keys_only=True)) == [b"k0010", b"k0011"]


@pytest.mark.parametrize("make", SCANS)
def test_snapshot_scan_after_db_close(db, make):
    snap = db.snapshot()
    it = make(snap)
    next(it)
    db.close()
    with pytest.raises(lsm.ClosedError):
        next(it)
    with pytest.raises(lsm.ClosedError):
        snap.scan()
    snap.close()  # still fine after the DB's close


def test_scan_of_closed_snapshot_in_with(db):
    with db.snapshot() as snap:
        it = long_scan(snap)
        next(it)
    with pytest.raises(lsm.ClosedError):
        next(it)


def test_exhausted_scan_stays_exhausted_after_close(db):
    it = db.scan(start=b"k0010", stop=b"k0012")
    assert list(it) == [(b"k0010", b"v0010"), (b"k0011", b"v0011")]
    db.close()
    assert list(it) == []


# -- cursors ---------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["db", "snapshot"])
def test_cursor_lifetime(db, via):
    snap = db.snapshot()
    src = snap if via == "snapshot" else db
    c = src.cursor()
    assert c.seek(b"k0010") and c.next()
    c.close()
    c.close()  # idempotent
    for use in (lambda: c.key, lambda: c.valid, c.next, c.seek_to_first, lambda: c.seek(b"k")):
        with pytest.raises(lsm.ClosedError):
            use()
    with src.cursor() as c2:
        c2.seek_to_first()
    with pytest.raises(lsm.ClosedError):
        c2.next()
    c3 = src.cursor()
    assert c3.seek(b"k0100")
    if via == "snapshot":
        snap.close()  # closes its cursors
        with pytest.raises(lsm.ClosedError, match="snapshot"):
            _ = c3.key
        with pytest.raises(lsm.ClosedError):
            snap.cursor()
        c4 = db.cursor()
        assert c4.seek(b"k0100")
    else:
        c4 = c3
    db.close()  # closes the DB's cursors (and the snapshot's)
    for use in (lambda: c4.key, lambda: c4.value, lambda: c4.entry, c4.next, c4.prev, c4.seek_to_last,
                lambda: c4.seek(b"k")):
        with pytest.raises(lsm.ClosedError, match="closed"):
            use()
    with pytest.raises(lsm.ClosedError):
        db.cursor()
    with pytest.raises(lsm.ClosedError):
        snap.cursor()
    snap.close()
    c4.close()


def test_cursor_releases_its_view(tmp_path):
    with lsm.open(tmp_path, sync_mode="never") as db:
        before = len(db._views)
        c = db.cursor()
        assert len(db._views) == before + 1
        c.close()
        assert len(db._views) == before
        with db.snapshot() as snap:
            with snap.cursor():
                # the snapshot's view (a sequence) and the cursor's (pinning the files it reads)
                assert len(db._views) == before + 2
            assert len(db._views) == before + 1
