"""Parameter servers: k shards on topology devices, each a FIFO queue that applies pushed gradients.

A push or a pull is one flow per shard between the worker's device and the
shard's server device, carried by the asynchronous flow model
(``simulator.network.dynamic``), so the link into a server is shared by every
worker pushing to it at that moment. Applying one push to a shard costs
``apply_s[j]`` seconds of the server's time (read the gradient and the
parameters, write the parameters: 3 × shard bytes at the server's memory
bandwidth); pushes queue at each shard in arrival order.

Versions count the updates each shard has applied; a worker's pull records the
versions it read. Queues are FIFO, so a push queued behind q others at a shard is
applied when that shard's version is q: its staleness (updates the shard received
between the pull and the push) is known when it is queued, without an event per
shard. Per-shard events are scheduled only when something must happen at that
moment (the convergence problem's parameters change).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import simpy

from simulator.network.dynamic import FlowSimulator
from simulator.results import Trace

__all__ = ["ParameterServers"]


class ParameterServers:
    """Parameters
    ----------
    server_ranks : device rank of each shard's server.
    shard_bytes : bytes of each shard (gradients pushed = parameters pulled).
    apply_s : seconds to apply one push to each shard.
    """

    def __init__(self, env: simpy.Environment, flows: FlowSimulator, server_ranks: list[int],
                 shard_bytes: np.ndarray, apply_s: np.ndarray, trace: Trace):
        self.env, self.flows, self.trace = env, flows, trace
        self.server_ranks = list(server_ranks)
        self.shard_bytes = np.asarray(shard_bytes, dtype=float)
        self.apply_s = np.asarray(apply_s, dtype=float)
        k = len(self.server_ranks)
        self.free_at = np.zeros(k)       # when each shard's queue drains
        self.busy_s = np.zeros(k)        # total time each shard spent applying
        self.queued = np.zeros(k, dtype=np.int64)          # pushes ever queued at each shard
        self._pending: list[deque[float]] = [deque() for _ in range(k)]  # end times not yet reached
        # (shard, rank, tag) at the moment a shard applies a push; None: nothing needs that moment
        self.on_shard_applied: Callable[[int, int, int], None] | None = None

    @property
    def k(self) -> int:
        return len(self.server_ranks)

    def pull(self, rank: int) -> simpy.Event:
        """Parameters from every shard to ``rank``."""
        return self.flows.transfer(self.server_ranks, [rank] * self.k, self.shard_bytes)

    def push(self, rank: int) -> simpy.Event:
        """Gradients from ``rank`` to every shard."""
        return self.flows.transfer([rank] * self.k, self.server_ranks, self.shard_bytes)

    def versions(self) -> np.ndarray:
        """Updates each shard has applied by now."""
        now = self.env.now
        for q in self._pending:
            while q and q[0] <= now:
                q.popleft()
        return self.queued - np.array([len(q) for q in self._pending])

    def apply(self, rank: int, tag: int) -> tuple[simpy.Event, np.ndarray]:
        """Queue ``rank``'s push at every shard.

        Returns an event that fires when the last shard has applied it, and each shard's
        version just before it does (the updates queued ahead of it).
        """
        now = self.env.now
        start = np.maximum(now, self.free_at)
        end = start + self.apply_s
        self.free_at = end
        self.busy_s += self.apply_s
        before = self.queued.copy()
        self.queued += 1
        for j in range(self.k):
            self._pending[j].append(float(end[j]))
            if self.on_shard_applied is not None:
                self.env.timeout(end[j] - now).callbacks.append(self._applied_callback(j, rank, tag))
            if self.trace.traced(rank):
                self.trace.span(f"apply rank {rank}", f"server {j}", float(start[j]), float(end[j]), tag=tag)
        return self.env.timeout(float(end.max()) - now), before

    def _applied_callback(self, shard: int, rank: int, tag: int) -> Callable[[simpy.Event], None]:
        def applied(_event: simpy.Event) -> None:
            self.on_shard_applied(shard, rank, tag)
        return applied

    def utilization(self, span_s: float) -> float:
        """Mean fraction of ``span_s`` the shards spent applying updates."""
        return float(self.busy_s.mean() / span_s) if span_s > 0 else 0.0
