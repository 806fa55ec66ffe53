"""Checkpoints: a consistent, openable copy of a live database in a new
directory (RocksDB's ``Checkpoint::CreateCheckpoint``), taken while
writes, flushes and compactions go on (doc/design.md#checkpoint).

A checkpoint holds the tables of one version (hard links where the file
system allows: a second name for an immutable file costs no copy; copies
across file systems and where there are no links), the write-ahead logs of
that version's memtables copied up to their last record, and a fresh
manifest naming them with the version's log number and the last published
sequence. It reflects exactly one sequence number: every write up to it,
none after.

Steps:

1. Check ``dest``; create the staging directory ``<dest>.tmp`` beside it.
2. *Capture*, as the head of the commit queue with the DB mutex held, so
   that no write is in flight (every appended record is published, and no
   append can start): the published sequence, the current version, its log
   number, the next file number, the compaction pointers, and each live
   log with its length now. Pin what the copy needs: the version (its
   tables stay on disk while a live version lists them), the logs (their
   numbers are kept from obsolete-file deletion), and the DB itself (the
   checkpoint counts as background work, so ``close()`` waits for it).
   A log's bytes below its length now never change: appends go after
   them, a switch or close only cuts the preallocated zeros.
3. Without the mutex: link or copy each table (copies fsynced), copy each
   log's first bytes (fsynced), write ``MANIFEST-N`` with one snapshot edit
   (fsynced), fsync the staging directory, install ``CURRENT`` (temp file,
   fsync, rename, directory fsync).
4. Rename the staging directory to ``dest``; fsync ``dest``'s parent.
5. Unpin.

On any failure the staging directory (or, after step 4, ``dest``) and
everything created in it are removed, the pins are released, and the
source database is untouched: nothing in it is ever written.

``Checkpoints`` is a mixin of :class:`lsm.db.DB` (like ``Reads``).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from .commit import Writer
from .dbstate import DBState
from .errors import CorruptionError, DiskError, Error
from .filenames import FileType, check_path, make_log_name, make_table_name, parse_name
from .fs import FileSystem
from .invariants import assert_held
from .manifest import FORMAT_VERSION as MANIFEST_FORMAT_VERSION, ManifestWriter, VersionEdit, install_current
from .version import Version

__all__ = ["Checkpoints", "STAGING_SUFFIX"]

STAGING_SUFFIX = ".tmp"  # <dest>.tmp: where a checkpoint is built before its rename to dest
_COPY_CHUNK = 1 << 20
# link(2) errors that mean "no hard link here" rather than a failure: another
# file system (EXDEV), none or not allowed (EPERM: also Linux's
# protected_hardlinks; EOPNOTSUPP/ENOTSUP, ENOSYS), too many links (EMLINK).
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


@dataclass
class _Capture:
    """What a checkpoint copies, noted at one moment (step 2)."""

    seq: int
    version: Version | None
    log_number: int
    next_file: int
    pointers: list[tuple[int, bytes]]
    logs: list[tuple[int, int]] = field(default_factory=list)  # (number, bytes to copy)


class Checkpoints(DBState):
    """Mixin of :class:`lsm.db.DB`: ``checkpoint``."""

    def checkpoint(self, dest: str | os.PathLike) -> int:
        """Write a consistent copy of the database into the new directory
        ``dest``, which ``lsm.open`` opens (read-only too) like any database;
        return the sequence number it reflects (every write up to it, none
        after). Writes, flushes and compactions go on meanwhile.

        Tables are hard-linked where the file system allows (no copy: tables
        are never modified), copied otherwise (``dest`` on another file
        system, or one without links); the write-ahead logs are copied.
        Everything is fsynced, and ``dest`` appears whole, by the rename of
        ``<dest>.tmp`` where it was built, or not at all.

        ``dest`` must not exist, or be an empty directory; its parent must
        exist. A failure removes everything it created and leaves the
        database as it was. ``close()`` waits for a checkpoint in progress.

        >>> import lsm, os, tempfile
        >>> db = lsm.open(tempfile.mkdtemp(), sync_mode="never")
        >>> _ = db.put(b"k", b"v1")
        >>> dest = os.path.join(tempfile.mkdtemp(), "copy")
        >>> seq = db.checkpoint(dest)
        >>> _ = db.put(b"k", b"v2")
        >>> with lsm.open(dest, read_only=True) as copy:
        ...     copy.get(b"k"), copy.stats()["sequence"] == seq
        (b'v1', True)
        >>> db.close()

        Raises: TypeError/ValueError for a bad ``dest``; Error when ``dest``
        exists and is not an empty directory, its parent is missing, or
        ``<dest>.tmp`` exists (left by an interrupted checkpoint: remove
        it); ClosedError; DiskError.
        """
        dest = check_path(dest, "dest")
        self._check_open()
        fs: FileSystem = self._fs
        parent = os.path.dirname(dest)
        staging = dest + STAGING_SUFFIX
        dest_existed = _check_free(fs, dest, parent, staging)
        fs.mkdir(staging)
        renamed = False
        try:
            cap = self._checkpoint_capture()
            try:
                self._checkpoint_copy(cap, staging)
                fs.rename(staging, dest)
                renamed = True
                fs.fsync_dir(parent)
            finally:
                self._checkpoint_release(cap)
        except BaseException:
            if renamed:
                _remove_dir(fs, dest, keep_dir=dest_existed)
            else:
                _remove_dir(fs, staging)
            raise
        return cap.seq

    def _checkpoint_capture(self) -> _Capture:
        """Step 2, as the head of the commit queue (a writable DB) or under
        the mutex (a read-only one, which has no writes)."""
        got: list[_Capture] = []

        def capture(_group: object) -> None:  # called with _mu held
            if self._closed:
                raise self._closed_error()
            got.append(self._checkpoint_capture_locked())

        if self._opts.read_only:
            with self._mu:
                capture(None)
        else:
            w = Writer([], [], 0, False)
            w.force_switch = True  # a control request: never grouped with writes
            self._queue.submit(w, capture)
        return got[0]

    def _checkpoint_capture_locked(self) -> _Capture:
        """Requires: ``_mu`` held and no write in flight."""
        assert_held(self._mu)
        vs = self._versions
        fs, path = self._fs, self._path
        cap = _Capture(vs.last_sequence, vs.current, vs.log_number, vs.next_file,
                       sorted(vs.compact_pointers.items()))
        # Open logs know their length (the current one runs ahead of its
        # records with preallocated zeros); closed ones were cut to it.
        writers = {w.number: w for w in ([self._log] if self._log is not None else []) + self._unsynced_logs}
        for name in fs.listdir(path):
            parsed = parse_name(name)
            if parsed is not None and parsed[0] is FileType.LOG and parsed[1] >= vs.log_number:
                n = parsed[1]
                w = writers.get(n)
                cap.logs.append((n, w.size if w is not None else fs.file_size(make_log_name(path, n))))
        cap.logs.sort()
        pins = self._checkpoint_pins
        for n, _ in cap.logs:
            pins[n] = pins.get(n, 0) + 1
            self._pending_outputs.add(n)  # obsolete-file deletion skips it
        self._bg_active += 1  # close() waits for the checkpoint
        return cap

    def _checkpoint_release(self, cap: _Capture) -> None:
        """Step 5: drop the pins (the logs may be deletable now)."""
        cap.version = None
        with self._mu:
            pins = self._checkpoint_pins
            for n, _ in cap.logs:
                left = pins[n] - 1
                if left:
                    pins[n] = left
                else:
                    del pins[n]
                    self._pending_outputs.discard(n)
            self._bg_active -= 1
            self._obsolete_due = True
            self._bg_cv.notify_all()

    def _checkpoint_copy(self, cap: _Capture, staging: str) -> None:
        """Step 3: tables, logs, manifest and CURRENT into ``staging``."""
        fs, src = self._fs, self._path
        version = cap.version
        assert version is not None
        linking = True
        for _, f in version.files():
            s, d = make_table_name(src, f.number), make_table_name(staging, f.number)
            if linking:
                try:
                    fs.link(s, d)
                    continue
                except DiskError as e:
                    if e.errno not in _NO_LINK:
                        raise
                    linking = False  # the same for every table: copy the rest
            _copy(fs, s, d, None)
        for n, nbytes in cap.logs:
            _copy(fs, make_log_name(src, n), make_log_name(staging, n), nbytes)
        number = cap.next_file  # above every file number the copy holds
        edit = VersionEdit(format_version=MANIFEST_FORMAT_VERSION, log_number=cap.log_number,
                           next_file=number + 2, last_sequence=cap.seq)
        edit.compact_pointers = cap.pointers
        for level, f in version.files():
            edit.add_file(level, f)
        writer = ManifestWriter(fs, staging, number)
        try:
            writer.append(edit)  # fsynced
        finally:
            writer.close()
        fs.fsync_dir(staging)  # every name CURRENT will lead to, before CURRENT
        install_current(fs, staging, number, number + 1)


def _check_free(fs: FileSystem, dest: str, parent: str, staging: str) -> bool:
    """Whether ``dest`` exists (an empty directory). Raises Error if it is
    anything else, if ``parent`` is missing, or if ``staging`` exists."""
    existed = fs.exists(dest)
    if existed:
        try:
            names = fs.listdir(dest)
        except DiskError as e:
            raise Error(f"{dest}: checkpoint destination exists and is not a directory ({e.strerror})") from None
        if names:
            raise Error(f"{dest}: checkpoint destination is not empty ({len(names)} entries)")
    elif not fs.exists(parent):
        raise Error(f"{parent}: no such directory to hold the checkpoint {os.path.basename(dest)}")
    if fs.exists(staging):
        raise Error(f"{staging} exists: an interrupted checkpoint's staging directory? Remove it, "
                    "or choose another destination")
    return existed


def _copy(fs: FileSystem, src: str, dst: str, nbytes: int | None) -> None:
    """Copy the first ``nbytes`` (None: all) of ``src`` to the new file ``dst``; fsync it."""
    inp = fs.open_readable(src)
    try:
        n = inp.size if nbytes is None else nbytes
        if inp.size < n:
            raise CorruptionError(src, inp.size, f"file is {inp.size} bytes, {n} were expected")
        out = fs.open_writable(dst)
        try:
            pos = 0
            while pos < n:
                chunk = inp.read_at(pos, min(_COPY_CHUNK, n - pos))
                if not chunk:
                    raise DiskError(errno.EIO, f"short read at offset {pos}", src)
                out.write(chunk)
                pos += len(chunk)
            out.sync()
        finally:
            out.close()
    finally:
        inp.close()


def _remove_dir(fs: FileSystem, path: str, keep_dir: bool = False) -> None:
    """Best effort: remove the files of ``path`` (all of them a checkpoint's
    own), then the directory unless ``keep_dir``."""
    try:
        names = fs.listdir(path)
    except DiskError:
        return
    for name in names:
        try:
            fs.remove(os.path.join(path, name))
        except DiskError:
            pass
    if not keep_dir:
        try:
            fs.rmdir(path)
        except DiskError:
            pass
