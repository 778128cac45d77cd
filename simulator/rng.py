"""Named random streams derived from one config seed.

Randomness is an object you pass, never a global you set: every function that
draws takes a ``numpy.random.Generator`` obtained here. Keys are stable (crc32 of
the name plus indices), so adding a new stream never changes the numbers an
existing stream produces, and turning stragglers on does not change SGD data order.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["Streams"]


class Streams:
    """Independent random streams from one seed, addressed by name and indices.

    >>> a = Streams(42).get("stragglers", 3).random()
    >>> a == Streams(42).get("stragglers", 3).random()
    True
    >>> a == Streams(42).get("stragglers", 4).random()
    False
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._entropy = np.random.SeedSequence(seed).entropy

    def get(self, name: str, *index: int) -> np.random.Generator:
        key = (zlib.crc32(name.encode()), *index)
        return np.random.default_rng(np.random.SeedSequence(self._entropy, spawn_key=key))
