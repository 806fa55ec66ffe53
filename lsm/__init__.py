"""lsm: an embeddable, crash-safe LSM-tree key-value store for Python.

>>> import lsm, tempfile
>>> with lsm.open(tempfile.mkdtemp()) as db:
...     _ = db.put(b"key", b"value")
...     db.get(b"key")
b'value'
"""

from . import metrics, serde
from .admin import destroy
from .batch import WriteBatch
from .cursor import Cursor
from .db import DB, open
from .errors import (
    BackgroundError,
    ClosedError,
    CorruptionError,
    DiskError,
    Error,
    LockError,
    ReadOnlyError,
    SerializationError,
)
from .external import TableFileInfo, TableFileWriter
from .options import Options
from .pcache import PersistentCache
from .prefixed import PrefixedDB
from .repair import repair  # the function; the module is importlib.import_module("lsm.repair")
from .snapshot import Entry, ScanIterator, Snapshot
from .typed import TypedView

__version__ = "0.1.0"

__all__ = [
    "BackgroundError",
    "ClosedError",
    "CorruptionError",
    "Cursor",
    "DB",
    "DiskError",
    "Entry",
    "Error",
    "LockError",
    "Options",
    "PersistentCache",
    "PrefixedDB",
    "ReadOnlyError",
    "ScanIterator",
    "SerializationError",
    "Snapshot",
    "TableFileInfo",
    "TableFileWriter",
    "TypedView",
    "WriteBatch",
    "__version__",
    "destroy",
    "metrics",
    "open",
    "repair",
    "serde",
]
