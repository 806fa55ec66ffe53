"""What a type checker sees in code that uses lsm: mypy checks this file
(.ci/run, and tests/test_typecheck.py in the suite), so a wrong or missing
annotation of the public API fails there.

``assert_type(value, T)`` is a type checker's assertion that ``value`` has
exactly type ``T``; at run time it returns ``value``. typing.assert_type needs
Python 3.11, so mypy takes it from typing_extensions' stubs (bundled with
mypy) and the run-time stand-in below is used instead: typing_extensions is
not a dependency of lsm.

The module does nothing on import (pytest's --doctest-modules imports it);
tests/test_typecheck.py also runs ``usage`` against a real database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import lsm
from lsm import serde

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:
    def assert_type(value: object, typ: object) -> object:
        return value


def usage(path: str) -> None:
    with lsm.open(path, sync_mode="never") as db:
        assert_type(db, lsm.DB)
        assert_type(db.put(b"a", b"1"), int)  # the write's sequence number
        assert_type(db.delete(b"gone"), int)
        assert_type(db.get(b"a"), bytes | None)
        assert_type(db.get(b"a", b""), bytes)
        assert_type(db.get(b"a", 0), bytes | int)
        assert_type(db[b"a"], bytes)
        assert_type(db.multi_get([b"a", b"b"]), list[bytes | None])

        entry = db.get_entry(b"a")
        assert_type(entry, lsm.Entry[bytes] | None)
        if entry is not None:
            assert_type(entry.value, bytes)
            assert_type(entry.version, int)
            assert_type(entry.expires_at, float | None)

        with db.scan(b"a") as it:
            assert_type(it, lsm.ScanIterator)
            pairs: list[tuple[bytes, bytes]] = list(it)
        assert pairs == [(b"a", b"1")]
        keys: Iterator[bytes] = iter(db)
        assert list(keys) == [b"a"]

        with db.write_batch() as batch:
            assert_type(batch, lsm.WriteBatch)
            assert_type(batch.put(b"b", b"2").delete(b"c"), lsm.WriteBatch)
        wb = lsm.WriteBatch().put(b"c", b"3", ttl=60.0)
        assert_type(db.write(wb, sync=False), int)

        with db.snapshot() as snap:
            assert_type(snap, lsm.Snapshot)
            assert_type(snap.get(b"a"), bytes | None)
            db.put(b"a", b"new")
            assert snap.get(b"a") == b"1"

        with db.cursor(lower=b"a") as c:
            assert_type(c, lsm.Cursor)
            assert_type(c.seek_to_first(), bool)
            assert_type(c.key, bytes)
            assert_type(c.value, bytes)
            assert_type(c.entry, lsm.Entry[bytes])
            assert_type(c.next(), bool)

        users = db.prefixed(b"users:")
        assert_type(users, lsm.PrefixedDB)
        users.put(b"1", b"ada")
        assert_type(users.get(b"1"), bytes | None)
        assert db.get(b"users:1") == b"ada"

        counts = db.prefixed(b"counts:").typed(serde.Str(), serde.Int())
        assert_type(counts, lsm.TypedView[str, int])
        counts.put("x", 1)
        assert_type(counts.get("x"), int | None)
        assert_type(counts["x"], int)
        counted = counts.get_entry("x")
        assert_type(counted, lsm.Entry[int] | None)
        assert counted is not None and counted.value == 1
