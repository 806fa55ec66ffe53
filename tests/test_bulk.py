"""lsm.bulk: write_partition on its own, the Dask front end on a LocalCluster
of 2 worker processes, and the PySpark recipe of doc/bulkload.md (when
pyspark is installed). Each build is compared with a put-loaded copy."""

from __future__ import annotations

import os
import pickle
import random
import sys

import pytest

import lsm
import lsm.bulk as bulk


def _rows(n: int, seed: int = 0, deletes: bool = False) -> list:
    rng = random.Random(seed)
    idx = list(range(n))
    rng.shuffle(idx)
    return [(b"key%08d" % i, None if deletes and i % 11 == 0 else b"val-%d" % (i * 7)) for i in idx]


def _model(rows) -> dict:
    return {k: v for k, v in rows if v is not None}


def _ingest(tmp_path, infos, name="db") -> lsm.DB:
    db = lsm.open(str(tmp_path / name))
    db.ingest([i["path"] if isinstance(i, dict) else i.path for i in infos], move=True)
    return db


# -- write_partition ------------------------------------------------------------------


def test_write_partition_sorts_any_order_and_writes_deletes(tmp_path):
    rows = _rows(5000, deletes=True)
    infos = bulk.write_partition(rows, tmp_path / "out", target_file_bytes=32 << 10)
    assert len(infos) > 1 and all(a.largest < b.smallest for a, b in zip(infos, infos[1:]))
    assert sum(i.entries for i in infos) == 5000 and sum(i.deletions for i in infos) == 455
    with lsm.open(str(tmp_path / "db")) as db:
        db.put(b"key00000000", b"older")  # deleted by the ingest
        db.ingest([i.path for i in infos])
        assert dict(db.scan()) == _model(rows)


def test_write_partition_spills_sorted_runs_and_merges_them(tmp_path):
    rows = _rows(3000, seed=1, deletes=True)
    infos = bulk.write_partition(iter(rows), tmp_path / "out", memory_rows=700, as_dicts=True)
    assert all(isinstance(i, dict) for i in infos)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.path.basename(i["path"]) for i in infos)
    with _ingest(tmp_path, infos) as db:
        assert dict(db.scan()) == _model(rows)


@pytest.mark.parametrize("memory_rows", [100, 10_000])
def test_write_partition_refuses_a_repeated_key_and_leaves_nothing(tmp_path, memory_rows):
    rows = _rows(500) + [(b"key00000123", b"again")]
    with pytest.raises(ValueError, match=r"key 6b6579.* \(b'key00000123'\) appears twice"):
        bulk.write_partition(rows, tmp_path / "out", memory_rows=memory_rows)
    assert os.listdir(tmp_path / "out") == []


def test_write_partition_takes_spark_like_rows(tmp_path):
    class Row(tuple):  # pyspark.sql.Row is a tuple; BinaryType arrives as bytearray
        pass
    rows = [Row((bytearray(k), bytearray(v))) for k, v in _rows(300)]
    infos = bulk.write_partition(rows, tmp_path / "out")
    with _ingest(tmp_path, infos) as db:
        assert dict(db.scan()) == _model(_rows(300))


def test_columns_travel_as_blobs():
    for keys, values in [([b"a", b"bb", b"c"], [b"1", None, b"333"]), ([], []), ([b"", b""], [b"", b"x"]),
                         ([b"k%06d" % i for i in range(9000)], [b"v" * 100] * 9000)]:
        c = pickle.loads(pickle.dumps(bulk.Columns(keys, values)))
        assert (c.keys, c.values) == (keys, values)


def test_range_bounds():
    assert bulk.range_bounds([b"d", b"a", b"c", b"b"], 2) == [b"c"]
    assert bulk.range_bounds([b"a", b"a"], 4) == []
    assert bulk.range_bounds([], 3) == []


def test_dask_build_without_dask_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.bag", None)
    with pytest.raises(ImportError, match=r"pip install 'lsm-tree\[dask\]'"):
        bulk.dask_build(str(tmp_path / "db"), [], shared_dir=str(tmp_path / "s"))


# -- Dask on a LocalCluster of 2 worker processes -------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask.bag", reason="dask is not installed (pip install 'lsm-tree[dask]')")
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _gen(parts: list[int], nparts: int, n: int, seed: int) -> list:
    out = []
    for p in parts:
        rng = random.Random(seed + p)
        idx = list(range(p, n, nparts))
        rng.shuffle(idx)
        out += [(b"k%09d" % i, None if i % 97 == 0 else b"v%d" % i) for i in idx]
    return out


