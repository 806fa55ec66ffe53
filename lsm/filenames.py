"""Names of the files in a database directory (doc/format.md#files).

    CURRENT            name of the live manifest, one line
    MANIFEST-NNNNNN    log of version edits
    NNNNNN.log         write-ahead log of one memtable
    NNNNNN.sst         sorted table
    NNNNNN.dbtmp       temporary file, renamed into place (e.g. the next CURRENT)
    LOCK               flock target; its contents are unused
    lost/              files lsm.repair stopped using (it moves them here, never deletes)

File numbers come from one counter kept in the manifest and are never reused.
"""

from __future__ import annotations

import os
import re
from enum import Enum

__all__ = ["LOST_DIR", "FileType", "check_path", "make_current_name", "make_lock_name", "make_log_name",
           "make_manifest_name", "make_table_name", "make_temp_name", "parse_name"]

LOST_DIR = "lost"


class FileType(Enum):
    CURRENT = "current"
    LOCK = "lock"
    LOG = "log"
    MANIFEST = "manifest"
    TABLE = "table"
    TEMP = "temp"


def check_path(path: object, name: str = "path") -> str:
    """A directory path argument as an absolute ``str``.

    Raises: TypeError (not a ``str`` or an ``os.PathLike`` of one),
    ValueError (empty), naming the argument ``name``.

    >>> check_path("/db/../x")
    '/x'
    >>> check_path(b"/x", "dest")
    Traceback (most recent call last):
      ...
    TypeError: dest must be a str or os.PathLike path, not bytes
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike path, not {type(path).__name__}")
    p = os.fspath(path)
    if not isinstance(p, str):
        raise TypeError(f"{name} must be a str path, not {type(p).__name__}")
    if not p:
        raise ValueError(f"{name} must not be empty")
    return os.path.abspath(p)


def make_log_name(dbpath: str, number: int) -> str:
    return os.path.join(dbpath, f"{number:06d}.log")


def make_table_name(dbpath: str, number: int) -> str:
    return os.path.join(dbpath, f"{number:06d}.sst")


def make_manifest_name(dbpath: str, number: int) -> str:
    return os.path.join(dbpath, f"MANIFEST-{number:06d}")


def make_temp_name(dbpath: str, number: int) -> str:
    return os.path.join(dbpath, f"{number:06d}.dbtmp")


def make_current_name(dbpath: str) -> str:
    return os.path.join(dbpath, "CURRENT")


def make_lock_name(dbpath: str) -> str:
    return os.path.join(dbpath, "LOCK")


_NUMBERED = re.compile(r"^(\d+)\.(log|sst|dbtmp)$")
_MANIFEST = re.compile(r"^MANIFEST-(\d+)$")
_SUFFIX = {"log": FileType.LOG, "sst": FileType.TABLE, "dbtmp": FileType.TEMP}


def parse_name(name: str) -> tuple[FileType, int] | None:
    """Classify a bare file name; ``None`` for files that are not ours.

    >>> parse_name("000012.sst")
    (<FileType.TABLE: 'table'>, 12)
    >>> parse_name("MANIFEST-000003")
    (<FileType.MANIFEST: 'manifest'>, 3)
    >>> parse_name("notes.txt") is None
    True
    """
    if name == "CURRENT":
        return (FileType.CURRENT, 0)
    if name == "LOCK":
        return (FileType.LOCK, 0)
    m = _NUMBERED.match(name)
    if m:
        return (_SUFFIX[m.group(2)], int(m.group(1)))
    m = _MANIFEST.match(name)
    if m:
        return (FileType.MANIFEST, int(m.group(1)))
    return None
