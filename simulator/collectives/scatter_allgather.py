"""Van de Geijn's broadcast: binomial scatter, then ring allgather.

The root's buffer is cut into ``p`` chunks; chunk ``v`` is destined for the rank
at distance ``v`` from the root (``(root + v) mod p``). A binomial scatter
(largest distance first, each sender handing over the upper half of the chunk
range it holds) leaves every rank with its own chunk; a ring allgather over the
ranks in root-relative order then gives everyone everything (skipping the
transfers whose receiver kept that chunk during the scatter). For large
messages this replaces the binomial tree's ``log2(p) n beta`` with about
``2 n beta``. With ``p`` a power of two:

``(log2(p) + p - 1) alpha + 2 (p-1)/p n beta``

References
----------
M. Barnett, S. Gupta, D. G. Payne, L. Shuler, R. van de Geijn and J. Watts,
"Interprocessor collective communication library (InterCom)", SHPCC 1994.
E. Chan, M. Heimlich, A. Purkayastha and R. van de Geijn, "Collective
communication: theory, practice, and experience", CCPE 19(13), 2007.
R. Thakur, R. Rabenseifner and W. Gropp, IJHPCA 19(1), 2005, section 4.1.
"""

from __future__ import annotations

import numpy as np

from ._build import concat_steps, flags, frozen, root_option, spans
from .schedule import Schedule, Step, split_evenly

__all__ = [
    "binomial_scatter_steps",
    "pruned_ring_allgather_steps",
    "scatter_allgather_broadcast",
]


def binomial_scatter_steps(ranks: int, root: int) -> list[Step]:
    """Scatter chunk ``v`` to relative rank ``v``, largest distance first."""
    v = np.arange(ranks)
    steps = []
    for level in reversed(range((ranks - 1).bit_length())):
        mask = 1 << level
        senders = v[(v % (2 * mask) == 0) & (v + mask < ranks)]
        parts = []
        for sender in senders.tolist():
            first, stop = sender + mask, min(sender + 2 * mask, ranks)
            count = stop - first
            parts.append(
                (
                    np.full(count, (sender + root) % ranks),
                    np.full(count, (first + root) % ranks),
                    spans([first], count),
                    False,
                )
            )
        steps.append(concat_steps(parts))
    return steps


def pruned_ring_allgather_steps(ranks: int, root: int) -> list[Step]:
    """Ring allgather after the scatter, without transfers the receiver does not need.

    After the scatter relative rank ``w > 0`` already holds chunks
    ``w .. w + h(w) - 1`` with ``h(w) = min(lowbit(w), p - w)`` (the root holds
    all); at ring step ``k`` it would receive chunk ``w - 1 - k``, which it
    already holds iff ``p - 1 - k < h(w)``. Ring positions are sorted by
    ``h`` so the transfers kept at each step are a prefix of shared arrays.
    """
    w = np.arange(ranks)
    held = np.minimum(w & -w, ranks - w)
    held[0] = ranks
    senders = (w - 1) % ranks  # the ring position sending to w
    order = np.argsort(held[(senders + 1) % ranks], kind="stable")
    senders = senders[order]
    need = held[(senders + 1) % ranks]
    src = frozen(((senders + root) % ranks).astype(np.int32))
    dst = frozen(((senders + 1 + root) % ranks).astype(np.int32))
    steps = []
    for k in range(ranks - 1):
        keep = int(np.searchsorted(need, ranks - 1 - k, side="right"))  # need <= p - 1 - k
        chunk = (senders[:keep] - k) % ranks
        steps.append(Step(src[:keep], dst[:keep], chunk, flags(keep, False)))
    return steps


def scatter_allgather_broadcast(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Broadcast from ``root`` (topology_info, default 0) as scatter + ring allgather; any p."""
    root = root_option(options, ranks, "scatter_allgather broadcast")
    steps = binomial_scatter_steps(ranks, root) + pruned_ring_allgather_steps(ranks, root)
    return Schedule(
        "broadcast",
        "scatter_allgather",
        ranks,
        split_evenly(size_bytes, ranks),
        tuple(steps),
        root=root,
    )
