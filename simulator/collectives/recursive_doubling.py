"""Recursive doubling: allreduce and allgather in ``log2 p`` exchange steps.

At the step with distance ``d = 1, 2, 4, ...`` rank ``r`` exchanges with
``r xor d``. For allreduce both partners send their whole (partially reduced)
buffer and add what they receive; for allgather they send the ``d`` chunks they
hold, doubling what each holds.

* allreduce (p a power of two) ``log2(p) (alpha + n beta + n gamma)``
* allgather (p a power of two) ``log2(p) alpha + (p-1)/p n beta``

Allreduce for other ``p`` is done MPICH's way (:func:`mpich_fold`): with
``p'`` the largest power of two below ``p`` and ``r = p - p'``, the first
``2r`` ranks fold in pairs (odd rank sends everything to the even rank, which
adds it), the ``p'`` survivors run the power-of-two algorithm, and each even
rank copies the result back to its odd partner: two extra steps, each of
``alpha + n beta`` (plus ``n gamma`` for the fold). Allgather needs a power of
two; use ``bruck`` or ``ring`` otherwise.

References
----------
R. Thakur, R. Rabenseifner and W. Gropp, "Optimization of collective
communication operations in MPICH", IJHPCA 19(1), 2005, sections 4.1 and 4.4.
"""

from __future__ import annotations

import numpy as np

from ._build import counts, flags, frozen, require_power_of_two
from .schedule import Schedule, Step, split_evenly

__all__ = [
    "doubling_allgather_steps",
    "fold_in",
    "fold_out",
    "mpich_fold",
    "recursive_doubling_allgather",
    "recursive_doubling_allreduce",
]


def mpich_fold(ranks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(core, odd, even)`` for MPICH's reduction of ``p`` ranks to a power of two.

    ``core[v]`` is the real rank playing virtual rank ``v`` of the power-of-two
    core; ``odd[i]`` folds into ``even[i]`` before the core runs and gets the
    result back afterwards.
    """
    core_size = 1 << (ranks.bit_length() - 1)
    extra = ranks - core_size
    odd = np.arange(1, 2 * extra, 2, dtype=np.int32)
    core = np.concatenate([odd - 1, np.arange(2 * extra, ranks, dtype=np.int32)])
    return frozen(core), odd, odd - 1


def fold_in(odd: np.ndarray, even: np.ndarray, chunks: int) -> list[Step]:
    """The pre-step: every odd rank adds all its chunks into its even partner."""
    if len(odd) == 0:
        return []
    first = np.zeros(len(odd), dtype=np.int32)
    return [Step(odd, even, first, flags(len(odd), True), count=counts(len(odd), chunks))]


def fold_out(odd: np.ndarray, even: np.ndarray, chunks: int) -> list[Step]:
    """The post-step: every even rank copies all chunks back to its odd partner."""
    if len(odd) == 0:
        return []
    first = np.zeros(len(odd), dtype=np.int32)
    return [Step(even, odd, first, flags(len(odd), False), count=counts(len(odd), chunks))]


def doubling_allgather_steps(core: np.ndarray) -> list[Step]:
    """Recursive-doubling allgather over ``core`` (virtual rank ``v`` starts with chunk ``v``)."""
    size = len(core)
    v = np.arange(size, dtype=np.int32)
    steps = []
    mask = 1
    while mask < size:
        block = v & ~np.int32(mask - 1)  # first chunk of the mask chunks v holds
        steps.append(Step(core, core[v ^ mask], block, flags(size, False), count=counts(size, mask)))
        mask <<= 1
    return steps


def recursive_doubling_allreduce(ranks: int, size_bytes: int, **_: object) -> Schedule:
    """Allreduce by recursive doubling of the whole buffer (one chunk); any p >= 1."""
    core, odd, even = mpich_fold(ranks)
    zero = np.zeros(len(core), dtype=np.int32)
    v = np.arange(len(core))
    exchanges = []
    mask = 1
    while mask < len(core):
        exchanges.append(Step(core, core[v ^ mask], zero, flags(len(core), True)))
        mask <<= 1
    steps = fold_in(odd, even, 1) + exchanges + fold_out(odd, even, 1)
    return Schedule("allreduce", "recursive_doubling", ranks, (size_bytes,), tuple(steps))


def recursive_doubling_allgather(ranks: int, size_bytes: int, **_: object) -> Schedule:
    """Allgather by recursive doubling; p must be a power of two."""
    require_power_of_two(ranks, "recursive_doubling", "allgather", "bruck or ring")
    steps = doubling_allgather_steps(np.arange(ranks, dtype=np.int32))
    return Schedule(
        "allgather", "recursive_doubling", ranks, split_evenly(size_bytes, ranks), tuple(steps)
    )
