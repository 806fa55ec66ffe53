"""Open file descriptors stay bounded: a database with many more tables than
the process may open files still reads, scans, writes, flushes and compacts,
in a child process with a low ``RLIMIT_NOFILE``.

What holds descriptors: each open table reader one (its memory map's: the
map keeps a descriptor of its own, the reader closes the one it opened),
bounded by the table cache; the ``LOCK``, the write-ahead log and the
manifest one each; each worker process two pipe ends in the parent; and a
compaction's input tables, in the worker (or the compaction thread).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import lsm

resource = pytest.importorskip("resource")

TABLES = 150

_CHILD = r"""
import json, os, resource, sys
import lsm

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), hard))
opts = json.loads(sys.argv[3])
most = 0

def fds():
    global most
    most = max(most, len(os.listdir("/proc/self/fd")))

db = lsm.open(sys.argv[1], sync_mode="never", **opts)
n = int(sys.argv[4])
for i in range(n):                         # every key, by point reads
    assert db.get(b"%08d" % i) == b"v%07d" % i, i
    if not i % 1000:
        fds()
assert sum(1 for _ in db.scan(keys_only=True)) == n   # one scan over every table
fds()
for i in range(0, n, 7):                   # writes, flushes and compactions on top
    db.put(b"%08d" % i, b"new")
    if not i % 5000:
        db.flush()
        fds()
db.compact_range()
fds()
assert db.get(b"%08d" % 7) == b"new" and db.get(b"%08d" % 8) == b"v%07d" % 8
stats = db.stats()
db.close()
print(json.dumps({"most_fds": most, "open_tables": stats["memory"]["open_tables"],
                  "tables": sum(len(lv["files"]) for lv in stats["levels"])}))
"""


@pytest.fixture(scope="module")
def many_tables(tmp_path_factory) -> tuple[str, int]:
    """A database of at least 150 small tables in L1. (A merge cuts its
    outputs between windows of 2048 entries: small values keep it quick.)"""
    path = tmp_path_factory.mktemp("nofile") / "db"
    n = 2048 * (TABLES + 10)
    with lsm.open(path, sync_mode="never", target_file_bytes=16 << 10, memtable_bytes=4 << 20,
                  disable_auto_compactions=True) as db:
        for start in range(0, n, 2000):
            with db.write_batch() as batch:
                for i in range(start, min(n, start + 2000)):
                    batch.put(b"%08d" % i, b"v%07d" % i)
        db.compact_range()
        assert sum(len(lv["files"]) for lv in db.stats()["levels"]) >= TABLES
    return str(path), n


def _run(path: str, limit: int, n: int, **opts) -> subprocess.CompletedProcess:
    """The child on a copy of the database at ``path`` (the child writes)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(path, os.path.join(tmp, "db"))
        return subprocess.run([sys.executable, "-c", _CHILD, copy, str(limit), json.dumps(opts), str(n)],
                              capture_output=True, text=True, timeout=300)


def test_reads_writes_and_compactions_within_a_low_descriptor_limit(many_tables) -> None:
    path, n = many_tables
    done = _run(path, 64, n, max_open_files=40, target_file_bytes=16 << 10, memtable_bytes=1 << 20)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["tables"] >= TABLES and got["open_tables"] <= 40
    assert got["most_fds"] <= 64


def test_table_cache_fits_under_the_limit_when_max_open_files_does_not(many_tables) -> None:
    # max_open_files (default 1000) above the soft limit: the table cache
    # keeps fewer tables open rather than failing reads with EMFILE.
    path, n = many_tables
    done = _run(path, 64, n, target_file_bytes=16 << 10, memtable_bytes=1 << 20)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["open_tables"] <= 32 and got["most_fds"] <= 64
