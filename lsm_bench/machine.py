"""What the run happened on: machine, interpreter, package versions, I/O counters.

``io_counters`` reads ``/proc/self/io``; its ``wchar`` (bytes passed to
``write``-family system calls by every thread of this process, background
compaction threads of the C peers included) is the engine-neutral numerator of
the *syscall write amplification* in the report. Where the file does not exist
(not Linux) the figure is simply absent.
"""

from __future__ import annotations

import datetime
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from lsm_bench.engines import dist_version

REPORTED_DISTRIBUTIONS = (
    "lsm-tree",
    "sortedcontainers",
    "zstandard",
    "xxhash",
    "plyvel",
    "rocksdict",
    "lmdb",
    "diskcache",
    "matplotlib",
    "tqdm",
)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _git(repo: Path, *args: str) -> str | None:
    """The output of a read-only ``git`` command in ``repo`` (``None`` on any failure)."""
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip()


def _git_commit(repo: Path) -> str | None:
    """The checked-out commit of ``repo`` (read-only ``git rev-parse``), if any."""
    return _git(repo, "rev-parse", "HEAD") or None


def machine_info() -> dict[str, Any]:
    """CPU count and model, memory, platform, Python, SQLite, date, git commit.

    ``git_commit`` is the checkout's HEAD (harness changes included);
    ``lsm_code_commit`` the newest commit that touched ``lsm/``, the code
    measured; ``git_dirty`` whether tracked files differ from HEAD.
    """
    repo = Path(__file__).resolve().parent.parent
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "git_commit": _git_commit(repo),
        "lsm_code_commit": _git(repo, "log", "-1", "--format=%h", "--", "lsm") or None,
        "git_dirty": None if status is None else bool(status),
        "argv": list(sys.argv),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the store and its peers (``None``: not installed)."""
    return {name: dist_version(name) for name in REPORTED_DISTRIBUTIONS}


def _proc_io(pid: str) -> dict[str, int] | None:
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as fh:
            pairs = (line.split(":", 1) for line in fh if ":" in line)
            return {key.strip(): int(value) for key, value in pairs}
    except (OSError, ValueError):
        return None


def _descendants(pid: str) -> list[str]:
    out: list[str] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                kids = fh.read().split()
        except OSError:
            continue
        for kid in kids:
            out.append(kid)
            out.extend(_descendants(kid))
    return out


def io_counters() -> dict[str, int] | None:
    """I/O counters of this process plus its live descendants (``/proc/PID/io``),
    or ``None`` where unavailable.

    Descendants matter: lsm runs large compaction merges in a worker process,
    whose writes are part of lsm's write amplification. The worker lives as
    long as its database is open, so a phase measured before ``close()``
    sees all of them.
    """
    total = _proc_io("self")
    if total is None:
        return None
    for pid in _descendants(str(os.getpid())):
        child = _proc_io(pid)
        if child is not None:
            for key, value in child.items():
                total[key] = total.get(key, 0) + value
    return total


def descendant_cpu() -> dict[str, float]:
    """CPU seconds (user + system, clock-tick resolution) used so far by each
    live descendant process (``/proc/PID/stat``), by pid; ``{}`` where unavailable.

    With :func:`time.process_time` this gives all the CPU a store spends,
    lsm's compaction worker process included: take it before closing the
    store, while the worker still lives.
    """
    try:
        tick = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return {}
    out: dict[str, float] = {}
    for pid in _descendants(str(os.getpid())):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                raw = fh.read()
            fields = raw[raw.rfind(")") + 2 :].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> float:
    """CPU seconds the processes in ``after`` used since ``before`` (new ones: all of it)."""
    return sum(max(0.0, used - before.get(pid, 0.0)) for pid, used in after.items())


def io_delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    """``after - before`` for every counter both have."""
    if before is None or after is None:
        return None
    return {key: after[key] - before[key] for key in after if key in before}


def dir_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (``st_blocks``: sparse files count as used)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue  # removed while walking (an obsolete file being deleted)
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total
