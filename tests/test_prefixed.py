"""Namespaces (db.prefixed): the key/value API with keys relative to the
prefix, isolation from other keys, batches, scans, snapshots, typed and
nested views, size estimates, cursor/delete_range wrappers, bad arguments,
ClosedError, and concurrent use."""

from __future__ import annotations

import threading
import time

import pytest

import lsm
from lsm.keys import MAX_KEY_BYTES
from lsm.prefixed import PrefixedBatch, PrefixedCursor, PrefixedSnapshot
from lsm.serde import Json, Str, Tuple


@pytest.fixture
def db(tmp_path):
    d = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=4096, block_bytes=512)
    yield d
    d.close()


def _neighbours(db):
    """Keys around the namespace b"p:" that must never show through it."""
    for k in (b"p", b"p9", b"p;", b"p;x", b"o:z", b"q"):
        db.put(k, b"outside")


def test_point_api_is_relative_to_the_prefix(db):
    _neighbours(db)
    ns = db.prefixed(b"p:")
    assert isinstance(ns, lsm.PrefixedDB) and ns.prefix == b"p:" and ns.db is db
    v = ns.put(b"a", b"1")
    assert db.get(b"p:a") == b"1" and ns.get(b"a") == b"1"
    assert ns.get(b"missing") is None and ns.get(b"missing", 7) == 7
    assert ns.get_entry(b"a") == db.get_entry(b"p:a") and ns.get_entry(b"a").version == v
    assert ns.compare_and_swap(b"a", v + 1, b"x") is None
    v2 = ns.compare_and_swap(b"a", v, b"2")
    assert v2 and db.get(b"p:a") == b"2"
    assert ns.compare_and_swap(b"new", 0, b"n") and db.get(b"p:new") == b"n"
    assert ns.compare_and_swap(b"new", db.get_entry(b"p:new").version, None)
    assert db.get(b"p:new") is None
    ns.put(b"t", b"ttl", ttl=3600)
    e = ns.get_entry(b"t")
    assert e.value == b"ttl" and e.expires_at > time.time() + 3000
    ns.delete(b"a")
    assert ns.get(b"a") is None and db.get(b"p:a") is None
    ns.put(b"", b"empty key")  # the prefix itself
    assert db.get(b"p:") == b"empty key" and ns[b""] == b"empty key"
    assert db.get(b"p") == b"outside"  # untouched


def test_mapping_sugar(db):
    _neighbours(db)
    ns = db.prefixed(b"p:")
    ns[b"x"] = b"1"
    ns[b"y"] = b"2"
    assert b"x" in ns and b"z" not in ns and ns[b"y"] == b"2"
    with pytest.raises(KeyError):
        ns[b"z"]
    with pytest.raises(KeyError):
        del ns[b"z"]
    del ns[b"x"]
    assert len(ns) == 1 and list(ns) == [b"y"] and dict(ns.items()) == {b"y": b"2"}
    assert ns.setdefault(b"w", b"0") == b"0" and db[b"p:w"] == b"0"


def test_scan_is_relative_and_confined(db):
    _neighbours(db)
    ns = db.prefixed(b"p:")
    for k in (b"a1", b"a2", b"b1", b"b2", b"c"):
        ns.put(k, k.upper())
    assert list(ns.scan(keys_only=True)) == [b"a1", b"a2", b"b1", b"b2", b"c"]
    assert list(ns.scan(b"a")) == [(b"a1", b"A1"), (b"a2", b"A2")]
    assert list(ns.scan(start=b"a2", stop=b"c", keys_only=True)) == [b"a2", b"b1", b"b2"]
    assert list(ns.scan(b"b", reverse=True, keys_only=True)) == [b"b2", b"b1"]
    assert list(ns.scan(stop=b"b", reverse=True)) == [(b"a2", b"A2"), (b"a1", b"A1")]
    assert list(ns.scan(start=b"zz")) == [] and list(ns.scan(b"q")) == []
    with ns.scan() as it:
        assert next(it) == (b"a1", b"A1")
    with pytest.raises(lsm.ClosedError):
        next(it)


def test_prefixes_at_the_edge_of_the_key_space(db):
    db.put(b"\xfe", b"below")
    ns = db.prefixed(b"\xff\xff")  # no key is above every key starting with it: an unbounded namespace
    ns.put(b"a", b"1")
    ns.put(b"\xff", b"2")
    db.put(b"\xff", b"not in it")
    assert list(ns.scan(keys_only=True)) == [b"a", b"\xff"]
    assert list(ns.scan(reverse=True, keys_only=True)) == [b"\xff", b"a"]
    assert ns.approximate_count() == 2
    whole = db.prefixed(b"")  # the empty prefix: the whole database
    assert len(whole) == len(db) == 4


