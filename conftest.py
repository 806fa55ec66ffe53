"""Test-session setup shared by every test (and doctest): run with the
engine's invariant checks on, so Version._check() runs after every version
install and every ``*_locked`` method asserts that it holds its lock.

Set LSM_INVARIANTS=0 to time the suite without them.
"""

import os

os.environ.setdefault("LSM_INVARIANTS", "1")
