"""A FileSystem wrapper that fails operations on demand and simulates power
cuts (LevelDB's fault_injection_test, Pebble's errorfs).

    fs = FaultFS()
    fs.fail("sync", path_contains=".log", nth=3)   # 3rd log fsync raises EIO
    fs.fail("write", torn=True)                     # next write lands half, then raises
    fs.fail("listdir", errno=errno.EMFILE)          # next directory listing fails
    ...
    fs.power_cut()    # drop every byte and name change that was not fsynced;
                      # the old DB's files become unusable, its LOCK is released

Durability model (what a power cut keeps):
- file contents up to the size at the file's last ``sync()``;
- a file's existence, and renames/removals, only once its directory was
  fsynced after them. Files created and never dir-synced vanish; renames
  not dir-synced are undone; removals not dir-synced are undone (the file
  comes back with its synced contents). A hard link is a created name.

Directories (``mkdir``, ``rmdir``, renaming a directory) can be made to fail
but are not part of the model: a power cut keeps them as they are.

A power cut falls between two operations, never inside one: every operation
that changes files runs under the filesystem's lock, as ``power_cut()`` does,
so one that began before the cut completes before it, and none that ends
after it reaches the files (a sync that returned after the cut would
acknowledge bytes the cut already dropped).
"""

from __future__ import annotations

import errno as errno_
import os
import threading
from dataclasses import dataclass

from lsm.errors import DiskError
from lsm.fs import OsFileSystem

OPS = ("open", "write", "sync", "rename", "remove", "fsync_dir", "read", "link", "mkdir", "listdir")


@dataclass
class Rule:
    op: str
    path_contains: str
    nth: int  # fail the nth matching call from now (1 = next)
    errno: int
    times: int  # how many consecutive matching calls fail once triggered
    torn: bool  # for write: write half the data before failing
    seen: int = 0
    crash: str = ""  # "before"/"after": power-cut instead of failing, around the op
    fired: bool = False


class Crashed(Exception):
    """Raised by an operation after a crash_at point cut the power."""