def test_write_batch_and_write(db):
    _neighbours(db)
    ns = db.prefixed(b"p:")
    with ns.write_batch() as b:
        assert isinstance(b, PrefixedBatch) and isinstance(b, lsm.WriteBatch)
        b.put(b"a", b"1").put(b"b", b"2", ttl=60).delete(b"c")
    assert db.get(b"p:a") == b"1" and ns.get_entry(b"b").expires_at is not None
    with pytest.raises(RuntimeError):
        with ns.write_batch() as b:
            b.put(b"never", b"x")
            raise RuntimeError("discarded")
    assert ns.get(b"never") is None
    plain = lsm.WriteBatch()
    plain.put(b"x", b"10").put(b"y", b"20", ttl=60).delete(b"a")
    last = ns.write(plain)  # a plain batch of relative keys gets the prefix
    assert db.get(b"p:x") == b"10" and ns.get_entry(b"y").expires_at is not None and ns.get(b"a") is None
    assert last == db.stats()["sequence"] and plain.ops[0][1] == b"x"  # the caller's batch is untouched
    pb = ns.write_batch()
    pb.put(b"z", b"30")
    assert ns.write(pb) and db.get(b"p:z") == b"30"
    assert db.write(ns.write_batch().put(b"w", b"40")) and ns.get(b"w") == b"40"  # whole keys for the DB
    with pytest.raises(ValueError, match="built for the prefix b'q:'"):
        ns.write(db.prefixed(b"q:").write_batch().put(b"k", b"v"))
    with pytest.raises(TypeError, match="batch must be a WriteBatch"):
        ns.write({b"k": b"v"})
    with pytest.raises(TypeError, match="sync must be"):
        ns.write_batch(sync="yes")
    assert ns.write(lsm.WriteBatch()) == 0
    long = lsm.WriteBatch().put(b"k" * (MAX_KEY_BYTES - 1), b"v")
    with pytest.raises(ValueError, match="with the 2-byte prefix the limit is"):
        ns.write(long)


def test_snapshot_is_prefixed_and_frozen(db):
    ns = db.prefixed(b"p:")
    ns.put(b"a", b"1")
    with ns.snapshot() as snap:
        assert isinstance(snap, PrefixedSnapshot) and snap.prefix == b"p:"
        ns.put(b"a", b"2")
        ns.put(b"b", b"3")
        db.flush()
        db.compact_range()
        assert snap.get(b"a") == b"1" and snap[b"a"] == b"1" and b"b" not in snap
        assert snap.get_entry(b"a").value == b"1" and snap.get(b"b", 0) == 0
        assert list(snap.scan()) == [(b"a", b"1")]
        assert snap.sequence == snap.snapshot.sequence
        with pytest.raises(KeyError):
            snap[b"b"]
    with pytest.raises(lsm.ClosedError):
        snap.get(b"a")
    assert ns.get(b"a") == b"2"


def test_typed_view_over_a_namespace(db):
    users = db.prefixed(b"users:").typed(Tuple(), Json())
    users.put(("eu", 2), {"n": "grace"})
    users.put(("eu", 10), {"n": "ada"})
    users.put(("us", 1), {"n": "linus"})
    assert users.get(("eu", 10)) == {"n": "ada"}
    assert [k for k, _ in users.scan(("eu",))] == [("eu", 2), ("eu", 10)]
    with users.write_batch() as b:
        b.put(("us", 2), {"n": "x"}).delete(("us", 1))
    with users.snapshot() as s:
        assert s.get(("us", 2)) == {"n": "x"} and s.get(("us", 1)) is None
    assert all(k.startswith(b"users:") for k in db.scan(keys_only=True))
    names = db.prefixed(b"names:").typed(Str(), Str())
    names.put("a", "b")
    assert [k for k, _ in names.scan("a")] == ["a"]


def test_nested_namespaces(db):
    outer = db.prefixed(b"a:")
    inner = outer.prefixed(b"b:")
    assert inner.prefix == b"a:b:" and inner.db is db
    inner.put(b"k", b"v")
    assert db.get(b"a:b:k") == b"v" and outer.get(b"b:k") == b"v"
    assert list(outer.scan(keys_only=True)) == [b"b:k"]
    assert list(inner.scan()) == [(b"k", b"v")]
    assert lsm.PrefixedDB(inner, b"c:").prefix == b"a:b:c:"


