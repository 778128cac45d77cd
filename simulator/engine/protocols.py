"""Training protocols: when a parameter-server worker may read, and which pushes count.

Each protocol answers four questions for the worker and the servers, and holds no
timing of its own:

- ``wait_to_read(rank, clock)``: an event to wait for before pulling parameters for
  the worker's ``clock``-th iteration (``None``: go ahead);
- ``more(rank, clock)``: does the worker run another iteration?
- ``tag(rank, clock)``: the step the worker's gradient belongs to;
- ``accept(tag)``: does the server apply this push (``False``: it is dropped)?

and is told ``applied(rank, tag)`` when a push has been applied on every shard.

``BSP`` (with ``backup_workers`` b, Chen et al. 2016): step g completes when the
first p−b pushes of step g are applied; later pushes of g are dropped; a worker
reads only once the step it pushed to has completed. ``SSP`` with bound s
(Ho et al., NIPS 2013): a worker at clock c reads only once every worker's first
c−s pushes are applied, so it is never more than s iterations ahead of the
slowest; s = 0 is BSP. ``ASP``: never waits.
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import simpy

from simulator.config.models import Sync

__all__ = ["ASP", "BSP", "SSP", "Protocol", "make_protocol"]


class Protocol:
    name = "protocol"
    asynchronous = False     # per-worker clocks (iteration time is per worker, staleness is recorded)

    def __init__(self, env: simpy.Environment, workers: int, iterations: int):
        self.env, self.workers, self.iterations = env, workers, iterations
        self.applied_clock = np.zeros(workers, dtype=np.int64)   # pushes of each worker applied

    @property
    def contributors(self) -> int:
        """Gradients averaged into one step's worth of updates (sets the per-push learning-rate share)."""
        return self.workers

    def wait_to_read(self, rank: int, clock: int) -> simpy.Event | None:
        return None

    def more(self, rank: int, clock: int) -> bool:
        return clock < self.iterations

    def tag(self, rank: int, clock: int) -> int:
        return clock

    def accept(self, tag: int) -> bool:
        return True

    def applied(self, rank: int, tag: int) -> None:
        self.applied_clock[rank] += 1

    def step_ends(self) -> np.ndarray | None:
        """When each global step completed (synchronous protocols), else ``None``."""
        return None


class ASP(Protocol):
    name = "asp"
    asynchronous = True


class SSP(Protocol):
    name = "ssp"
    asynchronous = True

    def __init__(self, env: simpy.Environment, workers: int, iterations: int, staleness: int):
        super().__init__(env, workers, iterations)
        self.staleness = staleness
        self._slowest = 0                                    # min(applied_clock)
        self._waiting: list[tuple[int, int, simpy.Event]] = []   # heap of (needed clock, order, event)
        self._order = itertools.count()

    def wait_to_read(self, rank: int, clock: int) -> simpy.Event | None:
        needed = clock - self.staleness
        if needed <= self._slowest:
            return None
        event = self.env.event()
        heapq.heappush(self._waiting, (needed, next(self._order), event))
        return event

    def applied(self, rank: int, tag: int) -> None:
        super().applied(rank, tag)
        slowest = int(self.applied_clock.min())
        if slowest == self._slowest:
            return
        self._slowest = slowest
        while self._waiting and self._waiting[0][0] <= slowest:
            heapq.heappop(self._waiting)[2].succeed()


class BSP(Protocol):
    name = "bsp"

    def __init__(self, env: simpy.Environment, workers: int, iterations: int, backup_workers: int = 0):
        super().__init__(env, workers, iterations)
        self.backup = backup_workers
        self.steps_done = 0
        self._accepted = 0           # pushes of the current step let through
        self._applied = 0            # of those, applied everywhere
        self._done: dict[int, simpy.Event] = {}
        self._ends: list[float] = []
        self._last_tag = np.full(workers, -1, dtype=np.int64)

    @property
    def contributors(self) -> int:
        return self.workers - self.backup

    def _step_event(self, step: int) -> simpy.Event:
        ev = self._done.get(step)
        if ev is None:
            ev = self._done[step] = self.env.event()
        return ev

    def wait_to_read(self, rank: int, clock: int) -> simpy.Event | None:
        last = int(self._last_tag[rank])
        if last < 0 or last < self.steps_done:
            return None
        return self._step_event(last)

    def more(self, rank: int, clock: int) -> bool:
        return self.steps_done < self.iterations

    def tag(self, rank: int, clock: int) -> int:
        self._last_tag[rank] = self.steps_done
        return self.steps_done

    def accept(self, tag: int) -> bool:
        if tag != self.steps_done or self._accepted >= self.contributors:
            return False               # a backup worker's late gradient, dropped
        self._accepted += 1
        return True

    def applied(self, rank: int, tag: int) -> None:
        super().applied(rank, tag)
        self._applied += 1
        if self._applied == self.contributors:
            self._ends.append(self.env.now)
            self.steps_done += 1
            self._accepted = self._applied = 0
            self._step_event(tag).succeed()
            self._done.pop(tag)

    def step_ends(self) -> np.ndarray:
        return np.array(self._ends)


def make_protocol(sync: Sync, env: simpy.Environment, workers: int, iterations: int) -> Protocol:
    match sync.mode:
        case "asp":
            return ASP(env, workers, iterations)
        case "ssp":
            return SSP(env, workers, iterations, sync.staleness)
        case _:
            return BSP(env, workers, iterations, sync.backup_workers)
