"""Unit tests of lsm.memtable: versions and their order, the counters a
scan trusts, the lazily folded key index (also while a writer adds keys),
key ranges, the flush's columns, range tombstones and their cached
fragments, and the worker export read back."""

from __future__ import annotations

import random
import struct
import sys
import threading

import pytest

from lsm.invariants import InvariantError
from lsm.keys import DELETE, PUT, PUT_TTL, RANGE_DELETE
from lsm.memory import SLOT
from lsm.memtable import _CHUNK, ENTRY_HELD, ENTRY_OVERHEAD, Memtable

TTL = struct.pack("<d", 1e12)


def tag(seq: int, kind: int) -> int:
    return seq << 8 | kind


def filled(keys, start: int = 1) -> Memtable:
    m = Memtable(3)
    for seq, k in enumerate(keys, start):
        m.add(seq, PUT, k, b"v" + k)
    return m


# --- versions ------------------------------------------------------------------------------------

def test_versions_newest_first_and_reads_at_every_sequence() -> None:
    m = Memtable(5)
    m.add(1, PUT, b"k", b"one")
    m.add(2, PUT, b"other", b"x")
    m.add(4, DELETE, b"k", b"")
    m.add(7, PUT_TTL, b"k", TTL + b"three")
    m.add(9, PUT, b"k", b"four")
    assert m.versions(b"k") == [(tag(9, PUT), b"four"), (tag(7, PUT_TTL), TTL + b"three"),
                                (tag(4, DELETE), b""), (tag(1, PUT), b"one")]
    assert m.versions(b"other") == [(tag(2, PUT), b"x")] and m.versions(b"nope") == []
    assert m.get(b"k") == (tag(9, PUT), b"four") and m.get(b"nope") is None
    want = {0: None, 1: (tag(1, PUT), b"one"), 3: (tag(1, PUT), b"one"), 4: (tag(4, DELETE), b""),
            6: (tag(4, DELETE), b""), 7: (tag(7, PUT_TTL), TTL + b"three"), 8: (tag(7, PUT_TTL), TTL + b"three"),
            9: (tag(9, PUT), b"four"), 1 << 56: (tag(9, PUT), b"four")}
    for seq, v in want.items():
        assert m.get_at(b"k", seq) == v, seq
    assert m.get_at(b"other", 1) is None and m.get_at(b"other", 2) == (tag(2, PUT), b"x")
    assert m.has_older()
    m._check()


def test_counters_a_scan_trusts() -> None:
    m = Memtable(5)
    assert (len(m), m.entries, m.special, m.max_seq, m.nbytes, m.has_older()) == (0, 0, 0, 0, 0, False)
    m.add(1, PUT, b"a", b"12345")
    m.add(2, PUT, b"b", b"")
    assert (m.special, m.max_seq, m.has_older()) == (0, 2, False)  # plain puts, one version each
    m.add(3, DELETE, b"a", b"")
    m.add(4, PUT_TTL, b"c", TTL)
    m.add_range_del(5, b"x", b"z")
    assert (len(m), m.entries, m.special, m.max_seq) == (4, 5, 3, 5)  # 3 keys + 1 range tombstone
    assert m.nbytes == (1 + 5) + (1 + 0) + (1 + 0) + (1 + 8) + (1 + 1) + 5 * ENTRY_OVERHEAD
    assert m.memory_bytes == m.nbytes + 5 * (ENTRY_HELD - ENTRY_OVERHEAD)  # no index built yet
    m.keys_in(b"", None, (True, False), False, 10)  # builds the index
    assert m.memory_bytes == m.nbytes + 5 * (ENTRY_HELD - ENTRY_OVERHEAD) + 3 * SLOT
    assert m.has_older()


def test_add_ops_numbers_ops_from_first_and_routes_range_deletes() -> None:
    m = Memtable()
    m.add_ops(10, [(PUT, b"a", b"1"), (RANGE_DELETE, b"b", b"d"), (DELETE, b"a", b""), (PUT_TTL, b"c", TTL)])
    assert m.versions(b"a") == [(tag(12, DELETE), b""), (tag(10, PUT), b"1")]
    assert m.range_dels == [(b"b", b"d", 11)]
    assert m.get(b"c") == (tag(13, PUT_TTL), TTL) and m.get(b"b") is None
    assert (m.max_seq, m.entries, m.special) == (13, 4, 3)


def test_check_catches_versions_out_of_order() -> None:
    m = Memtable()
    m.add(5, PUT, b"k", b"new")
    m.add(3, PUT, b"k", b"older seq added later")  # breaks add's contract
    with pytest.raises(InvariantError, match="out of order"):
        m._check()


# --- the lazy index --------------------------------------------------------------------------------

