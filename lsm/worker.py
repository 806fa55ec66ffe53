"""Worker process: runs flushes (:func:`lsm.builder.run_flush`) and
compaction merges (:func:`lsm.compaction.run_job`) on another core, so that
building tables does not compete with foreground reads and writes for the
parent's GIL. A DB runs one worker for flushes and one for compactions, so
that a long merge never holds up a flush.

Protocol (one JSON object per line, over the child's stdin/stdout):

    request  := compaction | flush
    compaction := {"dbpath", "options": {field: value}, "runs": [[n]], "snapshots": [seq],
                   "deeper": [[lo_hex, hi_hex]], "now", "grandparents": [[largest_hex, size]],
                   "first_number", "reserved", "split", "global_seqs": [[n, seq]]}
    flush    := {"job": "flush", "dbpath", "options", "snapshots", "first_number", "reserved",
                 "payload_bytes": n}, followed by n bytes: Memtable.export()
    response := {"ok": true, "metas": [FileMeta.to_wire()], "dropped": n}
                (a FileMeta as [number, size, entries, smallest_hex, largest_hex,
                 min_seq, max_seq, [[start_hex, end_hex, seq]]])
              | {"ok": false, "type": "CorruptionError" | "DiskError" | "Error",
                 "message", "path", "offset", "errno"}

The parent picks the inputs and reserves the output file numbers; the worker
only reads inputs and writes outputs (fsynced, directory fsynced) and never
touches the manifest. The parent installs the version edit.

Lifetime: started (``python -c "from lsm.worker import main; main()" PID``)
on the first large job of a DB and ended by ``DB.close()``. On Linux the
worker asks the kernel to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``), so a crashed writer cannot leave a worker writing
tables behind it; elsewhere it checks ``os.getppid()`` between jobs.

JSON and plain byte columns, not pickle: a worker never executes code from its input.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from dataclasses import fields

from .builder import FlushJob, run_flush
from .compaction import JobSpec, run_job
from .errors import CorruptionError, DiskError, Error
from .fs import OsFileSystem
from .manifest import FileMeta
from .options import Options

__all__ = ["CompactionWorker", "WorkerAborted", "WorkerUnavailable"]


class WorkerUnavailable(Error):
    """The worker could not be started or died before answering. The job did
    not complete; the caller may run it in-process instead."""


class WorkerAborted(Error):
    """:meth:`CompactionWorker.abort` was called (the DB is closing): the job
    in flight, or the one asked for, was abandoned. Not a failure: its inputs
    are intact and any outputs it wrote are orphans."""


def encode_request(spec: JobSpec | FlushJob) -> bytes:
    if isinstance(spec, FlushJob):
        return (json.dumps({
            "job": "flush", "dbpath": spec.dbpath,
            "options": {f.name: getattr(spec.options, f.name) for f in fields(spec.options)},
            "snapshots": spec.snapshots, "first_number": spec.first_number, "reserved": spec.reserved,
            "payload_bytes": len(spec.memtable),
        }) + "\n").encode() + spec.memtable
    return (json.dumps({
        "dbpath": spec.dbpath,
        "options": {f.name: getattr(spec.options, f.name) for f in fields(spec.options)},
        "runs": spec.runs, "snapshots": spec.snapshots,
        "deeper": [[lo.hex(), hi.hex()] for lo, hi in spec.deeper], "now": spec.now,
        "grandparents": [[lg.hex(), size] for lg, size in spec.grandparents],
        "first_number": spec.first_number, "reserved": spec.reserved, "split": spec.split,
        "global_seqs": sorted(spec.global_seqs.items()),
    }) + "\n").encode()


def decode_request(line: bytes, read=None) -> JobSpec | FlushJob:
    """The job of request ``line``; ``read(n)`` reads a flush's payload."""
    d = json.loads(line)
    if d.get("job") == "flush":
        n = d["payload_bytes"]
        payload = read(n) if read is not None else b""
        if len(payload) != n:
            raise EOFError(f"flush request: {len(payload)} of {n} payload bytes")
        return FlushJob(d["dbpath"], Options(**d["options"]), payload, d["snapshots"], d["first_number"],
                        d["reserved"])
    spec = JobSpec(d["dbpath"], Options(**d["options"]), d["runs"], d["snapshots"],
                   [(bytes.fromhex(lo), bytes.fromhex(hi)) for lo, hi in d["deeper"]], d["now"], [],
                   d["first_number"], d["reserved"], d.get("split", True))
    spec.grandparents = [(bytes.fromhex(lg), size) for lg, size in d["grandparents"]]
    spec.global_seqs = {n: seq for n, seq in d.get("global_seqs", ())}
    return spec


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes  # noqa: PLC0415 - Linux-only, optional
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main() -> None:
    """Serve jobs until stdin closes; ``sys.argv[1]`` is the parent's pid."""
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    _die_with_parent(parent)
    fs = OsFileSystem()
    out = sys.stdout.buffer
    stdin = sys.stdin.buffer
    for line in stdin:
        try:
            job = decode_request(line, stdin.read)
        except EOFError:
            return  # the parent went away mid-request
        try:
            if isinstance(job, FlushJob):
                metas, dropped = run_flush(fs, job), 0
            else:
                metas, dropped = run_job(fs, job)
            resp = {"ok": True, "dropped": dropped,
                    "metas": [m.to_wire() for m in metas]}
        except CorruptionError as e:
            resp = {"ok": False, "type": "CorruptionError", "message": e.reason, "path": e.path,
                    "offset": e.offset}
        except DiskError as e:
            resp = {"ok": False, "type": "DiskError", "message": e.strerror, "path": e.filename,
                    "errno": e.errno}
        except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the job
            resp = {"ok": False, "type": "Error", "message": f"{type(e).__name__}: {e}"}
        out.write((json.dumps(resp) + "\n").encode())
        out.flush()
        if os.getppid() != parent:
            return


