"""The one error family of ``lsm`` (doc/design.md#errors).

Every deliberate raise in the package derives from :class:`Error`, except
``TypeError``/``ValueError`` for arguments of the wrong type or size (those name
the argument and the limit). Not-found is a value, never an exception, except
for the mapping sugar ``db[key]`` which raises ``KeyError``.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "BackgroundError",
    "ClosedError",
    "CorruptionError",
    "DiskError",
    "Error",
    "LockError",
    "ReadOnlyError",
    "SerializationError",
]


class Error(Exception):
    """Base class of every error raised by ``lsm`` on purpose."""


class CorruptionError(Error):
    """Stored data failed a check: bad magic, checksum, length or format version.

    Carries the file and the byte offset where the problem was found, so an
    operator can look at it with ``lsm-dump``.

    >>> str(CorruptionError("/db/000007.sst", 4096, "block checksum 0x1f != 0x9c"))
    '/db/000007.sst at offset 4096: block checksum 0x1f != 0x9c'
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = str(path)
        self.offset = int(offset)
        self.reason = reason
        super().__init__(f"{self.path} at offset {self.offset}: {reason}")

    def __reduce__(self):  # keep picklable for multiprocessing
        return (type(self), (self.path, self.offset, self.reason))


class DiskError(Error, OSError):
    """An operating-system failure (EIO, ENOSPC, EACCES, ...) on a named path.

    Subclasses both :class:`Error` and :class:`OSError`, keeping ``errno`` and
    ``filename`` so callers may handle it either way.

    >>> e = DiskError(28, "No space left on device", "/db/000003.log")
    >>> isinstance(e, OSError), e.errno, e.filename
    (True, 28, '/db/000003.log')
    """

    def __init__(self, errno: int, strerror: str, filename: str | None = None) -> None:
        OSError.__init__(self, errno, strerror, filename)

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno or 0, str(self.errno))
        return f"[{name}] {self.strerror}: {self.filename!r}"

    def __reduce__(self):
        return (type(self), (self.errno, self.strerror, self.filename))

    @classmethod
    def wrap(cls, exc: OSError, path: str | None = None) -> DiskError:
        """Return ``exc`` as a :class:`DiskError`, keeping errno and the path."""
        if isinstance(exc, DiskError):
            return exc
        return cls(exc.errno or _errno.EIO, exc.strerror or str(exc), exc.filename or path)


class LockError(Error):
    """Another process (or another open in this one) holds the database ``LOCK``."""


class ClosedError(Error):
    """A DB, snapshot or iterator was used after it (or its DB) was closed."""


class ReadOnlyError(Error):
    """A write was attempted on a database opened with ``read_only=True``."""


class SerializationError(Error):
    """A typed-view serializer could not encode or decode a value."""


class BackgroundError(Error):
    """A background flush, compaction or fsync failed; the DB refuses writes.

    Reads keep working. Close and reopen the database to recover: recovery
    replays the write-ahead log, so nothing acknowledged is lost.
    """
