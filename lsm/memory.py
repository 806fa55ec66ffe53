"""What the engine's objects cost in memory, as the allocator hands it out.

``stats()["memory"]`` adds up, per kind, the bytes the database keeps on the
heap (doc/design.md#memory). The figures are estimates from CPython's object
layouts (64-bit CPython 3.10-3.13), not measurements: a bytes object of
``n`` bytes is a 33-byte header plus ``n``, and the small-object allocator
hands out objects of up to 512 bytes in multiples of 16 bytes; an int below
2**30 takes 28 bytes (32 allocated), a list slot 8 bytes. Counting in
allocated bytes, not requested ones, keeps the total close to what the
process's resident anonymous memory grows by (``tests/test_memory.py``
compares both).

Nothing here is measured at run time (``sys.getsizeof`` aside): the
accounting must cost next to nothing per ``stats()`` call.
"""

from __future__ import annotations

__all__ = ["BYTES_HEADER", "INT", "SLOT", "bytes_object", "keys_list"]

BYTES_HEADER = 33  # a bytes object's header (refcount, type, length, hash, trailing NUL)
INT = 32  # an int of up to 30 bits: 28 bytes, allocated in 32
SLOT = 8  # one pointer in a list, tuple or __slots__
_SMALL = 512  # objects up to this size come from the small-object allocator ...
_GRAIN = 16  # ... rounded up to a multiple of this


def bytes_object(n: int) -> int:
    """Bytes allocated for a bytes object of length ``n``.

    >>> bytes_object(16), bytes_object(100), bytes_object(4096)
    (64, 144, 4129)
    """
    size = BYTES_HEADER + n
    return -(-size // _GRAIN) * _GRAIN if size <= _SMALL else size


def keys_list(count: int, total_len: int, fixed_len: int | None) -> int:
    """Bytes held by ``count`` bytes objects of ``total_len`` bytes in all,
    each with a list slot: exact when every key has length ``fixed_len``,
    else with the allocator's average rounding (half a grain) per key.

    >>> keys_list(10, 160, 16), keys_list(10, 165, None)
    (720, 655)
    """
    if fixed_len is not None:
        return count * (bytes_object(fixed_len) + SLOT)
    return total_len + count * (BYTES_HEADER + _GRAIN // 2 + SLOT)
