"""The persistent cache: :class:`PersistentCache`, a sharded, bounded LRU of
bytes that survives restarts (doc/format.md#persistent-cache).

``cache`` holds the class (routing, arguments, housekeeping), ``shard`` one
shard (map, recency, expiry, log, recovery, checkpoints), ``log`` the codec of
the shard logs (file names, routing hash, operations). This package
re-exports the class.
"""

from .cache import PersistentCache

__all__ = ["PersistentCache"]
