"""Edges of the public API found while writing its reference: a read-only
database refuses every write, also an empty one; a namespace's cursor moves
answer ``valid`` as the DB's cursor does; ``stats()`` has each key once."""

from __future__ import annotations

import ast
import inspect

import pytest

import lsm
from lsm import background


def test_read_only_db_refuses_empty_writes(tmp_path) -> None:
    lsm.open(tmp_path, sync_mode="never").close()
    with lsm.open(tmp_path, read_only=True) as db:
        with pytest.raises(lsm.ReadOnlyError):
            db.write(lsm.WriteBatch())
        with pytest.raises(lsm.ReadOnlyError):
            db.delete_range(b"a", b"a")
        with pytest.raises(lsm.ReadOnlyError):
            db.put(b"a", b"1")


def test_prefixed_cursor_moves_return_valid(tmp_path) -> None:
    with lsm.open(tmp_path, sync_mode="never") as db:
        db.put(b"p:a", b"1")
        db.put(b"p:b", b"2")
        db.put(b"q:a", b"3")
        with db.prefixed(b"p:").cursor() as c:
            assert c.seek(b"a") is True and c.key == b"a"
            assert c.next() is True and c.key == b"b"
            assert c.next() is False and not c.valid
            assert c.seek_to_last() is True and c.key == b"b"
            assert c.prev() is True and c.key == b"a"
            assert c.prev() is False
            assert c.seek_for_prev(b"b") is True and c.key == b"b"
            assert c.seek_to_first() is True and c.key == b"a"
            assert c.seek(b"c") is False


def test_stats_literals_name_each_key_once() -> None:
    """A key written twice in a dict literal silently keeps the last value."""
    tree = ast.parse(inspect.getsource(background))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            names = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_typed_compare_and_swap_takes_sync(tmp_path) -> None:
    from lsm import serde

    with lsm.open(tmp_path, sync_mode="never") as db:
        t = db.typed(serde.Str(), serde.Int())
        v = t.put("a", 1)
        assert t.compare_and_swap("a", v, 2, sync=True) is not None
        assert t.get("a") == 2
        with pytest.raises(TypeError):
            t.compare_and_swap("a", 0, 3, sync="yes")


def test_prefixed_multi_get(tmp_path) -> None:
    with lsm.open(tmp_path, sync_mode="never") as db:
        db.put(b"p:a", b"1")
        db.put(b"q:b", b"2")
        db.put(b"p:c", b"3")
        p = db.prefixed(b"p:")
        assert p.multi_get([b"c", b"b", b"a", b"c"]) == [b"3", None, b"1", b"3"]
        assert p.multi_get(iter([])) == []
        with pytest.raises(TypeError, match=r"keys\[1\]"):
            p.multi_get([b"a", 5])
        with pytest.raises(TypeError, match="keys"):
            p.multi_get(b"abc")


def test_reads_refuse_a_key_longer_than_any_key_can_be(tmp_path) -> None:
    """As put does: a key past MAX_KEY_BYTES is a ValueError naming it, not None."""
    from lsm.keys import MAX_KEY_BYTES

    long_key = b"x" * (MAX_KEY_BYTES + 1)
    with lsm.open(tmp_path, sync_mode="never") as db:
        with pytest.raises(ValueError, match="key"):
            db.put(long_key, b"v")
        for read in (db.get, db.get_entry):
            with pytest.raises(ValueError, match="key"):
                read(long_key)
        with pytest.raises(ValueError, match=r"keys\[0\]"):
            db.multi_get([long_key])
        assert db.get(b"x" * MAX_KEY_BYTES) is None


def test_block_cache_stats_have_one_shape(tmp_path) -> None:
    with lsm.open(tmp_path / "on", sync_mode="never") as on, \
            lsm.open(tmp_path / "off", sync_mode="never", block_cache_bytes=0) as off:
        assert set(on.stats()["block_cache"]) == set(off.stats()["block_cache"])


@pytest.mark.parametrize("kwargs, name, error", [
    (dict(block_bytes=255), "block_bytes", ValueError), (dict(block_bytes=True), "block_bytes", TypeError),
    (dict(bloom_bits_per_key=-1), "bloom_bits_per_key", ValueError),
    (dict(bloom_bits_per_key=1.5), "bloom_bits_per_key", TypeError),
])
def test_table_file_writer_checks_options_as_options_does(tmp_path, kwargs, name, error) -> None:
    with pytest.raises(error, match=name):
        lsm.Options(**kwargs)
    with pytest.raises(error, match=name):
        lsm.TableFileWriter(str(tmp_path / "t.sst"), **kwargs)
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_table_file_writer_takes_what_options_takes(tmp_path) -> None:
    with lsm.TableFileWriter(str(tmp_path / "t.sst"), block_bytes=256, bloom_bits_per_key=0) as w:
        w.put(b"a", b"1")


def test_del_item_is_one_step(tmp_path, monkeypatch) -> None:
    """``del db[k]`` deletes what it looked at: a write between its look and
    its delete makes it look again (a compare-and-swap), so a key another
    thread deleted meanwhile raises KeyError instead of being "deleted"."""
    from lsm import serde

    with lsm.open(tmp_path, sync_mode="never") as db:
        db.put(b"k", b"1")
        real = db.get_entry
        looks = []

        def get_entry_then_other_writer_deletes(key):
            e = real(key)
            looks.append(e)
            if e is not None:
                db.delete(key)  # another writer, right after the look
            return e

        monkeypatch.setattr(db, "get_entry", get_entry_then_other_writer_deletes)
        with pytest.raises(KeyError):
            del db[b"k"]
        assert len(looks) == 2 and looks[1] is None  # the swap failed, the second look found it gone
        monkeypatch.undo()
        db.put(b"k", b"2")
        del db[b"k"]
        assert b"k" not in db
        with pytest.raises(KeyError):
            del db[b"k"]
        p = db.prefixed(b"p:")
        p[b"a"] = b"1"
        del p[b"a"]
        assert db.get(b"p:a") is None
        with pytest.raises(KeyError):
            del p[b"a"]
        t = db.typed(serde.Str(), serde.Int())
        t["x"] = 1
        del t["x"]
        assert "x" not in t
        with pytest.raises(KeyError):
            del t["x"]
