"""Sorted string tables: immutable files of sorted entries (doc/format.md#sstable).

``TableWriter`` builds one; ``TableReader`` serves point reads and range
iteration from one. Both live in their own modules; this package re-exports them.
"""

from .props import TableProps
from .reader import TableReader
from .writer import TableWriter

__all__ = ["TableProps", "TableReader", "TableWriter"]