class CompactionWorker:
    """The parent's handle on one worker process.

    Thread safety: ``run`` may be called from any thread; calls are
    serialised. A worker that dies is restarted by the next ``run``.
    """

    def __init__(self) -> None:
        # Written under _mu; abort() reads it without _mu (run() holds _mu for
        # a whole job, which is exactly when abort() must not wait).
        self._proc: subprocess.Popen | None = None
        self._mu = threading.Lock()
        self._aborted = False  # set once by abort(); never cleared

    def _start(self) -> subprocess.Popen:
        pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # -c rather than -m: "-m lsm.worker" would import lsm.worker twice
        # (once via the lsm package, once as __main__).
        return subprocess.Popen([sys.executable, "-c", "from lsm.worker import main; main()", str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def run(self, spec: JobSpec | FlushJob, timeout: float | None = None) -> tuple[list[FileMeta], int]:
        """Run one job in the worker; raise what it raised (CorruptionError,
        DiskError, Error), or WorkerUnavailable if it cannot start, died, or
        has not begun to answer within ``timeout`` seconds (it is then killed:
        a hung worker must not stop compaction for good)."""
        with self._mu:
            if self._aborted:
                raise WorkerAborted("the worker was stopped (the database is closing)")
            if self._proc is None or self._proc.poll() is not None:
                try:
                    self._proc = self._start()
                except OSError as e:
                    self._proc = None
                    raise WorkerUnavailable(f"cannot start the worker: {e}") from e
            proc = self._proc
            stdin, stdout = proc.stdin, proc.stdout
            assert stdin is not None and stdout is not None  # _start() opens both pipes
            if self._aborted:  # abort() ran while the worker started and may have missed it
                proc.kill()
            try:
                stdin.write(encode_request(spec))
                stdin.flush()
                err: object = None
                # The answer is one line written at once: once any of it is
                # readable the worker is done, so only the wait is bounded.
                if timeout is not None and not select.select([stdout], [], [], timeout)[0]:
                    line = b""
                    err = f"no answer within {timeout:.0f} s"
                else:
                    line = stdout.readline()
            except OSError as e:
                line = b""
                err = e
            if not line:
                self._proc = None
                proc.kill()
                proc.wait()
                if self._aborted:
                    raise WorkerAborted("the job was abandoned: the database is closing")
                raise WorkerUnavailable(f"worker failed (exit {proc.returncode}): {err}")
        resp = json.loads(line)
        if resp["ok"]:
            metas = [FileMeta.from_wire(m) for m in resp["metas"]]
            return metas, resp["dropped"]
        if resp["type"] == "CorruptionError":
            raise CorruptionError(resp["path"], resp["offset"], resp["message"])
        if resp["type"] == "DiskError":
            raise DiskError(resp["errno"], resp["message"], resp["path"])
        raise Error(f"worker: {resp['message']}")

    def abort(self) -> None:
        """Kill the worker now, whatever it is doing, and refuse later jobs:
        :meth:`run` raises WorkerAborted. For the DB's close(), which must not
        wait on a long merge or a hung worker. Any thread; never blocks."""
        self._aborted = True
        proc = self._proc
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass  # already reaped

    def close(self) -> None:
        with self._mu:
            proc, self._proc = self._proc, None
        if proc is not None:
            try:
                assert proc.stdin is not None  # _start() opens it
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()

