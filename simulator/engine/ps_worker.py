"""One parameter-server worker: wait (protocol), pull, compute, push, wait for the servers to apply.

The protocol decides *whether* to wait and which pushes count; the servers and the
flow model decide *how long* pulls, pushes and updates take. An iteration runs from
the moment the worker asks to read until its push has been applied:
``wait_s`` is the protocol's wait (barrier or staleness bound), ``comm_exposed_s``
the pull, the push and the queue at the servers.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from simulator.results import IterationRecord, Trace

from .learning import UpdateLog
from .parameter_server import ParameterServers
from .protocols import Protocol
from .stragglers import SlowdownModel

__all__ = ["PSWorker"]


class PSWorker:
    def __init__(self, env: simpy.Environment, rank: int, compute_s: float, servers: ParameterServers,
                 protocol: Protocol, log: UpdateLog, slowdown: SlowdownModel, trace: Trace,
                 records: list[IterationRecord]):
        self.env, self.rank, self.compute_s = env, rank, compute_s
        self.servers, self.protocol, self.log = servers, protocol, log
        self.slowdown, self.trace, self.records = slowdown, trace, records

    def train(self) -> Generator[simpy.Event, None, None]:
        clock = 0
        while True:
            start = self.env.now
            gate = self.protocol.wait_to_read(self.rank, clock)
            if gate is not None:
                yield gate
            if not self.protocol.more(self.rank, clock):
                return
            read_at = self.env.now
            self._span("wait for peers", start, read_at, clock)
            tag = self.protocol.tag(self.rank, clock)
            params = self.log.read(self.rank, self.servers.versions(), clock)
            yield self.servers.pull(self.rank)
            self._span("pull", read_at, self.env.now, clock)
            factor = self.slowdown.factor(self.rank)
            computed_at = self.env.now
            yield self.env.timeout(self.compute_s * factor)
            self._span("forward + backward", computed_at, self.env.now, clock)
            grad = None if params is None else self.log.learner.gradient(params, self.rank, clock)
            pushed_at = self.env.now
            self.log.pushed(self.rank, grad)
            yield self.servers.push(self.rank)
            self._span("push", pushed_at, self.env.now, clock)
            if self.protocol.accept(tag):
                applied, versions_before = self.servers.apply(self.rank, tag)
                self.log.queued(self.rank, versions_before)
                yield applied
                self.protocol.applied(self.rank, tag)
                self.log.completed(self.rank)
            else:
                self.log.dropped(self.rank)
            end = self.env.now
            comm = (computed_at - read_at) + (end - pushed_at)
            self.records.append(IterationRecord(
                rank=self.rank, iteration=clock if self.protocol.asynchronous else tag, start_s=start,
                compute_s=self.compute_s * factor, comm_exposed_s=comm, wait_s=read_at - start, end_s=end))
            clock += 1

    def _span(self, name: str, start: float, end: float, clock: int) -> None:
        if end > start and self.trace.traced(self.rank):
            self.trace.span(name, self.rank, start, end, iteration=clock)
