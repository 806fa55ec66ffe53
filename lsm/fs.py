"""The one filesystem seam: every open, write, fsync, rename, directory fsync,
remove and flock in ``lsm`` goes through a :class:`FileSystem`.

Tests wrap :class:`OsFileSystem` (``tests/faultfs.py``) to fail the Nth write,
fsync or rename and to simulate a power cut by dropping everything that was
not fsynced. Nothing else in the package calls ``open``, ``os.fsync``,
``os.replace`` or ``fcntl.flock``.

Every ``OSError`` leaves this module as :class:`~lsm.errors.DiskError` with the
errno and the path, so callers can tell ENOENT from EIO without string matching.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from typing import Protocol

from .errors import DiskError, LockError

__all__ = ["FileLock", "FileSystem", "OsFileSystem", "RandomAccessFile", "WritableFile", "check_path"]


class WritableFile(Protocol):
    """An append-only file being written.

    Durability: after ``write`` returns, the bytes are in the OS (they survive a
    crash of this process); after ``sync`` returns they survive a power cut.
    Thread safety: none; the owner serialises calls.
    """

    path: str
    size: int  # bytes written so far

    def write(self, data: bytes | bytearray) -> None: ...
    def sync(self) -> None: ...
    def trim(self) -> bool: ...
    def rewind(self, size: int) -> None: ...
    def close(self) -> None: ...


class RandomAccessFile(Protocol):
    """A file opened for positional reads. Thread safety: ``read_at`` is safe
    from several threads at once (``pread``).

    A file may also offer ``buffer()``: the whole file as a read-only buffer
    (a memory map) that readers search in place, or None when it cannot be
    mapped. A filesystem without it (the tests' fault injection) is read
    through ``read_at`` only.
    """

    path: str
    size: int

    def read_at(self, offset: int, n: int) -> bytes: ...
    def close(self) -> None: ...


class FileLock(Protocol):
    path: str

    def release(self) -> None: ...


class FileSystem(Protocol):
    """What the engine needs from a filesystem. Paths are plain strings."""

    def open_writable(self, path: str, *, preallocate: int = 0) -> WritableFile: ...
    def open_appendable(self, path: str) -> WritableFile: ...
    def open_mapped(self, path: str, *, step: int) -> WritableFile: ...
    def open_readable(self, path: str) -> RandomAccessFile: ...
    def read_file(self, path: str) -> bytes: ...
    def rename(self, src: str, dst: str) -> None: ...
    def link(self, src: str, dst: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def file_size(self, path: str) -> int: ...
    def makedirs(self, path: str) -> None: ...
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def fsync_dir(self, path: str) -> None: ...
    def truncate(self, path: str, size: int) -> None: ...
    def lock(self, path: str, *, shared: bool) -> FileLock: ...


def check_path(path: object, name: str = "path") -> str:
    """The absolute ``str`` form of a directory argument: a ``str`` or an
    ``os.PathLike``; ``bytes`` are decoded as the OS does (``os.fsdecode``).

    Raises: TypeError naming ``name`` for anything else; ValueError for an
    empty path (it would make the current directory a database: pass
    ``"."`` to mean that).
    """
    try:
        p = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{name} must be a str, bytes or os.PathLike, not {type(path).__name__}") from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not p:
        raise ValueError(f"{name} is empty; pass \".\" for the current directory")
    return os.path.abspath(p)



def _write_zeros(fd: int, offset: int, length: int) -> None:
    """Reserve ``[offset, offset + length)`` by writing zeros: what glibc's
    ``posix_fallocate`` falls back to, for platforms without it (macOS)."""
    chunk = bytes(min(length, 1 << 20))
    end = offset + length
    while offset < end:
        offset += os.pwrite(fd, chunk[:end - offset], offset)


# Linux has both; elsewhere (macOS) fall back to writing zeros and to fsync.
def _reserve(fd: int, offset: int, length: int) -> None:
    reserve = getattr(os, "posix_fallocate", None)  # looked up per call: tests replace it
    if reserve is None:
        _write_zeros(fd, offset, length)
    else:
        reserve(fd, offset, length)


_fdatasync = getattr(os, "fdatasync", os.fsync)

class _OsWritableFile:
    __slots__ = ("path", "size", "_fd", "_pid")

    def __init__(self, path: str, flags: int) -> None:
        self.path = path
        self._pid = os.getpid()  # only this process shortens the file (see _cut_back)
        try:
            self._fd = os.open(path, flags, 0o644)
            self.size = os.fstat(self._fd).st_size
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def write(self, data: bytes | bytearray) -> None:
        # os.write may write less than asked (signals, pipes, near-full disks):
        # loop so that a returned write() is always a whole write.
        try:
            n = os.write(self._fd, data)
            if n != len(data):
                view = memoryview(data)
                while n < len(view):
                    n += os.write(self._fd, view[n:])
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e
        self.size += len(data)

    def sync(self) -> None:
        try:
            _fdatasync(self._fd)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e

    def trim(self) -> bool:
        """Nothing preallocated: nothing to give back."""
        return False

    def rewind(self, size: int) -> None:
        """Forget everything past ``size`` (<= ``size`` now): after a failed or
        torn ``write``, the file reads as if it had never happened."""
        try:
            os.ftruncate(self._fd, size)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e
        self.size = size

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as e:
                raise DiskError.wrap(e, self.path) from e


class _OsPreallocatedFile(_OsWritableFile):
    """A new file whose length runs ahead of its data.

    The length is extended (``ftruncate``: a sparse region that reads as
    zeros) in steps of ``step`` bytes, and data goes in with ``pwrite`` at
    ``size``. An append that lands inside the extended region changes no file
    length, so its ``fdatasync`` has no size change to commit: on ext4 that
    saves a journal commit per synced append (RocksDB recycles log files for
    the same reason). The cost: until :meth:`trim`, the file ends in zeros
    that are not data (doc/format.md#log-records says how readers treat them).
    """

    __slots__ = ("allocated", "_step")

    def __init__(self, path: str, step: int) -> None:
        # no O_APPEND: Linux pwrite on an O_APPEND descriptor ignores the offset
        super().__init__(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self._step = step
        self.allocated = self.size  # the file's length on disk (0: it was just truncated)

    def write(self, data: bytes | bytearray) -> None:
        n = len(data)
        end = self.size + n
        try:
            if end > self.allocated:
                length = -(-end // self._step) * self._step
                os.ftruncate(self._fd, length)
                self.allocated = length
            done = os.pwrite(self._fd, data, self.size)
            if done != n:
                view = memoryview(data)
                while done < n:
                    done += os.pwrite(self._fd, view[done:], self.size + done)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e
        self.size = end

    def rewind(self, size: int) -> None:
        """Forget everything past ``size``: zero those bytes, keeping the length."""
        _zero_from(self, size)

    def trim(self) -> bool:
        """Cut the file back to ``size``; True if it was longer. Durable after
        the next :meth:`sync`."""
        return _cut_back(self)

    def close(self) -> None:
        try:
            self.trim()
        finally:
            super().close()


def _cut_back(f: _OsPreallocatedFile | _OsMappedFile) -> bool:
    """``trim`` for a file whose length runs ahead of its data: cut it back
    to ``size``; True if it was longer.

    Not in a forked child that inherited the file (lsm.forks): the parent may
    still be appending past this process's ``size``, and a shorter file would
    lose those bytes (or, for a mapped file, make the parent's stores SIGBUS).
    """
    if f.allocated <= f.size or f._fd < 0 or os.getpid() != f._pid:
        return False
    try:
        os.ftruncate(f._fd, f.size)
    except OSError as e:
        raise DiskError.wrap(e, f.path) from e
    f.allocated = f.size
    return True


def _zero_from(f: _OsPreallocatedFile | _OsMappedFile, size: int) -> None:
    """``rewind`` for a file whose length runs ahead of its data: zero the
    bytes from ``size`` to the end of the data, which then ends at ``size``."""
    if size < f.size:
        try:
            os.pwrite(f._fd, bytes(f.size - size), size)
        except OSError as e:
            raise DiskError.wrap(e, f.path) from e
    f.size = size


class _OsMappedFile:
    """An appendable file written through a shared memory map (the
    persistent cache's logs: many small records, one per put).

    Why: on the reference machine a ``write(2)`` of a 150-byte record costs
    more than the rest of a cache put, and slows the Python code around it.
    A store into a ``MAP_SHARED`` page lands in the page cache at once, as a
    ``write(2)``'s bytes do: it survives a crash of the process, and
    ``fdatasync`` makes it survive a power cut (Linux writes back pages
    dirtied through a map like any others, mapped or since unmapped).

    Layout: the file's length (``allocated``) runs ahead of ``size`` in steps
    of ``step`` bytes, reserved with ``posix_fallocate`` (zeros written where
    the platform lacks it): a store into a hole
    on a full disk would raise SIGBUS and kill the process, while fallocate
    fails cleanly with ENOSPC. The map covers ``[base, allocated)``, ``base``
    being the start of the page that held ``size`` at the last growth. Past
    ``size`` the file reads as zeros until :meth:`trim` or :meth:`close`
    (doc/format.md says how readers treat them).

    That promise holds where ``posix_fallocate`` reserves blocks in place
    (ext4, XFS, tmpfs). On copy-on-write filesystems (btrfs, ZFS) a store can
    still need new blocks at write-back, and a full disk then shows as SIGBUS
    or as a failed fsync rather than as ENOSPC from ``write``.

    Failure: :meth:`write` is all or nothing. Growing (fallocate, mmap) comes
    before any byte is copied, and the copy itself cannot fail.
    Thread safety: none (as every WritableFile); :meth:`sync` may run
    concurrently with :meth:`write` (it only calls ``fdatasync``).
    Nothing else may shorten the file while it is open: a store past the end
    of a file is SIGBUS.
    """

    __slots__ = ("path", "size", "allocated", "_fd", "_map", "_base", "_step", "_pid")

    def __init__(self, path: str, step: int) -> None:
        if step <= 0 or step % mmap.ALLOCATIONGRANULARITY:
            raise ValueError(f"step must be a positive multiple of {mmap.ALLOCATIONGRANULARITY}; got {step}")
        self.path = path
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._base = 0
        self._step = step
        self._pid = os.getpid()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            self.size = self.allocated = os.fstat(self._fd).st_size
        except OSError as e:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            raise DiskError.wrap(e, path) from e

    def write(self, data: bytes | bytearray) -> None:
        size = self.size
        end = size + len(data)
        if end > self.allocated or size < self._base or self._map is None:
            self._grow(end)  # past the map, rewound below its start, or not mapped yet
        base = self._base
        self._map[size - base:end - base] = data  # type: ignore[index]
        self.size = end

    def _grow(self, end: int) -> None:
        """Map ``[page of size, allocated)``, first reserving blocks up to ``end``."""
        length = max(self.allocated, -(-end // self._step) * self._step)
        base = self.size - self.size % mmap.ALLOCATIONGRANULARITY
        try:
            if length > self.allocated:
                _reserve(self._fd, self.allocated, length - self.allocated)
            new = mmap.mmap(self._fd, length - base, offset=base)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e
        old, self._map = self._map, new
        self._base, self.allocated = base, length
        if old is not None:
            old.close()

    def sync(self) -> None:
        try:
            _fdatasync(self._fd)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e

    def rewind(self, size: int) -> None:
        """Forget everything past ``size``: zero those bytes (the file keeps
        its allocated length, so the map stays valid)."""
        _zero_from(self, size)

    def trim(self) -> bool:
        """Unmap and cut the file back to ``size``; True if it was longer.
        Durable after the next :meth:`sync`. A later write maps it again."""
        if self._map is not None:
            self._map.close()
            self._map = None
        return _cut_back(self)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.trim()
        finally:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as e:
                raise DiskError.wrap(e, self.path) from e


class _OsRandomAccessFile:
    """A file for positional reads, and (``buffer``) a read-only memory map
    of it. Once mapped, the map's own descriptor is the only one kept and
    ``read_at`` slices the map, so an open table costs one descriptor.

    The map is of an immutable file (tables are never modified once
    written). A file shortened under a live map would make a read of the lost
    pages raise SIGBUS and end the process, so nothing in ``lsm`` ever
    truncates a table, and a table must not be edited while a database has
    it open.
    """

    __slots__ = ("path", "size", "_fd", "_map")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._map: mmap.mmap | None = None
        try:
            self._fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self._fd).st_size
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def read_at(self, offset: int, n: int) -> bytes:
        m = self._map
        if m is not None:
            return m[offset:offset + n]
        try:
            return os.pread(self._fd, n, offset)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e

    def buffer(self) -> mmap.mmap | None:
        """The whole file mapped read-only (None when empty or not mappable).
        Thread safety: call it before sharing the file between threads."""
        if self._map is None and self._fd >= 0 and self.size:
            try:
                self._map = mmap.mmap(self._fd, self.size, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None  # e.g. a filesystem without mmap support: reads still work
            fd, self._fd = self._fd, -1
            os.close(fd)  # the map holds a descriptor of its own
        return self._map

    def close(self) -> None:
        m, self._map = self._map, None
        if m is not None:
            try:
                m.close()
            except BufferError:
                pass  # a buffer exported by the map is still alive: it unmaps when that goes
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __del__(self) -> None:
        # Table readers are dropped from the table cache while another thread
        # may still be reading through them, so they close on last reference.
        try:
            self.close()
        except OSError:
            pass


class _OsFileLock:
    __slots__ = ("path", "_fd", "_pid")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._pid = os.getpid()

    def release(self) -> None:
        """Unlock and close. In a forked child (lsm.forks) only close: an
        ``LOCK_UN`` on an inherited descriptor would unlock the parent too,
        while closing one copy keeps the lock held by the others."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                if os.getpid() == self._pid:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __del__(self) -> None:
        # A DB dropped without close() must not keep its directory locked.
        try:
            self.release()
        except OSError:
            pass


class OsFileSystem:
    """The real filesystem. Stateless; one instance may serve many databases."""

    def open_writable(self, path: str, *, preallocate: int = 0) -> WritableFile:
        """Create ``path`` (truncating any existing file) for appending.

        ``preallocate`` > 0: extend the file's length ahead of the writes in
        steps of that many bytes (zeros past ``size`` until ``trim()`` or
        ``close()``), so that syncing an append commits no size change.
        """
        if preallocate > 0:
            return _OsPreallocatedFile(path, preallocate)
        return _OsWritableFile(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)

    def open_appendable(self, path: str) -> WritableFile:
        """Open ``path`` for appending, creating it if missing, keeping its bytes."""
        return _OsWritableFile(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def open_mapped(self, path: str, *, step: int) -> WritableFile:
        """Open ``path`` for appending through a shared memory map, creating it
        if missing and keeping its bytes; its length runs ahead of the data in
        steps of ``step`` bytes (zeros until ``trim()`` or ``close()``)."""
        return _OsMappedFile(path, step)

    def open_readable(self, path: str) -> RandomAccessFile:
        return _OsRandomAccessFile(path)

    def read_file(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src``. Durable only after ``fsync_dir``."""
        try:
            os.replace(src, dst)
        except OSError as e:
            raise DiskError.wrap(e, src) from e

    def link(self, src: str, dst: str) -> None:
        """Make ``dst`` a new hard link to the file ``src`` (``dst`` must not
        exist): a second name for the same file, its data as durable as
        ``src``'s, the new name only after ``fsync_dir`` of ``dst``'s directory.
        Raises: DiskError naming ``dst``: EXDEV across file systems (the caller
        copies instead), EPERM or EOPNOTSUPP where the file system has no hard
        links, EEXIST."""
        try:
            os.link(src, dst)
        except OSError as e:
            raise DiskError.wrap(e, dst) from e

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def file_size(self, path: str) -> int:
        try:
            return os.stat(path).st_size
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def makedirs(self, path: str) -> None:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def mkdir(self, path: str) -> None:
        """Create directory ``path`` (its parent must exist; raises DiskError
        EEXIST if ``path`` does). Durable only after ``fsync_dir`` of the parent."""
        try:
            os.mkdir(path)
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path`` (DiskError ENOTEMPTY otherwise)."""
        try:
            os.rmdir(path)
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def fsync_dir(self, path: str) -> None:
        """Make creations, renames and removals in directory ``path`` durable."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def truncate(self, path: str, size: int) -> None:
        try:
            os.truncate(path, size)
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def lock(self, path: str, *, shared: bool) -> FileLock:
        """Take an ``flock`` on ``path`` without waiting.

        A file is opened read-write for an exclusive lock, created if
        missing; read-only for a shared one, and never created (a missing
        file raises DiskError ENOENT), since a reader may have no write
        access at all (a read-only mount, another user's directory).
        ``path`` may be a directory (opened read-only, for either lock).

        Raises: LockError naming the path when another holder conflicts
        (exclusive vs anything, within this process too: each call opens a new
        file description).
        """
        try:
            if shared or os.path.isdir(path):
                fd = os.open(path, os.O_RDONLY)
            else:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DiskError.wrap(e, path) from e
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                kind = "shared" if shared else "exclusive"
                raise LockError(f"{path}: database is locked by another process or open "
                                f"(wanted a {kind} lock)") from None
            raise DiskError.wrap(e, path) from e
        return _OsFileLock(path, fd)
