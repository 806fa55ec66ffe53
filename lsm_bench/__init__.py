"""lsm-bench: db_bench / YCSB workloads run side by side on ``lsm`` and peer stores.

Run it as ``python -m bench`` from a source checkout, or as ``lsm-bench`` /
``python -m lsm_bench`` wherever lsm-tree is installed; ``--help`` lists every
option and ``bench/RESULTS.md`` records how published figures were made.
``lsm-bench compare`` is the same-process comparison (``compare --help``),
``lsm-bench scale`` the load of one large database in steps (``scale --help``). (The
code is ``lsm_bench`` so that an installed wheel adds no top-level package
named ``bench`` to users' environments; ``bench/`` in the source tree holds
the results and a two-line shim.) The package is laid out by job:

==================  ==========================================================
``config``          :class:`~lsm_bench.config.BenchConfig`, ``--opt`` parsing
``data``            keys, values and key orders (db_bench conventions)
``engines``         the :class:`~lsm_bench.engines.Engine` adapter API, lsm, sqlite3
``peers``           adapters for plyvel, rocksdict, lmdb and diskcache
``measure``         timed loops: latency samples, throughput timeline, LSM shape
``progress``        tqdm progress bar or a plain stderr line
``context``         fresh engines per workload, untimed load/check, result records
``workloads``       the db_bench workloads
``ycsb``            YCSB A-F and the zipfian / latest key generators
``cachebench``      the ``cache`` workload (PersistentCache vs peers)
``runner``          runs workloads x engines in fresh temporary directories
``compare``         ``lsm-bench compare``: same-process, interleaved rounds,
                    thread-CPU time, lsm / peer ratios per round
``machine``         machine info, package versions, I/O counters, disk usage
``report``          Markdown + JSON, lsm-to-peer ratios
``comparereport``   Markdown + JSON of ``lsm-bench compare``
``scale``           ``lsm-bench scale``: one large load per engine in steps, in
                    a child process each: throughput, latency, stalls, memory,
                    levels, open times as the database grows
``scalereport``     Markdown + JSON of ``lsm-bench scale``, and its targets
``plots``           PNG plots (optional: needs matplotlib)
==================  ==========================================================

Nothing here is collected by pytest; the harness is tested from
``tests/test_bench.py``.
"""

__all__: list[str] = []
