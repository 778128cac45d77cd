"""``algorithm: auto``: pick the collective algorithm with the least simulated time, like NCCL's tuner.

NCCL chooses by a cost model of the hardware; ours is the simulator itself: each
registered algorithm that can run on these ranks is timed on the actual topology
(fluid network, memoised steps) for the message sizes the job will send, and the
fastest total wins. Ties go to the earlier algorithm in registry order, so the
choice is deterministic.

Branch and bound: routing and solving the max-min steps of every candidate are most of the cost,
so each candidate first gets a floor that routes nothing (``Network.schedule_floor``: the links no
route avoids, every message its step's smallest). Candidates are taken cheapest floor first: the
first is simulated; each later one is pruned when its floor already exceeds the fastest simulated
total, else it gets a tighter bound that routes but solves no max-min step
(``Network.schedule_lower_bound``; where no step needed solving that is its simulated time) and is
pruned when that exceeds the fastest total, else simulated. A pruned candidate (``Choice.pruned``,
with the bound that pruned it) is slower than the winner, so the choice is the one timing every
candidate would make. With a calibrated profile (``cluster.profile``) every candidate costs a closed
form: all are priced, none pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator import collectives
from simulator.network import Network

__all__ = ["Choice", "best_algorithm", "fastest"]

#: A candidate is pruned only when its bound exceeds the fastest total by this fraction: the fluid
#: solver retires flows within 1e-9 of an epoch's end and scales memoised steps (~1e-15), so its
#: totals may sit that far below the exact fluid times the bound is proven against.
PRUNE_MARGIN = 1e-6


@dataclass(frozen=True)
class Choice:
    """What ``auto`` chose, and what it knows of every candidate.

    ``seconds``: the simulated total of each candidate simulated (registry order); ``pruned``: the
    lower bound of each candidate that was not, because its bound exceeded the fastest total
    (registry order). Every candidate is in exactly one of the two. ``priced``: the chosen one's
    ``Network.schedule_cost`` (seconds, bytes carried) of each of its schedules, in order, so that
    what the tuner simulated need not be simulated again.
    """

    algorithm: str
    seconds: dict[str, float]
    pruned: dict[str, float]
    priced: tuple[tuple[float, float], ...] = ()


def fastest(network: Network, candidates: Mapping[str, Sequence[tuple[collectives.Schedule, np.ndarray | None]]]
            ) -> Choice:
    """The candidate whose schedules (each with its placement) take the least simulated seconds in all.

    ``candidates`` in registry order (the tie-break). Each candidate's total is the sum of
    ``network.schedule_time`` over its schedules, in order; a candidate whose floor or lower bound
    exceeds the fastest total by more than :data:`PRUNE_MARGIN` is not simulated (see the module
    docstring).
    """
    if not candidates:
        raise ValueError("no candidates")
    order = list(candidates)
    floors = {name: sum(network.schedule_floor(s, place) for s, place in runs) for name, runs in candidates.items()}
    # a calibrated profile prices a schedule in closed form: nothing to save, so nothing is pruned
    bounding = network.profile is None
    best = np.inf
    seconds, pruned, priced = {}, {}, {}
    for name in sorted(order, key=lambda k: (floors[k], order.index(k))):
        runs = candidates[name]
        if bounding and floors[name] > best * (1 + PRUNE_MARGIN):
            pruned[name] = floors[name]
            continue
        if bounding and best < np.inf:
            bounds = [network.schedule_lower_bound(s, place) for s, place in runs]
            bound = _total(b[0] for b in bounds)
            if all(b[2] for b in bounds):   # no step to solve: the bound is the simulated total, float for float
                priced[name] = tuple(b[:2] for b in bounds)
            elif bound > best * (1 + PRUNE_MARGIN):
                pruned[name] = bound
                continue
        if name not in priced:
            priced[name] = tuple(network.schedule_cost(s, place) for s, place in runs)
        seconds[name] = _total(c[0] for c in priced[name])
        best = min(best, seconds[name])
    seconds = {k: seconds[k] for k in order if k in seconds}
    chosen = min(seconds, key=lambda k: (seconds[k], order.index(k)))
    return Choice(chosen, seconds, {k: pruned[k] for k in order if k in pruned}, priced[chosen])


def _total(seconds: Iterable[float]) -> float:
    """Seconds summed in order from 0.0 (the float ``sum`` of the schedules' times gives)."""
    total = 0.0
    for s in seconds:
        total += s
    return total


def best_algorithm(network: Network, ranks: int, sizes: Iterable[int], *, collective: str = "allreduce",
                   placement: np.ndarray | None = None, options: dict | None = None, **info: Any) -> Choice:
    """The fastest algorithm over ``sizes`` (:func:`fastest` over every algorithm that runs here).

    ``options`` (algorithm options, e.g. ``{"pipeline_chunks": 16}``): each candidate is timed with
    the ones it takes (:data:`simulator.collectives.OPTIONS`).
    """
    sizes = list(sizes)
    candidates: dict[str, list[tuple[collectives.Schedule, np.ndarray | None]]] = {}
    for name in collectives.algorithms(collective):
        takes = collectives.OPTIONS.get((collective, name), ())
        mine = {k: v for k, v in (options or {}).items() if k in takes}
        try:
            scheds = [collectives.schedule(name, ranks, n, collective=collective, **info, **mine) for n in sizes]
        except collectives.ScheduleError:
            continue  # cannot run on this many ranks / this node structure
        if not network.supports(scheds[0], placement):
            continue  # reduces in a switch, and no switch here does
        candidates[name] = [(s, placement) for s in scheds]
    if not candidates:
        raise collectives.ScheduleError(f"no {collective} algorithm runs on {ranks} ranks")
    return fastest(network, candidates)
