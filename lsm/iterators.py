"""Small generators, one job each, that read paths compose (STYLE habit 8).

Forward sources yield ``(key, -seq, kind, stored_value)`` so that plain tuple
order is (key ascending, newest first); reverse sources yield
``(key, seq, kind, stored_value)`` and are merged descending, which is (key
descending, newest first). Only :func:`visible` interprets entries: it applies
the view's sequence number, tombstones and TTL expiry, and keeps the newest
visible version of each key.
"""

from __future__ import annotations

import heapq
import struct
from typing import Iterable, Iterator

from .keys import DELETE, PUT, PUT_TTL

__all__ = ["merge", "prefix_successor", "visible"]

_F64 = struct.Struct("<d")


def merge(sources: list[Iterator[tuple]], reverse: bool = False) -> Iterator[tuple]:
    """Union already-sorted sources into one sorted stream, without de-duplicating."""
    if len(sources) == 1:
        return sources[0]
    return heapq.merge(*sources, reverse=reverse)


def visible(entries: Iterable[tuple], seq: int, now: float, reverse: bool,
            keys_only: bool = False) -> Iterator:
    """The user's view of merged ``entries`` at sequence ``seq`` and time ``now``.

    Yields ``(key, value)`` (or bare keys with ``keys_only``) for the newest
    version of each key with sequence <= ``seq``, skipping tombstones and
    entries expired at ``now``.
    """
    last = None
    for key, s, kind, value in entries:
        if key == last:
            continue
        if (s if reverse else -s) > seq:
            continue  # newer than the view; an older version may still be visible
        last = key
        if kind == PUT:
            yield key if keys_only else (key, value)
        elif kind == PUT_TTL:
            if _F64.unpack_from(value)[0] > now:
                yield key if keys_only else (key, value[8:])
        elif kind != DELETE:
            raise AssertionError(f"unknown entry kind {kind}")


def prefix_successor(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key starting with ``prefix``; None if unbounded.

    >>> prefix_successor(b"ab"), prefix_successor(b"a\\xff"), prefix_successor(b"\\xff")
    (b'ac', b'b', None)
    """
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))