def test_size_estimates_are_relative(db):
    _neighbours(db)
    ns = db.prefixed(b"p:")
    for i in range(100):
        ns.put(b"%03d" % i, bytes(50))
    assert ns.approximate_count() == 100  # in the memtable: exact
    assert ns.approximate_count(b"010", b"020") == 10
    assert ns.approximate_count(None, b"050") == 50
    whole, part = ns.approximate_sizes([(None, None), (b"050", None)])
    assert 0 < part < whole < db.approximate_sizes([(None, None)])[0]
    with pytest.raises(TypeError, match=r"ranges\[0\] stop"):
        ns.approximate_sizes([(None, 5)])
    with pytest.raises(ValueError, match=r"ranges\[0\] start is"):
        ns.approximate_sizes([(b"k" * MAX_KEY_BYTES, None)])


class _FakeCursor:
    """The documented cursor interface over a sorted list, for the wrapper's
    translation (lower/upper/seek keys in, keys out)."""

    def __init__(self, items, lower, upper):
        self.items = [(k, v) for k, v in items if k >= lower and (upper is None or k < upper)]
        self.lower, self.upper = lower, upper
        self.i = len(self.items)
        self.closed = False

    valid = property(lambda self: self.i < len(self.items))
    key = property(lambda self: self.items[self.i][0])
    value = property(lambda self: self.items[self.i][1])
    entry = property(lambda self: ("entry", self.items[self.i][0]))

    def seek(self, key):
        self.i = next((j for j, (k, _) in enumerate(self.items) if k >= key), len(self.items))

    def seek_for_prev(self, key):
        js = [j for j, (k, _) in enumerate(self.items) if k <= key]
        self.i = js[-1] if js else len(self.items)

    def seek_to_first(self):
        self.i = 0

    def seek_to_last(self):
        self.i = len(self.items) - 1 if self.items else 0

    def next(self):
        self.i += 1

    def prev(self):
        self.i = self.i - 1 if self.i > 0 else len(self.items)

    def close(self):
        self.closed = True

    def __enter__(self):
        return self


def test_cursor_wrapper_translates_keys(db):
    _neighbours(db)
    made = []

    def cursor(*, lower=None, upper=None):
        made.append((lower, upper))
        return _FakeCursor(list(db.scan()), lower or b"", upper)

    db.cursor = cursor  # the documented signature, as a stand-in
    ns = db.prefixed(b"p:")
    for k in (b"a", b"b", b"c", b"d"):
        ns.put(k, k.upper())
    with ns.cursor() as c:
        assert isinstance(c, PrefixedCursor)
        c.seek_to_first()
        assert (c.key, c.value) == (b"a", b"A")
        c.seek(b"bb")
        assert c.key == b"c" and c.entry == ("entry", b"p:c")
        c.prev()
        assert c.key == b"b"
        c.seek_for_prev(b"zz")
        assert c.key == b"d"
        c.next()
        assert not c.valid
        c.seek_to_last()
        assert c.key == b"d"
    assert c._c.closed
    assert made[-1] == (b"p:", b"p;")
    ns.cursor(lower=b"b", upper=b"d")
    assert made[-1] == (b"p:b", b"p:d")
    with pytest.raises(TypeError, match="lower must be bytes"):
        ns.cursor(lower=1)
    with pytest.raises(TypeError, match="key must be bytes"):
        ns.cursor().seek("a")


def test_delete_range_wrapper_translates_bounds(db):
    calls = []
    db.delete_range = lambda start, stop, **kw: calls.append((start, stop, kw))
    ns = db.prefixed(b"p:")
    ns.delete_range(b"a", b"c")
    ns.delete_range()
    ns.delete_range(b"b", None, sync=True)
    assert calls == [(b"p:a", b"p:c", {}), (b"p:", b"p;", {}), (b"p:b", b"p;", {"sync": True})]
    with pytest.raises(TypeError, match="start must be bytes"):
        ns.delete_range("a", b"c")


def test_without_cursor_or_delete_range_on_the_db(db):
    ns = db.prefixed(b"p:")
    if not hasattr(lsm.DB, "cursor"):
        with pytest.raises(NotImplementedError, match="no cursor"):
            ns.cursor()
    if not hasattr(lsm.DB, "delete_range"):
        with pytest.raises(NotImplementedError, match="no delete_range"):
            ns.delete_range(b"a", b"b")


@pytest.mark.skipif(not (hasattr(lsm.DB, "cursor") and hasattr(lsm.DB, "delete_range")),
                    reason="lsm.DB has no cursor()/delete_range() yet: the prefixed wrappers are checked "
                           "against stand-ins above")
