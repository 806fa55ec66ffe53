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
  faults              no kill: directory listings and file removals fail now
                      and then (EMFILE, ENOMEM, EIO) while the child runs; it
                      must still close on time (a stuck background thread
                      shows as a hang) and lose nothing
  powercut            in this process, through the fault-injection filesystem
                      (tests/faultfs.py): a single writer with random sync=
                      arguments across many memtable switches, in a random
                      sync_mode, until the power is cut between two writes or
                      at a random fsync (log, table, manifest, directory).
                      What reopens must be the state after a prefix of the
                      writes that includes every one acknowledged as durable
                      (sync=True, sync=None under "always", or before a
                      flush()). Each directory lives through several cuts,
                      so recovery's own writes are cut too.

    python tools/crashtest.py --duration 60 --seed 1
    python tools/crashtest.py --mode whitebox --duration 300 --sync-mode always
    python tools/crashtest.py --mode powercut --duration 60
"""

from __future__ import annotations

import argparse
import errno
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from faultfs import Crashed, FaultFS  # noqa: E402 - the fault-injection filesystem of the tests

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


class FlakyDirFS(OsFileSystem):
    """OsFileSystem whose directory listings and removals fail at random
    (probability ``rate`` each, once ``armed``): transient EMFILE, ENOMEM or
    EIO, which the obsolete-file pass must shrug off."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.armed = False
        self.mu = threading.Lock()

    def _maybe_fail(self, path: str) -> None:
        with self.mu:
            fail = self.armed and self.rng.random() < self.rate
            err = self.rng.choice((errno.EMFILE, errno.ENOMEM, errno.EIO))
        if fail:
            raise lsm.DiskError(err, os.strerror(err), path)

    def listdir(self, path: str) -> list[str]:
        self._maybe_fail(path)
        return super().listdir(path)

    def remove(self, path: str) -> None:
        self._maybe_fail(path)
        super().remove(path)


def child_main(args: argparse.Namespace) -> None:
    fs = CrashFS(args.crash_point, args.crash_nth) if args.crash_point else None
    if args.dir_faults:
        fs = FlakyDirFS(args.dir_faults, args.seed)
    db = lsm.DB(args.db, lsm.Options(sync_mode=args.sync_mode, **DB_OPTIONS), fs=fs)
    if args.dir_faults:
        fs.armed = True  # after the open: failing its log listing would only fail the open
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


# -- power cuts (in this process) --------------------------------------------------


