"""In-switch reduction (NVLink SHARP, "NVLS"; InfiniBand SHARP in one switch): the switch adds.

The ``p`` workers are ranks ``0..p-1``; the switch is two ranks (``Schedule.switches == 2``), its
reduction engine ``p`` and its multicast engine ``p + 1``, whose buffers start at the reduction's
identity (both are placed on the one switch). The buffer is cut into ``p`` shards; the four steps
follow NCCL's NVLS allreduce (``multimem.ld_reduce`` then ``multimem.st``):

0. every worker sends its whole buffer to the switch, which reduces it (in the switch);
1. the switch returns shard ``j``, reduced, to worker ``j`` (the ``ld_reduce`` result);
2. worker ``j`` stores shard ``j`` to the switch's multicast address;
3. the switch multicasts every shard to every worker.

Every transfer is needed for the result (``verify`` catches any one dropped): the multicast engine
sends only what the workers stored into it.

So each worker sends and receives ``(1 + 1/p) n`` bytes, once each way, and no worker reduces
anything. The switch has a port per worker, so the α-β-γ cost counts the workers' ports only
(``Schedule.switches``). Run step after step, the up and the down traffic would wait for each
other; NCCL pipelines them, which the schedule says with ``slices`` (default
:data:`NVLS_SLICES`): the time is one slice's pass plus ``c - 1`` slices at the pace of the
busiest port, ``4 alpha + (1 + 1/p) n beta (c + 1) / c``, so nccl-tests' allreduce busbw
``2(p-1)/p n / t`` tends to ``2(p-1)/(p+1) / beta`` (``1.56 / beta`` at ``p = 8``), above the
ring's ``1 / beta``.

The network model places ranks ``p`` and ``p + 1`` on the switch that every worker's device is attached to
and that reduces (a switch node with ``reduces: true``; ``docs/config.md``), and runs the
switch's traffic at its ``reduce_efficiency``.

References
----------
NVIDIA NCCL ``src/device/all_reduce.h`` (``runRing`` / NVLS ``ld_reduce`` + ``st``) and
``src/graph/tuning.cc`` (``nvlsEfficiency``); R. L. Graham et al., "Scalable hierarchical
aggregation protocol (SHArP)", COMHPC 2016.
"""

from __future__ import annotations

import numpy as np

from ._build import counts, flags, frozen
from .schedule import Schedule, Step, split_evenly

__all__ = ["NVLS_SLICES", "nvls_allreduce"]

#: slices an NVLS allreduce is pipelined in unless ``slices`` is given. An assumption: NCCL moves
#: NVLS data in chunks of 128 KiB-1 MiB, far more than 32 per collective at the sizes where NVLS
#: wins (>= 64 MB); 32 keeps the pipeline fill at 1/32 of the time
NVLS_SLICES = 32


def nvls_allreduce(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Allreduce reduced in the switch (ranks ``ranks``, ``ranks + 1``): 4 steps, ``(1 + 1/p) n`` bytes per port
    and direction."""
    p = ranks
    workers = frozen(np.arange(p, dtype=np.int32))
    reducer = frozen(np.full(p, p, dtype=np.int32))
    multicast = frozen(np.full(p, p + 1, dtype=np.int32))
    first = frozen(np.zeros(p, dtype=np.int32))
    whole = counts(p, p)
    steps = (
        Step(workers, reducer, first, flags(p, True), whole, wrap=p),      # reduce into the switch
        Step(reducer, workers, workers, flags(p, False)),                  # shard j back to worker j
        Step(workers, multicast, workers, flags(p, False)),                # stored to the multicast address
        Step(multicast, workers, first, flags(p, False), whole, wrap=p),   # multicast to every worker
    )
    return Schedule("allreduce", "nvls", p + 2, split_evenly(size_bytes, p), steps, switches=2, slices=NVLS_SLICES)