def test_real_cursor_and_delete_range(db):
    _neighbours(db)
    ns = db.prefixed(b"p:")
    for k in (b"a", b"b", b"c", b"d"):
        ns.put(k, k.upper())
    with ns.cursor(upper=b"d") as c:
        c.seek_to_first()
        keys = []
        while c.valid:
            keys.append(c.key)
            c.next()
        assert keys == [b"a", b"b", b"c"]
        c.seek_to_last()
        assert c.key == b"c"
    with ns.snapshot() as snap:
        ns.delete_range(b"b", b"d")
        assert list(ns.scan(keys_only=True)) == [b"a", b"d"]
        if hasattr(snap.snapshot, "cursor"):
            with snap.cursor() as c:
                c.seek(b"b")
                assert c.key == b"b"
    ns.delete_range()
    assert list(ns.scan()) == [] and db.get(b"p") == b"outside" and db.get(b"p;") == b"outside"


@pytest.mark.parametrize("call, exc, words", [
    (lambda db: db.prefixed("p:"), TypeError, "prefix must be bytes"),
    (lambda db: db.prefixed(None), TypeError, "prefix must be bytes"),
    (lambda db: db.prefixed(b"p" * (MAX_KEY_BYTES + 1)), ValueError, "prefix is"),
    (lambda db: db.prefixed(b"p:").get("k"), TypeError, "key must be bytes"),
    (lambda db: db.prefixed(b"p:").put(b"k" * MAX_KEY_BYTES, b"v"), ValueError,
     f"key is {MAX_KEY_BYTES} bytes; with the 2-byte prefix the limit is {MAX_KEY_BYTES - 2}"),
    (lambda db: db.prefixed(b"p:").put(b"k", "v"), TypeError, "value must be bytes"),
    (lambda db: db.prefixed(b"p:").put(b"k", b"v", ttl=-1), ValueError, "ttl must be"),
    (lambda db: db.prefixed(b"p:").delete(3), TypeError, "key must be bytes"),
    (lambda db: db.prefixed(b"p:").compare_and_swap(b"k", -1, b"v"), TypeError, "expected_version"),
    (lambda db: db.prefixed(b"p:").scan(start=1), TypeError, "start must be bytes"),
    (lambda db: db.prefixed(b"p:").scan(stop="z"), TypeError, "stop must be bytes"),
    (lambda db: db.prefixed(b"p:").scan(1), TypeError, "prefix must be bytes"),
    (lambda db: db.prefixed(b"p:").scan(reverse=1), TypeError, "reverse must be a bool"),
    (lambda db: db.prefixed(b"p:").prefixed(1), TypeError, "prefix must be bytes"),
    (lambda db: db.prefixed(b"p:").approximate_count(1), TypeError, "start must be bytes"),
    (lambda db: db.prefixed(b"p:").write_batch().put(1, b"v"), TypeError, "key must be bytes"),
    (lambda db: lsm.PrefixedDB(object(), b"p"), TypeError, "db must be an lsm.DB"),
])
def test_bad_arguments(db, call, exc, words):
    with pytest.raises(exc) as info:
        call(db)
    assert words in str(info.value)
    assert list(db.scan()) == []  # nothing written


def test_closed_database(tmp_path):
    db = lsm.open(tmp_path / "db")
    ns = db.prefixed(b"p:")
    ns.put(b"a", b"1")
    db.close()
    for call in (lambda: ns.get(b"a"), lambda: ns.get_entry(b"a"), lambda: ns.put(b"a", b"2"),
                 lambda: ns.delete(b"a"), lambda: ns.compare_and_swap(b"a", 0, b"x"), lambda: ns.scan(),
                 lambda: ns.snapshot(), lambda: ns.write_batch(), lambda: ns.write(lsm.WriteBatch().put(b"a", b"")),
                 lambda: ns.prefixed(b"x"), lambda: ns.typed(Str(), Str()), lambda: b"a" in ns,
                 lambda: ns[b"a"], lambda: len(ns), lambda: ns.approximate_count(),
                 lambda: ns.approximate_sizes([(None, None)]), lambda: db.prefixed(b"q")):
        with pytest.raises(lsm.ClosedError):
            call()


def test_threads_share_namespaces(db):
    names = [db.prefixed(b"n%d:" % i) for i in range(3)]
    errors = []

    def work(ns, n):
        try:
            for i in range(300):
                ns.put(b"%04d" % i, b"%d" % n)
                if i % 50 == 0:
                    with ns.write_batch() as b:
                        b.put(b"batch%04d" % i, b"b")
                    keys = list(ns.scan(keys_only=True))
                    assert keys == sorted(keys) and all(not k.startswith(b"n") for k in keys)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(ns, i)) for i, ns in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, ns in enumerate(names):
        assert len(ns) == 306 and set(v for k, v in ns.items() if not k.startswith(b"batch")) == {b"%d" % i}