class _File:
    def __init__(self, fs: FaultFS, inner, path: str) -> None:
        self._fs = fs
        self._inner = inner
        self.path = path

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes) -> None:
        with self._fs._mu:  # whole, before or after a power cut (module docstring)
            rule = self._fs._check("write", self.path)
            if rule is not None:
                if rule.torn and len(data) > 1:
                    self._inner.write(bytes(data[: len(data) // 2]))
                raise DiskError(rule.errno, os.strerror(rule.errno), self.path)
            self._inner.write(data)

    def sync(self) -> None:
        with self._fs._mu:
            rule = self._fs._check("sync", self.path)
            if rule is not None:
                raise DiskError(rule.errno, os.strerror(rule.errno), self.path)
            self._fs._crash_point("sync", self.path, "before")
            self._inner.sync()
            self._fs._synced[self.path] = self._inner.size
            # a preallocated file's length (zeros past its data) is durable too
            self._fs._allocated[self.path] = getattr(self._inner, "allocated", 0)
            self._fs._count_after("sync", self.path)

    def trim(self) -> bool:
        with self._fs._mu:
            if self._fs.dead:
                return False  # the process is gone: it changes no file
            return self._inner.trim()

    def rewind(self, size: int) -> None:
        with self._fs._mu:
            if self._fs.dead:
                return
            self._inner.rewind(size)

    def close(self) -> None:
        with self._fs._mu:
            if self._fs.dead:
                _abandon(self._inner)  # the process is gone: it trims nothing at close
                return
            self._inner.close()

    def read_at(self, offset: int, n: int) -> bytes:
        rule = self._fs._check("read", self.path)
        if rule is not None:
            raise DiskError(rule.errno, os.strerror(rule.errno), self.path)
        return self._inner.read_at(offset, n)


def _abandon(f) -> None:
    """Close ``f`` as a killed process would: drop its map and descriptor, and
    do nothing a clean close does (a preallocated or mapped file's trim, which
    would shorten a file that the next open is already using)."""
    m = getattr(f, "_map", None)
    if m is not None:
        m.close()
        f._map = None
    fd = getattr(f, "_fd", -1)
    if fd >= 0:
        f._fd = -1
        os.close(fd)


class FaultFS:
    """See the module docstring. Thread-safe."""

    def __init__(self, base: OsFileSystem | None = None) -> None:
        self.base = base or OsFileSystem()
        self._mu = threading.RLock()
        self.rules: list[Rule] = []
        self.counts: dict[str, int] = {op: 0 for op in OPS}
        self.dead = False
        self._synced: dict[str, int] = {}  # path -> durable size
        self._allocated: dict[str, int] = {}  # path -> durable length of a preallocated file
        self._new: set[str] = set()  # created since their directory's last fsync
        self._renames: list[tuple[str, str, bytes | None, int]] = []  # src, dst, old dst bytes, src synced
        self._removed: list[tuple[str, bytes]] = []
        self._locks: list = []

    # -- configuration -------------------------------------------------------

    def fail(self, op: str, *, path_contains: str = "", nth: int = 1, errno: int = errno_.EIO,
             times: int = 1, torn: bool = False) -> Rule:
        assert op in OPS, op
        rule = Rule(op, path_contains, nth, errno, times, torn)
        with self._mu:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._mu:
            self.rules.clear()

    def _check(self, op: str, path: str) -> Rule | None:
        with self._mu:
            if self.dead:
                return Rule(op, "", 0, errno_.EIO, 1, False)
            self.counts[op] += 1
            for rule in self.rules:
                if rule.op != op or rule.path_contains not in path or rule.crash:
                    continue
                rule.seen += 1
                if rule.nth <= rule.seen < rule.nth + rule.times:
                    return rule
            return None

    def crash_at(self, op: str, *, path_contains: str = "", nth: int = 1, when: str = "after") -> Rule:
        """Cut the power just before or just after the nth matching operation
        (``power_cut()``), then make that call raise :class:`Crashed`."""
        assert op in OPS and when in ("before", "after")
        rule = Rule(op, path_contains, nth, errno_.EIO, 1, False, crash=when)
        with self._mu:
            self.rules.append(rule)
        return rule

    def _crash_point(self, op: str, path: str, when: str) -> None:
        with self._mu:
            if self.dead:
                return
            for rule in self.rules:
                if rule.crash == when and rule.op == op and rule.path_contains in path and not rule.fired:
                    if when == "before":
                        rule.seen += 1
                    if rule.seen >= rule.nth:
                        rule.fired = True
                        self.power_cut()
                        raise Crashed(f"power cut {when} {op} of {path}")

    def _count_after(self, op: str, path: str) -> None:
        with self._mu:
            for rule in self.rules:
                if rule.crash == "after" and rule.op == op and rule.path_contains in path:
                    rule.seen += 1
        self._crash_point(op, path, "after")

    def _raise_if(self, op: str, path: str) -> None:
        rule = self._check(op, path)
        if rule is not None:
            raise DiskError(rule.errno, os.strerror(rule.errno), path)

    # -- FileSystem ------------------------------------------------------------

    def open_writable(self, path: str, *, preallocate: int = 0):
        with self._mu:
            self._raise_if("open", path)
            existed = self.base.exists(path)
            f = _File(self, self.base.open_writable(path, preallocate=preallocate), path)
            if not existed:
                self._new.add(path)
            self._synced[path] = 0
            self._allocated.pop(path, None)
        return f

    def open_appendable(self, path: str):
        return self._open_keeping(path, lambda: self.base.open_appendable(path))

    def open_mapped(self, path: str, *, step: int):
        return self._open_keeping(path, lambda: self.base.open_mapped(path, step=step))

    def _open_keeping(self, path: str, opener):
        """Open a file that keeps its bytes: a new one is not durable until its
        directory is fsynced; an existing one is durable up to its size."""
        with self._mu:
            self._raise_if("open", path)
            existed = self.base.exists(path)
            f = _File(self, opener(), path)
            if not existed:
                self._new.add(path)
                self._synced[path] = 0
            else:
                self._synced.setdefault(path, f.size)
        return f

    def open_readable(self, path: str):
        self._raise_if("open", path)
        return _File(self, self.base.open_readable(path), path)

    def read_file(self, path: str) -> bytes:
        self._raise_if("read", path)
        return self.base.read_file(path)

    def rename(self, src: str, dst: str) -> None:
        with self._mu:
            self._raise_if("rename", src)
            self._crash_point("rename", src, "before")
            if os.path.isdir(src):  # directories are outside the durability model
                self.base.rename(src, dst)
                self._count_after("rename", src)
                return
            # what a power cut restores at dst: the durable part of the old file
            old = self.base.read_file(dst)[:self._synced.get(dst, 1 << 62)] if self.base.exists(dst) else None
            self.base.rename(src, dst)
            self._renames.append((src, dst, old, self._synced.get(src, 0)))
            self._synced[dst] = self._synced.pop(src, 0)
            # src stays in _new when it was never dir-synced: undoing the rename
            # recreates it, and it then vanishes like any undurable new file.
            # dst is never "new" here: the undo restores (or removes) it.
            self._count_after("rename", src)

    def link(self, src: str, dst: str) -> None:
        """A new name for an existing file: like a created file, it vanishes in
        a power cut until its directory is fsynced; its contents are the
        source's, durable as far as they were (a file written outside this
        FaultFS counts as durable whole)."""
        with self._mu:
            self._raise_if("link", dst)
            self._crash_point("link", dst, "before")
            self.base.link(src, dst)
            self._new.add(dst)
            self._synced[dst] = self._synced.get(src, self.base.file_size(dst))
        self._count_after("link", dst)

    def remove(self, path: str) -> None:
        with self._mu:
            self._raise_if("remove", path)
            data = self.base.read_file(path)
            self.base.remove(path)
            keep = self._synced.pop(path, len(data))
            if path in self._new:
                self._new.discard(path)
            else:
                self._removed.append((path, data[:keep]))

    def listdir(self, path: str) -> list[str]:
        self._raise_if("listdir", path)
        return self.base.listdir(path)

    def mkdir(self, path: str) -> None:
        self._raise_if("mkdir", path)
        self.base.mkdir(path)

    def rmdir(self, path: str) -> None:
        self.base.rmdir(path)

    def exists(self, path: str) -> bool:
        return self.base.exists(path)

    def file_size(self, path: str) -> int:
        return self.base.file_size(path)

    def makedirs(self, path: str) -> None:
        self.base.makedirs(path)

    def truncate(self, path: str, size: int) -> None:
        self.base.truncate(path, size)

    def fsync_dir(self, path: str) -> None:
        with self._mu:
            self._raise_if("fsync_dir", path)
            self._crash_point("fsync_dir", path, "before")
            self.base.fsync_dir(path)
            prefix = os.path.join(path, "")
            self._new = {p for p in self._new if not p.startswith(prefix)}
            self._renames = [r for r in self._renames if not r[1].startswith(prefix)]
            self._removed = [r for r in self._removed if not r[0].startswith(prefix)]
            self._count_after("fsync_dir", path)

    def lock(self, path: str, *, shared: bool):
        lk = self.base.lock(path, shared=shared)
        with self._mu:
            self._locks.append(lk)
        return lk

    # -- power cut -------------------------------------------------------------

    def power_cut(self) -> None:
        """Lose everything not made durable, as if the machine lost power now.

        Afterwards every operation through this FaultFS fails with EIO (the
        old DB object is a ghost); open the database again with a new FaultFS.
        """
        with self._mu:
            self.dead = True
            for src, dst, old, src_synced in reversed(self._renames):
                data = self.base.read_file(dst) if self.base.exists(dst) else b""
                with open(src, "wb") as f:
                    f.write(data[:src_synced])
                if old is None:
                    os.remove(dst)
                else:
                    with open(dst, "wb") as f:
                        f.write(old)
                self._synced[src] = src_synced
                self._synced.pop(dst, None)
                if old is not None:
                    self._synced[dst] = len(old)
            for path in self._new:
                if os.path.exists(path):
                    os.remove(path)
                self._synced.pop(path, None)
            for path, data in self._removed:
                with open(path, "wb") as f:
                    f.write(data)
            for path, size in self._synced.items():
                if os.path.exists(path) and os.path.getsize(path) > size:
                    os.truncate(path, size)
                # a preallocated file keeps its durable length: zeros past its data
                length = self._allocated.get(path, 0)
                if length > size and os.path.exists(path):
                    os.truncate(path, length)
            for lk in self._locks:
                try:
                    lk.release()
                except OSError:
                    pass
            self._locks.clear()

    def process_crash(self) -> None:
        """Like SIGKILL: bytes already written stay (they are in the OS), the old
        DB object can do nothing more, and its LOCK is released."""
        with self._mu:
            self.dead = True
            for lk in self._locks:
                try:
                    lk.release()
                except OSError:
                    pass
            self._locks.clear()