def test_new_keys_wait_in_the_tail_until_a_read_needs_the_order() -> None:
    m = filled([b"d", b"b", b"a"])
    m.add(4, PUT, b"b", b"overwrite")  # not a new key: not in the tail again
    assert m._tail == [b"d", b"b", b"a"] and len(m._index) == 0
    assert m.keys_in(b"", None, (True, False), False, 10) == [b"a", b"b", b"d"]
    assert m._tail == [] and list(m._index) == [b"a", b"b", b"d"]
    m.add(5, PUT, b"c", b"")
    m.add(6, PUT, b"a", b"")
    assert m._tail == [b"c"]
    assert m.count_keys(b"b", b"d") == (2, 4)  # folds too
    assert m._tail == [] and list(m._index) == [b"a", b"b", b"c", b"d"]
    m._check()


@pytest.mark.parametrize("folded", [0, 10, 1000])
def test_sorted_keys_sorts_or_folds_to_the_same_order(folded: int) -> None:
    rng = random.Random(folded)
    keys = [b"%06d" % rng.randrange(10**6) for _ in range(1200)]
    m = filled(keys[:folded])
    m.keys_in(b"", None, (True, False), False, 1)
    for seq, k in enumerate(keys[folded:], folded + 1):
        m.add(seq, PUT, k, b"")
    tail, index = len(m._tail), len(m._index)
    assert m.sorted_keys() == sorted(set(keys))
    if tail * 8 > index:  # a large tail: one sort of the dict, the index left alone
        assert (len(m._tail), len(m._index)) == (tail, index)
    else:
        assert not m._tail and len(m._index) == len(set(keys))
    m._check()


def test_iter_keys_sees_keys_added_ahead_of_it_between_chunks() -> None:
    m = filled([b"%05d" % i for i in range(0, 2000, 2)])  # even numbers
    it = m.iter_keys(b"", None)
    seen = [next(it) for _ in range(_CHUNK)]  # the first chunk, copied out
    last = seen[-1]
    seq = 5000
    for i in range(1, 2000, 2):  # odd numbers, on both sides of the position
        seq += 1
        m.add(seq, PUT, b"%05d" % i, b"")
    seen += list(it)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    want = [b"%05d" % i for i in range(0, 2000, 2)] + [b"%05d" % i for i in range(1, 2000, 2) if b"%05d" % i > last]
    assert seen == sorted(want)


def test_folding_while_a_writer_adds_keys() -> None:
    """One writer adds keys without a lock while readers fold and copy the
    index: each read is in order, has no key twice, and holds every key
    whose add finished before the read began."""
    rng = random.Random(7)
    keys = list({b"%08d" % rng.randrange(10**8) for _ in range(20000)})
    m = Memtable()
    done = [0]  # keys whose add has returned
    stop = threading.Event()
    failures: list[str] = []

    def writer() -> None:
        seq = 0
        for n, k in enumerate(keys, 1):
            seq += 1
            m.add(seq, PUT, k, b"")
            if n % 3 == 0:
                seq += 1
                m.add(seq, PUT, k, b"again")  # an overwrite: never a new key
            done[0] = n
        stop.set()

    def reader(reverse: bool) -> None:
        while not stop.is_set():
            before = done[0]
            if reverse:
                got = list(m.iter_keys(b"", None, reverse=True))
                ok = got == sorted(got, reverse=True)
            else:
                got = m.keys_in(b"", None, (True, False), False, 1 << 30)
                ok = got == sorted(got)
            if not ok or len(set(got)) != len(got) or not set(keys[:before]) <= set(got):
                failures.append(f"a read at {before} keys: ordered {ok}, {len(got)} keys")
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(r,))
                                                       for r in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not failures
    m._check()
    assert m.sorted_keys() == sorted(keys)


# --- ranges ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, inclusive, reverse, limit, want", [
    (b"", None, (True, False), False, 100, [b"", b"a", b"ab", b"b", b"c"]),
    (b"a", b"b", (True, False), False, 100, [b"a", b"ab"]),
    (b"a", b"b", (False, False), False, 100, [b"ab"]),
    (b"a", b"b", (True, True), False, 100, [b"a", b"ab", b"b"]),
    (b"a", b"b", (True, True), True, 100, [b"b", b"ab", b"a"]),
    (b"", None, (True, False), True, 2, [b"c", b"b"]),
    (b"", None, (True, False), False, 0, []),
    (b"b", b"a", (True, True), False, 100, []),
    (b"zz", None, (True, False), False, 100, []),
])
def test_keys_in_bounds(lo, hi, inclusive, reverse, limit, want) -> None:
    m = filled([b"c", b"ab", b"", b"b", b"a"])
    assert m.keys_in(lo, hi, inclusive, reverse, limit) == want


def test_iter_keys_and_count_keys_over_many_chunks() -> None:
    keys = [b"%05d" % i for i in range(3 * _CHUNK + 7)]
    m = filled(reversed(keys))
    lo, hi = keys[5], keys[-3]
    assert list(m.iter_keys(lo, hi)) == keys[5:-3]
    assert list(m.iter_keys(lo, hi, reverse=True)) == keys[5:-3][::-1]
    assert list(m.iter_keys(b"", None)) == keys
    assert m.count_keys(lo, hi) == (len(keys) - 8, len(keys))
    assert m.count_keys(hi, lo) == (0, len(keys))
    assert m.count_keys(b"", None) == (len(keys), len(keys))


