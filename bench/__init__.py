"""Source-tree shim: ``python -m bench`` runs :mod:`lsm_bench` (the harness).

The harness ships as ``lsm_bench`` so that installing lsm-tree adds no
top-level package named ``bench``; this directory keeps the command short in
a checkout and holds the published results (``RESULTS.md``, ``results/``).
It is not installed.
"""
