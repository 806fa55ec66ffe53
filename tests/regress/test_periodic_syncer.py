"""Regression: with sync_mode="periodic" the syncer thread slept for
sync_interval, so close() (which joins it) blocked for up to that long; and
sync_interval=inf or 1e10 was accepted, after which the syncer died with
OverflowError and periodic fsyncs silently never happened."""

import math
import time

import pytest

import lsm
from lsm import Options


def test_close_does_not_wait_for_the_sync_interval(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="periodic", sync_interval=30.0)
    db.put(b"k", b"v")
    t0 = time.monotonic()
    db.close()
    assert time.monotonic() - t0 < 5
    with lsm.open(tmp_path / "db") as db2:
        assert db2.get(b"k") == b"v"


def test_the_syncer_fsyncs_with_the_largest_interval_allowed(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="periodic", sync_interval=3600.0)
    syncer = [t for t in db._threads if t.name.startswith("lsm-sync")]
    time.sleep(0.05)
    assert syncer and syncer[0].is_alive()
    db.close()
    assert not syncer[0].is_alive()


@pytest.mark.parametrize("value, error", [
    (math.inf, ValueError), (1e10, ValueError), (3600.5, ValueError), (math.nan, ValueError),
    (0, ValueError), (-1.0, ValueError), (True, TypeError), ("1", TypeError),
])
def test_bad_sync_interval_is_refused(value, error):
    with pytest.raises(error, match="sync_interval"):
        Options(sync_interval=value)


@pytest.mark.parametrize("value", [1e-3, 1, 0.05, 3600])
def test_good_sync_interval_is_accepted(value):
    assert Options(sync_interval=value).sync_interval == value