def _dask_vs_put(tmp_path, client, n: int, nparts: int) -> None:
    import dask.bag as dbag
    bag = dbag.from_sequence(range(nparts), npartitions=nparts).map_partitions(_gen, nparts, n, 5)
    # the put-loaded copy, with older values under some keys in both
    put = lsm.open(str(tmp_path / "put"), sync_mode="never")
    built = lsm.open(str(tmp_path / "built"), sync_mode="never")
    for db in (put, built):
        for i in range(0, n, 50):
            db.put(b"k%09d" % i, b"older")
    built.flush()
    for k, v in _gen(list(range(nparts)), nparts, n, 5):
        if v is None:
            put.delete(k)
        else:
            put.put(k, v)
    infos = bulk.dask_build(built, bag, shared_dir=str(tmp_path / "shared"), npartitions=nparts,
                            target_file_bytes=256 << 10, progress=True)
    assert client.scheduler_info()["workers"] and len(client.scheduler_info()["workers"]) == 2
    assert len(infos) >= nparts and all(a.largest < b.smallest for a, b in zip(infos, infos[1:]))
    assert os.listdir(tmp_path / "shared") == []  # moved (hard-linked) into the database
    for db in (put, built):
        db.put(b"k%09d" % 3, b"later")  # later writes win over the build
    expect = list(put.scan())
    assert list(built.scan()) == expect and len(expect) > n * 0.9
    for i in range(0, n, max(1, n // 2000)):
        assert built.get(b"k%09d" % i) == put.get(b"k%09d" % i)
    put.close()
    built.close()


def test_dask_build_on_a_local_cluster_200k(tmp_path, dask_client):
    """200k rows over 6 partitions, 2 worker processes: about 10 s here, so
    it runs in every suite (no smaller variant needed)."""
    _dask_vs_put(tmp_path, dask_client, 200_000, 6)


def test_dask_build_from_a_dataframe(tmp_path, dask_client):
    dd = pytest.importorskip("dask.dataframe", reason="dask.dataframe needs pandas")
    pd = pytest.importorskip("pandas")
    import dask

    rows = _rows(3000, seed=4)
    pdf = pd.DataFrame({"key": [k for k, _ in rows], "value": [v for _, v in rows]})
    with lsm.open(str(tmp_path / "db")) as db:
        with dask.config.set({"dataframe.convert-string": False}):  # binary columns stay bytes
            ddf = dd.from_pandas(pdf, npartitions=3)
        bulk.dask_build(db, ddf, shared_dir=str(tmp_path / "s"), progress=False)
        assert dict(db.scan()) == _model(rows)
        # Dask's default turns object columns into strings: refused with the remedy, nothing written
        ascii_rows = [(b"a%05d" % i, b"v") for i in range(10)]
        sdf = dd.from_pandas(pd.DataFrame({"key": [k for k, _ in ascii_rows], "value": [v for _, v in ascii_rows]}),
                            npartitions=1)
        if str(sdf["key"].dtype).startswith("str"):
            with pytest.raises(TypeError, match="convert-string"):
                bulk.dask_build(db, sdf, shared_dir=str(tmp_path / "s2"), progress=False)
            assert dict(db.scan()) == _model(rows)


# -- the PySpark recipe of doc/bulkload.md --------------------------------------------


@pytest.mark.slow
def test_pyspark_recipe(tmp_path):
    pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'lsm-tree[spark]')")
    from pyspark.sql import SparkSession
    rows = _rows(20_000, seed=9)
    spark = (SparkSession.builder.master("local[2]").appName("lsm-bulk-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4").getOrCreate())
    try:
        df = spark.createDataFrame([(bytearray(k), bytearray(v)) for k, v in rows], "key binary, value binary")
        shared = str(tmp_path / "shared")

        def write(part):
            return bulk.write_partition(((r.key, r.value) for r in part), shared, as_dicts=True,
                                        target_file_bytes=128 << 10)

        files = df.repartitionByRange(4, "key").sortWithinPartitions("key").rdd.mapPartitions(write).collect()
    finally:
        spark.stop()
    assert len(files) >= 4 and pyspark.__version__
    with lsm.open(str(tmp_path / "db")) as db:
        db.ingest([f["path"] for f in files], move=True)
        assert dict(db.scan()) == _model(rows)
