"""Crashes and failures at every step of DB.ingest: a power cut (through
tests/faultfs.py) or a failure of each open, write, fsync, rename, link and
directory fsync in turn, and SIGKILL of a process in the middle of an ingest.
Afterwards the database opens, holds either every ingested file or none, and
has lost nothing acknowledged before the ingest."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

import lsm
from faultfs import Crashed, FaultFS
from lsm import Options

OPTS = dict(memtable_bytes=8 << 10, block_bytes=512, target_file_bytes=4 << 10, disable_auto_compactions=True,
            sync_mode="always")
N = 200


def _ext(tmp_path) -> list[str]:
    """Two external files: even keys 0..2N step 2 with value "ing", in two halves."""
    out = []
    for half in range(2):
        with lsm.TableFileWriter(str(tmp_path / f"ext{half}.sst"), block_bytes=512) as w:
            for i in range(half * N, (half + 1) * N, 2):
                w.put(b"k%05d" % i, b"ing")
        out += [f.path for f in w.finish()]
    return out


def _prepare(path, fs=None) -> dict[bytes, bytes]:
    """Acknowledged (synced) writes before the ingest, some flushed, some in
    the memtable; some of their keys are in the ingested files."""
    db = lsm.DB(path, Options(**OPTS), fs=fs)
    acked = {}
    for i in range(0, 2 * N, 3):
        db.put(b"k%05d" % i, b"old")
        acked[b"k%05d" % i] = b"old"
        if i == N:
            db.flush()
    db.close()
    return acked


def _check(path, acked) -> bool:
    """The reopened DB holds all of the ingest or none of it, plus every
    acknowledged write; returns whether the ingest is there."""
    with lsm.DB(path, Options(**OPTS)) as db:
        state = dict(db.scan())
        ingested = {b"k%05d" % i for i in range(0, 2 * N, 2)}
        present = {k for k in ingested if state.get(k) == b"ing"}
        assert present in (set(), ingested), f"{len(present)} of {len(ingested)} ingested keys present"
        has = bool(present)
        for k, v in acked.items():
            assert state.get(k) == (b"ing" if has and k in ingested else v), k
        assert set(state) == set(acked) | (ingested if has else set())
        # and it stays writable
        db.put(b"after", b"1")
    return has


OPS = ("open", "write", "sync", "rename", "link", "fsync_dir")


@pytest.mark.parametrize("move", [False, True])
@pytest.mark.parametrize("op", ["sync", "link", "fsync_dir"])  # FaultFS's crash points (writes: see below)
def test_power_cut_at_every_step_of_an_ingest(tmp_path, op, move):
    """Cut before or after the nth fsync / link / directory fsync from the
    ingest's start (a cut just after a write is a cut before the next fsync)."""
    outcomes = []
    for nth in range(1, 40):
        for when in ("before", "after"):
            d = tmp_path / f"{nth}{when}"
            d.mkdir()
            path = str(d / "db")
            acked = _prepare(path)
            files = _ext(d)
            fs = FaultFS()
            db = lsm.DB(path, Options(**OPTS), fs=fs)
            rule = fs.crash_at(op, nth=nth, when=when)
            try:
                db.ingest(files, move=move)
                done = True
            except (Crashed, lsm.DiskError, lsm.BackgroundError):
                done = False
            try:
                db.close()
            except (lsm.DiskError, Crashed):
                pass
            has = _check(path, acked)
            if done and not rule.fired:
                assert has
            outcomes.append((rule.fired, has))
        if not rule.fired:
            break  # the ingest ran out of such operations: every step was cut once
    assert any(fired for fired, _ in outcomes) or (op == "link" and not move)
    assert any(has for _, has in outcomes) and (op == "link" and not move or not all(h for _, h in outcomes))


@pytest.mark.parametrize("op", OPS)
def test_failure_of_every_step_of_an_ingest(tmp_path, op):
    for nth in range(1, 40):
        d = tmp_path / str(nth)
        d.mkdir()
        path = str(d / "db")
        acked = _prepare(path)
        files = _ext(d)
        fs = FaultFS()
        db = lsm.DB(path, Options(**OPTS), fs=fs)
        fs.fail(op, nth=nth)
        seen = fs.counts[op]
        try:
            db.ingest(files, move=(nth % 2 == 0))
            failed = False
        except (lsm.DiskError, lsm.BackgroundError):
            failed = True
        fs.clear()
        if failed:
            # a failure before the commit leaves nothing; reads still work
            assert db.get(b"k00000") in (b"old", b"ing")
        try:
            db.close()
        except lsm.DiskError:
            pass
        has = _check(path, acked)
        if not failed:
            assert has
        if fs.counts[op] - seen < nth:
            break  # no nth such operation: every one has failed once


CHILD = textwrap.dedent("""
    import os, signal, sys
    import lsm
    from lsm.fs import OsFileSystem

    path, op, nth, files, move = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), sys.argv[5] == "1"

    class KillFS(OsFileSystem):
        armed = False
        hits = 0

        def hit(self, name):
            if self.armed and name == op:
                KillFS.hits += 1
                if KillFS.hits >= nth:
                    os.kill(os.getpid(), signal.SIGKILL)

        def open_writable(self, p, *, preallocate=0):
            self.hit("open")
            return Wrapped(self, super().open_writable(p, preallocate=preallocate))

        def open_appendable(self, p):
            self.hit("open")
            return Wrapped(self, super().open_appendable(p))

        def open_mapped(self, p, *, step):
            return Wrapped(self, super().open_mapped(p, step=step))

        def rename(self, a, b):
            self.hit("rename")
            super().rename(a, b)

        def link(self, a, b):
            self.hit("link")
            super().link(a, b)

        def fsync_dir(self, p):
            self.hit("fsync_dir")
            super().fsync_dir(p)

    class Wrapped:
        def __init__(self, fs, f):
            self.fs, self.f, self.path = fs, f, f.path

        @property
        def size(self):
            return self.f.size

        def write(self, data):
            self.fs.hit("write")
            self.f.write(data)

        def sync(self):
            self.fs.hit("sync")
            self.f.sync()

        def trim(self):
            return self.f.trim()

        def rewind(self, n):
            self.f.rewind(n)

        def close(self):
            self.f.close()

    fs = KillFS()
    db = lsm.DB(path, lsm.Options(sync_mode="always", disable_auto_compactions=True), fs=fs)
    fs.armed = True
    db.ingest(files, move=move)
    fs.armed = False
    print("done", flush=True)
    db.close()
""")


@pytest.mark.parametrize("op", ["open", "write", "sync", "link", "fsync_dir"])
def test_sigkill_at_every_step_of_an_ingest(tmp_path, op):
    for nth in range(1, 30):
        d = tmp_path / str(nth)
        d.mkdir()
        path = str(d / "db")
        acked = _prepare(path)
        files = _ext(d)
        move = op == "link" or nth % 2 == 0
        r = subprocess.run([sys.executable, "-c", CHILD, path, op, str(nth), ",".join(files), "1" if move else "0"],
                           capture_output=True, text=True, timeout=120)
        killed = r.returncode == -signal.SIGKILL
        assert killed or (r.returncode == 0 and "done" in r.stdout), r.stderr[-2000:]
        has = _check(path, acked)
        if not killed:
            assert has
            break
    else:
        pytest.fail("the ingest never finished")
