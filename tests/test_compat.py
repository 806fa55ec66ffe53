"""Files written by an older release stay readable: ``tests/fixtures/v1db``
was written by the release whose formats were SSTable 1, log-record framing
2 and version edits 1 (``tests/fixtures/make_v1db.py``). Each test works on
a copy: opening a database for writing rewrites its manifest and logs."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import lsm
from lsm.sstable.format import FORMAT_VERSION, decode_footer_version

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
EXPECTED = json.load(open(os.path.join(HERE, "v1db.json")))


@pytest.fixture
def v1db(tmp_path):
    path = tmp_path / "v1db"
    shutil.copytree(os.path.join(HERE, "v1db"), path)
    return str(path)


def _table_versions(path: str) -> dict[str, int]:
    out = {}
    for name in os.listdir(path):
        if name.endswith(".sst"):
            with open(os.path.join(path, name), "rb") as f:
                out[name] = decode_footer_version(f.read())
    return out


def _check_contents(db) -> None:
    want = EXPECTED["entries"]
    got = {k.hex(): v.hex() for k, v in db.scan()}
    assert got == {k: e[0] for k, e in want.items()}
    for k, (value, version, expires) in want.items():
        e = db.get_entry(bytes.fromhex(k))
        assert (e.value.hex(), e.version, e.expires_at) == (value, version, expires)
    # reverse scans and snapshots read the old tables too
    assert [k.hex() for k in db.scan(reverse=True, keys_only=True)] == sorted(want, reverse=True)
    with db.snapshot() as s:
        assert s.get(bytes.fromhex(next(iter(sorted(want))))) is not None


def test_fixture_is_in_the_old_formats():
    path = os.path.join(HERE, "v1db")
    assert set(_table_versions(path).values()) == {1}
    assert any(name.endswith(".log") and os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def test_read_only_open_reads_old_tables_and_log(v1db):
    with lsm.open(v1db, read_only=True) as db:
        _check_contents(db)
    assert set(_table_versions(v1db).values()) == {1}  # nothing rewritten


def test_open_replays_the_old_log_and_compaction_rewrites_tables(v1db):
    with lsm.open(v1db) as db:
        _check_contents(db)
        db.compact_range()
        _check_contents(db)
    assert set(_table_versions(v1db).values()) == {FORMAT_VERSION}
    with lsm.open(v1db) as db:
        _check_contents(db)
