"""One data-parallel rank: forward, backward in gradient buckets, wait for the allreduce, optimizer step."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import simpy

from simulator.results import IterationRecord, Trace

from .communicator import Communicator
from .stragglers import SlowdownModel

__all__ = ["ComputePlan", "Worker"]


@dataclass(frozen=True)
class ComputePlan:
    """Nominal compute times of one iteration on one worker (seconds).

    ``backward_s[b]`` is the backward compute that produces bucket ``b``'s gradients.
    """

    forward_s: float
    backward_s: tuple[float, ...]
    optimizer_s: float

    @property
    def total_s(self) -> float:
        return self.forward_s + sum(self.backward_s) + self.optimizer_s


class Worker:
    def __init__(self, env: simpy.Environment, rank: int, plan: ComputePlan, comm: Communicator,
                 slowdown: SlowdownModel, trace: Trace, records: list[IterationRecord]):
        self.env, self.rank, self.plan, self.comm = env, rank, plan, comm
        self.slowdown, self.trace, self.records = slowdown, trace, records

    def train(self, iterations: int) -> Generator[simpy.Event, None, None]:
        for it in range(iterations):
            start = self.env.now
            factor = self.slowdown.factor(self.rank)
            yield from self.compute("forward", self.plan.forward_s * factor, it)
            yield from self.backward(it, factor)
            backward_end = self.env.now
            yield self.comm.done(it)
            synced = self.env.now
            if self.trace.traced(self.rank):
                self.trace.span("wait for gradients", self.rank, backward_end, synced, iteration=it)
            yield from self.compute("optimizer", self.plan.optimizer_s * factor, it)
            wait = max(0.0, min(self.comm.last_ready_at[it], synced) - backward_end)
            self.records.append(IterationRecord(
                rank=self.rank, iteration=it, start_s=start, compute_s=self.plan.total_s * factor,
                comm_exposed_s=synced - backward_end - wait, wait_s=wait, end_s=self.env.now))

    def backward(self, it: int, factor: float) -> Generator[simpy.Event, None, None]:
        for b, seconds in enumerate(self.plan.backward_s):
            yield from self.compute(f"backward bucket {b}", seconds * factor, it)
            self.comm.submit(it, b)

    def compute(self, name: str, seconds: float, it: int) -> Generator[simpy.Event, None, None]:
        start = self.env.now
        yield self.env.timeout(seconds)
        if self.trace.traced(self.rank):
            self.trace.span(name, self.rank, start, self.env.now, iteration=it)
