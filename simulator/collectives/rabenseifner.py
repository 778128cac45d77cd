"""Rabenseifner's allreduce and the recursive-halving reduce-scatter it starts with.

Recursive halving: at the step with distance ``d = p/2, p/4, ..., 1`` rank
``r`` and ``r xor d`` split the range of chunks they are still responsible for;
each sends the half the partner keeps and adds the half it receives. After
``log2 p`` steps rank ``r`` holds chunk ``r`` reduced over all ranks.
Rabenseifner's allreduce follows it with a recursive-doubling allgather.

* reduce_scatter (p a power of two) ``log2(p) alpha + (p-1)/p n (beta + gamma)``
* allreduce (p a power of two) ``2 log2(p) alpha + 2(p-1)/p n beta + (p-1)/p n gamma``

For other ``p`` the allreduce folds to the largest power of two ``p'`` first,
MPICH style (see :func:`.recursive_doubling.mpich_fold`), and the buffer is cut
into ``p'`` chunks. The reduce-scatter needs a power of two (use ``ring`` or
``pairwise``). Each step sends a *range* of chunks as one message (a
:class:`~.schedule.Step` with ``count``), so a schedule holds ``2 p log2 p``
messages, not the ``~2 p^2`` single-chunk transfers they expand to.

References
----------
R. Rabenseifner, "Optimization of collective reduction operations", ICCS 2004.
R. Thakur, R. Rabenseifner and W. Gropp, "Optimization of collective
communication operations in MPICH", IJHPCA 19(1), 2005, sections 4.4-4.5.
"""

from __future__ import annotations

import numpy as np

from ._build import counts, flags, require_power_of_two
from .recursive_doubling import doubling_allgather_steps, fold_in, fold_out, mpich_fold
from .schedule import Schedule, Step, split_evenly

__all__ = [
    "halving_reduce_scatter_steps",
    "rabenseifner_allreduce",
    "recursive_halving_reduce_scatter",
]


def halving_reduce_scatter_steps(core: np.ndarray) -> list[Step]:
    """Recursive halving over ``core`` (a power of two); virtual rank ``v`` ends with chunk v."""
    size = len(core)
    v = np.arange(size, dtype=np.int32)
    steps = []
    mask = size >> 1
    while mask >= 1:
        # v's range is the aligned block of 2*mask chunks around v; it keeps the
        # half containing v and sends the other half to its partner v ^ mask.
        give = (v & ~np.int32(2 * mask - 1)) + ((v & mask) ^ mask)
        steps.append(Step(core, core[v ^ mask], give, flags(size, True), count=counts(size, mask)))
        mask >>= 1
    return steps


def rabenseifner_allreduce(ranks: int, size_bytes: int, **_: object) -> Schedule:
    """Recursive-halving reduce-scatter then recursive-doubling allgather; any p >= 1."""
    core, odd, even = mpich_fold(ranks)
    chunks = len(core)
    steps = (
        fold_in(odd, even, chunks)
        + halving_reduce_scatter_steps(core)
        + doubling_allgather_steps(core)
        + fold_out(odd, even, chunks)
    )
    return Schedule(
        "allreduce", "rabenseifner", ranks, split_evenly(size_bytes, chunks), tuple(steps)
    )


def recursive_halving_reduce_scatter(ranks: int, size_bytes: int, **_: object) -> Schedule:
    """Reduce-scatter by recursive halving; p must be a power of two."""
    require_power_of_two(ranks, "recursive_halving", "reduce_scatter", "ring or pairwise")
    steps = halving_reduce_scatter_steps(np.arange(ranks, dtype=np.int32))
    return Schedule(
        "reduce_scatter", "recursive_halving", ranks, split_evenly(size_bytes, ranks), tuple(steps)
    )
