"""Whole-table bloom filter over user keys (doc/format.md#filter-block).

    filter := bits[nbytes] probes:u8           (empty payload = no filter: always "maybe")

Bit ``i`` is ``bits[i >> 3] >> (i & 7) & 1``. A key's probe positions are
``(h1 + j * h2) mod m`` for ``j`` in ``0 .. probes-1`` (Kirsch–Mitzenmacher
double hashing), where ``h = xxh64(key, seed=0)``, ``h1 = h & 0xffffffff``,
``h2 = (h >> 32) | 1`` and ``m = 8 * nbytes``. With ``b`` bits per key,
``probes = max(1, min(30, round(b * ln 2)))``: 10 bits gives ~1% false positives.
"""

from __future__ import annotations

import math

import xxhash

__all__ = ["BloomFilter", "build_filter"]

_hash = xxhash.xxh64_intdigest


def build_filter(keys: list[bytes], bits_per_key: int) -> bytes:
    """Encode a filter for ``keys`` (duplicates allowed). Empty when disabled."""
    if bits_per_key <= 0 or not keys:
        return b""
    probes = max(1, min(30, round(bits_per_key * math.log(2))))
    m = max(64, len(keys) * bits_per_key)
    m = (m + 7) // 8 * 8
    bits = bytearray(m // 8)
    for key in keys:
        h = _hash(key)
        h1 = h & 0xFFFFFFFF
        h2 = (h >> 32) | 1
        for _ in range(probes):
            p = h1 % m
            bits[p >> 3] |= 1 << (p & 7)
            h1 += h2
    bits.append(probes)
    return bytes(bits)


class BloomFilter:
    """A decoded filter. Immutable; safe to share between threads.

    >>> f = BloomFilter(build_filter([b"a", b"b"], 10))
    >>> f.may_contain(b"a"), f.may_contain(b"b")
    (True, True)
    """

    __slots__ = ("bits", "m", "probes")

    def __init__(self, payload: bytes) -> None:
        if len(payload) < 2:
            self.bits = b""
            self.m = 0
            self.probes = 0
        else:
            self.bits = payload[:-1]
            self.m = 8 * (len(payload) - 1)
            self.probes = payload[-1]

    def may_contain(self, key: bytes) -> bool:
        """False only when ``key`` is certainly absent."""
        m = self.m
        if not m:
            return True
        bits = self.bits
        h = _hash(key)
        h1 = h & 0xFFFFFFFF
        h2 = (h >> 32) | 1
        for _ in range(self.probes):
            p = h1 % m
            if not bits[p >> 3] >> (p & 7) & 1:
                return False
            h1 += h2
        return True
