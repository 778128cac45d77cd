"""The gradient communicator: one collective at a time, in bucket order (like an NCCL stream).

A bucket's allreduce starts when every worker has produced that bucket's
gradients *and* the previous collective has finished. Its duration comes from
the network (``Network.schedule_time`` of the algorithm's schedule, memoised per
bucket size), so this process only decides *when*, never *how long*.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import simpy

from simulator.results import Trace

__all__ = ["Communicator"]


class Communicator:
    """Serves bucketed allreduces for ``workers`` ranks over ``iterations``.

    Parameters
    ----------
    bucket_bytes : bytes of each bucket, in the order they become ready.
    cost : bucket size in bytes → (seconds of the collective, bytes all ranks send in it),
        both from the network and the schedule.
    """

    def __init__(self, env: simpy.Environment, workers: int, bucket_bytes: list[int],
                 cost: Callable[[int], tuple[float, float]], algorithm: str, trace: Trace):
        self.env, self.workers, self.bucket_bytes = env, workers, bucket_bytes
        self.cost, self.algorithm, self.trace = cost, algorithm, trace
        self._arrived: dict[tuple[int, int], int] = {}
        self._ready: dict[tuple[int, int], simpy.Event] = {}
        self._done: dict[tuple[int, int], simpy.Event] = {}
        self.busy_s: list[float] = []          # per iteration: time collectives ran
        self.bytes_sent: list[float] = []      # per iteration: bytes all ranks sent
        self.last_ready_at: dict[int, float] = {}  # iteration -> when every rank had its last bucket
        self.on_done: Callable[[int], None] | None = None  # called as iteration i's last bucket completes

    def _event(self, table: dict, key: tuple[int, int]) -> simpy.Event:
        ev = table.get(key)
        if ev is None:
            ev = table[key] = self.env.event()
        return ev

    def submit(self, it: int, bucket: int) -> None:
        """A worker has this bucket's gradients; the last of ``workers`` arrivals releases it."""
        key = (it, bucket)
        n = self._arrived.get(key, 0) + 1
        self._arrived[key] = n
        if n == self.workers:
            del self._arrived[key]
            if bucket == len(self.bucket_bytes) - 1:
                self.last_ready_at[it] = self.env.now
            self._event(self._ready, key).succeed()

    def done(self, it: int) -> simpy.Event:
        """Fires when every bucket of iteration ``it`` is reduced everywhere."""
        return self._event(self._done, (it, len(self.bucket_bytes) - 1))

    def serve(self, iterations: int) -> Generator[simpy.Event, None, None]:
        for it in range(iterations):
            busy = sent = 0.0
            for b, nbytes in enumerate(self.bucket_bytes):
                yield self._event(self._ready, (it, b))
                self._ready.pop((it, b))
                start = self.env.now
                seconds, nbytes_sent = self.cost(nbytes)
                yield self.env.timeout(seconds)
                busy += self.env.now - start
                sent += nbytes_sent
                self.trace.span(f"allreduce {nbytes / 2**20:.1f} MiB", "gradient allreduce", start,
                                self.env.now, algorithm=self.algorithm, bucket=b, iteration=it)
                if b == len(self.bucket_bytes) - 1 and self.on_done is not None:
                    self.on_done(it)
                self._event(self._done, (it, b)).succeed()
            self.busy_s.append(busy)
            self.bytes_sent.append(sent)

    def busy_per_iteration(self) -> np.ndarray:
        return np.array(self.busy_s)
