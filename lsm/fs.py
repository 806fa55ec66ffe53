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

    def open_writable(self, path: str) -> WritableFile: ...
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

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as e:
                raise DiskError.wrap(e, self.path) from e


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

    def open_writable(self, path: str) -> WritableFile:
        """Create ``path`` (truncating any existing file) for appending."""
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
