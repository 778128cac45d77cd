"""Bruck's allgather: ``ceil(log2 p)`` steps for any number of ranks.

Rank ``r`` starts with chunk ``r``. Before the step with distance
``d = 1, 2, 4, ...`` it holds chunks ``r, r+1, ..., r+d-1`` (mod p); it sends
the first ``min(d, p - d)`` of them to rank ``r - d`` and receives as many from
``r + d``. Chunks keep their global numbers, so Bruck's final local rotation is
a matter of buffer layout, not of communication. With ``p`` dividing ``n``:

``ceil(log2 p) alpha + (p-1)/p n beta``

References
----------
J. Bruck, C.-T. Ho, S. Kipnis, E. Upfal and D. Weathersby, "Efficient
algorithms for all-to-all communications in multiport message-passing
systems", IEEE TPDS 8(11), 1997.
R. Thakur, R. Rabenseifner and W. Gropp, IJHPCA 19(1), 2005, section 4.2.
"""

from __future__ import annotations

import numpy as np

from ._build import counts, flags
from .schedule import Schedule, Step, split_evenly

__all__ = ["bruck_allgather"]


def bruck_allgather(ranks: int, size_bytes: int, **_: object) -> Schedule:
    """Bruck allgather; any p >= 1; rank ``r`` owns chunk ``r``."""
    r = np.arange(ranks, dtype=np.int32)
    steps = []
    distance = 1
    while distance < ranks:
        count = min(distance, ranks - distance)
        steps.append(
            Step(r, (r - distance) % ranks, r, flags(ranks, False), count=counts(ranks, count), wrap=ranks)
        )
        distance <<= 1
    return Schedule("allgather", "bruck", ranks, split_evenly(size_bytes, ranks), tuple(steps))
