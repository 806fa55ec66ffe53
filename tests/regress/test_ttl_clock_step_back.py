"""Regression: an entry whose TTL had expired (read as absent) came back
after a reopen with the system clock set back, until compaction happened to
drop it. TTL is judged against the database's clock, which never goes back:
within a session (the highest time seen), and across reopens from the time
the manifest last recorded (every edit records it; close() writes one)."""

import time

import pytest

import lsm
from faultfs import FaultFS


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock(2_000_000_000.0)
    monkeypatch.setattr(time, "time", c)
    return c


def test_expired_stays_expired_within_a_session(tmp_path, clock):
    with lsm.open(tmp_path / "db") as db:
        db.put(b"k", b"v", ttl=10)
        clock.t += 20
        assert db.get(b"k") is None
        clock.t -= 15  # the system clock steps back, before the expiry
        assert db.get(b"k") is None and list(db.scan()) == [] and db.get_entry(b"k") is None


def test_expired_stays_expired_after_a_clean_reopen(tmp_path, clock):
    with lsm.open(tmp_path / "db") as db:
        db.put(b"k", b"v", ttl=10)
        db.put(b"keep", b"v", ttl=1000)
        clock.t += 20
        assert db.get(b"k") is None
    clock.t -= 15
    with lsm.open(tmp_path / "db") as db:
        assert db.get(b"k") is None and dict(db.scan()) == {b"keep": b"v"}


def test_expired_stays_expired_after_a_crash_once_an_edit_recorded_the_time(tmp_path, clock):
    fs = FaultFS()
    db = lsm.DB(tmp_path / "db", lsm.Options(sync_mode="always"), fs=fs)
    db.put(b"k", b"v", ttl=10)
    clock.t += 20
    db.put(b"other", b"x")
    db.flush()  # a manifest edit: records the clock
    fs.process_crash()
    try:
        db.close()
    except lsm.Error:
        pass
    clock.t -= 15
    with lsm.open(tmp_path / "db") as db2:
        assert db2.get(b"k") is None and db2.get(b"other") == b"x"


def test_the_clock_is_in_the_manifest(tmp_path, clock):
    from lsm.fs import OsFileSystem
    from lsm.manifest import read_current, read_manifest
    with lsm.open(tmp_path / "db") as db:
        db.put(b"k", b"v")
        clock.t += 5
    fs = OsFileSystem()
    edits = [e for _, e in read_manifest(fs, read_current(fs, str(tmp_path / "db")))]
    assert edits[-1].clock == pytest.approx(clock.t, abs=1e-5)
