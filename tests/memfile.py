"""A table file in memory, for tests that write a table with TableWriter
and read it back with TableReader without a file system."""

from __future__ import annotations


class MemFile:
    """An in-memory table file: written by TableWriter, read by TableReader
    through ``read_at``; ``mapped`` offers ``buffer()`` as a memory map does,
    so the reader searches its blocks in place."""

    def __init__(self, path: str = "/db/000007.sst", data: bytes = b"", mapped: bool = False) -> None:
        self.path = path
        self.buf = bytearray(data)
        self.size = len(data)
        if mapped:
            self.buffer = lambda: bytes(self.buf)

    def write(self, data: bytes) -> None:
        self.buf += data
        self.size = len(self.buf)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.buf[offset:offset + n])
