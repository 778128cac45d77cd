"""Pairwise exchange: alltoall and reduce-scatter in ``p - 1`` shifted steps.

At step ``s = 1, ..., p-1`` rank ``r`` sends to ``(r + s) mod p`` and receives
from ``(r - s) mod p``, so every step is a permutation and no link is asked
for two messages at once on a full-bisection network.

alltoall
    ``size_bytes`` is one rank's send buffer, cut into ``p`` blocks
    (:func:`~.schedule.split_evenly`); chunk ``i * p + j`` is block ``j`` of
    rank ``i`` and must reach rank ``j``. Cost with ``p`` dividing ``n``:
    ``(p-1) (alpha + n/p beta)``.
reduce_scatter
    Rank ``r`` sends its contribution to chunk ``(r + s) mod p`` to that chunk's
    owner, which adds it: ``(p-1) (alpha + n/p (beta + gamma))``.

References
----------
R. Thakur, R. Rabenseifner and W. Gropp, "Optimization of collective
communication operations in MPICH", IJHPCA 19(1), 2005, sections 4.3 and 4.5.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._build import flags, frozen
from .schedule import Schedule, Step, split_evenly

__all__ = ["pairwise_alltoall", "pairwise_reduce_scatter"]


def _shifted(
    ranks: int, reduce: bool, chunk_of: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[Step, ...]:
    src = frozen(np.arange(ranks, dtype=np.int32))
    red = flags(ranks, reduce)
    steps = []
    for shift in range(1, ranks):
        dst = (src + shift) % ranks
        steps.append(Step(src, dst, chunk_of(src, dst), red))
    return tuple(steps)


def pairwise_alltoall(ranks: int, size_bytes: int, **_: object) -> Schedule:
    """Alltoall by pairwise exchange; any p >= 1; ``ranks**2`` chunks."""
    steps = _shifted(ranks, False, lambda src, dst: src * ranks + dst)
    chunk_bytes = np.tile(split_evenly(size_bytes, ranks), ranks)  # block j of every rank i
    return Schedule("alltoall", "pairwise", ranks, chunk_bytes, steps)


def pairwise_reduce_scatter(ranks: int, size_bytes: int, **_: object) -> Schedule:
    """Reduce-scatter by pairwise exchange; any p >= 1; rank ``r`` owns chunk ``r``."""
    steps = _shifted(ranks, True, lambda src, dst: dst)
    return Schedule("reduce_scatter", "pairwise", ranks, split_evenly(size_bytes, ranks), steps)
