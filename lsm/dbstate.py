"""``DBState``: the base class of :class:`lsm.DB` and of the mixins it is
made of (lsm/background.py, reads.py, writes.py, sizes.py, checkpoint.py,
ingest.py).

It sits below every module that needs to know "is this a DB" without
importing lsm.db (which imports them): :class:`lsm.PrefixedDB` checks its
argument with ``isinstance(db, DBState)``.
"""

from __future__ import annotations

__all__ = ["DBState"]


class DBState:
    """What every :class:`lsm.DB` is an instance of."""
