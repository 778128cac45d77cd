"""``algorithm: auto``: pick the collective algorithm with the least simulated time, like NCCL's tuner.

NCCL chooses by a cost model of the hardware; ours is the simulator itself: each
registered algorithm that can run on these ranks is timed on the actual topology
(fluid network, memoised steps) for the message sizes the job will send, and the
fastest total wins. Ties go to the earlier algorithm in registry order, so the
choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from simulator import collectives
from simulator.network import Network

__all__ = ["best_algorithm"]


def best_algorithm(network: Network, ranks: int, sizes: Iterable[int], *, collective: str = "allreduce",
                   placement: np.ndarray | None = None, options: dict | None = None,
                   **info: Any) -> tuple[str, dict[str, float]]:
    """Return the fastest algorithm and every candidate's total seconds over ``sizes``.

    ``options`` (algorithm options, e.g. ``{"pipeline_chunks": 16}``): each candidate is timed with
    the ones it takes (:data:`simulator.collectives.OPTIONS`).
    """
    sizes = list(sizes)
    totals: dict[str, float] = {}
    for name in collectives.algorithms(collective):
        takes = collectives.OPTIONS.get((collective, name), ())
        mine = {k: v for k, v in (options or {}).items() if k in takes}
        try:
            scheds = [collectives.schedule(name, ranks, n, collective=collective, **info, **mine) for n in sizes]
        except collectives.ScheduleError:
            continue  # cannot run on this many ranks / this node structure
        if not network.supports(scheds[0], placement):
            continue  # reduces in a switch, and no switch here does
        totals[name] = sum(network.schedule_time(s, placement) for s in scheds)
    if not totals:
        raise collectives.ScheduleError(f"no {collective} algorithm runs on {ranks} ranks")
    best = min(totals, key=lambda k: (totals[k], list(totals).index(k)))
    return best, totals
