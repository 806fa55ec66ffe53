"""Operations on a database directory as a whole, with no ``DB`` open on
it: :func:`destroy` deletes a database (LevelDB's ``DestroyDB``, plyvel's
``destroy_db``). Its companion :func:`lsm.repair.repair` rebuilds a damaged
database's manifest; ``lsm`` exports both.
"""

from __future__ import annotations

import os

from .errors import DiskError, Error
from .filenames import LOST_DIR, FileType, check_path, make_current_name, make_lock_name, parse_name
from .fs import FileSystem, OsFileSystem

__all__ = ["destroy"]


def destroy(path: str | os.PathLike) -> None:
    """Delete the database at ``path``: its files (the names a database
    uses: ``CURRENT``, ``LOCK``, manifests, logs, tables, temp files) and
    the ``lost/`` directory ``lsm.repair`` fills, then the directory itself
    if nothing else is left in it. Other files stay, and with them the
    directory.

    It takes the exclusive ``LOCK`` first, so a database open anywhere
    (read-only too) is refused, and deletes ``CURRENT`` last: interrupted,
    it leaves a directory that is still recognised, and calling it again
    finishes the job.

    >>> import lsm, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "db")
    >>> with lsm.open(path) as db:
    ...     _ = db.put(b"k", b"v")
    >>> lsm.destroy(path)
    >>> os.path.exists(path)
    False

    Raises: TypeError/ValueError for a bad ``path``; Error (naming the path)
    when it does not exist or holds no database (no ``CURRENT``; nothing is
    deleted); LockError when the database is open; DiskError.
    """
    path = check_path(path)
    fs: FileSystem = OsFileSystem()
    if not fs.exists(path):
        raise Error(f"{path}: no such database directory")
    if not fs.exists(make_current_name(path)):
        raise Error(f"{path}: not a database (no CURRENT file); nothing was deleted")
    lock = fs.lock(make_lock_name(path), shared=False)
    try:
        for name in sorted(fs.listdir(path)):
            parsed = parse_name(name)
            if parsed is not None and parsed[0] not in (FileType.CURRENT, FileType.LOCK):
                fs.remove(os.path.join(path, name))
        lost = os.path.join(path, LOST_DIR)
        if fs.exists(lost):
            _remove_lost(fs, lost)
        fs.remove(make_current_name(path))
        fs.fsync_dir(path)
        fs.remove(make_lock_name(path))
    finally:
        lock.release()
    try:
        fs.rmdir(path)
    except DiskError:
        return  # files that are not the database's: they and the directory stay
    fs.fsync_dir(os.path.dirname(path))


def _remove_lost(fs: FileSystem, lost: str) -> None:
    """The files ``repair`` moved aside (any names), then ``lost/`` itself
    when nothing else (a subdirectory) is in it."""
    try:
        names = fs.listdir(lost)
    except DiskError:
        return  # not a directory: not repair's
    for name in names:
        try:
            fs.remove(os.path.join(lost, name))
        except DiskError:
            pass  # a directory: not repair's, left
    try:
        fs.rmdir(lost)
    except DiskError:
        pass