def test_entry_iterators_order() -> None:
    m = Memtable()
    m.add(1, PUT, b"b", b"b1")
    m.add(2, PUT, b"a", b"a2")
    m.add(3, DELETE, b"b", b"")
    m.add(4, PUT, b"c", b"c4")
    m.add(5, PUT, b"b", b"b5")
    assert list(m.iter_forward(b"", None)) == [(b"a", -2, PUT, b"a2"), (b"b", -5, PUT, b"b5"),
                                               (b"b", -3, DELETE, b""), (b"b", -1, PUT, b"b1"),
                                               (b"c", -4, PUT, b"c4")]
    assert list(m.iter_reverse(b"b", b"c")) == [(b"b", 5, PUT, b"b5"), (b"b", 3, DELETE, b""), (b"b", 1, PUT, b"b1")]
    assert list(m.iter_reverse(b"", None))[0] == (b"c", 4, PUT, b"c4")
    m.immutable = True
    assert list(m.iter_entries()) == [(b"a", 2, PUT, b"a2"), (b"b", 5, PUT, b"b5"), (b"b", 3, DELETE, b""),
                                      (b"b", 1, PUT, b"b1"), (b"c", 4, PUT, b"c4")]


def test_newest_columns_are_the_newest_version_of_each_key_in_key_order() -> None:
    m = Memtable()
    m.add(1, PUT, b"b", b"old")
    m.add(2, PUT_TTL, b"a", TTL + b"x")
    m.add(3, DELETE, b"b", b"")
    m.add(4, PUT, b"", b"empty key")
    m.immutable = True
    assert m.newest_columns() == ([b"", b"a", b"b"], [tag(4, PUT), tag(2, PUT_TTL), tag(3, DELETE)],
                                  [b"empty key", TTL + b"x", b""])
    assert Memtable().newest_columns() == ([], [], [])


# --- range tombstones ----------------------------------------------------------------------------------

def test_fragments_are_cached_until_the_next_range_tombstone() -> None:
    m = Memtable()
    assert m.fragments() is None
    m.add_range_del(1, b"a", b"m")
    f1 = m.fragments()
    assert f1 is m.fragments()  # built once
    assert list(f1) == [(b"a", b"m", [1])]
    m.add(2, PUT, b"c", b"")  # a point write does not touch them
    assert m.fragments() is f1
    m.add_range_del(3, b"f", b"z")
    f2 = m.fragments()
    assert f2 is not f1 and f2 is m.fragments()
    assert list(f2) == [(b"a", b"f", [1]), (b"f", b"m", [1, 3]), (b"m", b"z", [3])]
    assert list(f1) == [(b"a", b"m", [1])]  # a reader's earlier fragments are unchanged
    assert f2.covering(b"g", 2) == 1 and f2.covering(b"g", 3) == 3 and f2.covering(b"c", 100) == 1


def test_fragments_cover_the_prefix_a_reader_saw() -> None:
    """The writer only appends; a reader racing it fragments the tombstones
    that were there when it looked, and the cache then refreshes."""
    m = Memtable()
    m.add_range_del(1, b"a", b"c")
    m.range_dels.append((b"x", b"y", 2))  # as if appended after the reader took the length
    m._frags = (1, m._frags[1]) if m._frags else None
    assert list(m.fragments()) == [(b"a", b"c", [1]), (b"x", b"y", [2])]
    assert m._frags[0] == 2


# --- the worker export, read back -------------------------------------------------------------------------

def test_an_exported_memtable_answers_reads_as_the_original() -> None:
    rng = random.Random(3)
    m = Memtable(9)
    for seq in range(1, 400):
        k = b"k%02d" % rng.randrange(60)
        if seq % 37 == 0:
            m.add_range_del(seq, k, k + b"5")
        else:
            kind = rng.choice([PUT, PUT, DELETE, PUT_TTL])
            m.add(seq, kind, k, (TTL if kind == PUT_TTL else b"") + (b"" if kind == DELETE else b"v%d" % seq))
    m.keys_in(b"", None, (True, False), False, 1)  # the original's index is folded; the copy's is not
    m.immutable = True
    n = Memtable.from_export(m.export())
    assert n.keys_in(b"k1", b"k4", (True, False), True, 50) == m.keys_in(b"k1", b"k4", (True, False), True, 50)
    for k in sorted(m._d):
        for seq in (0, 50, 200, 399):
            assert n.get_at(k, seq) == m.get_at(k, seq)
        assert n.versions(k) == m.versions(k)
    assert list(n.fragments()) == list(m.fragments())
    assert list(n.iter_reverse(b"", None)) == list(m.iter_reverse(b"", None))
