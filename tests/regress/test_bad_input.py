"""Regression: bad arguments that raised an unhelpful error, or none:
ttl=10**400 raised OverflowError; sync="no" and reverse="no" were taken as
true; Options(sync_interval=True) passed as a number; db.typed(1, 2) failed
only on first use; a released memoryview key gave an error naming no
argument; a bytes path gave a confusing TypeError; lsm.open("") made the
current directory a database; RateCounter(window=60, bucket=1e-7) tried to
allocate 6e8 slots. Each now raises TypeError or ValueError naming the
argument, before anything is written."""

import os

import pytest

import lsm
from lsm import Options, PersistentCache, WriteBatch
from lsm.metrics import RateCounter, SampledRate
from lsm.serde import Int, Str

HUGE = 10 ** 400


def _released():
    mv = memoryview(b"key")
    mv.release()
    return mv


@pytest.fixture
def db(tmp_path):
    with lsm.open(tmp_path / "db", sync_mode="never") as d:
        yield d


@pytest.fixture
def cache(tmp_path):
    with PersistentCache(tmp_path / "cache", max_items=100, shards=1) as c:
        yield c


DB_CASES = [
    # (what, call, error, the argument the message must name)
    ("put ttl", lambda db: db.put(b"k", b"v", ttl=HUGE), ValueError, "ttl"),
    ("put ttl inf", lambda db: db.put(b"k", b"v", ttl=float("inf")), ValueError, "ttl"),
    ("batch ttl", lambda db: WriteBatch().put(b"k", b"v", ttl=HUGE), ValueError, "ttl"),
    ("cas ttl", lambda db: db.compare_and_swap(b"k", 0, b"v", ttl=HUGE), ValueError, "ttl"),
    ("put sync", lambda db: db.put(b"k", b"v", sync="no"), TypeError, "sync"),
    ("put sync 1", lambda db: db.put(b"k", b"v", sync=1), TypeError, "sync"),
    ("delete sync", lambda db: db.delete(b"k", sync="no"), TypeError, "sync"),
    ("write sync", lambda db: db.write(WriteBatch().put(b"k", b"v"), sync="no"), TypeError, "sync"),
    ("write_batch sync", lambda db: db.write_batch(sync="no"), TypeError, "sync"),
    ("cas sync", lambda db: db.compare_and_swap(b"k", 0, b"v", sync="no"), TypeError, "sync"),
    ("scan reverse", lambda db: db.scan(reverse="no"), TypeError, "reverse"),
    ("scan keys_only", lambda db: db.scan(keys_only="no"), TypeError, "keys_only"),
    ("snapshot scan reverse", lambda db: db.snapshot().scan(reverse="no"), TypeError, "reverse"),
    ("typed key_serde", lambda db: db.typed(1, Str()), TypeError, "key_serde"),
    ("typed value_serde", lambda db: db.typed(Str(), 2), TypeError, "value_serde"),
    ("typed value version", lambda db: db.typed(Str(), _NoVersion()), TypeError, "value_serde"),
    ("typed value version range", lambda db: db.typed(Str(), _NoVersion(300)), ValueError, "value_serde"),
    ("released key", lambda db: db.put(_released(), b"v"), ValueError, "key"),
    ("released value", lambda db: db.put(b"k", _released()), ValueError, "value"),
    ("released get", lambda db: db.get(_released()), ValueError, "key"),
]


class _NoVersion:
    def __init__(self, version=None):
        if version is not None:
            self.version = version

    def encode(self, obj):
        return bytes(obj)

    def decode(self, data):
        return data


@pytest.mark.parametrize("what, call, error, name", DB_CASES, ids=[c[0] for c in DB_CASES])
def test_db_arguments(db, what, call, error, name):
    with pytest.raises(error, match=rf"\b{name}\b"):
        call(db)
    assert db.get(b"k") is None  # nothing was written
    assert len(list(db.scan())) == 0


def test_a_key_serializer_needs_no_version(db):
    view = db.typed(_NoVersion(), Int())  # keys carry no version byte
    view.put(b"k", 5)
    assert view.get(b"k") == 5


CACHE_CASES = [
    ("put ttl", lambda c, p: c.put(b"k", b"v", ttl=HUGE), ValueError, "ttl"),
    ("default_ttl", lambda c, p: PersistentCache(p / "c2", default_ttl=HUGE), ValueError, "default_ttl"),
    ("empty path", lambda c, p: PersistentCache(""), ValueError, "path"),
    ("int path", lambda c, p: PersistentCache(3), TypeError, "path"),
]


@pytest.mark.parametrize("what, call, error, name", CACHE_CASES, ids=[c[0] for c in CACHE_CASES])
def test_cache_arguments(cache, tmp_path, monkeypatch, what, call, error, name):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(error, match=rf"\b{name}\b"):
        call(cache, tmp_path)
    assert os.listdir(".") == []  # an empty path made no cache in the current directory
    assert cache.get(b"k") is None


OPEN_CASES = [
    ("empty path", lambda p: lsm.open(""), ValueError, "path"),
    ("int path", lambda p: lsm.open(3), TypeError, "path"),
    ("None path", lambda p: lsm.DB(None), TypeError, "path"),
    ("options type", lambda p: lsm.DB(p / "db", {"sync_mode": "never"}), TypeError, "options"),
    ("sync_interval bool", lambda p: Options(sync_interval=True), TypeError, "sync_interval"),
    ("sync_interval inf", lambda p: Options(sync_interval=float("inf")), ValueError, "sync_interval"),
]


@pytest.mark.parametrize("what, call, error, name", OPEN_CASES, ids=[c[0] for c in OPEN_CASES])
def test_open_arguments(tmp_path, monkeypatch, what, call, error, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=rf"\b{name}\b"):
        call(tmp_path)
    assert os.listdir(tmp_path) == []  # nothing created, the current directory least of all


def test_a_bytes_path_is_decoded(tmp_path):
    with lsm.open(os.fsencode(tmp_path / "db")) as db:
        db.put(b"k", b"v")
        assert db.path == str(tmp_path / "db")
    with PersistentCache(os.fsencode(tmp_path / "cache"), shards=1) as cache:
        cache.put(b"k", b"v")
    with lsm.open(tmp_path / "db") as db:
        assert db.get(b"k") == b"v"


METRICS_CASES = [
    ("too many buckets", lambda: RateCounter(window=60, bucket=1e-7), ValueError, "bucket"),
    ("too many buckets sampled", lambda: SampledRate(window=60, bucket=1e-7), ValueError, "bucket"),
    ("window type", lambda: RateCounter(window="60"), TypeError, "window"),
    ("bucket bool", lambda: RateCounter(bucket=True), TypeError, "bucket"),
]


@pytest.mark.parametrize("what, call, error, name", METRICS_CASES, ids=[c[0] for c in METRICS_CASES])
def test_metrics_arguments(what, call, error, name):
    with pytest.raises(error, match=rf"\b{name}\b"):
        call()


def test_the_bucket_bound_admits_a_million():
    assert RateCounter(window=1.0, bucket=1e-6).window == pytest.approx(1.0)
