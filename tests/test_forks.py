"""A DB or PersistentCache inherited by a forked child (lsm/forks.py): closed
in the child, and nothing the child does to it reaches the parent's files or
lock."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import pytest

import lsm
from lsm.errors import ClosedError, LockError
from lsm.fs import OsFileSystem

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_child(body) -> int:
    """Run ``body()`` in a forked child; its exit status (0: body returned)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported through the exit status
            sys.stderr.write(f"child failed: {e!r}\n")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def locked_by_someone(path: str) -> bool:
    """Whether another process fails to take the directory's LOCK now."""
    code = textwrap.dedent(f"""
        import sys
        from lsm.fs import OsFileSystem
        from lsm.errors import LockError
        try:
            OsFileSystem().lock({os.path.join(path, "LOCK")!r}, shared=False).release()
        except LockError:
            sys.exit(3)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    return r.returncode == 3


def test_db_is_closed_in_a_forked_child_and_the_parent_keeps_everything(tmp_path):
    path = str(tmp_path / "db")
    db = lsm.open(path)
    db.put(b"a", b"1")

    def child() -> None:
        with pytest.raises(ClosedError, match="forked"):
            db.get(b"a")
        with pytest.raises(ClosedError, match="forked"):
            db.put(b"b", b"2")
        db.close()  # touches nothing
        with db:  # nor does leaving a with-block
            pass
        with pytest.raises(LockError):
            lsm.open(path)  # the parent still holds the lock
        db._lock.release()  # even an explicit release only closes the child's copy

    assert in_child(child) == 0
    gc.collect()
    assert locked_by_someone(path)
    db.put(b"c", b"3")
    assert db.get(b"a") == b"1" and db.get(b"c") == b"3"
    db.close()
    with lsm.open(path) as db:
        assert dict(db.scan()) == {b"a": b"1", b"c": b"3"}


def test_cache_is_closed_in_a_forked_child_and_the_parent_keeps_everything(tmp_path):
    path = str(tmp_path / "c")
    cache = lsm.PersistentCache(path, shards=2)
    cache.put(b"a", b"1")

    def child() -> None:
        with pytest.raises(ClosedError, match="forked"):
            cache.get(b"a")
        with pytest.raises(ClosedError):
            cache.put(b"b", b"2")
        cache.close()
        del globals_holder[:]  # drop the child's last reference: __del__ must not close either
        gc.collect()

    globals_holder = [cache]
    assert in_child(child) == 0
    assert locked_by_someone(path)
    for i in range(3000):  # past the map step: the child cut nothing back
        cache.put(b"k%d" % i, b"v" * 100)
    cache.close()
    with lsm.PersistentCache(path, shards=2) as cache:
        assert cache.get(b"a") == b"1" and all(cache.get(b"k%d" % i) == b"v" * 100 for i in range(3000))


def test_a_lock_released_in_a_forked_child_stays_held_by_the_parent(tmp_path):
    lock_path = str(tmp_path / "LOCK")
    lock = OsFileSystem().lock(lock_path, shared=False)
    assert in_child(lock.release) == 0
    assert locked_by_someone(str(tmp_path))
    lock.release()
    assert not locked_by_someone(str(tmp_path))
