"""Keys, values and key orders, following LevelDB ``db_bench`` conventions.

- Keys are the entry index as zero-padded decimal, ``key_size`` bytes wide
  (``0000000000000042``), so byte order equals numeric order.
- A *missing* key is an existing key plus ``b"."`` (db_bench ``readmissing``):
  it sorts between two real keys, so only a bloom filter or an index miss avoids
  touching the block that would hold it.
- Values are slices of a 1 MiB buffer built like db_bench's ``RandomGenerator``:
  every 100-byte piece is 50 random printable bytes repeated, so values shrink to
  about half under compression. The slice for ``(index, generation)`` is fixed,
  so any read can be checked against the exact value last written.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

VALUE_BUFFER_BYTES = 1 << 20  # db_bench: larger than a compression window, reused
COMPRESSIBLE_PIECE = 100  # db_bench CompressibleString piece length
COMPRESSION_RATIO = 0.5  # db_bench FLAGS_compression_ratio
PREFIX_GROUP = 100  # keys per prefix in scanprefix: the key minus its last two digits
MISSING_SUFFIX = b"."  # db_bench readmissing

_PRINTABLE = range(32, 127)  # db_bench RandomString: printable ASCII
_MULT_INDEX = 0x9E3779B1  # golden-ratio hashing spreads neighbouring keys apart
_MULT_GEN = 0x85EBCA77


class KeySpace:
    """Maps entry indexes to keys.

    >>> ks = KeySpace(16)
    >>> ks.key(42)
    b'0000000000000042'
    >>> ks.missing(42)
    b'0000000000000042.'
    >>> ks.prefix_of_group(3), ks.group_size(3, total=350)
    (b'00000000000003', 50)
    """

    def __init__(self, key_size: int) -> None:
        """:param key_size: bytes per key; must hold every index used."""
        self.key_size = key_size
        self._fmt = b"%0" + str(key_size).encode() + b"d"

    def key(self, index: int) -> bytes:
        """The key for ``index``."""
        return self._fmt % index

    def missing(self, index: int) -> bytes:
        """A key that is never written, sorting just after ``key(index)``."""
        return (self._fmt % index) + MISSING_SUFFIX

    def prefix_of_group(self, group: int) -> bytes:
        """The common prefix of keys ``group * 100 .. group * 100 + 99``."""
        return self.key(group * PREFIX_GROUP)[:-2]

    @staticmethod
    def group_size(group: int, total: int) -> int:
        """How many of the ``total`` keys ``0..total-1`` fall in ``group``."""
        return max(0, min(PREFIX_GROUP, total - group * PREFIX_GROUP))

    @staticmethod
    def group_count(total: int) -> int:
        """Prefix groups that hold at least one of ``total`` keys."""
        return (total + PREFIX_GROUP - 1) // PREFIX_GROUP


class ValueGen:
    """Deterministic half-compressible values: ``value(index, generation)``.

    Generation 0 is the value a load phase writes; overwrites use generation 1
    and up, so a read can tell which write it sees.

    >>> vg = ValueGen(100)
    >>> len(vg.value(7)), vg.value(7) == vg.value(7), vg.value(7) != vg.value(7, 1)
    (100, True, True)
    """

    def __init__(self, value_size: int, seed: int = 301) -> None:
        """:param value_size: bytes per value.
        :param seed: seeds the buffer contents (db_bench uses 301).
        """
        self.value_size = value_size
        rnd = random.Random(seed)
        size = max(VALUE_BUFFER_BYTES, 2 * value_size + COMPRESSIBLE_PIECE)
        raw_len = max(1, int(COMPRESSIBLE_PIECE * COMPRESSION_RATIO))
        pieces: list[bytes] = []
        total = 0
        while total < size:
            raw = bytes(rnd.choices(_PRINTABLE, k=raw_len))
            piece = (raw * (COMPRESSIBLE_PIECE // raw_len + 1))[:COMPRESSIBLE_PIECE]
            pieces.append(piece)
            total += len(piece)
        self._buf = b"".join(pieces)
        self._span = len(self._buf) - value_size

    def value(self, index: int, generation: int = 0) -> bytes:
        """The value written for ``index`` at ``generation``."""
        off = ((index * _MULT_INDEX) ^ (generation * _MULT_GEN)) % self._span
        return self._buf[off : off + self.value_size]


def permutation(n: int, seed: int) -> list[int]:
    """``0..n-1`` shuffled with ``seed`` (every index exactly once)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def cycle_permutation(n: int, count: int, seed: int) -> list[int]:
    """``count`` indexes drawn as whole shuffled passes over ``0..n-1``.

    With ``count == n`` every index appears exactly once, which is how the read
    workloads guarantee that every key written is read back.
    """
    out: list[int] = []
    round_no = 0
    while len(out) < count:
        out.extend(permutation(n, seed + round_no)[: count - len(out)])
        round_no += 1
    return out


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of ``items``, ``size`` long (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
