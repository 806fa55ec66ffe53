"""Typed views: serializers applied to keys and values, natural ordering of
typed scans, tuple-prefix scans, errors, batches and snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import lsm
from lsm.serde import Bytes, Int, Json, Str, Tuple


@pytest.fixture
def db(tmp_path):
    d = lsm.open(tmp_path / "db", sync_mode="never", memtable_bytes=4096)
    yield d
    d.close()


def test_round_trip_and_entry(db):
    v = db.typed(Str(), Json())
    ver = v.put("alice", {"age": 30, "tags": ["a"]})
    assert v.get("alice") == {"age": 30, "tags": ["a"]}
    e = v.get_entry("alice")
    assert e.value == {"age": 30, "tags": ["a"]} and e.version == ver
    assert v.get("bob") is None and v.get("bob", 1) == 1
    assert "alice" in v and "bob" not in v
    v["bob"] = [1, 2]
    assert v["bob"] == [1, 2]
    del v["bob"]
    with pytest.raises(KeyError):
        v["bob"]
    assert db.get(b"alice")[0] == Json().version  # version byte in front of the value


def test_int_keys_scan_in_numeric_order(db):
    v = db.typed(Int(), Int())
    nums = [5, -3, 10**30, -(10**30), 0, 7, 256, -256, 2**64, -(2**64)]
    for n in nums:
        v.put(n, n * 2)
    db.flush()
    assert [k for k, _ in v.scan()] == sorted(nums)
    assert [k for k in v.scan(reverse=True, keys_only=True)] == sorted(nums, reverse=True)
    assert [k for k, _ in v.scan(start=0, stop=300)] == [0, 5, 7, 256]
    with pytest.raises(TypeError, match="prefix"):
        list(v.scan(5))


def test_tuple_prefix_scan(db):
    v = db.typed(Tuple(), Str())
    rows = [(("user", 1, "a"), "1a"), (("user", 1, "b"), "1b"), (("user", 2), "2"),
            (("user", 10), "10"), (("userx", 1), "x"), (("order", 1), "o"), (("user", b"\x00"), "z")]
    for k, val in rows:
        v.put(k, val)
    assert [k for k, _ in v.scan(("user", 1))] == [("user", 1, "a"), ("user", 1, "b")]
    got = [k for k, _ in v.scan(("user",))]
    assert got == sorted([k for k, _ in rows if k[0] == "user"], key=lambda t: (
        [(0 if isinstance(x, bytes) else 1, x) for x in t]))
    assert ("userx", 1) not in got
    assert [k for k, _ in v.scan(("user",), start=("user", 2))] == [("user", 2), ("user", 10)]
    assert [k for k, _ in v.scan(("user",), reverse=True)][0] == ("user", 10)


def test_str_prefix_scan(db):
    v = db.typed(Str(), Bytes())
    for k in ("apple", "apricot", "banana", "äpfel"):
        v.put(k, k.encode())
    assert [k for k, _ in v.scan("ap")] == ["apple", "apricot"]
    assert [k for k, _ in v.scan()] == sorted(["apple", "apricot", "banana", "äpfel"])


def test_errors_are_serialization_errors_and_write_nothing(db):
    v = db.typed(Int(), Json())
    with pytest.raises(lsm.SerializationError, match="Int"):
        v.put("not an int", 1)
    with pytest.raises(lsm.SerializationError, match="Json"):
        v.put(1, object())
    assert list(db.scan()) == []
    db.put(b"\x15\x01", b"\x07garbage")  # key 1, a value with another version byte
    with pytest.raises(lsm.SerializationError, match="version"):
        v.get(1)
    db.put(b"\x15\x02", b"")
    with pytest.raises(lsm.SerializationError):
        v.get(2)
    db.put(b"\xff\xff", b"\x01{}")  # not a valid Int key
    with pytest.raises(lsm.SerializationError):
        list(v.scan())


def test_cas_batch_snapshot(db):
    v = db.typed(Str(), Int())
    ver = v.compare_and_swap("n", 0, 1)
    assert ver and v.compare_and_swap("n", 0, 5) is None
    assert v.compare_and_swap("n", ver, 2) == ver + 1
    with v.write_batch() as b:
        b.put("a", 1).put("b", 2).delete("n")
    assert v.get("n") is None and v.get("b") == 2
    with pytest.raises(lsm.SerializationError):
        with v.write_batch() as b:
            b.put("c", 3)
            b.put("d", "not an int")
    assert v.get("c") is None  # the whole batch was discarded
    with v.snapshot() as snap:
        v.put("a", 100)
        assert snap.get("a") == 1 and v.get("a") == 100
        assert dict(snap.scan()) == {"a": 1, "b": 2}
    with pytest.raises(lsm.ClosedError):
        snap.get("a")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(), st.text(max_size=4)), st.integers(-5, 5)),
                min_size=1, max_size=20, unique=True))
def test_typed_scan_order_matches_python_order(tmp_path_factory, keys):
    path = tmp_path_factory.mktemp("t")
    with lsm.open(path, sync_mode="never", metrics=False) as db:
        v = db.typed(Tuple(), Int())
        for i, k in enumerate(keys):
            v.put(k, i)
        got = [k for k, _ in v.scan()]

        def sort_key(t):  # FoundationDB order: str (0x02) sorts before int (0x0B..0x1D)
            return tuple((0, x) if isinstance(x, str) else (1, x) for x in t)

        assert got == sorted(keys, key=sort_key)
