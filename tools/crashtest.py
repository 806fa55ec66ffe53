#!/usr/bin/env python3
"""Crash test driver (RocksDB's db_crashtest.py is the model).

Runs a writer child process that hammers a database from several threads,
kills it with SIGKILL, reopens the database and checks it against the
expected state the child logged:

* every operation (put, delete, batch, delete_range, compare-and-swap) is
  logged *before* it starts (``S``) and *after* it is
  acknowledged (``A``), each with one ``write(2)`` to an unbuffered file, so
  the log survives the kill exactly as far as the child got;
* each thread owns its keys and runs one operation at a time, so per key the
  history is a sequence whose only unacknowledged step is the last;
* after the kill, every key must hold the value of its last acknowledged
  operation, or the value of the one pending operation after it; a pending
  batch or range deletion must be there whole or not at all; keys never
  written are absent.

Modes:
  blackbox (default)  kill at a random moment (0.2-2.5 s into the run)
  whitebox            the child kills itself at a named crash point, reached
                      through a FileSystem wrapper (the lsm.fs seam):
                      wal-before-append, wal-after-append, wal-before-fsync,
                      wal-after-fsync, sst-after-sync, manifest-after-sync,
                      current-before-rename, current-after-rename, compaction-mid

    python tools/crashtest.py --duration 60 --seed 1
    python tools/crashtest.py --mode whitebox --duration 300 --sync-mode always
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import lsm
from lsm.fs import OsFileSystem

THREADS = 4
KEYS_PER_THREAD = 40
SYNC_MODES = ("always", "periodic", "never")
CRASH_POINTS = ("wal-before-append", "wal-after-append", "wal-before-fsync", "wal-after-fsync",
                "sst-after-sync", "manifest-after-sync", "current-before-rename",
                "current-after-rename", "compaction-mid")
DB_OPTIONS = dict(memtable_bytes=32 << 10, block_bytes=1024, target_file_bytes=32 << 10,
                  level_base_bytes=128 << 10, level_multiplier=4, l0_compaction_trigger=2,
                  sync_interval=0.02)


# -- child -----------------------------------------------------------------------


class CrashFS(OsFileSystem):
    """OsFileSystem that SIGKILLs its own process at the ``nth`` hit of a crash point."""

    def __init__(self, point: str, nth: int) -> None:
        self.point = point
        self.nth = nth
        self.hits = 0
        self.mu = threading.Lock()

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        with self.mu:
            self.hits += 1
            if self.hits >= self.nth:
                os.kill(os.getpid(), signal.SIGKILL)

    def open_writable(self, path: str, *, preallocate: int = 0):
        return _CrashFile(self, super().open_writable(path, preallocate=preallocate), path)

    def rename(self, src: str, dst: str) -> None:
        tmp = src.endswith(".dbtmp")
        if tmp:
            self.hit("current-before-rename")
        super().rename(src, dst)
        if tmp:
            self.hit("current-after-rename")


class _CrashFile:
    def __init__(self, fs: CrashFS, inner, path: str) -> None:
        self._fs, self._inner, self.path = fs, inner, path
        self._kind = "wal" if path.endswith(".log") else "sst" if path.endswith(".sst") else \
            "manifest" if "MANIFEST" in path else "other"

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes) -> None:
        if self._kind == "wal":
            self._fs.hit("wal-before-append")
        elif self._kind == "sst":
            self._fs.hit("compaction-mid")  # any table write: flush or compaction output
        self._inner.write(data)
        if self._kind == "wal":
            self._fs.hit("wal-after-append")

    def sync(self) -> None:
        if self._kind == "wal":
            self._fs.hit("wal-before-fsync")
        self._inner.sync()
        if self._kind == "wal":
            self._fs.hit("wal-after-fsync")
        elif self._kind == "sst":
            self._fs.hit("sst-after-sync")
        elif self._kind == "manifest":
            self._fs.hit("manifest-after-sync")

    def trim(self) -> bool:
        return self._inner.trim()

    def close(self) -> None:
        self._inner.close()


def child_main(args: argparse.Namespace) -> None:
    fs = CrashFS(args.crash_point, args.crash_nth) if args.crash_point else None
    db = lsm.DB(args.db, lsm.Options(sync_mode=args.sync_mode, **DB_OPTIONS), fs=fs)
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stop = time.monotonic() + args.run_seconds

    def log(line: str) -> None:
        os.write(log_fd, (line + "\n").encode())

    def worker(tid: int) -> None:
        rng = random.Random(args.seed * 1000 + tid)
        n = 0
        while time.monotonic() < stop:
            n += 1
            opid = f"{args.run}.{tid}.{n}"
            val = f"{args.run}-{tid}-{n}"
            r = rng.random()
            key = f"t{tid}-{rng.randrange(KEYS_PER_THREAD):03d}"
            if r < 0.55:
                ops = [[key, val]]
                log(f"S {tid} {opid} {json.dumps(ops)}")
                db.put(key.encode(), val.encode(), ttl=3600.0 if r < 0.05 else None)
            elif r < 0.70:
                ops = [[key, None]]
                log(f"S {tid} {opid} {json.dumps(ops)}")
                db.delete(key.encode())
            elif r < 0.74:
                a, b = sorted(rng.randrange(KEYS_PER_THREAD + 1) for _ in range(2))
                ops = [[f"t{tid}-{i:03d}", None] for i in range(a, b)]  # what the range deletes
                log(f"S {tid} {opid} {json.dumps(ops)}")
                db.delete_range(f"t{tid}-{a:03d}".encode(), f"t{tid}-{b:03d}".encode())
            elif r < 0.88:
                keys = sorted({f"t{tid}-{rng.randrange(KEYS_PER_THREAD):03d}" for _ in range(rng.randrange(2, 5))})
                ops = [[k, None if rng.random() < 0.2 else f"{val}/{i}"] for i, k in enumerate(keys)]
                log(f"S {tid} {opid} {json.dumps(ops)}")
                b = lsm.WriteBatch()
                for k, v in ops:
                    if v is None:
                        b.delete(k.encode())
                    else:
                        b.put(k.encode(), v.encode())
                db.write(b)
            else:
                e = db.get_entry(key.encode())
                ops = [[key, val]]
                log(f"S {tid} {opid} {json.dumps(ops)}")
                if db.compare_and_swap(key.encode(), e.version if e else 0, val.encode()) is None:
                    raise SystemExit(f"CAS on an owned key failed: {key}")
            log(f"A {tid} {opid}")

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.02)
        if args.flush_sometimes and random.random() < 0.05:
            db.flush()
    db.close()
    os.close(log_fd)


# -- parent ----------------------------------------------------------------------


class Failure(Exception):
    pass


def verify(dbpath: str, log_path: str, baseline: dict[str, str]) -> tuple[dict[str, str], int, int]:
    """Check the reopened DB against the baseline plus the logged operations.

    Returns ``(new baseline, acknowledged ops, pending ops)``.
    """
    started: dict[str, tuple[int, list]] = {}
    acked: set[str] = set()
    per_thread: dict[int, list[str]] = {}
    lines: list[str] = []
    if os.path.exists(log_path):  # a whitebox kill during open comes before the log exists
        with open(log_path, "rb") as f:
            lines = f.read().decode().splitlines(keepends=True)
    for line in lines:
        if not line.endswith("\n"):
            break  # a torn log line: the kill hit mid-write(2) (cannot happen with O_APPEND, but be safe)
        parts = line.rstrip("\n").split(" ", 3)
        if parts[0] == "S":
            tid, opid = int(parts[1]), parts[2]
            started[opid] = (tid, json.loads(parts[3]))
            per_thread.setdefault(tid, []).append(opid)
        elif parts[0] == "A":
            acked.add(parts[2])
    expected = dict(baseline)
    pending: list[list] = []
    for tid, opids in per_thread.items():
        for i, opid in enumerate(opids):
            ops = started[opid][1]
            if opid in acked:
                for k, v in ops:
                    if v is None:
                        expected.pop(k, None)
                    else:
                        expected[k] = v
            elif i == len(opids) - 1:
                pending.append(ops)
            else:
                raise Failure(f"op {opid} of thread {tid} never acknowledged but later ops ran")
    if os.path.exists(os.path.join(dbpath, "CURRENT")):
        with lsm.open(dbpath, read_only=True) as db:
            actual = {k.decode(): v.decode() for k, v in db.scan()}
    else:
        actual = {}  # killed before the first open created the database: it holds nothing
    pending_keys = {k for ops in pending for k, _ in ops}
    for k in set(expected) | set(actual):
        if k in pending_keys:
            continue
        if expected.get(k) != actual.get(k):
            raise Failure(f"key {k!r}: expected {expected.get(k)!r}, found {actual.get(k)!r}")
    for ops in pending:
        applied = all(actual.get(k) == v for k, v in ops)
        not_applied = all(actual.get(k) == expected.get(k) for k, _ in ops)
        if not (applied or not_applied):
            raise Failure(f"pending batch {ops} is partially applied: "
                          f"{ {k: actual.get(k) for k, _ in ops} } (before: { {k: expected.get(k) for k, _ in ops} })")
    return actual, len(acked), len(pending)


def parent_main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="lsm-crashtest-")
    dbpath = os.path.join(work, "db")
    baseline: dict[str, str] = {}
    deadline = time.monotonic() + args.duration
    runs = acked_total = pending_total = kills = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() < deadline or runs == 0:
            runs += 1
            log_path = os.path.join(work, f"ops-{runs}.log")
            sync_mode = args.sync_mode or rng.choice(SYNC_MODES)
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--db", dbpath, "--log", log_path,
                   "--run", str(runs), "--seed", str(rng.randrange(1 << 30)), "--sync-mode", sync_mode,
                   "--run-seconds", "30"]
            point = None
            if args.mode == "whitebox":
                point = rng.choice(CRASH_POINTS)
                cmd += ["--crash-point", point, "--crash-nth", str(rng.randrange(1, 40))]
            if rng.random() < 0.5:
                cmd.append("--flush-sometimes")
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait = rng.uniform(0.3, 2.5) if args.mode == "blackbox" else 4.0
            try:
                child.wait(wait)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
            err = child.stderr.read().decode() if child.stderr else ""
            if child.returncode == -signal.SIGKILL:
                kills += 1
            elif child.returncode != 0:
                raise Failure(f"child exited with {child.returncode}: {err[-2000:]}")
            try:
                baseline, acked, pending = verify(dbpath, log_path, baseline)
            except Failure as e:
                keep = tempfile.mkdtemp(prefix="lsm-crashtest-failed-")
                shutil.copytree(dbpath, os.path.join(keep, "db"))
                shutil.copy(log_path, keep)
                raise Failure(f"run {runs} (sync_mode={sync_mode}, crash point={point}): {e}; "
                              f"database and op log kept in {keep}") from None
            acked_total += acked
            pending_total += pending
            if os.path.exists(log_path):
                os.remove(log_path)
        elapsed = time.monotonic() - t0
        print(f"crashtest: {args.mode} seed={args.seed} runs={runs} kills={kills} "
              f"acknowledged_ops={acked_total} pending_at_kill={pending_total} keys={len(baseline)} "
              f"seconds={elapsed:.0f} failures=0")
        return 0
    except Failure as e:
        print(f"crashtest: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="seconds to keep killing (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("blackbox", "whitebox"), default="blackbox")
    p.add_argument("--sync-mode", choices=SYNC_MODES, default=None,
                   help="fixed sync mode (default: a random one per run)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    p.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--run-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument("--crash-point", choices=CRASH_POINTS, help=argparse.SUPPRESS)
    p.add_argument("--crash-nth", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--flush-sometimes", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    return parent_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