def powercut_generation(path: str, rng: random.Random, baseline: dict[bytes, bytes], gen: int
                        ) -> tuple[dict[bytes, bytes], int]:
    """Open ``path`` through a FaultFS, write until the power is cut, reopen
    and check. Returns ``(state found, acknowledged writes)``."""
    sync_mode = rng.choice(SYNC_MODES)
    fs = FaultFS()
    where = rng.choice(("between", "sync", "fsync_dir"))
    cut_after = None
    if where == "between":
        cut_after = rng.randrange(1, 300)
    else:
        fs.crash_at(where, path_contains=rng.choice(("", ".log", ".sst", "MANIFEST")),
                    nth=rng.randrange(1, 40), when=rng.choice(("before", "after")))
    history: list[list[tuple[bytes, bytes | None]]] = []  # acknowledged writes, in commit order
    durable = 0  # history[:durable] was acknowledged as durable
    pending = None
    db = None
    try:
        db = lsm.DB(path, lsm.Options(sync_mode=sync_mode, memtable_bytes=rng.choice((1024, 4096)),
                                      max_immutable_memtables=rng.choice((1, 2, 4)), l0_compaction_trigger=2,
                                      block_bytes=1024, target_file_bytes=8 << 10, level_base_bytes=32 << 10,
                                      sync_interval=rng.choice((0.002, 0.05, 5.0))), fs=fs)
        for i in range(300):
            if i == cut_after:
                fs.power_cut()
                break
            key = b"k%02d" % rng.randrange(40)
            value = b"%d.%d-" % (gen, i) + b"." * rng.randrange(150)
            sync = rng.choice((None,) * 16 + (True, True, False))  # None: per sync_mode
            r = rng.random()
            if r < 0.7:
                pending = [(key, value)]
                db.put(key, value, sync=sync)
            elif r < 0.85:
                pending = [(key, None)]
                db.delete(key, sync=sync)
            else:
                keys = sorted({b"k%02d" % rng.randrange(40) for _ in range(rng.randrange(2, 5))})
                pending = [(k, None if rng.random() < 0.25 else value + b"/%d" % j) for j, k in enumerate(keys)]
                b = lsm.WriteBatch()
                for k, v in pending:
                    (b.delete(k) if v is None else b.put(k, v))
                db.write(b, sync=sync)
            history.append(pending)
            pending = None
            if sync or (sync is None and sync_mode == "always"):
                durable = len(history)
            if rng.random() < 0.02:
                db.flush()  # returns once every earlier write is in a table
                durable = len(history)
    except (lsm.Error, Crashed, OSError) as e:
        if not fs.dead:
            raise Failure(f"{type(e).__name__} before any power cut: {e}") from e
    if not fs.dead:
        fs.power_cut()  # the crash point was not reached: cut now
    if db is not None:
        try:
            db.close()  # a ghost: closes nothing for real
        except (lsm.Error, Crashed, OSError):
            pass
    try:
        with lsm.open(path) as db2:
            actual = dict(db2.scan())
    except lsm.Error as e:
        raise Failure(f"reopen after a power cut (sync_mode={sync_mode}, cut {where}): {e}") from e
    state = dict(baseline)
    candidates = [dict(state)] if durable == 0 else []
    for n, ops in enumerate(history + ([pending] if pending else []), 1):
        for k, v in ops:
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        if n >= durable:
            candidates.append(dict(state))
    if actual not in candidates:
        diff = {k: (state.get(k, b"")[:12], actual.get(k, b"")[:12])
                for k in sorted(set(state) | set(actual)) if state.get(k) != actual.get(k)}
        raise Failure(f"after a power cut (sync_mode={sync_mode}, cut {where}) the database is not the "
                      f"state after a prefix of the {len(history)} acknowledged writes that includes the "
                      f"{durable} acknowledged as durable; (last state, found): {dict(list(diff.items())[:4])}")
    return actual, len(history)


def powercut_main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="lsm-crashtest-powercut-")
    deadline = time.monotonic() + args.duration
    runs = cuts = acked = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() < deadline or runs == 0:
            runs += 1
            path = os.path.join(work, f"db{runs}")
            state: dict[bytes, bytes] = {}
            for gen in range(rng.randrange(1, 5)):
                try:
                    state, n = powercut_generation(path, rng, state, gen)
                except Failure as e:
                    keep = tempfile.mkdtemp(prefix="lsm-crashtest-failed-")
                    shutil.copytree(path, os.path.join(keep, "db"))
                    raise Failure(f"run {runs}, cut {gen + 1}: {e}; database kept in {keep}") from None
                cuts += 1
                acked += n
            shutil.rmtree(path, ignore_errors=True)
        print(f"crashtest: powercut seed={args.seed} runs={runs} power_cuts={cuts} acknowledged_ops={acked} "
              f"seconds={time.monotonic() - t0:.0f} failures=0")
        return 0
    except Failure as e:
        print(f"crashtest: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
            if args.mode == "faults":
                # no kill: the child runs briefly and must close on time
                cmd[cmd.index("--run-seconds") + 1] = f"{rng.uniform(0.5, 2.0):.2f}"
                cmd += ["--dir-faults", str(rng.choice((0.05, 0.2, 0.5)))]
            if rng.random() < 0.5:
                cmd.append("--flush-sometimes")
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait = rng.uniform(0.3, 2.5) if args.mode == "blackbox" else 4.0 if args.mode == "whitebox" else 60.0
            try:
                child.wait(wait)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
                if args.mode == "faults":
                    raise Failure(f"run {runs} (sync_mode={sync_mode}): the child hung (not done after "
                                  f"{wait:.0f} s): writes or close() stuck") from None
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
    p.add_argument("--mode", choices=("blackbox", "whitebox", "faults", "powercut"), default="blackbox")
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
    p.add_argument("--dir-faults", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    if args.mode == "powercut":
        return powercut_main(args)
    return parent_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
