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
import os
from typing import Protocol

from .errors import DiskError, LockError

__all__ = ["FileLock", "FileSystem", "OsFileSystem", "RandomAccessFile", "WritableFile"]


class WritableFile(Protocol):
    """An append-only file being written.

    Durability: after ``write`` returns, the bytes are in the OS (they survive a
    crash of this process); after ``sync`` returns they survive a power cut.
    Thread safety: none; the owner serialises calls.
    """

    path: str
    size: int  # bytes written so far

    def write(self, data: bytes) -> None: ...
    def sync(self) -> None: ...
    def trim(self) -> bool: ...
    def close(self) -> None: ...


class RandomAccessFile(Protocol):
    """A file opened for positional reads. Thread safety: ``read_at`` is safe
    from several threads at once (``pread``)."""

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
    def open_readable(self, path: str) -> RandomAccessFile: ...
    def read_file(self, path: str) -> bytes: ...
    def rename(self, src: str, dst: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def file_size(self, path: str) -> int: ...
    def makedirs(self, path: str) -> None: ...
    def fsync_dir(self, path: str) -> None: ...
    def truncate(self, path: str, size: int) -> None: ...
    def lock(self, path: str, *, shared: bool) -> FileLock: ...


class _OsWritableFile:
    __slots__ = ("path", "size", "_fd")

    def __init__(self, path: str, flags: int) -> None:
        self.path = path
        try:
            self._fd = os.open(path, flags, 0o644)
            self.size = os.fstat(self._fd).st_size
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def write(self, data: bytes) -> None:
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
            os.fdatasync(self._fd)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e

    def trim(self) -> bool:
        """Nothing preallocated: nothing to give back."""
        return False

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

    def write(self, data: bytes) -> None:
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

    def trim(self) -> bool:
        """Cut the file back to ``size``; True if it was longer. Durable after
        the next :meth:`sync`."""
        if self.allocated <= self.size or self._fd < 0:
            return False
        try:
            os.ftruncate(self._fd, self.size)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e
        self.allocated = self.size
        return True

    def close(self) -> None:
        try:
            self.trim()
        finally:
            super().close()


class _OsRandomAccessFile:
    __slots__ = ("path", "size", "_fd")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        try:
            self._fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self._fd).st_size
        except OSError as e:
            raise DiskError.wrap(e, path) from e

    def read_at(self, offset: int, n: int) -> bytes:
        try:
            return os.pread(self._fd, n, offset)
        except OSError as e:
            raise DiskError.wrap(e, self.path) from e

    def close(self) -> None:
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
    __slots__ = ("path", "_fd")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
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

        Raises: LockError naming the path when another holder conflicts
        (exclusive vs anything, within this process too: each call opens a new
        file description).
        """
        try:
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
