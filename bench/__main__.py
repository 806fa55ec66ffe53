"""``python -m bench`` in a source checkout: the same as ``lsm-bench``."""

from lsm_bench.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
